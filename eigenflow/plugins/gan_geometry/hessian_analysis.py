"""The metric-tensor analysis of a generator (seed 003, Sec. 3-4): the spectrum of
``H(z) = J^T J`` at many codes, its anisotropy and homogeneity, the "illusion of isotropy"
of random directions, and the top eigenvectors of the average metric as traversals; written as
a JSON summary, plots (with the optional extra ``plot``: matplotlib) and an image grid.

The numbers come from the registered traversal ``hessian-metric`` (eigenpairs of ``H``) and
metric ``hessian-spectrum`` (anisotropy, homogeneity), built by name; this module only
arranges them and draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...core.errors import InputError
from ...core.images import image_grid, write_png
from ...core.io import atomic_write_json
from ...registry.registry import get_registries

__all__ = ["hessian_geometry", "random_direction_speeds"]

Map = Callable[[torch.Tensor], torch.Tensor]

#: the trace shares of seed 003's Table 2 (dim.99 ... dim.9999)
FRACTIONS = (0.99, 0.999, 0.9999)


def random_direction_speeds(
    eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """``alpha_H(v) = v^T H v / v^T v`` (seed 003, Sec. 4) for ``H = U diag(L) U^T``.

    Parameters
    ----------
    eigenvalues
        ``(N, d)`` all eigenvalues of ``H`` at ``N`` codes.
    eigenvectors
        ``(N, d, d)`` the matching eigenvectors (columns).
    directions
        ``(M, d)`` directions ``v``.

    Returns
    -------
    torch.Tensor
        ``(N, M)`` speeds.
    """
    proj = torch.einsum("ndk,md->nmk", eigenvectors, directions)  # U^T v
    num = (proj.square() * eigenvalues[:, None, :]).sum(-1)
    return num / directions.square().sum(-1)[None, :]


def hessian_geometry(
    generator: Map,
    z: torch.Tensor,
    *,
    out_dir: str | Path | None = None,
    feature_map: Map | None = None,
    num_traversals: int = 5,
    traversal_steps: int = 6,
    traversal_range: float = 3.0,
    random_directions: int = 256,
    seed: int = 0,
    label: str = "generator",
) -> dict[str, Any]:
    """Seed 003's analysis of ``H(z) = J^T J`` for ``phi = generator`` (or
    ``feature_map o generator``) at the codes ``z (N, d)``.

    Parameters
    ----------
    generator
        ``(B, d) -> (B, ...)``, samples independent.
    z
        ``(N, d)`` codes, ``N >= 2`` (homogeneity compares pairs of codes).
    out_dir
        Where to write ``hessian.json``, ``hessian-traversals.png`` (rows: top eigenvectors
        of the average metric; columns: ``z_0 + mu v`` for ``mu`` in
        ``[-traversal_range, traversal_range]``; only for image outputs ``(C, H, W)``) and, when
        matplotlib is installed, ``hessian-spectrum.png`` (mean and 5-95 % band of the log10
        spectrum, seed 003 Fig. 2A) and ``hessian-isotropy.png`` (histograms of log10
        eigenvalues and of random directions' speeds, Fig. 2D). ``None``: write nothing.
    feature_map
        Optional map applied to the generator's output.
    num_traversals, traversal_steps, traversal_range
        Top eigenvectors drawn, frames per row and the latent extent ``mu``.
    random_directions
        Random unit directions whose speeds are compared with the eigenvalues.
    seed
        Seed of the random directions.
    label
        Title of the plots.

    Returns
    -------
    dict
        ``latent_dim``, ``codes``, ``mean_log10_eigenvalues`` (``d``),
        ``log10_eigenvalue_p05`` / ``p95``, ``anisotropy`` (``{fraction: mean count}``, seed
        003 Table 2), ``anisotropy_share``, ``homogeneity`` (mean log-scale correlation of
        Eq. 5-6), ``top_eigenvalues`` of the average metric, ``top_directions`` (its first
        ``num_traversals`` eigenvectors, one list per direction), ``log10_eigenvalue_span``
        (decades between the largest and smallest mean eigenvalue), ``random_speed`` (mean
        and spread of ``log10 alpha(v)``), ``eigenvalue_log10_std`` and ``files``.
    """
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] < 2:
        raise InputError(
            f"z: expected codes (N, d) with N >= 2, got "
            f"{list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
        )
    registries = get_registries()
    d = z.shape[1]
    traversal = registries["traversal"].create("hessian-metric", num_directions=d, method="exact")
    traversal.fit(generator, z, feature_map)
    values = traversal.local_eigenvalues.clamp_min(0)  # (N, d) descending
    vectors = traversal.local_eigenvectors  # (N, d, d)
    spectrum = {
        f: registries["metric"].create("hessian-spectrum", fraction=f)(generator, z, feature_map)
        for f in FRACTIONS
    }
    first = spectrum[FRACTIONS[0]]
    floor = torch.finfo(values.dtype).tiny
    logs = values.clamp_min(floor).log10().double().cpu()
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(random_directions, d, generator=gen, dtype=torch.float64)
    speeds = random_direction_speeds(values.double().cpu(), vectors.double().cpu(), v)
    log_speeds = speeds.clamp_min(floor).log10()
    mean_eigs = values.double().mean(0).cpu()
    summary: dict[str, Any] = {
        "label": label,
        "latent_dim": d,
        "codes": int(z.shape[0]),
        "mean_log10_eigenvalues": first["mean_log10_eigenvalues"],
        "log10_eigenvalue_p05": torch.quantile(logs, 0.05, dim=0).tolist(),
        "log10_eigenvalue_p95": torch.quantile(logs, 0.95, dim=0).tolist(),
        "anisotropy": {str(f): spectrum[f]["anisotropy"] for f in FRACTIONS},
        "anisotropy_share": {str(f): spectrum[f]["anisotropy_share"] for f in FRACTIONS},
        "homogeneity": first["homogeneity"],
        "top_eigenvalues": traversal.eigenvalues.double().cpu().tolist(),
        "top_directions": traversal.directions[:, :num_traversals].T.double().cpu().tolist(),
        "log10_eigenvalue_span": float(
            mean_eigs.max().clamp_min(floor).log10() - mean_eigs.min().clamp_min(floor).log10()
        ),
        "eigenvalue_log10_std": float(logs.std()),
        "random_speed": {
            "mean_log10": float(log_speeds.mean()),
            "std_log10": float(log_speeds.std()),
        },
        "files": [],
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary["files"] += _traversal_grid(
            generator,
            traversal.directions,
            z[:1],
            num_traversals,
            traversal_steps,
            traversal_range,
            out / "hessian-traversals.png",
        )
        summary["files"] += _spectrum_plots(logs, log_speeds, out, label)
        atomic_write_json(out / "hessian.json", summary)
        summary["files"].append("hessian.json")
    return summary


@torch.no_grad()
def _traversal_grid(
    generator: Map,
    directions: torch.Tensor,
    z0: torch.Tensor,
    count: int,
    steps: int,
    extent: float,
    path: Path,
) -> list[str]:
    mu = torch.linspace(-extent, extent, steps, dtype=z0.dtype, device=z0.device)
    rows = []
    for k in range(min(count, directions.shape[1])):
        codes = z0 + mu[:, None] * directions[:, k].to(z0)[None, :]
        rows.append(generator(codes))
    frames = torch.stack(rows)  # (count, steps, ...)
    if frames.dim() != 5:
        return []
    write_png(path, image_grid(frames.float().cpu()))
    return [path.name]


def _spectrum_plots(
    logs: torch.Tensor, log_speeds: torch.Tensor, out: Path, label: str
) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plots need the optional extra 'plot'
        return []
    rank = torch.arange(1, logs.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(rank, logs.mean(0), color="k", label="mean")
    ax.fill_between(
        rank,
        torch.quantile(logs, 0.05, dim=0),
        torch.quantile(logs, 0.95, dim=0),
        alpha=0.3,
        label="5-95 %",
    )
    ax.set(xlabel="eigenvalue rank", ylabel="log10 eigenvalue", title=f"{label}: spectrum of H")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hessian-spectrum.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(logs.flatten(), bins=30, alpha=0.6, density=True, label="eigenvalues")
    ax.hist(log_speeds.flatten(), bins=30, alpha=0.6, density=True, label="random directions")
    ax.set(xlabel="log10 speed v^T H v / v^T v", ylabel="density", title=f"{label}: isotropy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hessian-isotropy.png", dpi=100)
    plt.close(fig)
    return ["hessian-spectrum.png", "hessian-isotropy.png"]


def summarize_runs(summaries: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean over runs of the scalar geometry numbers (anisotropy at 0.99, homogeneity,
    spectrum span)."""
    keys = {
        "anisotropy_99": lambda s: s["anisotropy"]["0.99"],
        "homogeneity": lambda s: s["homogeneity"],
        "log10_span": lambda s: s["log10_eigenvalue_span"],
    }
    return {k: sum(f(s) for s in summaries) / len(summaries) for k, f in keys.items()}
