"""Traversal ``householder``: the latent directions of a layer constrained by the
``householder`` constraint (thesis 000, Sec. 4.4, Eq. 4.5)."""

from __future__ import annotations

from typing import Any

import torch

from ...core.component import FitContext, Traversal
from ...core.config import config, integer, option
from ...core.errors import InputError
from .common import check_index, check_latents, linear_path, require_fitted

__all__ = ["HouseholderDirections", "HouseholderDirectionsConfig"]


@config
class HouseholderDirectionsConfig:
    """Options of the ``householder`` traversal (thesis 000, Sec. 4.4)."""

    layer: int = option(
        0, validator=integer(0), help="which constrained layer of the constraint to read"
    )


class HouseholderDirections(Traversal):
    """Straight paths along the columns of ``V`` of a Householder-constrained projection
    ``W = U S V^T`` (Eq. 4.5): with ``W`` orthogonal low-rank, each column of ``V`` moves the
    projected code along one orthogonal semantic axis.

    ``fit(constraint)`` takes an attached ``householder`` constraint (or anything with a
    ``directions(layer)`` method returning ``(d, N)``); ``directions`` is ``(d, N)``.
    """

    Config = HouseholderDirectionsConfig
    source = "000 (Song 2023), Sec. 4.4, Eq. 4.5"

    def __init__(self, config: HouseholderDirectionsConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self._directions: torch.Tensor | None = None

    def fit_context(self, ctx: FitContext) -> HouseholderDirections:
        """Fit on ``ctx.constraint`` (an attached ``householder`` constraint)."""
        return self.fit(ctx.require("constraint", "householder"))

    def fit(self, constraint: Any) -> HouseholderDirections:
        """Read the directions from an attached ``householder`` constraint."""
        getter = getattr(constraint, "directions", None)
        if not callable(getter):
            raise InputError(
                f"constraint: expected an attached 'householder' constraint, got "
                f"{type(constraint).__name__}"
            )
        self._directions = getter(self.config.layer).detach()
        return self

    @property
    def directions(self) -> torch.Tensor:
        """``(d, N)`` orthonormal directions."""
        require_fitted(self._directions, "householder", "directions")
        return self._directions

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int = 10, step_size: float = 0.5
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` from ``z0`` along column ``k`` of ``V``."""
        directions = self.directions
        check_index(k, directions.shape[1], "householder")
        z = check_latents(z0, directions.shape[0])
        return linear_path(z, directions[:, k], steps, step_size)
