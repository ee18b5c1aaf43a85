"""Registered pipelines, and the dataset the ``gcp`` demo runs on."""

from __future__ import annotations

import csv
import io
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from ..core.component import Dataset, PipelineBase, RunContext
from ..core.config import (
    ComponentRef,
    boolean,
    component_option,
    config,
    floating,
    integer,
    option,
)
from ..core.errors import ConfigError
from ..core.io import atomic_torch_save, atomic_write_bytes
from ..registry import get_registries, hookimpl
from ..runtime import RandomBatches, TrainConfig, Trainer

__all__ = ["CovarianceTextures", "GCPPipeline", "HistoryRow", "plot_history", "write_history_csv"]


# --------------------------------------------------------------------------- dataset


@config
class CovarianceTexturesConfig:
    """Options of ``covariance-textures``: a generated dataset whose classes differ only in
    their channel correlations (second-order statistics), the setting global covariance
    pooling is built for (thesis 000, Sec. 2.5.3). Defaults are eigenflow's choice."""

    num_classes: int = option(4, validator=integer(2), help="number of classes")
    channels: int = option(8, validator=integer(2), help="channels C of each image")
    size: int = option(8, validator=integer(2), help="images are size x size pixels")
    samples: int = option(1024, validator=integer(1), help="number of images")
    correlation: float = option(
        0.6,
        validator=floating(0.0, 1.0, max_open=True),
        help="strength of the class-specific channel correlations",
    )
    seed: int = option(0, validator=integer(0), help="generation seed")


def _class_correlation_factors(cfg: CovarianceTexturesConfig, gen: torch.Generator) -> torch.Tensor:
    """Cholesky factors ``(K, C, C)`` of per-class correlation matrices with unit diagonal.

    Every class has the same per-channel variance (1), so first-order statistics (means,
    variances) carry no class information; only the off-diagonal correlations do.
    """
    k, c = cfg.num_classes, cfg.channels
    dirs = torch.randn(k, c, 2, generator=gen, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    corr = cfg.correlation * (dirs @ dirs.mT) + (1 - cfg.correlation) * torch.eye(
        c, dtype=torch.float64
    )
    return torch.linalg.cholesky(corr)


class CovarianceTextures(Dataset):
    """Images ``(C, size, size)`` whose pixels are drawn from ``N(0, s^2 R_k)`` for a
    class-specific correlation matrix ``R_k`` (unit diagonal) and a random per-image scale
    ``s``. Items are ``(image float32, label int64)``. Average pooling sees zero-mean
    unit-variance channels for every class; covariance pooling separates them."""

    Config = CovarianceTexturesConfig
    source = "eigenflow (demo data for thesis 000, Sec. 2.5.3)"

    def __init__(self, config: CovarianceTexturesConfig | None = None, **options: Any):
        super().__init__()
        self.config = cfg = self.make_config(config, options)
        gen = torch.Generator().manual_seed(cfg.seed)
        factors = _class_correlation_factors(cfg, gen)
        labels = torch.arange(cfg.samples) % cfg.num_classes
        labels = labels[torch.randperm(cfg.samples, generator=gen)]
        pixels = cfg.size * cfg.size
        noise = torch.randn(cfg.samples, cfg.channels, pixels, generator=gen, dtype=torch.float64)
        scale = torch.exp(0.5 * torch.randn(cfg.samples, 1, 1, generator=gen, dtype=torch.float64))
        images = scale * (factors[labels] @ noise)
        self.images = images.reshape(cfg.samples, cfg.channels, cfg.size, cfg.size).float()
        self.labels = labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


# --------------------------------------------------------------------------- gcp pipeline

#: what the ``gcp`` pipeline needs of its dataset
_PAIRS = "(image, label) pairs: a float tensor (C, H, W) and an integer class label"


def _declared_items(cls: type) -> str | None:
    """What the items of dataset class ``cls`` are by the return annotation of its
    ``__getitem__``: ``"pairs"`` (a 2-tuple), ``"dicts"``, ``"tuples of N"``; ``None`` when
    it declares nothing that tells (then the first item is looked at when the run starts)."""
    try:
        declared = typing.get_type_hints(cls.__getitem__).get("return")
    except Exception:  # an annotation that does not evaluate: nothing declared
        return None
    origin = typing.get_origin(declared) or declared
    if origin is tuple:
        args = typing.get_args(declared)
        if len(args) == 2 and args[1] is not Ellipsis:
            return "pairs"
        return None if not args or args[-1] is Ellipsis else f"tuples of {len(args)}"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return "dicts"
    return None


def _pair_datasets() -> list[str]:
    """The registered datasets whose items are declared to be 2-tuples."""
    registry = get_registries()["dataset"]
    return [name for name in registry.names() if _declared_items(registry.get(name)) == "pairs"]


def _not_pairs(name: str, found: str) -> ConfigError:
    qualify = ", ".join(_pair_datasets()) or "none registered"
    return ConfigError(
        f"option 'dataset' = {name!r} is invalid: gcp needs a dataset of {_PAIRS}; the items "
        f"of {name!r} are {found} (datasets that give such pairs: {qualify})"
    )


def _describe_item(item: Any) -> str:
    if isinstance(item, torch.Tensor):
        return f"tensors of shape {tuple(item.shape)}"
    if isinstance(item, Mapping):
        return "dicts with keys " + ", ".join(repr(k) for k in item)
    if isinstance(item, tuple | list):
        parts = [
            f"tensor {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
            for v in item
        ]
        return f"{type(item).__name__}s ({', '.join(parts)})"
    return type(item).__name__ + " objects"


def _is_label(value: Any) -> bool:
    try:
        label = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return label.ndim == 0 and not (
        label.is_floating_point() or label.is_complex() or label.dtype == torch.bool
    )


def _check_pairs(data: Any, name: str) -> None:
    """Refuse a dataset whose first item is not an ``(image (C, H, W), label)`` pair (for
    datasets that declare nothing, :func:`_declared_items`)."""
    if len(data) == 0:
        raise ConfigError(f"option 'dataset' = {name!r} is invalid: it has no items")
    item = data[0]
    ok = (
        isinstance(item, tuple | list)
        and len(item) == 2
        and isinstance(item[0], torch.Tensor)
        and item[0].ndim == 3
        and item[0].is_floating_point()
        and _is_label(item[1])
    )
    if not ok:
        raise _not_pairs(name, _describe_item(item))


@config
class GCPConfig:
    """Options of the ``gcp`` pipeline: a small global-covariance-pooling classifier (thesis
    000, Fig. 2.8, Eq. 2.42-2.43) against an average-pooling baseline on
    ``covariance-textures``. Defaults are sized to run in seconds on a CPU."""

    solver: Any = component_option("solver", "svd", help="solver for the matrix square root")
    dataset: Any = component_option(
        "dataset",
        "covariance-textures",
        help="dataset of (image, label) pairs: images (C, H, W), integer class labels",
    )
    hidden: int = option(16, validator=integer(1), help="channels after the 1x1 convolution")
    steps: int = option(150, validator=integer(1), help="optimisation steps per model")
    batch_size: int = option(64, validator=integer(1), help="mini-batch size")
    lr: float = option(1e-2, validator=floating(0.0, 1.0, min_open=True), help="Adam learning rate")
    test_fraction: float = option(
        0.25,
        validator=floating(0.0, 1.0, min_open=True, max_open=True),
        help="fraction of the data held out for testing",
    )
    baseline: bool = option(
        True, validator=boolean(), help="also train the average-pooling baseline"
    )

    @dataset.validator
    def _dataset_gives_pairs(self, _attribute: Any, value: Any) -> None:
        # at validation, before a run folder exists: what the dataset class declares
        # (an unknown name or a bad value is reported by the option's own checks)
        if not isinstance(value, ComponentRef):
            return
        registry = get_registries()["dataset"]
        if value.name not in registry:
            return
        found = _declared_items(registry.get(value.name))
        if found not in (None, "pairs"):
            raise _not_pairs(value.name, found)


class _Classifier(nn.Module):
    """1x1 conv -> pooling head -> linear classifier."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int, head: nn.Module | None):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.BatchNorm2d(hidden))
        self.head = head
        features = hidden * (hidden + 1) // 2 if head is not None else hidden
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        pooled = self.head(h) if self.head is not None else h.mean(dim=(-2, -1))
        return self.fc(pooled)


class GCPPipeline(PipelineBase):
    """Train a GCP classifier (and an average-pooling baseline) and report test accuracy.

    Writes ``history.csv`` (step, model, loss, batch accuracy and, every few steps, test
    accuracy), ``history.png`` (loss and accuracy curves of both models; needs matplotlib)
    and ``gcp-model.pt`` (state dict) to the output folder; returns the accuracies, the
    chance level (one over the number of classes), final losses and the solver used.
    """

    Config = GCPConfig
    source = "000 (Song 2023), Sec. 2.5.3, Fig. 2.8, Eq. 2.42-2.43"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        data = cfg.dataset.build("dataset")
        _check_pairs(data, cfg.dataset.name)
        images = torch.stack([data[i][0] for i in range(len(data))]).to(ctx.device)
        labels = torch.stack([torch.as_tensor(data[i][1]) for i in range(len(data))]).to(ctx.device)
        num_classes = int(labels.max()) + 1
        n_test = max(1, math.floor(cfg.test_fraction * len(labels)))
        train = (images[n_test:], labels[n_test:])
        test = (images[:n_test], labels[:n_test])
        pooling = ComponentRef(
            "covariance-pooling", {"solver": cfg.solver, "post_norm": "trace"}, "layer"
        )
        models = {"gcp": pooling.build()}
        if cfg.baseline:
            models["avgpool"] = None
        history: list[HistoryRow] = []
        chance = 1.0 / num_classes
        result: dict[str, Any] = {
            "solver": cfg.solver.name,
            "num_classes": num_classes,
            "chance_accuracy": chance,
            "train_size": len(train[1]),
            "test_size": n_test,
        }
        for label, head in models.items():
            gen = torch.Generator().manual_seed(ctx.seed)
            torch.manual_seed(ctx.seed)
            model = _Classifier(images.shape[1], cfg.hidden, num_classes, head).to(ctx.device)
            rows = _train(model, train, test, cfg, gen, ctx, label)
            history.extend(rows)
            acc = _accuracy(model, test)
            result[f"{label}_test_accuracy"] = acc
            result[f"{label}_final_loss"] = rows[-1].loss
            ctx.log(
                f"[gcp] {label}: test accuracy {acc:.3f} (chance {chance:.3f}), "
                f"final loss {rows[-1].loss:.4f}"
            )
            if label == "gcp":
                atomic_torch_save(model.state_dict(), ctx.out_dir / "gcp-model.pt")
        write_history_csv(ctx.out_dir / "history.csv", history)
        plot = plot_history(ctx.out_dir / "history.png", history, chance=chance)
        if plot is None:
            ctx.log(f"[gcp] history.png not written: {MATPLOTLIB_MISSING}")
        result["plot"] = None if plot is None else plot.name
        return result


@attrs.frozen
class HistoryRow:
    """One optimisation step of one model in ``history.csv``."""

    step: int
    model: str
    loss: float
    batch_accuracy: float
    test_accuracy: float | None = None


HISTORY_COLUMNS = ("step", "model", "loss", "batch_accuracy", "test_accuracy")
MATPLOTLIB_MISSING = (
    "the plot needs matplotlib, which is not installed: pip install matplotlib "
    "(or the extra: pip install 'eigenflow[plot]')"
)


def write_history_csv(path: Path, rows: list[HistoryRow]) -> Path:
    """Write ``rows`` as CSV (``test_accuracy`` is empty on steps where it was not measured)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for r in rows:
        test = "" if r.test_accuracy is None else f"{r.test_accuracy:.6g}"
        writer.writerow([r.step, r.model, f"{r.loss:.6g}", f"{r.batch_accuracy:.6g}", test])
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def plot_history(path: Path, rows: list[HistoryRow], *, chance: float) -> Path | None:
    """Draw the loss and accuracy curves of every model in ``rows`` to ``path`` (PNG).

    Returns the path, or ``None`` when matplotlib is not installed (the caller says so).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    models = list(dict.fromkeys(r.model for r in rows))
    for i, model in enumerate(models):
        mine = [r for r in rows if r.model == model]
        color = f"C{i}"
        ax_loss.plot([r.step for r in mine], [r.loss for r in mine], color=color, label=model)
        tested = [r for r in mine if r.test_accuracy is not None]
        ax_acc.plot(
            [r.step for r in tested],
            [r.test_accuracy for r in tested],
            color=color,
            marker="o",
            markersize=3,
            label=f"{model} (test)",
        )
        ax_acc.plot(
            [r.step for r in mine],
            _running_mean([r.batch_accuracy for r in mine]),
            color=color,
            alpha=0.4,
            label=f"{model} (training batches, running mean)",
        )
    ax_acc.axhline(chance, color="grey", linestyle="--", label=f"chance ({chance:.2f})")
    ax_loss.set(xlabel="step", ylabel="cross-entropy loss", title="training loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0.0, 1.02), title="accuracy")
    ax_loss.legend()
    ax_acc.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


def _running_mean(values: list[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


class ClassifierLoss(nn.Module):
    """``loss(batch)`` of a classifier on ``(x, y)``: cross-entropy and batch accuracy."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.net(x)
        accuracy = (logits.detach().argmax(-1) == y).float().mean()
        return {"loss": nn.functional.cross_entropy(logits, y), "accuracy": accuracy}


def _train(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    cfg: GCPConfig,
    gen: torch.Generator,
    ctx: RunContext,
    label: str,
) -> list[HistoryRow]:
    every = max(1, cfg.steps // 25)  # test accuracy about 25 times per run
    tcfg = TrainConfig.for_run(
        ctx,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        log_every=max(1, cfg.steps // 5),
        checkpoint_every=0,
    )
    trainer = Trainer(
        ClassifierLoss(model),
        config=tcfg,
        out_dir=ctx.out_dir / label,
        device=ctx.device,
        batches=RandomBatches(train, cfg.batch_size, gen),
        label=f"gcp: {label}",
    )

    def record(step: int, terms: dict[str, torch.Tensor]) -> None:
        # host sync once per step: logging, not a hot path
        test_acc = _accuracy(model, test) if step % every == 0 else None
        trainer.records.append(
            {
                "step": step - 1,
                "model": label,
                "loss": float(terms["loss"]),
                "batch_accuracy": float(terms["accuracy"]),
                "test_accuracy": test_acc,
            }
        )

    trainer.on_step = record
    trainer.fit()
    return [HistoryRow(**r) for r in trainer.records]


@torch.no_grad()
def _accuracy(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    x, y = test
    return float((model(x).argmax(-1) == y).float().mean())


@hookimpl
def eigenflow_register(registry):
    registry.add("dataset", CovarianceTextures, name="covariance-textures")
    registry.add("pipeline", GCPPipeline, name="gcp")
