"""Metric ``higgins-score``: the disentanglement metric of Higgins et al. (2017) in the form of
seed 001's Alg. 4 (App. D).

An *instance* fixes one generative factor ``i`` to a value ``v``, draws ``n_inst`` pairs of
images that share ``v`` (every other factor random), encodes them and averages
``|z_a - z_b|``; a linear classifier then predicts ``i`` from that average. A representation
in which factor ``i`` lives in its own latent coordinate makes that coordinate of the average
near zero and the classifier exact; the score is the classifier's accuracy on held-out
instances.

Here the simulator ``SAMPLESHAPE(i, v)`` of Alg. 4 is a pool of already encoded, labelled
images: an image "with factor ``i`` fixed to ``v``" is a uniform draw among the pool's images
whose factor ``i`` has class ``v``. For the datasets ``dsprites`` and ``shapes3d-lite``, whose
factors are drawn independently and uniformly, this is the same distribution as rendering a
fresh image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from ...core.checks import check_tensor
from ...core.component import Metric
from ...core.config import boolean, config, floating, integer, option, optional
from ...core.errors import ConfigError, InputError

__all__ = [
    "HigginsScore",
    "HigginsScoreConfig",
    "InstanceSampler",
    "factor_groups",
    "fit_linear_classifier",
]


def _tuple_or_none(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _factor_indices(_inst: Any, attribute: Any, value: Any) -> None:
    """Validator: ``None`` or a non-empty tuple of distinct non-negative ints."""
    if value is None:
        return
    ok = (
        isinstance(value, tuple)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and len(set(value)) == len(value)
    )
    if not ok:
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected None or a non-empty "
            "list of distinct factor indices (integers >= 0)"
        )


def factor_groups(classes: torch.Tensor, factors: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rows of the pool grouped by the value of each fixed factor.

    Parameters
    ----------
    classes
        ``(N, F)`` integer class of every factor of every pooled image.
    factors
        The ``n_f`` factor indices an instance may fix.

    Returns
    -------
    dict
        ``order (n_f, N)``: the pool's rows sorted by the class of each factor;
        ``start (n_f, V)`` and ``count (n_f, V)``: where the rows of each class begin in
        ``order`` and how many there are (``V`` the largest number of classes; unused
        entries count 0); ``values (n_f, V)`` bool, which classes occur.
    """
    cols = classes[:, list(factors)].T.contiguous()  # (n_f, N)
    labels = [torch.unique(c, return_inverse=True)[1] for c in cols]
    width = max(int(lab.max()) + 1 for lab in labels)
    order = torch.stack([torch.argsort(lab, stable=True) for lab in labels])
    count = torch.stack([torch.bincount(lab, minlength=width) for lab in labels])
    start = torch.cumsum(count, dim=1) - count
    return {"order": order, "start": start, "count": count, "values": count > 0}


class InstanceSampler:
    """Alg. 4 instances drawn from a pool of codes.

    Parameters
    ----------
    z
        ``(N, d)`` codes of the pooled images.
    classes
        ``(N, F)`` factor classes of the pooled images.
    factors
        Factor indices an instance may fix (the classifier's classes, in this order).
    n_inst
        Pairs averaged per instance (Alg. 4's ``n_inst``).
    gen
        The random generator (its state is the sampler's state).
    """

    def __init__(
        self,
        z: torch.Tensor,
        classes: torch.Tensor,
        factors: Sequence[int],
        n_inst: int,
        gen: torch.Generator,
    ):
        self.z, self.n_inst, self.gen = z, n_inst, gen
        groups = factor_groups(classes, factors)
        self.order, self.start, self.count = groups["order"], groups["start"], groups["count"]
        self.present = groups["values"].to(torch.float64)
        self.num_factors = len(factors)

    def instances(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` instances: inputs ``(n, d)`` (mean ``|z_a - z_b|`` over ``n_inst`` pairs) and
        targets ``(n,)`` (the position of the fixed factor in ``factors``)."""
        g = self.gen
        target = torch.randint(self.num_factors, (n,), generator=g)
        value = torch.multinomial(self.present[target], 1, generator=g).squeeze(1)
        start = self.start[target, value]  # (n,)
        count = self.count[target, value]
        u = torch.rand(n, 2 * self.n_inst, generator=g, dtype=torch.float64)
        offset = (u * count[:, None]).long().clamp_max(count[:, None] - 1)
        rows = self.order[target[:, None], start[:, None] + offset]  # (n, 2 n_inst)
        codes = self.z[rows.to(self.z.device)]
        diff = (codes[:, : self.n_inst] - codes[:, self.n_inst :]).abs().mean(1)
        return diff, target.to(self.z.device)


def fit_linear_classifier(
    sampler: InstanceSampler, d: int, cfg: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The metric's linear classifier ``logits = x W^T + b`` (``d`` inputs,
    ``sampler.num_factors`` classes), fit by ``cfg.updates`` steps of SGD with Nesterov
    momentum (``torch.optim.SGD``'s form: ``m <- mu m + g``, ``w <- w - lr (g + mu m)``) on
    the mean cross-entropy of fresh batches of ``cfg.batch_size`` instances (seed 001,
    App. D). Starts from zero weights.

    The gradient of the softmax cross-entropy is written out
    (``dL/dlogits = (softmax - onehot) / B``): the model is one linear map and every batch
    is new, so the engine's per-step bookkeeping (and autograd's) would cost more than the
    update itself, 10,000 times.

    Returns
    -------
    tuple
        ``W (n_f, d)`` and ``b (n_f,)``.
    """
    n_f, dev = sampler.num_factors, sampler.z.device
    W = torch.zeros(n_f, d, device=dev)
    b = torch.zeros(n_f, device=dev)
    mW, mb = torch.zeros_like(W), torch.zeros_like(b)
    eye = torch.eye(n_f, device=dev)
    lr, mu, B = cfg.lr, cfg.momentum, cfg.batch_size
    block = 256  # batches drawn at once (one gather for all their pairs)
    done = 0
    while done < cfg.updates:
        count = min(block, cfg.updates - done)
        x, y = sampler.instances(count * B)
        for xb, yb in zip(x.split(B), y.split(B)):
            g = (torch.softmax(torch.addmm(b, xb, W.T), dim=-1) - eye[yb]) / len(yb)
            gW, gb = g.T @ xb, g.sum(0)
            mW.mul_(mu).add_(gW)
            mb.mul_(mu).add_(gb)
            W.sub_(lr * (gW + mu * mW))
            b.sub_(lr * (gb + mu * mb))
        done += count
    return W, b


@config
class HigginsScoreConfig:
    """Options of ``higgins-score`` (seed 001, App. D and Alg. 4: ``n_inst = 64``,
    ``n_batch = 32``, SGD with step size 1e-2 and momentum 0.99, 10,000 updates, 5,000
    evaluation instances)."""

    n_inst: int = option(64, validator=integer(1), help="pairs averaged per instance (n_inst)")
    batch_size: int = option(32, validator=integer(1), help="instances per update (n_batch)")
    updates: int = option(10000, validator=integer(1), help="classifier updates")
    eval_instances: int = option(
        5000, validator=integer(1), help="held-out instances the accuracy is measured on"
    )
    lr: float = option(1e-2, validator=floating(0.0, 10.0, min_open=True), help="SGD step size")
    momentum: float = option(
        0.99,
        validator=floating(0.0, 1.0, max_open=True),
        help="Nesterov momentum of the SGD updates",
    )
    fixed_factors: tuple | None = option(
        None,
        converter=_tuple_or_none,
        validator=_factor_indices,
        help="indices of the factors an instance may fix (None: every factor with more than "
        "one class); Alg. 4 fixes dSprites' scale, orientation, x and y, i.e. (1, 2, 3, 4)",
    )
    standardize: bool = option(
        True,
        validator=boolean(),
        help="divide each latent coordinate by its standard deviation over the pool first, "
        "so the score does not depend on the code's units",
    )
    seed: int = option(0, validator=integer(0), help="seed of the instances and the classifier")
    eval_seed: int | None = option(
        None,
        validator=optional(integer(0)),
        help="seed of the evaluation instances (None: seed + 1)",
    )


class HigginsScore(Metric):
    """Disentanglement metric of Higgins et al. (2017), as specified by seed 001's Alg. 4.

    ``compute(z, classes)``: ``z (N, d)`` codes of a pool of images (an encoder's output, for
    a GAN the encoder trained to invert the generator, seed 001 App. D) and ``classes
    (N, F)`` the integer class of each generative factor of each image. Returns
    ``higgins_score`` (the linear classifier's accuracy on ``eval_instances`` fresh
    instances, in [0, 1]; seed 001 Table 1 reports it in percent), ``train_accuracy``,
    ``chance`` (``1 / n_f``), ``factors`` (the fixed factor indices) and ``factor<i>``, the
    accuracy on the instances that fix factor ``i``.

    A code whose coordinate ``j`` is a function of factor ``i`` alone and whose other
    coordinates do not depend on it scores 1; a code independent of the factors scores
    ``chance`` in expectation.
    """

    Config: ClassVar[type] = HigginsScoreConfig
    source = "001 (Ramesh et al.), App. D, Alg. 4, Table 1; Higgins et al. (2017)"

    def _factors(self, classes: torch.Tensor) -> tuple[int, ...]:
        F = classes.shape[1]
        chosen = self.config.fixed_factors
        if chosen is None:
            varying = [i for i in range(F) if int(classes[:, i].unique().numel()) > 1]
            if len(varying) < 2:
                raise InputError(
                    f"classes: needs at least 2 factors with more than one class, got "
                    f"{len(varying)} of {F}"
                )
            return tuple(varying)
        bad = [i for i in chosen if i >= F]
        if bad:
            raise InputError(
                f"fixed_factors: {bad} out of range for classes with {F} factors "
                f"(allowed 0..{F - 1})"
            )
        if len(chosen) < 2:
            raise InputError(f"fixed_factors: expected at least 2 factors, got {list(chosen)}")
        return tuple(chosen)

    def _check(self, z: Any, classes: Any) -> tuple[torch.Tensor, torch.Tensor]:
        z = check_tensor(z, "z", min_dims=2)
        if not isinstance(classes, torch.Tensor) or classes.is_floating_point():
            raise InputError(
                f"classes: expected an integer tensor (N, F) of factor classes, got "
                f"{getattr(classes, 'dtype', type(classes).__name__)}"
            )
        if z.dim() != 2 or classes.dim() != 2 or z.shape[0] != classes.shape[0]:
            raise InputError(
                f"z, classes: expected (N, d) and (N, F) with the same N, got "
                f"{list(z.shape)} and {list(classes.shape)}"
            )
        return z.detach(), classes.cpu().long()

    def compute(self, z: torch.Tensor, classes: torch.Tensor) -> dict[str, Any]:
        cfg = self.config
        z, classes = self._check(z, classes)
        factors = self._factors(classes)
        codes = z.to(torch.float32)
        if cfg.standardize:
            codes = codes / codes.std(0, keepdim=True).clamp_min(1e-12)
        gen = torch.Generator().manual_seed(cfg.seed)
        train = InstanceSampler(codes, classes, factors, cfg.n_inst, gen)
        torch.manual_seed(cfg.seed)
        W, b = fit_linear_classifier(train, codes.shape[1], cfg)
        eval_seed = cfg.seed + 1 if cfg.eval_seed is None else cfg.eval_seed
        held_out = InstanceSampler(
            codes,
            classes,
            factors,
            cfg.n_inst,
            torch.Generator().manual_seed(eval_seed),
        )
        with torch.no_grad():
            x, y = held_out.instances(cfg.eval_instances)
            hit = (torch.addmm(b, x, W.T).argmax(-1) == y).to(torch.float64)
            xt, yt = train.instances(cfg.eval_instances)
            train_acc = float((torch.addmm(b, xt, W.T).argmax(-1) == yt).to(torch.float64).mean())
        out: dict[str, Any] = {
            "higgins_score": float(hit.mean()),
            "train_accuracy": train_acc,
            "chance": 1.0 / len(factors),
            "factors": list(factors),
        }
        for j, i in enumerate(factors):
            mask = y == j
            out[f"factor{i}"] = float(hit[mask].mean()) if bool(mask.any()) else float("nan")
        return out

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """Three factors with 4 classes each, coded by 3 coordinates (one per factor) plus
        one noise coordinate."""
        g = torch.Generator().manual_seed(0)
        classes = torch.randint(0, 4, (200, 3), generator=g)
        z = torch.cat([classes.double(), torch.randn(200, 1, generator=g, dtype=torch.float64)], 1)
        return (z, classes), {}
