"""``synthetic-linear`` and ``synthetic-nonlinear``: the unit square ``V = [0, 1]^2`` embedded
linearly in R^3 or by a random MLP in R^6 (seed 002, Sec. 3.3.1 "Synthetic datasets",
Table 3.1, Table 3.4)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from ...core.config import config, floating, integer, option
from ._base import GeneratedDataset, GeneratedDatasetConfig

__all__ = [
    "SyntheticLinear",
    "SyntheticLinearConfig",
    "SyntheticNonlinear",
    "SyntheticNonlinearConfig",
    "linear_embedding",
    "rotation_about_axis",
]

#: The 80 % / 10 % / 10 % train / val / test split of seed 002 Sec. 3.3.1.
_FRACTIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` (radians) about ``axis`` (Rodrigues' formula)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)


def linear_embedding(stretch: float) -> np.ndarray:
    """``(3, 2)`` matrix of f_lin: stretch the first axis by ``stretch``, embed in R^3 as
    ``(w1, w2, 0)``, rotate by 45 degrees about ``(1, -1, 1)`` (seed 002 Sec. 3.3.1)."""
    embed = np.array([[stretch, 0.0], [0.0, 1.0], [0.0, 0.0]])
    return rotation_about_axis(np.array([1.0, -1.0, 1.0]), math.pi / 4) @ embed


def _split_rows(n: int, split: str, seed: int) -> np.ndarray:
    """Row indices of ``split`` in a seeded permutation of ``n`` samples."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    lo, hi = _FRACTIONS[split]
    return np.sort(order[round(lo * n) : round(hi * n)])


@config
class SyntheticLinearConfig(GeneratedDatasetConfig):
    """Options of ``synthetic-linear`` (seed 002 Sec. 3.3.1: 50000 samples, stretch 2)."""

    n_samples: int = option(
        50000,
        help="Samples in the whole dataset (before the 80/10/10 train/val/test split).",
        validator=integer(minimum=10),
    )
    stretch: float = option(
        2.0,
        help="Factor stretching the first generating factor (2 in "
        "the thesis; 1.0, 1.2, 1.5 in its Table 3.4).",
        validator=floating(0.0, min_open=True),
    )


@config
class SyntheticNonlinearConfig(GeneratedDatasetConfig):
    """Options of ``synthetic-nonlinear`` (seed 002 Sec. 3.3.1: random MLP R^2 -> R^6 with
    one tanh hidden layer of width 10 and biases; 50000 samples)."""

    n_samples: int = option(
        50000,
        help="Samples in the whole dataset (before the 80/10/10 train/val/test split).",
        validator=integer(minimum=10),
    )
    hidden: int = option(
        10, help="Width of the random MLP's hidden layer.", validator=integer(minimum=1)
    )
    out_dim: int = option(6, help="Dimension of the embedding space.", validator=integer(minimum=2))
    weight_scale: float = option(
        1.0,
        help="Standard deviation of the first layer's weights and biases (the thesis "
        "only says 'random initialization'; 1 makes the tanh clearly non-linear on [0, 1]^2).",
        validator=floating(0.0, min_open=True),
    )


class _SyntheticBase(GeneratedDataset):
    """Items: ``x`` ``(D,)`` float32 data and ``factors`` ``(2,)`` float32, the point of the
    unit square it embeds."""

    factor_names: ClassVar[tuple[str, ...]] = ("w1", "w2")

    def embed(self, w: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def generate(self) -> dict[str, np.ndarray]:
        cfg = self.config
        w_all = np.random.default_rng([cfg.seed, 0]).uniform(0.0, 1.0, size=(cfg.n_samples, 2))
        w = w_all[_split_rows(cfg.n_samples, cfg.split, cfg.seed)]
        return {"x": self.embed(w).astype(np.float32), "factors": w.astype(np.float32)}

    def item(self, index: Any) -> dict[str, torch.Tensor]:
        return {"x": self.arrays["x"][index], "factors": self.arrays["factors"][index]}


class SyntheticLinear(_SyntheticBase):
    """The linear synthetic dataset of seed 002 Sec. 3.3.1: ``x = A w`` with ``w`` uniform on
    the unit square and ``A`` (3x2) stretching ``w1`` by ``stretch``, embedding in R^3 and
    rotating 45 degrees about ``(1, -1, 1)``. The split is 80/10/10 (train/val/test) of one
    seeded sample; ``matrix`` is ``A``."""

    Config: ClassVar[type] = SyntheticLinearConfig
    source = "seed 002 Sec. 3.3.1 (Synth. Lin.)"

    @property
    def matrix(self) -> torch.Tensor:
        """The ``(3, 2)`` embedding matrix ``A``."""
        return torch.from_numpy(linear_embedding(self.config.stretch))

    def embed(self, w: np.ndarray) -> np.ndarray:
        return w @ linear_embedding(self.config.stretch).T


class SyntheticNonlinear(_SyntheticBase):
    """The non-linear synthetic dataset of seed 002 Sec. 3.3.1: ``x = W2 tanh(W1 w + b1) + b2``,
    a random MLP (drawn from ``seed``, shared by every split) mapping the unit square to
    R^6. ``W1, b1 ~ N(0, weight_scale^2)``; ``W2, b2 ~ N(0, 1 / hidden)``."""

    Config: ClassVar[type] = SyntheticNonlinearConfig
    source = "seed 002 Sec. 3.3.1 (Synth. Non-Lin.)"

    def mlp_parameters(self) -> dict[str, np.ndarray]:
        """The random MLP's ``W1 (hidden, 2)``, ``b1``, ``W2 (out_dim, hidden)``, ``b2``."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2])
        s2 = 1.0 / math.sqrt(cfg.hidden)
        return {
            "W1": rng.normal(0.0, cfg.weight_scale, size=(cfg.hidden, 2)),
            "b1": rng.normal(0.0, cfg.weight_scale, size=cfg.hidden),
            "W2": rng.normal(0.0, s2, size=(cfg.out_dim, cfg.hidden)),
            "b2": rng.normal(0.0, s2, size=cfg.out_dim),
        }

    def embed(self, w: np.ndarray) -> np.ndarray:
        p = self.mlp_parameters()
        return np.tanh(w @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
