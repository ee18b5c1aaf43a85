"""Traversal ``sefa``: closed-form factorisation of the first projection of a generator."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.checks import check_tensor
from ...core.component import FitContext, Traversal
from ...core.config import config, integer, option
from ...core.errors import InputError
from .common import check_index, check_latents, linear_path, require_fitted

__all__ = ["SeFa", "SeFaConfig"]


@config
class SeFaConfig:
    """Options of ``sefa`` (thesis 000, Sec. 4.3, Eq. 4.3; Shen & Zhou's SeFa)."""

    num_directions: int = option(
        10, validator=integer(1), help="number of directions kept (largest eigenvalues first)"
    )


class SeFa(Traversal):
    """Directions ``n_k``: eigenvectors of ``A^T A`` for the weight ``A (out, d)`` of the
    generator's first projection ``y = A z + b`` (Eq. 4.3), by decreasing eigenvalue.

    ``fit(layer_or_weight)`` takes an ``nn.Linear`` (or any module with a 2-D ``weight``) or the
    weight tensor itself; ``directions`` is ``(d, K)``; ``traverse(z0, k, steps, step_size)``
    moves along ``n_k`` in a straight line.
    """

    Config = SeFaConfig
    source = "000 (Song 2023), Sec. 4.3, Eq. 4.3"

    def __init__(self, config: SeFaConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self._directions: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None

    def fit_context(self, ctx: FitContext) -> SeFa:
        """Fit on ``ctx.layer_or_weight`` (the first projection of the code)."""
        return self.fit(ctx.require("layer_or_weight", "sefa"))

    def fit(self, layer_or_weight: nn.Module | torch.Tensor) -> SeFa:
        """Compute the directions from a layer or its weight ``(out, d)``."""
        weight = getattr(layer_or_weight, "weight", layer_or_weight)
        weight = check_tensor(weight.detach(), "weight", min_dims=2)
        if weight.dim() != 2:
            raise InputError(f"weight: expected a 2-D weight (out, d), got {tuple(weight.shape)}")
        gram = weight.mT @ weight
        values, vectors = torch.linalg.eigh(0.5 * (gram + gram.mT))
        k = min(self.config.num_directions, weight.shape[1])
        self.eigenvalues = values.flip(-1)[:k]
        self._directions = vectors.flip(-1)[:, :k]
        return self

    @property
    def directions(self) -> torch.Tensor:
        """``(d, K)`` unit directions, columns by decreasing eigenvalue of ``A^T A``."""
        require_fitted(self._directions, "sefa", "directions")
        return self._directions

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int = 10, step_size: float = 0.5
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` from ``z0 (B, d)`` along direction ``k``."""
        directions = self.directions
        check_index(k, directions.shape[1], "sefa")
        z = check_latents(z0, directions.shape[0])
        return linear_path(z, directions[:, k], steps, step_size)
