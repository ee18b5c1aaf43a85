"""Pipelines measuring the latent geometry of trained GANs:

- ``householder-gan``: thesis 000, Sec. 4.4 (Tables 4.5-4.6) at CPU size: a GAN is trained,
  then fine-tuned twice for the same number of steps, plainly and with the ``householder``
  low-rank orthogonal projector on the generator's first layer (initialised from the
  pre-trained weight, Sec. 4.4.2); the ``householder`` traversal of the second and ``sefa``
  of the first are scored with ``path-length`` (the PIPL analogue) at the same editing
  strength.
- ``alignment-gan``: seed 001, Sec. 6 (Table 1): the same GAN trained from the same start
  with and without the ``jacobian-alignment`` penalty; the heat map ``F`` (``alignment-map``,
  Eq. 6) and the ``higgins-score`` (Alg. 4) of codes found by inverting each generator on
  images with known factors.
- ``hessian-analysis``: seed 003, Sec. 3-4 on a trained (or loaded) GAN generator:
  spectrum, anisotropy, homogeneity and the top eigenvectors as traversals
  (``eigenflow.plugins.gan_geometry.hessian_geometry``).

Sizes and step counts are eigenflow's CPU-sized demo defaults (a few minutes on 2 cores), not
the documents' (750,000 updates in seed 001; fine-tuning StyleGANs in thesis 000).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.component import PipelineBase, RunContext
from ...core.config import component_option, config, floating, integer, option
from ...core.errors import ConfigError
from ...core.io import atomic_write_json
from ...registry.registry import get_registries
from ...runtime import load_model_weights
from .hessian_analysis import hessian_geometry
from .training import build_gan, first_linear, train_gan, traversal_grid

__all__ = [
    "AlignmentGAN",
    "AlignmentGANConfig",
    "HessianAnalysis",
    "HessianAnalysisConfig",
    "HouseholderGAN",
    "HouseholderGANConfig",
]

#: dsprites at 32 x 32 pixels, the demo data of the pipelines (options of the reference win)
DATA_DEFAULTS = {"image_size": 32, "n_samples": 4000}


def _data(ref: Any) -> Any:
    """The dataset of ``ref``, with the demo size unless the reference sets its own."""
    cls = get_registries()["dataset"].get(ref.name)
    fields = getattr(cls.Config, "__attrs_attrs__", ())
    names = {f.name for f in fields}
    return ref.build("dataset", **{k: v for k, v in DATA_DEFAULTS.items() if k in names})


def _data_table(ref: Any) -> dict[str, Any]:
    """``ref`` as a table with the demo sizes filled in (what :func:`_data` builds)."""
    cls = get_registries()["dataset"].get(ref.name)
    names = {f.name for f in getattr(cls.Config, "__attrs_attrs__", ())}
    demo = {k: v for k, v in DATA_DEFAULTS.items() if k in names}
    return {"name": ref.name, **demo, **dict(ref.options)}


def _frechet_metric(cfg: Any) -> Any:
    """``frechet-distance`` in the features of a classifier trained on the pipeline's data
    (or ``None`` when ``fd_samples`` is 0); the classifier's seed is the metric's own (the
    same instrument for every run seed)."""
    if not cfg.fd_samples:
        return None
    options = {"dataset": _data_table(cfg.dataset), **cfg.frechet}
    return get_registries()["metric"].create("frechet-distance", **options)


def _frechet(metric: Any, generator: nn.Module, n: int, d: int, seed: int, device: Any) -> float:
    """The Fréchet distance of ``n`` samples of ``generator`` to the data's test split (the
    metric trains its classifier on first use, so it runs with gradients enabled)."""
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        images = torch.cat([generator(chunk) for chunk in z.split(256)])
    with torch.enable_grad():
        return float(metric(images))


def _frozen_generator(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.generator


def _train_options(cfg: Any) -> dict[str, Any]:
    return {"batch_size": cfg.batch_size, "lr": cfg.lr}


# =========================================================================== householder-gan


@config
class HouseholderGANConfig:
    """Options of ``householder-gan`` (thesis 000, Sec. 4.4.2-4.4.3: projector of rank
    ``N`` initialised from the pre-trained weight and fine-tuned, compared with SeFa by
    PIPL at SeFa's editing strength; rank 5 for dsprites' 5 factors, as the thesis sets
    ``N = 10`` by the number of semantics of its StyleGANs). Step counts are CPU demo sizes.

    The projected layer is the generator's first linear map of the code. With
    ``mapping_layers = 1`` (the default) that is a ``d x d`` mapping layer, the analogue of
    the thesis's StyleGAN projector (a modulation weight from the latent to per-channel
    styles); without a mapping network it is the projection to the first feature grid
    (``d x 4096`` at 32 pixels), whose ``4096`` Householder reflectors make every step
    seconds long on a CPU."""

    model: Any = component_option("model", "dcgan", help="the GAN (name or table)")
    dataset: Any = component_option("dataset", "dsprites", help="training images")
    latent_dim: int = option(
        16, validator=integer(2), help="latent size d (unless the model table sets it)"
    )
    pretrain_steps: int = option(
        600, validator=integer(1), help="plain GAN steps before fine-tuning"
    )
    finetune_steps: int = option(
        200, validator=integer(1), help="steps of each fine-tuning (plain and Householder)"
    )
    batch_size: int = option(64, validator=integer(1), help="batch size")
    lr: float = option(2e-4, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    constraint: Any = component_option(
        "constraint", "householder", help="the projector constraint on the first layer"
    )
    mapping_layers: int = option(
        1,
        validator=integer(0),
        help="linear layers of the GAN's mapping network (unless the model table sets it)",
    )
    rank: int = option(
        5,
        validator=integer(1),
        help="rank N of the projector (unless the constraint table sets it)",
    )
    path_length: dict = option(factory=dict, help="options of the path-length metric")
    fd_samples: int = option(
        1000,
        validator=integer(0),
        help="samples of each generator scored by frechet-distance (0: skip)",
    )
    frechet: dict = option(factory=dict, help="options of the frechet-distance metric")
    grid_steps: int = option(6, validator=integer(1), help="frames per traversal row in the images")


class HouseholderGAN(PipelineBase):
    """Householder projector against SeFa on the same GAN (thesis 000, Sec. 4.4).

    Writes ``traversals-sefa.png`` and ``traversals-householder.png`` (rows: directions;
    columns: edits from ``-D`` to ``D``) and ``result.json``; returns ``path_length`` per
    method (the ``path-length`` metric's result, lower is smoother), ``frechet_distance`` of
    each generator's samples (``frechet-distance`` in the features of a classifier trained on
    the same data; thesis Tables 4.5-4.6 report FID next to PIPL), ``singular_values`` of
    each generator's first layer, the fine-tuning losses and ``householder_better``
    (Householder's path length below SeFa's).
    """

    Config = HouseholderGANConfig
    source = "000 (Song 2023), Sec. 4.4.2-4.4.3, Tables 4.5-4.6"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        registries = get_registries()
        data = _data(cfg.dataset)
        torch.manual_seed(ctx.seed)
        shape = {"latent_dim": cfg.latent_dim, "mapping_layers": cfg.mapping_layers}
        base = build_gan(cfg.model, data, **shape).to(ctx.device)
        d = int(base.latent_dim)
        ctx.log(f"[householder-gan] pre-training {cfg.pretrain_steps} steps")
        losses = {
            "pretrain": train_gan(
                base, data, ctx, "pretrain", steps=cfg.pretrain_steps, **_train_options(cfg)
            )
        }
        state = {k: v.detach().clone() for k, v in base.state_dict().items()}

        torch.manual_seed(ctx.seed + 1)
        plain = build_gan(cfg.model, data, state, **shape).to(ctx.device)
        losses["plain"] = train_gan(
            plain, data, ctx, "plain", steps=cfg.finetune_steps, **_train_options(cfg)
        )

        torch.manual_seed(ctx.seed + 1)
        projected = build_gan(cfg.model, data, state, **shape).to(ctx.device)
        constraint = cfg.constraint.build("constraint", rank=min(cfg.rank, d))
        constraint.attach(first_linear(projected))
        losses["householder"] = train_gan(
            projected, data, ctx, "householder", steps=cfg.finetune_steps, **_train_options(cfg)
        )

        K = min(cfg.rank, d)
        sefa = registries["traversal"].create("sefa", num_directions=K).fit(first_linear(plain))
        house = registries["traversal"].create("householder").fit(constraint)
        metric = registries["metric"].create("path-length", **{"seed": ctx.seed, **cfg.path_length})
        displacement = metric.config.displacement
        z0 = torch.randn(1, d, generator=torch.Generator().manual_seed(ctx.seed)).to(ctx.device)
        fid = _frechet_metric(cfg)
        result: dict[str, Any] = {
            "latent_dim": d,
            "rank": K,
            "losses": losses,
            "path_length": {},
            "files": [],
        }
        for label, model, traversal in (("sefa", plain, sefa), ("householder", projected, house)):
            generator = _frozen_generator(model)
            result["path_length"][label] = metric(generator, traversal, d, device=ctx.device)
            if fid is not None:
                result.setdefault("frechet_distance", {})[label] = _frechet(
                    fid, generator, cfg.fd_samples, d, ctx.seed, ctx.device
                )
            with torch.no_grad():
                result.setdefault("singular_values", {})[label] = torch.linalg.svdvals(
                    first_linear(model).weight.double()
                ).tolist()
            result["files"] += traversal_grid(
                generator,
                traversal,
                z0,
                K,
                cfg.grid_steps,
                displacement,
                ctx.out_dir / f"traversals-{label}.png",
            )
            score = result["path_length"][label]["path_length"]
            ctx.log(f"[householder-gan] {label}: path length {score:.4g}")
        pl = {k: v["path_length"] for k, v in result["path_length"].items()}
        result["householder_better"] = pl["householder"] < pl["sefa"]
        atomic_write_json(ctx.out_dir / "result.json", result)
        return result


# =========================================================================== alignment-gan


@config
class AlignmentGANConfig:
    """Options of ``alignment-gan`` (seed 001: Table 1 uses latent size 10 and
    ``k, lambda = 6, 0.6`` on dSprites; Alg. 4 fixes scale, orientation, x and y; App. D
    inverts the generator to get codes). The penalty's codes per step and power iterations
    are reduced for CPU (``jacobian-alignment``'s defaults are 32 and 8)."""

    model: Any = component_option("model", "dcgan", help="the GAN (name or table)")
    dataset: Any = component_option("dataset", "dsprites", help="training images with factors")
    latent_dim: int = option(
        10, validator=integer(2), help="latent size d (unless the model table sets it)"
    )
    steps: int = option(300, validator=integer(1), help="GAN steps of each run")
    batch_size: int = option(64, validator=integer(1), help="batch size")
    lr: float = option(2e-4, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    constraint: Any = component_option(
        "constraint",
        "jacobian-alignment",
        help="the alignment penalty (its table's options win over k=6, weight=0.6, "
        "batch_size=8, iters=4)",
    )
    pool: int = option(600, validator=integer(10), help="images inverted for the Higgins score")
    encode_steps: int = option(
        100, validator=integer(1), help="optimisation steps of the inversion"
    )
    fixed_factors: tuple = option(
        (1, 2, 3, 4),
        converter=tuple,
        help="factors Alg. 4 fixes (dsprites: scale, orientation, x, y)",
    )
    higgins: dict = option(factory=dict, help="options of the higgins-score metric")
    fd_samples: int = option(
        1000,
        validator=integer(0),
        help="samples of each generator scored by frechet-distance (0: skip)",
    )
    frechet: dict = option(factory=dict, help="options of the frechet-distance metric")
    map_codes: int = option(64, validator=integer(1), help="codes averaged in the heat map F")


class AlignmentGAN(PipelineBase):
    """The alignment penalty against the unregularised GAN (seed 001, Sec. 6, Table 1).

    Both runs start from the same initial weights and see the same batches. Returns, per run
    (``plain``, ``aligned``): ``higgins`` (the ``higgins-score`` result on the codes of
    inverted images), ``alignment_map`` (``diagonal`` and ``axis_alignment`` of ``F``, and
    ``map``), ``reconstruction`` (mean squared error of the inversion), ``frechet_distance``
    (of its samples, as in ``householder-gan``); and
    ``alignment_raises_score``.
    """

    Config = AlignmentGANConfig
    source = "001 (Ramesh et al.), Sec. 6, Table 1, Alg. 3-4, Eq. 6, App. D"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        registries = get_registries()
        data = _data(cfg.dataset)
        if "classes" not in getattr(data, "arrays", {}):
            raise ConfigError(
                f"dataset {cfg.dataset.name!r}: alignment-gan needs images with factor classes "
                "(e.g. dsprites, shapes3d-lite)"
            )
        torch.manual_seed(ctx.seed)
        init = build_gan(cfg.model, data, latent_dim=cfg.latent_dim, norm="none")
        state = {k: v.detach().clone() for k, v in init.state_dict().items()}
        d = int(init.latent_dim)
        gen = torch.Generator().manual_seed(ctx.seed)
        pool = torch.randperm(len(data), generator=gen)[: cfg.pool]
        images = data.batch(pool)
        map_z = torch.randn(cfg.map_codes, d, generator=gen).to(ctx.device)
        higgins = registries["metric"].create(
            "higgins-score", **{"seed": ctx.seed, "fixed_factors": cfg.fixed_factors, **cfg.higgins}
        )
        fmap = registries["metric"].create("alignment-map")
        fid = _frechet_metric(cfg)
        result: dict[str, Any] = {"latent_dim": d, "runs": {}}
        for label in ("plain", "aligned"):
            torch.manual_seed(ctx.seed + 1)
            model = build_gan(cfg.model, data, state, latent_dim=cfg.latent_dim, norm="none").to(
                ctx.device
            )
            penalty = None
            if label == "aligned":
                penalty = cfg.constraint.build(
                    "constraint", k=min(6, d), weight=0.6, batch_size=8, iters=4, latent_dim=d
                ).attach(model.generator)
            ctx.log(f"[alignment-gan] training {label} ({cfg.steps} steps)")
            losses = train_gan(
                model, data, ctx, label, steps=cfg.steps, penalty=penalty, **_train_options(cfg)
            )
            generator = _frozen_generator(model)
            x = images["x"].to(ctx.device)
            z = model.encode(x, steps=cfg.encode_steps)
            with torch.no_grad():
                mse = float((generator(z) - x).square().mean())
            run = {
                "losses": losses,
                "reconstruction": mse,
                "higgins": higgins(z, images["classes"]),
                "alignment_map": fmap(generator, map_z),
            }
            if fid is not None:
                run["frechet_distance"] = _frechet(
                    fid, generator, cfg.fd_samples, d, ctx.seed, ctx.device
                )
            result["runs"][label] = run
            ctx.log(f"[alignment-gan] {label}: Higgins {run['higgins']['higgins_score']:.3f}")
        runs = result["runs"]
        result["alignment_raises_score"] = (
            runs["aligned"]["higgins"]["higgins_score"] > runs["plain"]["higgins"]["higgins_score"]
        )
        atomic_write_json(ctx.out_dir / "result.json", result)
        return result


# =========================================================================== hessian-analysis


@config
class HessianAnalysisConfig:
    """Options of ``hessian-analysis`` (seed 003, Sec. 3-4: the metric at random codes, the
    exact Hessian by back-propagation for small latents, Table 2's trace shares)."""

    model: Any = component_option("model", "dcgan", help="the GAN (name or table)")
    dataset: Any = component_option("dataset", "dsprites", help="training images")
    latent_dim: int = option(
        16, validator=integer(2), help="latent size d (unless the model table sets it)"
    )
    checkpoint: str | None = option(
        None,
        help="weights of an already trained GAN (state dict or engine checkpoint); none: train",
    )
    steps: int = option(400, validator=integer(1), help="GAN steps when training")
    batch_size: int = option(64, validator=integer(1), help="batch size")
    lr: float = option(2e-4, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    codes: int = option(16, validator=integer(2), help="codes z ~ N(0, I) the metric is taken at")
    num_traversals: int = option(
        5, validator=integer(1), help="top eigenvectors drawn as traversals"
    )


class HessianAnalysis(PipelineBase):
    """Seed 003's geometry of a GAN generator: writes ``hessian.json``,
    ``hessian-traversals.png`` and (with matplotlib) ``hessian-spectrum.png`` and
    ``hessian-isotropy.png``; returns the summary of
    ``eigenflow.plugins.gan_geometry.hessian_geometry``."""

    Config = HessianAnalysisConfig
    source = "003 (Wang & Ponce, ICLR 2021), Sec. 3-4, Fig. 2, Table 2"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        data = _data(cfg.dataset)
        torch.manual_seed(ctx.seed)
        model = build_gan(cfg.model, data, latent_dim=cfg.latent_dim).to(ctx.device)
        if cfg.checkpoint is not None:
            load_model_weights(model, cfg.checkpoint, map_location=ctx.device)
        else:
            train_gan(model, data, ctx, "gan", steps=cfg.steps, **_train_options(cfg))
        generator = _frozen_generator(model)
        d = int(model.latent_dim)
        z = torch.randn(cfg.codes, d, generator=torch.Generator().manual_seed(ctx.seed))
        return hessian_geometry(
            generator,
            z.to(ctx.device),
            out_dir=ctx.out_dir,
            num_traversals=cfg.num_traversals,
            seed=ctx.seed,
            label=cfg.model.name,
        )
