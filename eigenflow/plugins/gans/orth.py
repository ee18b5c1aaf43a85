"""Pipeline ``gan-orth``: soft and hard orthogonality on a GAN generator's first layer
(thesis 000, Sec. 4.3.3, Tables 4.2-4.3) at CPU scale.

One ``dcgan`` is trained per variant on a local dataset: ``plain``, and with a constraint on
the generator's first linear layer from ``z`` (``spectral-norm``, ``orth-loss``,
``orth-weight``, ``nog``, ``olr``, ``nog+olr``; any registered constraints joined by ``+``).
Every variant starts from the same initial weights (the run's seed) and sees the same batches;
only the constraints differ. Constraints are built by name through the registry: those that
re-parametrise the weight or add a penalty (``order < 10``) are attached before the engine
builds its optimisers, the gradient and learning-rate treatments (``nog``, ``olr``) to the
generator's optimiser afterwards; penalties are added to the generator's loss.

Measured after training, with the generator in eval mode:

- ``frechet_distance``: the ``frechet-distance`` metric (features of a classifier trained on
  the same dataset, not Inception FID) of ``eval_samples`` generated images against the test
  split;
- ``weight_condition``: ``condition-number`` (sigma_max / sigma_min) of the constrained first
  layer's weight (thesis 000, Table 4.3 reports it for the first layer after the latent code);
- ``covariance_condition``: ``condition-number`` of the covariance of the generated images'
  classifier features (the matrix whose square root the Fréchet distance takes);
- ``orthogonality_error``: ``||W^T W - I||_F`` of the first layer (``orthogonality-error``);
- the weight's condition number every ``record_every`` steps (``history.csv``), and a grid of
  samples per variant (``samples-<variant>.png``).
"""

from __future__ import annotations

import csv
import time
from typing import Any

import torch
from torch import nn

from ...core.component import PipelineBase, RunContext
from ...core.config import (
    ComponentRef,
    component_option,
    config,
    floating,
    integer,
    option,
    options_dict,
)
from ...core.errors import ConfigError, did_you_mean
from ...core.images import image_grid, images_in_rows, write_png
from ...core.io import atomic_write_json
from ...registry.registry import get_registries
from ...runtime import DatasetBatches, TrainConfig, Trainer, WithPenalties, build_model

__all__ = ["DEFAULT_VARIANTS", "GanOrth", "GanOrthConfig"]

DEFAULT_VARIANTS = ("plain", "spectral-norm", "orth-loss", "orth-weight", "nog", "olr", "nog+olr")

#: the generator used unless ``model`` says otherwise: a square first layer (16 x 16, a
#: one-layer mapping network) as in the thesis's analysis of orthogonal weights
_DEFAULT_MODEL = {"latent_dim": 16, "mapping_layers": 1, "width": 32}


def _constraint_names(variant: str) -> list[str]:
    return [] if variant == "plain" else variant.split("+")


def _check_variants(_inst: Any, attribute: Any, value: Any) -> None:
    if not (isinstance(value, tuple) and value and all(isinstance(v, str) for v in value)):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a non-empty list of "
            "variants, 'plain' or constraint names joined by '+' (e.g. 'nog+olr')"
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"option {attribute.name!r} = {list(value)!r}: a variant is repeated")
    known = get_registries()["constraint"].names()
    for variant in value:
        for name in _constraint_names(variant):
            if name not in known:
                raise ConfigError(
                    f"option {attribute.name!r}: variant {variant!r} names {name!r}, not "
                    f"'plain' or a registered constraint{did_you_mean(name, known)} (known: "
                    f"{', '.join(known)})"
                )


def _check_model(_inst: Any, attribute: Any, value: Any) -> None:
    options_dict()(_inst, attribute, value)
    if "input_shape" in value:
        raise ConfigError(
            f"option {attribute.name!r}: 'input_shape' is taken from the dataset; remove it"
        )


@config
class GanOrthConfig:
    """Options of ``gan-orth`` (thesis 000, Sec. 4.3.3, Tables 4.1-4.3).

    From the thesis: the variants (NOG, OLR, NOG+OLR against other constraints; we compare
    with the constraints eigenflow has instead of HP / OrthoJar / LVP), the constrained layer
    (the first layer after the latent code) and the measurements (a Fréchet distance, the
    first layer's condition number). The thesis trains on CelebA and LSUN Church at full
    scale and gives no step counts. Ours: a small DCGAN on ``digits-sequences`` frames,
    Adam (lr 5e-4, betas 0.5 / 0.999), 150 steps of 64 images per variant as the demo
    (about 2.5 minutes for the seven variants on 2 CPU cores); the benchmark
    (``benchmarks/gan_orth.py``) trains longer.
    """

    dataset: Any = component_option(
        "dataset", "digits-sequences", help="training data (its test split is the reference)"
    )
    model: dict = option(
        factory=lambda: dict(_DEFAULT_MODEL),
        validator=_check_model,
        help="options of the dcgan model (input_shape comes from the dataset)",
    )
    variants: tuple = option(
        DEFAULT_VARIANTS,
        converter=tuple,
        validator=_check_variants,
        help="'plain' and constraints on the generator's first layer joined by '+'",
    )
    constraint_options: dict = option(
        factory=dict,
        validator=options_dict(),
        help="options per constraint name, e.g. {orth-loss = {weight = 0.1}}",
    )
    steps: int = option(150, validator=integer(1), help="engine steps per variant")
    batch_size: int = option(64, validator=integer(2), help="batch size")
    lr: float = option(5e-4, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    eval_samples: int = option(
        1000, validator=integer(2), help="generated images of the Fréchet distance"
    )
    frechet: dict = option(
        factory=dict,
        validator=options_dict(),
        help="options of the frechet-distance metric (its dataset is this pipeline's)",
    )
    record_every: int = option(
        10, validator=integer(1), help="steps between records of the weight's condition"
    )

    def __attrs_post_init__(self) -> None:
        for name, opts in self.constraint_options.items():
            if not isinstance(opts, dict):
                raise ConfigError(
                    f"option 'constraint_options': {name!r} = {opts!r} is invalid: expected a "
                    "table of that constraint's options"
                )
        if "dataset" in self.frechet:
            raise ConfigError(
                "option 'frechet': 'dataset' is the pipeline's own dataset; set 'dataset'"
            )


def _metric(name: str, **options: Any) -> Any:
    return ComponentRef(name, options, "metric").build()


class GanOrth(PipelineBase):
    """Train the GAN once per constraint variant; Fréchet distance and conditioning of each."""

    Config = GanOrthConfig
    source = "000 (Song 2023), Sec. 4.3.3, Tables 4.1-4.3"

    def _build_constraints(self, variant: str) -> list[Any]:
        opts = self.config.constraint_options
        built = [
            ComponentRef(n, dict(opts.get(n, {})), "constraint").build()
            for n in _constraint_names(variant)
        ]
        return sorted(built, key=lambda c: getattr(c, "order", 50))

    def _train_variant(self, variant: str, train_set: Any, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(ctx.seed)  # the same initial weights for every variant
        gan = build_model(ComponentRef("dcgan", dict(cfg.model), "model"), train_set)
        gan = gan.to(ctx.device)
        layer = gan.generator.first_linear
        constraints = self._build_constraints(variant)
        for c in constraints:  # parametrizations and penalties before the optimisers
            if getattr(c, "order", 50) < 10:
                c.attach(layer)
        model = WithPenalties(gan, constraints, phase="g")
        tcfg = TrainConfig.for_run(
            ctx,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            log_every=max(1, cfg.steps // 5),
            checkpoint_every=0,
        )
        trainer = Trainer(
            model,
            train_set,
            tcfg,
            out_dir=ctx.out_dir / variant,
            device=ctx.device,
            label=f"gan-orth: {variant}",
            batches=DatasetBatches(train_set, cfg.batch_size, ctx.seed, device=ctx.device),
        )
        for c in constraints:  # gradient and learning-rate treatments on G's optimiser
            if getattr(c, "order", 50) >= 10:
                c.attach(layer, optimizer=trainer.optimizers["g"])
        condition = _metric("condition-number")

        def record(step: int, terms: dict[str, torch.Tensor]) -> None:
            if step % cfg.record_every == 0 or step == cfg.steps:
                weight = layer.weight.detach()
                trainer.records.append({"step": step, "weight_condition": condition(weight)})

        trainer.on_step = record
        start = time.perf_counter()
        summary = trainer.fit()
        seconds = time.perf_counter() - start
        measured = self._measure(gan, layer, ctx, variant)
        for c in reversed(constraints):
            c.detach()
        return {
            **measured,
            "train_seconds": round(seconds, 2),
            "final_terms": summary["final"],
            "history": list(trainer.records),
        }

    def _measure(self, gan: Any, layer: nn.Module, ctx: RunContext, variant: str) -> dict[str, Any]:
        cfg = self.config
        gan.eval()
        gen = torch.Generator().manual_seed(10_000 + ctx.seed)
        with torch.no_grad():
            samples = gan.sample(cfg.eval_samples, generator=gen).cpu()
        fd = self._frechet()
        feats = fd.features(samples)
        centred = feats - feats.mean(0)
        cov = centred.T @ centred / (len(centred) - 1)
        weight = layer.weight.detach()
        write_png(
            ctx.out_dir / f"samples-{variant}.png",
            image_grid(images_in_rows(samples[:64], cols=8)),
        )
        return {
            "frechet_distance": fd(samples),
            "weight_condition": _metric("condition-number")(weight),
            "covariance_condition": _metric("condition-number", input="covariance")(cov),
            "orthogonality_error": _metric("orthogonality-error")(weight),
        }

    def _frechet(self) -> Any:
        if self._fd is None:
            options = {**dict(self.config.frechet), "dataset": self.config.dataset.to_dict()}
            self._fd = _metric("frechet-distance", **options)
        return self._fd

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        self._fd = None
        train_set = cfg.dataset.build("dataset")
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        self._frechet().classifier()  # trained (or loaded) once, before the variants
        runs: dict[str, Any] = {}
        for variant in cfg.variants:
            runs[variant] = self._train_variant(variant, train_set, ctx)
            r = runs[variant]
            ctx.log(
                f"[gan-orth] {variant}: Fréchet distance {r['frechet_distance']:.2f}, "
                f"cond(W) {r['weight_condition']:.3g}, cond(cov) {r['covariance_condition']:.3g}"
            )
        with open(ctx.out_dir / "history.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["variant", "step", "weight_condition"])
            for variant, r in runs.items():
                writer.writerows((variant, h["step"], h["weight_condition"]) for h in r["history"])
        result = {
            "seed": ctx.seed,
            "classifier": dict(self._frechet().info),
            "variants": {
                v: {k: x for k, x in r.items() if k != "history"} for v, r in runs.items()
            },
        }
        atomic_write_json(ctx.out_dir / "result.json", result)
        return result
