"""A model whose training loss adds the penalties of attached constraints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["WithPenalties"]


class WithPenalties(nn.Module):
    """``model`` trained with ``sum(c.penalty() for c in constraints)`` added to its loss.

    For a model with update phases (:class:`~eigenflow.runtime.UpdatePhase`) the penalties
    join only the loss of ``phase`` (e.g. a GAN's generator phase ``"g"``); for a one-phase
    model (``loss(batch)``) they join its loss. The sum is logged as ``penalty`` (detached);
    every other call goes to ``model``, whose parameters the engine sees under ``model.``.

    Parameters
    ----------
    model
        The model to train (``loss(batch)`` or ``loss(batch, phase=...)``).
    constraints
        Objects with ``penalty() -> Tensor | None`` (attached constraints).
    phase
        The update phase whose loss takes the penalties.
    """

    def __init__(self, model: nn.Module, constraints: Sequence[Any], phase: str = "g"):
        super().__init__()
        self.model = model
        self.constraints = list(constraints)
        self.phase = phase

    def update_phases(self) -> list[Any]:
        return self.model.update_phases()

    def loss(self, batch: Any, phase: str | None = None) -> dict[str, torch.Tensor]:
        out = dict(self.model.loss(batch) if phase is None else self.model.loss(batch, phase=phase))
        if phase in (None, self.phase):
            terms = [p for c in self.constraints if (p := c.penalty()) is not None]
            if terms:
                penalty = sum(terms)
                out["loss"] = out["loss"] + penalty
                out["penalty"] = penalty.detach()
        return out
