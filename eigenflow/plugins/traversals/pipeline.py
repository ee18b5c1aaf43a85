"""Registered pipeline ``traverse``: fit traversals on a generator, score them with the VP
score, and write path images, 2-D path projections and the metric spectrum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ...core.component import FitContext, PipelineBase, RunContext
from ...core.config import (
    component_list_option,
    component_option,
    config,
    floating,
    integer,
    option,
    optional,
    validate_options,
)
from ...core.errors import ConfigError
from ...core.images import image_grid, write_png
from ...core.io import atomic_write_json
from ...registry.registry import get_registries
from ...runtime import TrainConfig, Trainer, build_model, load_model_weights
from .metric_tensor import metric_by_backprop

__all__ = ["TraversePipeline", "TraversePipelineConfig", "first_projection"]


@config
class TraversePipelineConfig:
    """Options of ``traverse`` (thesis 000, Sec. 4.5.2 protocol with pre-trained VAEs,
    Table 4.9; seed 003 Fig. 2 for the spectrum). Training budget and sizes are eigenflow's
    CPU-sized defaults."""

    model: Any = component_option("model", "vae", help="the generator's model (name or table)")
    dataset: Any = component_option(
        "dataset", "dsprites", help="data the model is trained on (name or table)"
    )
    checkpoint: str | None = option(
        None,
        help="weights of an already trained model (a state dict or an engine checkpoint); "
        "none: train the model first with the engine",
    )
    train_steps: int = option(1500, validator=integer(1), help="engine steps when training")
    batch_size: int = option(64, validator=integer(1), help="batch size when training")
    lr: float = option(1e-3, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    traversal: Any = component_option(
        "traversal", "potential-flow", help="the traversal to fit and show"
    )
    compare: tuple = component_list_option(
        "traversal",
        help="more traversals scored with the same VP protocol (e.g. ['linear', 'sefa'])",
    )
    num_directions: int = option(
        8,
        validator=integer(1),
        help="K for every traversal that has num_directions / num_potentials (unless its "
        "table sets it), so VP scores share one chance level",
    )
    vp: dict = option(factory=dict, help="options of the vp-score metric")
    num_paths: int = option(4, validator=integer(1), help="paths drawn in the image grids")
    path_steps: int = option(8, validator=integer(1), help="steps of each drawn path")
    step_size: float | None = option(
        None,
        validator=optional(floating(0.0, min_open=True)),
        help="step size passed to traverse (none: each traversal's default)",
    )
    spectrum_points: int = option(
        4, validator=integer(0), help="codes at which the metric spectrum is computed (0: skip)"
    )


def first_projection(model: nn.Module, latent_dim: int) -> nn.Linear:
    """The first ``nn.Linear`` of the decoder taking the ``latent_dim`` code (SeFa's ``A``)."""
    decoder = getattr(model, "decoder", model)
    for module in decoder.modules():
        if isinstance(module, nn.Linear) and module.in_features == latent_dim:
            return module
    raise ConfigError(
        f"model {type(model).__name__}: no linear layer reads the {latent_dim}-d code"
    )


class TraversePipeline(PipelineBase):
    """Fit a traversal (and the ones to ``compare``) on a model's decoder, trained here by the
    engine or loaded from ``checkpoint``; report VP scores and write ``paths-<name>.png``
    (rows: paths ``k``; columns: steps), ``projection-<name>.png`` (paths in the plane of their
    two principal components), ``spectrum.png`` (log eigenvalues of the decoder's metric
    tensor ``J^T J``) and ``result.json``."""

    Config = TraversePipelineConfig
    source = "000 (Song 2023), Sec. 4.5.2, Table 4.9; 003 (Wang & Ponce), Fig. 2"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        registries = get_registries()
        model = self._model(ctx)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        latent_dim = int(model.latent_dim)

        def generator(z: torch.Tensor) -> torch.Tensor:
            return model.decode(z)

        gen = torch.Generator().manual_seed(ctx.seed)
        fit_ctx = FitContext(
            generator=generator,
            latent_dim=latent_dim,
            model=model,
            z=torch.randn(16, latent_dim, generator=gen).to(ctx.device),
            layer_or_weight=first_projection(model, latent_dim),
            device=ctx.device,
            seed=ctx.seed,
        )
        vp_metric = registries["metric"].create("vp-score", **{"seed": ctx.seed, **cfg.vp})
        z0 = torch.randn(3, latent_dim, generator=gen).to(ctx.device)
        result: dict[str, Any] = {"latent_dim": latent_dim, "vp": {}, "files": []}
        for ref in (cfg.traversal, *cfg.compare):
            label = ref.name
            ctx.log(f"[traverse] fitting {label}")
            fields = attrs.fields_dict(registries["traversal"].get(ref.name).Config)
            shared = {"seed": ctx.seed}
            shared.update(dict.fromkeys(("num_directions", "num_potentials"), cfg.num_directions))
            traversal = ref.build("traversal", **{k: v for k, v in shared.items() if k in fields})
            traversal.fit_context(fit_ctx)
            result["vp"][label] = vp_metric(generator, traversal, latent_dim, device=ctx.device)
            ctx.log(f"[traverse] {label}: VP {result['vp'][label]}")
            files, stats = self._draw(traversal, label, generator, z0, ctx.out_dir)
            result["files"] += files
            result.setdefault("paths", {})[label] = stats
        if cfg.spectrum_points:
            result["spectrum"], files = self._spectrum(generator, latent_dim, gen, ctx)
            result["files"] += files
        atomic_write_json(ctx.out_dir / "result.json", result)
        return result

    def _model(self, ctx: RunContext) -> nn.Module:
        cfg = self.config
        data = cfg.dataset.build("dataset")
        model = build_model(cfg.model, data).to(ctx.device)
        if cfg.checkpoint is not None:
            load_model_weights(model, cfg.checkpoint, map_location=ctx.device)
            return model
        tcfg, errors = validate_options(
            TrainConfig,
            {
                "steps": cfg.train_steps,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "seed": ctx.seed,
                "quiet": ctx.quiet,
                "checkpoint_every": 0,
                "resume": ctx.resume,
                "tensorboard": ctx.tensorboard,
            },
        )
        if errors:
            raise ConfigError("; ".join(errors))
        torch.manual_seed(ctx.seed)
        Trainer(model, data, tcfg, out_dir=ctx.out_dir / "generator", device=ctx.device).fit()
        return model

    def _draw(
        self, traversal: Any, label: str, generator: Any, z0: torch.Tensor, out_dir: Path
    ) -> tuple[list[str], dict[str, float]]:
        """Write the path images and projection; return the files and how distinct the paths
        are (smallest latent distance between endpoints of different paths, mean change of
        the output along a path)."""
        cfg = self.config
        count = min(cfg.num_paths, _count(traversal))
        kwargs = {} if cfg.step_size is None else {"step_size": cfg.step_size}
        with torch.enable_grad():
            paths = [
                traversal.traverse(z0[:1], k, cfg.path_steps, **kwargs)[:, 0].detach()
                for k in range(count)
            ]
        with torch.no_grad():
            frames = torch.stack([generator(p) for p in paths])  # (count, steps+1, C, H, W)
        files = []
        if frames.dim() == 5:
            write_png(out_dir / f"paths-{label}.png", image_grid(frames))
            files.append(f"paths-{label}.png")
        files += _projection_plot(paths, out_dir / f"projection-{label}.png", label)
        ends = torch.stack([p[-1] for p in paths])
        gaps = torch.cdist(ends, ends).fill_diagonal_(float("inf"))
        change = (frames[:, -1] - frames[:, 0]).flatten(1).norm(dim=1)
        stats = {
            "min_endpoint_distance": float(gaps.min()) if len(paths) > 1 else float("nan"),
            "mean_output_change": float(change.mean()),
        }
        return files, stats

    def _spectrum(
        self, generator: Any, latent_dim: int, gen: torch.Generator, ctx: RunContext
    ) -> tuple[dict[str, Any], list[str]]:
        z = torch.randn(self.config.spectrum_points, latent_dim, generator=gen).to(ctx.device)
        with torch.enable_grad():
            H = metric_by_backprop(generator, z).detach()
        values = torch.linalg.eigvalsh(H).flip(-1).clamp_min(1e-12)
        files = _spectrum_plot(values, ctx.out_dir / "spectrum.png")
        return {"mean_log10_eigenvalues": values.log10().mean(0).tolist()}, files


def _count(traversal: Any) -> int:
    count = getattr(traversal, "num_directions", None)
    if isinstance(count, int):
        return count
    return int(traversal.directions.shape[1])


def _projection_plot(paths: list[torch.Tensor], path: Path, title: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots need the bench or docs extra
        return []
    points = torch.cat(paths).double().cpu()
    centre = points.mean(0)
    _, _, V = torch.linalg.svd(points - centre, full_matrices=False)
    fig, ax = plt.subplots(figsize=(4, 4))
    for k, p in enumerate(paths):
        xy = (p.double().cpu() - centre) @ V[:2].T
        ax.plot(xy[:, 0], xy[:, 1], marker=".", label=f"k={k}")
    ax.set(title=f"{title}: paths (PCA plane)", xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path.name]


def _spectrum_plot(values: torch.Tensor, path: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots need the bench or docs extra
        return []
    logs = values.log10().cpu()
    fig, ax = plt.subplots(figsize=(4, 3))
    idx = torch.arange(1, logs.shape[1] + 1)
    ax.plot(idx, logs.mean(0), color="k")
    ax.fill_between(idx, logs.min(0).values, logs.max(0).values, alpha=0.3)
    ax.set(xlabel="eigenvalue rank", ylabel="log10 eigenvalue", title="metric tensor spectrum")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path.name]
