"""Gradient quality and forward/backward timing of the eigendecomposition solvers.

:func:`gradient_quality` measures, over a sweep of condition numbers, how close each
eigh-based solver's gradient of the loss ``l(A) = sum(sqrt(A) * G)`` is to the exact gradient,
and how large it gets. The exact gradient is computed independently of every solver, in float64,
by the Daleckii-Krein formula for the matrix function ``sqrt``:

``dl/dA = V (D o (V^T G_s V)) V^T``,  ``G_s = (G + G^T)/2``,
``D_ij = (sqrt(l_i) - sqrt(l_j))/(l_i - l_j) = 1/(sqrt(l_i) + sqrt(l_j))``,

, ``A = V diag(l) V^T`` (``D_ii = 1/(2 sqrt(l_i))`` needs no limit, and the
closed form has no cancellation, so it stays exact on repeated eigenvalues where the
eigendecomposition backward of Eq. 3.6 is singular).

:func:`time_forward_backward` times the forward and the backward separately per solver, as
thesis 000, Table 3.5. :func:`write_gradient_report` writes CSV, JSON and a plot.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..api import create, get
from ..api import list as list_components
from .contenders import parse_solver_spec

__all__ = [
    "DEFAULT_CONDS",
    "QUALITY_COLUMNS",
    "TIMING_COLUMNS",
    "eigh_solver_names",
    "exact_sqrt_gradient",
    "gradient_quality",
    "make_solver",
    "plot_gradient_quality",
    "spd_with_condition",
    "time_forward_backward",
    "write_gradient_report",
]

DEFAULT_CONDS: tuple[float, ...] = (1.0, 1e1, 1e2, 1e4, 1e6, 1e8, 1e10, 1e12)
#: The columns of :func:`gradient_quality`'s rows, in order.
QUALITY_COLUMNS = (
    "solver",
    "cond",
    "n",
    "batch",
    "dtype",
    "device",
    "rel_error_median",
    "rel_error_max",
    "max_abs_grad",
    "exact_max_abs_grad",
    "finite_fraction",
)
TIMING_COLUMNS = (
    "solver",
    "n",
    "batch",
    "dtype",
    "device",
    "forward_ms",
    "backward_ms",
    "total_ms",
)


def eigh_solver_names() -> list[str]:
    """Every registered solver that provides ``eigh`` (eigh-based backward), sorted."""
    return sorted(s for s in list_components("solver") if get("solver", s).provides_eigh)


def spd_with_condition(
    n: int, batch: int, cond: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, G)``: float64 SPD matrices ``(batch, n, n)`` with eigenvalues log-spaced from
    ``1/cond`` to 1 in a Haar-random eigenbasis (``cond = 1``: a rotated identity, all
    eigenvalues equal), and a fixed random upstream gradient ``G`` of the same shape."""
    gen = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(batch, n, n, generator=gen, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    lam = torch.logspace(0.0, -math.log10(cond), n, dtype=torch.float64) if n > 1 else None
    lam = torch.ones(n, dtype=torch.float64) if lam is None else lam
    A = (Q * lam.flip(-1)) @ Q.mT
    G = torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    return 0.5 * (A + A.mT), G


def exact_sqrt_gradient(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Exact float64 gradient of ``sum(sqrt(A) * G)`` for symmetric PSD ``A (..., n, n)``
    (Daleckii-Krein, see the module docstring); symmetric, shape of ``A``."""
    A64, G64 = A.to(torch.float64), G.to(torch.float64)
    L, V = torch.linalg.eigh(A64)
    root = L.clamp_min(0.0).sqrt()
    D = 1.0 / (root.unsqueeze(-1) + root.unsqueeze(-2))
    Gs = 0.5 * (G64 + G64.mT)
    return V @ (D * (V.mT @ Gs @ V)) @ V.mT


def make_solver(spec: str) -> Any:
    """A solver from ``"NAME"`` or ``"NAME:KEY=VALUE[:KEY=VALUE]"`` (as ``eigenflow bench``)."""
    name, options = parse_solver_spec(spec)
    return create("solver", name, **options)


def _solver_gradient(solver: Any, A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    X = A.detach().clone().requires_grad_()
    (solver.sqrt(X, check=False) * G).sum().backward()
    return X.grad


def _quality_row(name: str, cond: float, grad: torch.Tensor, exact: torch.Tensor) -> dict:
    g = grad.to(torch.float64)
    finite = torch.isfinite(g).flatten(1).all(dim=1)
    err = torch.linalg.matrix_norm(g - exact) / torch.linalg.matrix_norm(exact)
    err = torch.where(finite, err, torch.full_like(err, math.inf))
    return {
        "solver": name,
        "cond": cond,
        "rel_error_median": err.median().item(),
        "rel_error_max": err.max().item(),
        "max_abs_grad": g.abs().max().item() if bool(finite.all()) else math.inf,
        "exact_max_abs_grad": exact.abs().max().item(),
        "finite_fraction": finite.to(torch.float64).mean().item(),
    }


def gradient_quality(
    solvers: Sequence[str] | None = None,
    conds: Sequence[float] = DEFAULT_CONDS,
    n: int = 32,
    batch: int = 8,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Relative gradient error and maximum gradient magnitude per solver and condition number.

    Parameters
    ----------
    solvers
        Solver names or ``NAME:KEY=VALUE`` specs (default: :func:`eigh_solver_names`, every
        registered solver with ``eigh``).
    conds
        Condition numbers of the test matrices (:func:`spd_with_condition`).
    n, batch
        Matrix size and number of matrices per condition number.
    dtype, device
        Where the solvers run. The exact gradient is float64 on the CPU, at the float64 input
        (so rows for float32 include the effect of rounding the input to float32).

    Returns
    -------
    list of dict
        One row per (solver, cond) with :data:`QUALITY_COLUMNS`: median and maximum over the
        batch of ``||g - g_exact||_F / ||g_exact||_F`` (``inf`` for a non-finite gradient),
        ``max |g|``, the exact ``max |g|``, and the fraction of matrices with finite gradient.
    """
    names = list(solvers) if solvers is not None else eigh_solver_names()
    dev = torch.device(device)
    rows: list[dict[str, Any]] = []
    for cond in conds:
        A64, G64 = spd_with_condition(n, batch, float(cond), seed=seed)
        A, G = A64.to(dtype), G64.to(dtype)
        # The intended (float64) input: float32 rows include the rounding of the input.
        exact = exact_sqrt_gradient(A64, G64)
        for name in names:
            grad = _solver_gradient(make_solver(name), A.to(dev), G.to(dev)).cpu()
            row = _quality_row(name, float(cond), grad, exact)
            row.update(n=n, batch=batch, dtype=str(dtype).replace("torch.", ""), device=str(dev))
            rows.append({k: row[k] for k in QUALITY_COLUMNS})
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward_backward(
    solver_names: Sequence[str] | None = None,
    n: int = 64,
    batch: int = 64,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    repeats: int = 10,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Median forward and backward time (ms) of ``sqrt`` per solver (thesis 000, Table 3.5).

    Each repeat runs an untimed-setup forward ``solver.sqrt(A)`` (timed), then the backward of
    ``sum(sqrt(A) * G)`` (timed separately); one warm-up repeat is discarded. Inputs are SPD
    with condition number 1e3 (:func:`spd_with_condition`).
    """
    names = list(solver_names) if solver_names is not None else eigh_solver_names()
    dev = torch.device(device)
    A64, G64 = spd_with_condition(n, batch, 1e3, seed=seed)
    A, G = A64.to(dtype=dtype, device=dev), G64.to(dtype=dtype, device=dev)
    rows = []
    for name in names:
        solver = make_solver(name)
        fwd, bwd = [], []
        for rep in range(repeats + 1):
            X = A.detach().clone().requires_grad_()
            _sync(dev)
            t0 = time.perf_counter()
            out = solver.sqrt(X, check=False)
            _sync(dev)
            t1 = time.perf_counter()
            (out * G).sum().backward()
            _sync(dev)
            t2 = time.perf_counter()
            if rep:
                fwd.append(1e3 * (t1 - t0))
                bwd.append(1e3 * (t2 - t1))
        f, b = statistics.median(fwd), statistics.median(bwd)
        rows.append(
            {
                "solver": name,
                "n": n,
                "batch": batch,
                "dtype": str(dtype).replace("torch.", ""),
                "device": str(dev),
                "forward_ms": f,
                "backward_ms": b,
                "total_ms": f + b,
            }
        )
    return rows


def _write_csv(rows: list[dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def plot_gradient_quality(rows: list[dict[str, Any]], path: str | Path, dpi: int = 80) -> Path:
    """Two panels against the condition number: relative gradient error and ``max |g|``
    (non-finite values are drawn at the top edge with an ``x``)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    names = sorted({r["solver"] for r in rows})
    markers = "osD^v<>px*h"
    styles = ("-", "--", ":", "-.")
    for ax, key, label in (
        (axes[0], "rel_error_median", "relative gradient error (median over batch)"),
        (axes[1], "max_abs_grad", "max |dl/dA|"),
    ):
        finite_vals = [r[key] for r in rows if math.isfinite(r[key]) and r[key] > 0]
        top = max(finite_vals) * 10 if finite_vals else 1.0
        for k, name in enumerate(names):
            pts = sorted((r["cond"], r[key]) for r in rows if r["solver"] == name)
            xs = [c for c, v in pts if math.isfinite(v)]
            ys = [max(v, 1e-17) for c, v in pts if math.isfinite(v)]
            (line,) = ax.plot(
                xs,
                ys,
                marker=markers[k % len(markers)],
                linestyle=styles[k % len(styles)],
                markersize=4,
                fillstyle="none",
                label=name,
            )
            bad = [c for c, v in pts if not math.isfinite(v)]
            if bad:
                ax.plot(bad, [top] * len(bad), "x", color=line.get_color(), markersize=8)
        if key == "max_abs_grad":
            exact = sorted({(r["cond"], r["exact_max_abs_grad"]) for r in rows})
            ax.plot([c for c, _ in exact], [v for _, v in exact], "k--", label="exact")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("condition number")
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    first = rows[0] if rows else {}
    fig.suptitle(
        f"gradient of sum(sqrt(A) * G), n={first.get('n')}, {first.get('dtype')}; x: non-finite",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    out = Path(path)
    fig.savefig(out, dpi=dpi)
    return out


def write_gradient_report(
    rows: list[dict[str, Any]],
    out: str | Path,
    timing: list[dict[str, Any]] | None = None,
    plot: bool = True,
    provenance: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``gradient_quality.csv/.json`` (+ ``.png``) and, when given, ``timing.csv/.json``
    into the folder ``out`` (created); ``provenance`` (:func:`eigenflow.bench.provenance.record`)
    goes under the JSON's ``"provenance"`` key. Returns the paths written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    _write_csv(rows, QUALITY_COLUMNS, folder / "gradient_quality.csv")
    data: dict[str, Any] = {} if provenance is None else {"provenance": provenance}
    data["gradient_quality"] = [{k: _json_safe(v) for k, v in r.items()} for r in rows]
    written.append(folder / "gradient_quality.csv")
    if timing is not None:
        _write_csv(timing, TIMING_COLUMNS, folder / "timing.csv")
        written.append(folder / "timing.csv")
        data["timing"] = timing
    (folder / "gradient_quality.json").write_text(json.dumps(data, indent=2))
    written.append(folder / "gradient_quality.json")
    if plot and rows:
        written.append(plot_gradient_quality(rows, folder / "gradient_quality.png"))
    return written
