"""Pipeline ``orth-conditioning``: the covariance-conditioning experiment of thesis 000,
Sec. 3.5 (Fig. 3.11-3.13, Tables 3.10-3.13) at toy scale.

A small convolutional network with a decorrelated-BN (``zca-whitening``) layer right after its
first convolution (the "Pre-SVD layer", Sec. 3.5.3; the thesis inserts the layer after the first
convolution, Fig. 2.7) is trained on colour digit images (the first frame of
``digits-sequences``, downsampled) once per variant: ``svd`` alone, and with constraints on the
Pre-SVD layer (``svd+nog``, ``svd+olr``, ``svd+nog+orth-weight+olr``, ...). Every variant gets
the same network, initial weights, data, batches and optimizer; only the constraints differ.
At every step the condition number (Eq. 3.47) of the covariance the whitening layer receives,
``W C_in W^T`` (Eq. 3.48-3.49), and of the Pre-SVD weight ``W`` itself are recorded. Outputs:
``history.csv`` (step, variant, loss, covariance and weight condition numbers),
``conditioning.png`` (log10 condition number per step, when matplotlib is installed) and a
summary with the median condition numbers over the last fifth of training and the test
accuracy of each variant.
"""

from __future__ import annotations

import csv
import math
from typing import Any

import torch
from torch import nn

from ...core.component import PipelineBase, RunContext
from ...core.config import ComponentRef, config, floating, integer, option, options_dict
from ...core.errors import ConfigError, did_you_mean
from ...core.polar import condition_number
from ...core.stats import centered_covariance
from ...registry.registry import get_registries
from ...runtime import RandomBatches, TrainConfig, Trainer
from .training import ConstraintSet

__all__ = ["OrthConditioning", "OrthConditioningConfig"]

_DEFAULT_VARIANTS = ("svd", "svd+nog", "svd+olr", "svd+nog+orth-weight+olr")


def _check_variants(_inst: Any, attribute: Any, value: Any) -> None:
    ok = (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, str) and v.split("+")[0] == "svd" for v in value)
    )
    if not ok:
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a list of variants "
            "'svd' or 'svd+<constraint>+...' (e.g. 'svd+nog+orth-weight+olr')"
        )
    known = get_registries()["constraint"].names()
    for variant in value:
        for name in variant.split("+")[1:]:
            if name not in known:
                raise ConfigError(
                    f"option {attribute.name!r}: variant {variant!r} names {name!r}, not a "
                    f"registered constraint{did_you_mean(name, known)} (known: {', '.join(known)})"
                )


@config
class OrthConditioningConfig:
    """Options of ``orth-conditioning`` (thesis 000, Sec. 3.5, Fig. 3.11-3.13).

    From the thesis: the structure (the Pre-SVD convolution is the network's first layer and
    feeds ZCA whitening by the ``svd`` solver, Fig. 2.7 and Sec. 3.5.3), SGD, the variants
    (Tables 3.11-3.12), and a covariance of about the thesis's size (64 x 64, Table 2.3).
    The thesis trains ResNet-50 on CIFAR100 and gives no learning rate or batch size.

    Eigenflow's choices: a ``5 x 5`` Pre-SVD convolution from 3 to ``75 = 3 * 5 * 5``
    channels, so its weight is a square ``75 x 75`` matrix as in the thesis's analysis
    (``exp(W - W^T)`` of Eq. 3.52 and ``W W^T = I`` of Eq. 3.57 are square; Proposition 3
    assumes a square orthogonal ``W``). With PyTorch's default initialisation this square
    weight has ``cond(W)`` of ``10^2.1`` to ``10^2.5`` (measured), and ``cond(W C_in W^T)``
    grows with ``cond(W)^2`` (Eq. 3.49): that is what the constraints remove. A random
    rectangular weight (e.g. ``16 x 27``) is well conditioned and leaves them nothing to do.
    Also ours: learning rate 0.02 with momentum 0.9 (at 0.05 the plain ``svd`` run is still
    two orders of magnitude above ``svd+nog+orth-weight+olr`` after 200 steps, at 0.02 two to
    four), 200 steps of 128 images, 2000 images of 14 x 14, a 32-channel head; together
    about 70 s on one CPU thread. The covariance is the one of each step's forward pass,
    ``cond(W)`` is taken after the step.
    """

    variants: tuple[str, ...] = option(
        _DEFAULT_VARIANTS,
        validator=_check_variants,
        converter=tuple,
        help="'svd' plus constraints on the Pre-SVD layer, joined by '+'",
    )
    steps: int = option(200, validator=integer(1), help="training steps per variant")
    batch_size: int = option(128, validator=integer(2), help="batch size")
    lr: float = option(0.02, validator=floating(0.0, 10.0, min_open=True), help="SGD learning rate")
    momentum: float = option(0.9, validator=floating(0.0, 1.0), help="SGD momentum")
    channels: int = option(
        75,
        validator=integer(2),
        help="output channels of the Pre-SVD convolution = size of the whitened covariance "
        "(3 * kernel_size^2 makes its weight square)",
    )
    kernel_size: int = option(
        5, validator=integer(1), help="odd kernel size of the Pre-SVD convolution"
    )
    head_channels: int = option(
        32, validator=integer(1), help="channels of the convolution after the whitening"
    )
    samples: int = option(2000, validator=integer(10), help="images used (train + test)")
    test_fraction: float = option(
        0.2, validator=floating(0.0, 1.0, min_open=True, max_open=True), help="held-out share"
    )
    dataset_options: dict = option(
        factory=dict,
        validator=options_dict(),
        help="options of the digits-sequences dataset (first frames are used)",
    )

    def __attrs_post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise ConfigError(
                f"option 'kernel_size' = {self.kernel_size} is invalid: expected an odd size "
                "(the convolution keeps the image size with padding kernel_size // 2)"
            )


class _Net(nn.Module):
    def __init__(
        self, cfg: OrthConditioningConfig, whitening: nn.Module, classes: int = 10
    ) -> None:
        super().__init__()
        k, c, h = cfg.kernel_size, cfg.channels, cfg.head_channels
        self.pre_svd = nn.Conv2d(3, c, k, padding=k // 2)
        self.whitening = whitening
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, h, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(h, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.whitening(self.pre_svd(x)))


class _PenalisedLoss(nn.Module):
    """Cross-entropy of ``net`` plus the constraints' penalty (``loss``), with the
    cross-entropy alone as the term ``cross_entropy``."""

    def __init__(self, net: nn.Module, constraints: ConstraintSet):
        super().__init__()
        self.net = net
        self.constraints = constraints

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        ce = nn.functional.cross_entropy(self.net(x), y)
        return {"loss": ce + self.constraints.penalty(), "cross_entropy": ce}


class OrthConditioning(PipelineBase):
    """Covariance conditioning of a ZCA network under orthogonality constraints (Sec. 3.5)."""

    Config = OrthConditioningConfig
    source = "000 (Song 2023), Sec. 3.5, Fig. 3.11-3.13, Tables 3.10-3.13"

    def _data(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        data = ComponentRef(
            "digits-sequences", dict(self.config.dataset_options), "dataset"
        ).build()
        n = min(self.config.samples, len(data))
        items = [data[i] for i in range(n)]
        x = torch.stack([item["x"][0] for item in items]).float()  # first frame (3, 28, 28)
        x = nn.functional.avg_pool2d(x, 2)
        y = torch.stack([torch.as_tensor(item["label"]) for item in items]).long()
        return x.to(device), y.to(device)

    def _run_variant(self, variant: str, data: tuple, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        whitening = ComponentRef(
            "zca-whitening", {"num_features": cfg.channels, "solver": "svd"}, "layer"
        ).build()
        model = _Net(cfg, whitening).to(ctx.device)
        captured: dict[str, torch.Tensor] = {}
        model.whitening.register_forward_pre_hook(
            lambda _m, args: captured.__setitem__("x", args[0].detach())
        )
        names = variant.split("+")[1:]
        cs = ConstraintSet([ComponentRef(n, {}, "constraint").build() for n in names])
        cs.attach(model.pre_svd)
        (x_train, y_train), (x_test, y_test) = data
        trainer = Trainer(
            _PenalisedLoss(model, cs),
            config=TrainConfig.for_run(
                ctx,
                steps=cfg.steps,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                optimizer="sgd",
                momentum=cfg.momentum,
                log_every=max(1, cfg.steps // 5),
                checkpoint_every=0,
            ),
            out_dir=ctx.out_dir / variant,
            device=ctx.device,
            batches=RandomBatches((x_train, y_train), cfg.batch_size, gen),
            label=f"orth-conditioning: {variant}",
        )

        def record(_step: int, terms: dict[str, torch.Tensor]) -> None:
            feats = captured["x"].transpose(0, 1).reshape(cfg.channels, -1).double()
            cond = condition_number(centered_covariance(feats), symmetric=True)
            weight_cond = condition_number(model.pre_svd.weight.detach().flatten(1))
            trainer.records.append(
                {
                    "loss": float(terms["cross_entropy"]),
                    "condition": float(cond),
                    "weight_condition": float(weight_cond),
                }
            )

        trainer.on_step = record
        cs.attach_optimizer(trainer.optimizer)
        trainer.fit()
        model.eval()
        with torch.no_grad():
            acc = (model(x_test).argmax(-1) == y_test).double().mean()
        cs.detach()
        return {
            "loss": [r["loss"] for r in trainer.records],
            "condition": [r["condition"] for r in trainer.records],
            "weight_condition": [r["weight_condition"] for r in trainer.records],
            "accuracy": float(acc),
        }

    def run(self, ctx: RunContext) -> dict[str, Any]:
        cfg = self.config
        x, y = self._data(ctx.device)
        n_test = max(1, math.floor(cfg.test_fraction * len(y)))
        data = ((x[n_test:], y[n_test:]), (x[:n_test], y[:n_test]))
        runs = {}
        for variant in cfg.variants:
            runs[variant] = self._run_variant(variant, data, ctx)
            ctx.log(f"[orth-conditioning] {variant}: accuracy {runs[variant]['accuracy']:.3f}")
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        with open(ctx.out_dir / "history.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["step", "variant", "loss", "condition_number", "weight_condition_number"]
            )
            for variant, r in runs.items():
                rows = zip(r["loss"], r["condition"], r["weight_condition"])
                writer.writerows((s, variant, *row) for s, row in enumerate(rows))
        summary: dict[str, Any] = {"variants": {}}
        tail = max(1, cfg.steps // 5)
        for variant, r in runs.items():
            summary["variants"][variant] = {
                "median_condition_last_fifth": _median(r["condition"][-tail:]),
                "median_weight_condition_last_fifth": _median(r["weight_condition"][-tail:]),
                "final_loss": r["loss"][-1],
                "test_accuracy": r["accuracy"],
            }
        plot = _plot(runs, ctx.out_dir / "conditioning.png")
        if plot:
            summary["plot"] = plot
        return summary


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _plot(runs: dict[str, dict], path: Any) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is an optional extra
        return None
    fig, (ax_cov, ax_w) = plt.subplots(1, 2, figsize=(10, 3.8))
    for variant, r in runs.items():
        ax_cov.plot([math.log10(max(c, 1.0)) for c in r["condition"]], label=variant)
        ax_w.plot([math.log10(max(c, 1.0)) for c in r["weight_condition"]], label=variant)
    for ax, title in (
        (ax_cov, "covariance entering the ZCA layer"),
        (ax_w, "Pre-SVD weight W"),
    ):
        ax.set_xlabel("training step")
        ax.set_ylabel("log10 condition number")
        ax.set_title(title, fontsize=10)
    ax_cov.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
