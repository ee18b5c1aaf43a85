"""Metrics of traversals: ``vp-score`` (variational predictability) and ``alignment-map``
(seed 001, Eq. 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ...core.checks import check_tensor
from ...core.component import Metric
from ...core.config import config, floating, integer, option, optional
from ...core.directions import num_directions as count_directions
from ...runtime import CyclicBatches, TrainConfig, Trainer
from .metric_tensor import metric_by_jacobian

__all__ = ["AlignmentMap", "VPScore", "example_generator", "traversal_pairs"]

Generator = Callable[[torch.Tensor], torch.Tensor]


class _FewShotLoss(nn.Module):
    """Cross-entropy of ``net`` on the rows ``batch`` (indices) of ``x`` and ``labels``."""

    def __init__(self, net: nn.Module, x: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.net, self.x, self.labels = net, x, labels

    def loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": nn.functional.cross_entropy(self.net(self.x[batch]), self.labels[batch])}


@torch.no_grad()
def traversal_pairs(
    generator: Generator,
    traversal: Any,
    latent_dim: int,
    num_pairs: int,
    steps: int,
    displacement: float | None,
    seed: int,
    num_directions: int | None = None,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random pairs ``[x_0, x_T]`` of traversal endpoints with their direction labels.

    ``z_0 ~ N(0, I)``, ``k`` uniform; ``z_T`` is the end of ``traversal.traverse(z_0, k, steps)``,
    rescaled so ``||z_T - z_0|| = displacement`` when given (so methods are compared on their
    directions, not on the length of their steps). Returns ``x_0, x_T (N, ...)`` and
    ``k (N,)``.
    """
    K = num_directions or count_directions(traversal)
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(num_pairs, latent_dim, generator=gen).to(device or "cpu")
    labels = torch.arange(num_pairs) % K
    labels = labels[torch.randperm(num_pairs, generator=gen)].to(z0.device)
    zT = torch.empty_like(z0)
    with torch.enable_grad():
        for k in range(K):
            rows = (labels == k).nonzero().squeeze(-1)
            if rows.numel():
                zT[rows] = traversal.traverse(z0[rows], k, steps)[-1].detach().to(z0)
    if displacement is not None:
        delta = zT - z0
        zT = z0 + displacement * delta / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return generator(z0), generator(zT), labels


def example_generator(latent_dim: int = 3, out: int = 6, seed: int = 0) -> nn.Sequential:
    """A small seeded generator ``Linear(latent_dim, out) -> tanh`` for example inputs."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(latent_dim, out), nn.Tanh())


@config
class VPScoreConfig:
    """Options of ``vp-score`` (variational predictability, Zhu et al. 2020, as used in thesis
    000, Sec. 4.5.2, Tables 4.7 and 4.9: few-shot classification of ``[x_0, x_T]`` pairs)."""

    num_pairs: int = option(2000, validator=integer(10), help="number of image pairs")
    steps: int = option(9, validator=integer(1), help="traversal steps from x_0 to x_T")
    displacement: float | None = option(
        2.0,
        validator=optional(floating(0.0, min_open=True)),
        help="latent distance ||z_T - z_0|| every pair is rescaled to (None: as traversed)",
    )
    train_fractions: tuple = option(
        (0.1, 0.01), converter=tuple, help="few-shot training shares (10% and 1% splits)"
    )
    epochs: int = option(60, validator=integer(1), help="training epochs of the classifier")
    hidden: int = option(128, validator=integer(1), help="hidden width of the classifier")
    seed: int = option(0, validator=integer(0), help="seed of pairs, split and classifier")


class VPScore(Metric):
    """Accuracy of a small classifier predicting the direction ``k`` from ``[x_0, x_T]``,
    trained on a few-shot share of the pairs and tested on the rest; higher means more
    predictable, more disentangled directions. ``compute(generator, traversal, latent_dim)``
    returns ``{"vp@10%": acc, "vp@1%": acc, "chance": 1/K}`` (keys follow
    ``train_fractions``)."""

    Config = VPScoreConfig
    source = "000 (Song 2023), Sec. 4.5.2, Tables 4.7, 4.9 (VP score of Zhu et al.)"

    def compute(
        self, generator: Generator, traversal: Any, latent_dim: int, device: Any = None
    ) -> dict[str, float]:
        cfg = self.config
        x0, xT, labels = traversal_pairs(
            generator,
            traversal,
            latent_dim,
            cfg.num_pairs,
            cfg.steps,
            cfg.displacement,
            cfg.seed,
            device=device,
        )
        K = int(labels.max()) + 1
        features = torch.cat([x0.flatten(1), xT.flatten(1)], dim=-1).float()
        result = {}
        for share in cfg.train_fractions:
            acc = self._few_shot_accuracy(features, labels, K, float(share))
            result[f"vp@{share * 100:g}%"] = acc
        result["chance"] = 1.0 / K
        return result

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """A small random generator ``R^3 -> R^6``, ``sefa`` fitted on its first layer, and
        the latent size 3."""
        from .sefa import SeFa

        generator = example_generator()
        traversal = SeFa(num_directions=3).fit(generator[0])
        return (generator, traversal, 3), {}

    def _few_shot_accuracy(
        self, features: torch.Tensor, labels: torch.Tensor, K: int, share: float
    ) -> float:
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        order = torch.randperm(len(labels), generator=gen).to(labels.device)
        n_train = max(K, round(share * len(labels)))
        train, test = order[:n_train], order[n_train:]
        torch.manual_seed(cfg.seed)
        mean = features[train].mean(0)
        std = features[train].std(0).clamp_min(1e-6) if n_train > 1 else 1.0
        x = (features - mean) / std
        net = nn.Sequential(
            nn.Linear(x.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, K)
        ).to(x.device)
        batches = list(train.split(64))
        Trainer(
            _FewShotLoss(net, x, labels),
            config=TrainConfig(
                steps=cfg.epochs * len(batches),
                lr=1e-3,
                weight_decay=1e-4,
                log_every=cfg.epochs * len(batches),
                quiet=True,
            ),
            batches=CyclicBatches(batches),
            local=True,
        ).fit()
        with torch.no_grad():
            return float((net(x[test]).argmax(-1) == labels[test]).float().mean())


@config
class AlignmentMapConfig:
    """Options of ``alignment-map`` (seed 001, Eq. 6)."""

    num_eigenvectors: int | None = option(
        None, validator=optional(integer(1)), help="leading eigenvectors k (None: all m)"
    )


class AlignmentMap(Metric):
    """``F = E_z [V~(z) o V~(z)]`` (seed 001, Eq. 6): column ``j`` is the mean squared
    alignment of the j-th leading eigenvector of ``J^T J`` with each coordinate axis, over
    codes ``z (N, m)``. ``compute(generator, z) -> {"map": F (m x k, nested list),
    "diagonal": mean of F_jj, "axis_alignment": mean over columns of max_i F_ij}``; a
    perfectly axis-aligned generator gives a permutation-like map with entries 1."""

    Config = AlignmentMapConfig
    source = "001 (Ramesh et al.), Eq. 6"

    def map(self, generator: Generator, z: torch.Tensor) -> torch.Tensor:
        """The heat map ``F (m, k)``."""
        z = check_tensor(z, "z", min_dims=2).detach()
        with torch.enable_grad():
            H = metric_by_jacobian(generator, z).detach()
        _, vectors = torch.linalg.eigh(0.5 * (H + H.mT))
        vectors = vectors.flip(-1)
        k = self.config.num_eigenvectors or z.shape[1]
        return vectors[..., :k].square().mean(0)

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """A small random generator ``R^3 -> R^6`` and 4 codes."""
        z = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
        return (example_generator(), z), {}

    def compute(self, generator: Generator, z: torch.Tensor) -> dict[str, Any]:
        F = self.map(generator, z)
        k = F.shape[1]
        return {
            "map": F.tolist(),
            "diagonal": float(torch.diagonal(F[:k, :k]).mean()),
            "axis_alignment": float(F.amax(0).mean()),
        }
