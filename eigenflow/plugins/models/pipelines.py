"""Training pipelines: ``train`` (any model on any dataset) and ``ffvae-digits`` (the
flow-factorized VAE against the VAE baseline on ``digits-sequences``, thesis 000 Sec. 4.6.3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from ...core.component import PipelineBase, RunContext
from ...core.config import (
    ComponentRef,
    boolean,
    component_option,
    config,
    floating,
    integer,
    one_of,
    option,
    optional,
    options_dict,
    validate_options,
)
from ...core.errors import ConfigError
from ...core.images import image_grid, write_png
from ...core.io import atomic_write_bytes, atomic_write_json
from ...registry.registry import get_registries
from ...runtime import TrainConfig, Trainer, build_model, unpack_batch
from .results import results_markdown as _markdown
from .results import summarise_runs as _summarise

__all__ = ["FFVAEDigitsPipeline", "TrainPipeline"]


# --------------------------------------------------------------------------- measurements


def _metric(name: str, **options: Any) -> Any:
    """A registered metric (``equivariance-error``, ``log-likelihood``) by name."""
    return get_registries()["metric"].create(name, **options)


# --------------------------------------------------------------------------- helpers


def _trainer_config(options: dict[str, Any], **base: Any) -> TrainConfig:
    merged = {**base, **options}
    cfg, errors = validate_options(TrainConfig, merged, path="trainer.")
    if errors:
        raise ConfigError("; ".join(errors))
    return cfg


def _batches(dataset: Any, batch_size: int, limit: int, device: torch.device):
    n = min(len(dataset), limit)
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        batch = torch.utils.data.default_collate(items)
        x, k = unpack_batch(batch)
        yield x.to(device), (None if k is None else k.to(device))


#: engine options the ``train`` pipeline has as its own options (or takes from the run)
_OWN_TRAINER_KEYS = {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "seed": "seed"}


def _duplicated_trainer_key(key: str, given: Any) -> str:
    """What to do with ``trainer.<key> = given``, an engine option ``train`` owns itself."""
    if key == "seed":
        return (
            f"trainer.seed = {given!r}: the seed is the run's; remove trainer.seed and pass "
            f"--seed {given!r} (Pipeline.run(seed={given!r}))"
        )
    own = _OWN_TRAINER_KEYS[key]
    return (
        f"trainer.{key} = {given!r} duplicates the pipeline's own option {own}; remove "
        f"trainer.{key} and set {own} = {given!r} (--set {own}={given!r})"
    )


def _check_trainer(_inst: Any, attribute: Any, value: Any) -> None:
    options_dict()(_inst, attribute, value)
    twice = [k for k in value if k in _OWN_TRAINER_KEYS]
    if twice:
        raise ConfigError("; ".join(_duplicated_trainer_key(k, value[k]) for k in twice))
    _, errors = validate_options(TrainConfig, dict(value))
    if errors:
        raise ConfigError(
            f"option {attribute.name!r} = {dict(value)!r} is invalid: " + "; ".join(errors)
        )


# --------------------------------------------------------------------------- train


@config
class TrainPipelineConfig:
    """Options of ``train``: any registered model on any registered dataset with the engine.

    ``input_shape`` (and ``num_potentials`` for flow models on sequence datasets) are taken
    from the data unless given in the model's options.
    """

    model: Any = component_option("model", "vae", help="model to train (name or table)")
    dataset: Any = component_option(
        "dataset",
        "digits-sequences",
        help="training data (name or table); the test split of "
        "the same dataset is used for evaluation",
    )
    steps: int = option(1000, validator=integer(1), help="optimiser steps")
    batch_size: int = option(64, validator=integer(1), help="global batch size")
    lr: float = option(1e-3, validator=floating(0.0, min_open=True), help="learning rate")
    trainer: dict = option(
        factory=dict,
        validator=_check_trainer,
        help="more engine options (see eigenflow.engine.TrainConfig)",
    )
    eval_items: int = option(
        512, validator=integer(1), help="test items used for the final evaluation"
    )
    iw_samples: int = option(
        100, validator=integer(1), help="importance samples of the test log-likelihood"
    )

    def __attrs_post_init__(self) -> None:
        # the engine's cross-field checks (lr range of the optimiser) at validation time
        _trainer_config(
            dict(self.trainer), steps=self.steps, batch_size=self.batch_size, lr=self.lr
        )


class TrainPipeline(PipelineBase):
    """Train a model on a dataset; writes a checkpoint, a log and ``result.json``."""

    Config = TrainPipelineConfig
    source = "eigenflow engine (issue 7)"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        train_set = cfg.dataset.build("dataset")
        model = build_model(cfg.model, train_set)
        tcfg = _trainer_config(
            dict(cfg.trainer),
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            seed=ctx.seed,
            quiet=ctx.quiet,
            resume=ctx.resume,
            tensorboard=ctx.tensorboard,
        )
        torch.manual_seed(ctx.seed)
        summary = Trainer(
            model.to(ctx.device), train_set, tcfg, out_dir=ctx.out_dir, device=ctx.device
        ).fit()
        test_ref = (
            attrs.evolve(cfg.dataset, options={**cfg.dataset.options, "split": "test"})
            if "split" in attrs.fields_dict(type(train_set.config))
            else cfg.dataset
        )
        test_set = test_ref.build("dataset")
        result = {
            "train": summary,
            "test": evaluate_model(model, test_set, ctx.device, cfg.eval_items, cfg.iw_samples),
        }
        atomic_write_json(ctx.out_dir / "result.json", result)
        return result


@torch.no_grad()
def evaluate_model(
    model: Any, dataset: Any, device: torch.device, limit: int, iw_samples: int
) -> dict[str, float]:
    """Test loss terms, importance-weighted log-likelihood of every frame and, for sequence
    data, of every whole sequence (``log_likelihood_sequence``, nats per sequence) and the
    equivariance error (Eq. 4.15)."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    for x, k in _batches(dataset, 64, limit, device):
        with torch.enable_grad():  # flow models differentiate their potentials
            terms = model.loss({"x": x, "k": k} if k is not None else x)
        frames = x.reshape(-1, *model.input_shape)
        metric = _metric("log-likelihood", samples=iw_samples, chunk=min(iw_samples, 100))
        ll = metric.per_item(model, frames)
        vals = {f"test_{n}": float(v) * x.shape[0] for n, v in terms.items()}
        vals["log_likelihood"] = float(ll.mean()) * x.shape[0]
        if hasattr(model, "flow_proposal") and x.dim() == len(model.input_shape) + 2:
            # The flow model's own posterior of frame t is the flowed q_t (Eq. 4.19); the
            # encoder alone (trained on first frames) is kept as a second, weaker estimate.
            vals["log_likelihood_encoder"] = vals["log_likelihood"]
            vals["log_likelihood"] = float(metric.per_frame(model, x, k).mean()) * x.shape[0]
        if x.dim() == len(model.input_shape) + 2:
            # log p(x_0..T), the label marginalised: a flow model's sequence model; the sum of
            # the per-frame estimates for a model that generates frames independently.
            seq = (
                metric.per_sequence(model, x)
                if getattr(model, "num_potentials", 0)
                else ll.view(x.shape[0], -1).sum(1)
            )
            vals["log_likelihood_sequence"] = float(seq.sum())
        if x.dim() == len(model.input_shape) + 2 and k is not None:
            errors = _metric("equivariance-error").per_sequence(x, model=model, k=k)
            vals["equivariance_error"] = float(errors.sum())
        for n, v in vals.items():
            sums[n] = sums.get(n, 0.0) + v
        count += x.shape[0]
    return {n: v / count for n, v in sums.items()}


# --------------------------------------------------------------------------- ffvae-digits


#: (row name, registered model, fixed options); the first three are the default ``models``
_VARIANTS = (
    ("vae", "vae", {}),
    ("ffvae", "ffvae", {"supervision": "supervised"}),
    ("ffvae-weak", "ffvae", {"supervision": "weak"}),
    ("beta-vae", "beta-vae", {}),
    ("factor-vae", "factor-vae", {}),
    ("slow-vae", "slow-vae", {}),
    ("pde-vae", "pde-vae", {}),
)
_DEFAULT_MODELS = ("vae", "ffvae", "ffvae-weak")

#: data-specific defaults of the option ``dataset`` (digits: the dataset's per-frame steps
#: kept over T = 9 steps)
_DATA_DEFAULTS = {
    "digits-sequences": {"rotation_range": 120.0, "scale_range": 0.6, "hue_range": 0.6},
    "shapes3d-lite": {},
}


def _check_models(attribute: Any, value: Any) -> None:
    names = [name for name, _, _ in _VARIANTS]
    if not (isinstance(value, list) and value and len(set(value)) == len(value)):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a non-empty list of "
            f"distinct names from {names}"
        )
    for item in value:
        one_of(names)(None, attribute, item)


@config
class FFVAEDigitsConfig:
    """Options of ``ffvae-digits``: ``ffvae`` (supervised and weakly supervised) against the
    ``vae`` baseline on ``digits-sequences`` (thesis 000, Sec. 4.6.3; seed 004 result tables).

    Same architecture, data and optimiser budget for every model; the VAE trains on every frame
    of the same sequences. ``T = 9`` follows seed 004 (Table 10); the transformation ranges keep
    the dataset's per-frame steps over the longer sequence. The defaults are a demonstration of
    a few minutes on a CPU (one seed, MLP networks, 1000 steps); the result table of
    docs/generative.rst uses three seeds, ``architecture="conv"``, ``steps=6000`` and
    ``n_sequences=8000`` (``benchmarks/ffvae_digits_runs.py``, 15 to 30 minutes per model
    on one core). ``k_amortisation=10`` and the test-time
    ``k_inference="responsibilities"`` of the weakly supervised model are eigenflow's
    choices (docs/generative.rst gives the measurements behind them).
    """

    seeds: list = option(
        factory=lambda: [0],
        help="model seeds (one run per seed)",
        validator=lambda _i, a, v: _check_seeds(a, v),
    )
    models: list = option(
        factory=lambda: list(_DEFAULT_MODELS),
        help="which models to train: 'vae', 'ffvae', 'ffvae-weak' (the default three) and the "
        "baselines 'beta-vae', 'factor-vae', 'slow-vae', 'pde-vae'",
        validator=lambda _i, a, v: _check_models(a, v),
    )
    data: str = option(
        "digits-sequences",
        validator=one_of(list(_DATA_DEFAULTS)),
        help="the sequences: 'digits-sequences' (rotation, scaling, colouring) or "
        "'shapes3d-lite' (floor, wall and object hue, scale)",
    )
    steps: int = option(1000, validator=integer(1), help="optimiser steps per model")
    batch_size: int = option(32, validator=integer(1), help="sequences per batch")
    lr: float = option(1e-3, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    scheduler: str = option(
        "none",
        validator=one_of(["none", "cosine"]),
        help="learning-rate schedule over 'steps' (the engine's option)",
    )
    latent_dim: int = option(16, validator=integer(1), help="latent size d")
    architecture: str = option(
        "mlp", validator=one_of(["mlp", "conv"]), help="'mlp' or 'conv' encoder/decoder"
    )
    conv_width: int = option(
        32, validator=integer(1), help="channels of the 'conv' networks (see vae's conv_width)"
    )
    flow_kl: str = option(
        "increment",
        validator=one_of(["increment", "marginal", "prior"]),
        help="the ffvae flow KL terms (see ffvae's option flow_kl); 'prior' makes the ffvae "
        "optimise per-frame ELBOs like the VAE",
    )
    k_amortisation: float = option(
        10.0,
        validator=floating(0.0),
        help="weight of the E-step target of q(k|x) for the weakly supervised ffvae (it "
        "trains q's own network only; docs/generative.rst gives the measurements behind 10)",
    )
    k_inference: str = option(
        "responsibilities",
        validator=one_of(["amortised", "responsibilities"]),
        help="how the weakly supervised ffvae picks a test sequence's potential (see ffvae's "
        "option k_inference); neither uses the label",
    )
    laplacian: str = option(
        "exact",
        validator=one_of(["exact", "hutchinson"]),
        help="Laplacian of the ffvae density update: exact or hutchinson",
    )
    n_sequences: int = option(2000, validator=integer(16), help="training sequences")
    length: int = option(
        10, validator=integer(2), help="frames per sequence (T+1; T = 9 as in seed 004)"
    )
    eval_items: int = option(200, validator=integer(1), help="test sequences evaluated")
    iw_samples: int = option(
        50, validator=integer(1), help="importance samples of the log-likelihood"
    )
    dataset: dict | None = option(
        None,
        validator=optional(options_dict()),
        help="more options of the dataset 'data' (None: for digits-sequences the dataset's "
        "per-frame steps kept over T = 9 steps, rotation_range 120, scale_range 0.6, hue_range "
        "0.6; for shapes3d-lite its defaults)",
    )
    model_options: dict = option(
        factory=dict,
        validator=options_dict(),
        help="options per model row, e.g. {'factor-vae': {'disc_hidden': 64}} (applied last)",
    )
    axis_sequences: int = option(
        256,
        validator=integer(1),
        help="training sequences from which a model without a latent flow gets the latent "
        "step of each transformation (its equivariance path and VP directions)",
    )
    vp_pairs: int = option(
        0,
        validator=integer(0),
        help="image pairs of the VP score of each model's K transformation directions (0: no "
        "VP score)",
    )
    vp_epochs: int = option(60, validator=integer(1), help="epochs of the VP classifier")
    figures: bool = option(
        True, validator=boolean(), help="write traversal, switching and superposition figures"
    )


def _check_seeds(attribute: Any, value: Any) -> None:
    if not (
        isinstance(value, list)
        and value
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    ):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a "
            "non-empty list of non-negative integers"
        )


class FFVAEDigitsPipeline(PipelineBase):
    """Train ``vae``, ``ffvae`` and weakly supervised ``ffvae`` (and, by option, the baselines
    ``beta-vae``, ``factor-vae``, ``slow-vae``, ``pde-vae``) on ``digits-sequences`` or
    ``shapes3d-lite`` for each seed; write metrics, a table, traversal grids and
    switching/superposition figures.

    Measured per model: the test loss terms, the log-likelihoods, the equivariance error
    (Eq. 4.15) overall and per transformation, and with ``vp_pairs > 0`` the VP score of its K
    transformation directions. A model with a latent flow (``ffvae``, ``pde-vae``) moves its
    code by potential ``k``. A model without one moves the single latent coordinate that
    transformation ``k`` changes most, by its mean change per frame, both read off the
    encoder means of ``axis_sequences`` labelled training sequences (the "axis" path: what a
    disentangled baseline offers as the latent counterpart of ``k``); such a model's
    ``equivariance_error_zero`` is the error with the update set to 0 (thesis 000,
    Table 4.11's baseline).
    """

    Config = FFVAEDigitsConfig
    source = "thesis 000 Sec. 4.6.3-4.6.4, Tables 4.10-4.11; seed 004 (Tables 1-2, 5-6)"

    def _datasets(self) -> tuple[Any, Any]:
        cfg = self.config
        extra = _DATA_DEFAULTS[cfg.data] if cfg.dataset is None else cfg.dataset
        if cfg.data == "digits-sequences":
            sizes = {"n_sequences": cfg.n_sequences, "length": cfg.length}
            test_sizes = {"n_sequences": max(cfg.eval_items, 16)}
        else:
            sizes = {"n_samples": cfg.n_sequences, "sequence_length": cfg.length}
            test_sizes = {"n_samples": max(cfg.eval_items, 16)}
        data = ComponentRef(cfg.data, {**sizes, **extra}, "dataset")
        test = attrs.evolve(data, options={**data.options, "split": "test", **test_sizes})
        return data.build(), test.build()

    def _model_options(self, name: str, model_name: str, extra: dict[str, Any]) -> dict:
        cfg = self.config
        opts = {
            "latent_dim": cfg.latent_dim,
            "architecture": cfg.architecture,
            "conv_width": cfg.conv_width,
            **extra,
        }
        if model_name in ("ffvae", "pde-vae"):
            opts["laplacian"] = cfg.laplacian
        if model_name == "ffvae":
            opts["flow_kl"] = cfg.flow_kl
            if extra.get("supervision") == "weak":
                opts["k_amortisation"] = cfg.k_amortisation
                opts["k_inference"] = cfg.k_inference
        return {**opts, **cfg.model_options.get(name, {})}

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        unknown = sorted(set(cfg.model_options) - {name for name, _, _ in _VARIANTS})
        if unknown:
            raise ConfigError(
                f"option 'model_options': unknown model rows {unknown}; expected names from "
                f"{[name for name, _, _ in _VARIANTS]}"
            )
        train_set, test_set = self._datasets()
        variants = [v for v in _VARIANTS if v[0] in cfg.models]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in variants}
        tag = f"[ffvae-digits {cfg.data}]"
        for seed in cfg.seeds:
            for name, model_name, extra in variants:
                torch.manual_seed(seed)
                opts = self._model_options(name, model_name, extra)
                model = build_model(ComponentRef(model_name, {}, "model"), train_set, **opts)
                model = model.to(ctx.device)
                tcfg = TrainConfig.for_run(
                    ctx,
                    steps=cfg.steps,
                    batch_size=cfg.batch_size,
                    lr=cfg.lr,
                    scheduler=cfg.scheduler,
                    seed=seed,
                    log_every=max(cfg.steps // 10, 1),
                    checkpoint_every=0,
                )
                run_dir = ctx.out_dir / f"seed{seed}" / name
                ctx.log(f"{tag} seed {seed}: training {name}")
                summary = Trainer(model, train_set, tcfg, out_dir=run_dir, device=ctx.device).fit()
                metrics = self._measure(model, train_set, test_set, seed, ctx.device)
                metrics["train_seconds"] = summary["seconds"]
                runs[name].append({"seed": seed, **metrics})
                atomic_write_json(run_dir / "metrics.json", metrics)
                ctx.log(
                    f"{tag} seed {seed} {name}: equivariance "
                    f"{metrics['equivariance_error']:.2f}, log-likelihood "
                    f"{metrics['log_likelihood']:.2f}"
                )
                if cfg.figures and seed == cfg.seeds[0]:
                    steps_table = latent_axis_steps(model, train_set, ctx.device, 64)
                    _figures(model, name, test_set, ctx.out_dir, ctx.device, steps_table)
        table = _summarise(runs)
        atomic_write_json(ctx.out_dir / "metrics.json", {"runs": runs, "summary": table})
        atomic_write_bytes(ctx.out_dir / "results.md", _markdown(table).encode())
        ctx.log(_markdown(table))
        return {"summary": table, "out": str(ctx.out_dir)}

    def _measure(
        self, model: Any, train_set: Any, test_set: Any, seed: int, device: torch.device
    ) -> dict[str, float]:
        cfg = self.config
        metrics = evaluate_model(model, test_set, device, cfg.eval_items, cfg.iw_samples)
        steps_table = None
        if not model.num_potentials:
            steps_table = latent_axis_steps(model, train_set, device, cfg.axis_sequences)
            zero = torch.zeros_like(steps_table)  # the update set to 0 (Table 4.11)
            errors = _per_transform_error(model, test_set, device, cfg.eval_items, zero)
            metrics.update({k.replace("error", "error_zero"): v for k, v in errors.items()})
        metrics.update(_per_transform_error(model, test_set, device, cfg.eval_items, steps_table))
        if cfg.vp_pairs:
            metrics.update(_vp_scores(model, steps_table, cfg.vp_pairs, cfg.vp_epochs, seed))
        return metrics


@torch.no_grad()
def latent_axis_steps(
    model: Any, dataset: Any, device: torch.device, limit: int
) -> torch.Tensor | None:
    """``(K, d)``: for each transformation ``k``, the mean per-frame change of the encoder
    mean on the labelled sequences of ``dataset`` (the first ``limit``), kept on its largest
    coordinate only; ``None`` for a model with a latent flow (it has its own).

    A transformation no sequence shows gets a zero step.
    """
    if model.num_potentials:
        return None
    model.eval()
    num = int(dataset.num_transforms)
    sums = torch.zeros(num, model.latent_dim, dtype=torch.float64, device=device)
    counts = torch.zeros(num, dtype=torch.float64, device=device)
    for x, k in _batches(dataset, 64, limit, device):
        mu = model.posterior_mean(x.reshape(-1, *model.input_shape)).view(
            x.shape[0], -1, sums.shape[1]
        )
        per_seq = (mu[:, 1:] - mu[:, :-1]).mean(1).double()
        sums.index_add_(0, k, per_seq)
        counts.index_add_(0, k, torch.ones_like(k, dtype=torch.float64))
    mean = sums / counts.clamp_min(1.0)[:, None]
    axis = mean.abs().argmax(-1, keepdim=True)
    steps = torch.zeros_like(mean).scatter_(1, axis, mean.gather(1, axis))
    return steps.to(next(model.parameters()).dtype)


def axis_path(z0: torch.Tensor, k: torch.Tensor, steps_table: torch.Tensor, steps: int):
    """``(B, steps+1, d)``: ``z_t = z_0 + t * steps_table[k]``."""
    t = torch.arange(steps + 1, dtype=z0.dtype, device=z0.device)
    return z0[:, None] + t[None, :, None] * steps_table[k][:, None]


class _Directions:
    """A model's K transformation directions as a traversal (``traverse(z0, k, steps) ->
    (steps+1, B, d)``) for ``vp-score``: its potential ``k``, or its axis step ``k``."""

    def __init__(self, model: Any, steps_table: torch.Tensor | None):
        self.model, self.steps_table = model, steps_table
        self.num_directions = (
            model.num_potentials if steps_table is None else int(steps_table.shape[0])
        )

    def traverse(self, z0: torch.Tensor, k: int, steps: int) -> torch.Tensor:
        if self.steps_table is None:
            w = torch.zeros(z0.shape[0], self.num_directions, dtype=z0.dtype, device=z0.device)
            w[:, k] = 1.0
            return self.model.traverse(z0, w, steps)
        labels = torch.full((z0.shape[0],), k, dtype=torch.long, device=z0.device)
        return axis_path(z0, labels, self.steps_table, steps).transpose(0, 1)


def _vp_scores(
    model: Any, steps_table: torch.Tensor | None, pairs: int, epochs: int, seed: int
) -> dict[str, float]:
    """VP scores (%) of the model's transformation directions (seed 004, Tables 5-6)."""
    model.eval()
    metric = _metric("vp-score", num_pairs=pairs, epochs=epochs, seed=seed)
    device = next(model.parameters()).device
    out = metric.compute(
        model.decode, _Directions(model, steps_table), model.latent_dim, device=device
    )
    return {f"vp[{key}]": 100.0 * value for key, value in out.items() if key != "chance"}


@torch.no_grad()
def _per_transform_error(
    model: Any,
    dataset: Any,
    device: torch.device,
    limit: int,
    steps_table: torch.Tensor | None = None,
) -> dict[str, float]:
    """The equivariance error overall (``equivariance_error``) and per transformation: the
    model's flow, or the axis path of ``steps_table``."""
    sums: dict[int, list[float]] = {}
    metric = _metric("equivariance-error")
    for x, k in _batches(dataset, 64, limit, device):
        path = None
        if steps_table is not None:
            z0 = model.posterior_mean(x[:, 0])
            path = axis_path(z0, k, steps_table, x.shape[1] - 1)
        err = metric.per_sequence(x, model=model, k=k, z_path=path)
        for kk, e in zip(k.tolist(), err.tolist()):
            sums.setdefault(kk, []).append(e)
    names = dataset.transform_names
    out = {f"equivariance_error[{names[kk]}]": float(np.mean(v)) for kk, v in sorted(sums.items())}
    out["equivariance_error"] = float(np.mean([e for v in sums.values() for e in v]))
    return out


@torch.no_grad()
def _figures(
    model: Any,
    name: str,
    dataset: Any,
    out_dir: Path,
    device: torch.device,
    steps_table: torch.Tensor | None = None,
    n: int = 4,
) -> None:
    """Traversal grids (every potential, or axis step, from the same x_0), switching and
    superposition."""
    model.eval()
    items = torch.utils.data.default_collate([dataset[i] for i in range(n)])
    x, k = unpack_batch(items)
    x, k = x.to(device), k.to(device)
    steps = x.shape[1] - 1
    z0 = model.posterior_mean(x[:, 0])
    rows = [x[0]]
    directions = _Directions(model, steps_table)
    with torch.enable_grad():
        for j in range(directions.num_directions):
            rows.append(model.decode(directions.traverse(z0[:1], j, steps).detach())[:, 0])
    write_png(out_dir / f"traversal_{name}.png", image_grid(torch.stack(rows)))
    if not model.num_potentials:
        return
    num = model.num_potentials
    half = steps // 2
    switch_rows = []
    for a in range(num):
        b = (a + 1) % num
        w = torch.zeros(steps, 1, num, device=device, dtype=z0.dtype)
        w[:half, 0, a] = 1.0
        w[half:, 0, b] = 1.0
        switch_rows.append(model.decode(model.traverse(z0[:1], w, steps))[:, 0])
    write_png(out_dir / f"switching_{name}.png", image_grid(torch.stack(switch_rows)))
    sup_rows = []
    for i in range(n):
        w = torch.ones(1, num, device=device, dtype=z0.dtype)
        sup_rows.append(model.decode(model.traverse(z0[i : i + 1], w, steps))[:, 0])
    write_png(out_dir / f"superposition_{name}.png", image_grid(torch.stack(sup_rows)))
