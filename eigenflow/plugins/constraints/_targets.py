"""What a constraint can attach to: a layer with a ``weight``, a raw parameter, or a list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...core.errors import InputError, NotSupportedError

__all__ = ["Slot", "as_matrix", "resolve_slots"]


class Slot:
    """One constrained weight: ``module.weight`` of a layer, or a raw parameter."""

    def __init__(self, module: nn.Module | None = None, param: nn.Parameter | None = None):
        self.module = module
        self.param = param

    @property
    def label(self) -> str:
        return type(self.module).__name__ if self.module is not None else "parameter"

    def weight(self) -> torch.Tensor:
        """The weight as the model sees it (after any parametrization)."""
        return self.module.weight if self.module is not None else self.param

    def leaf(self) -> nn.Parameter:
        """The parameter the optimizer updates (the unconstrained one under a parametrization)."""
        if self.param is not None:
            return self.param
        if parametrize.is_parametrized(self.module, "weight"):
            entry = self.module.parametrizations.weight
            if not hasattr(entry, "original"):
                raise NotSupportedError(
                    f"{self.label}.weight is parametrized by several tensors (e.g. 'householder'); "
                    "gradient and learning-rate constraints need a single weight parameter"
                )
            return entry.original
        return self.module.weight

    def require_module(self, constraint: str) -> nn.Module:
        if self.module is None:
            raise NotSupportedError(
                f"constraint {constraint!r} reparametrizes a weight and needs a module with a "
                "'weight' (nn.Linear, nn.Conv*), got a raw parameter"
            )
        return self.module


def _slot(item: Any) -> Slot:
    if isinstance(item, nn.Parameter):
        if item.dim() < 2:
            raise InputError(
                f"target: expected a parameter with at least 2 dimensions, got shape "
                f"{tuple(item.shape)}"
            )
        return Slot(param=item)
    if isinstance(item, nn.Module):
        weight = getattr(item, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            raise InputError(
                f"target: expected a layer with a 'weight' of at least 2 dimensions "
                f"(nn.Linear, nn.Conv*), got {type(item).__name__}"
            )
        return Slot(module=item)
    raise InputError(
        f"target: expected an nn.Module with a weight, an nn.Parameter, or a list of them, "
        f"got {type(item).__name__}"
    )


def resolve_slots(target: Any) -> list[Slot]:
    """Normalise ``target`` (layer, parameter, or an iterable of them) to slots."""
    if isinstance(target, nn.Parameter | nn.Module):
        return [_slot(target)]
    if isinstance(target, Iterable) and not isinstance(target, torch.Tensor | str):
        slots = [_slot(item) for item in target]
        if not slots:
            raise InputError("target: expected at least one layer or parameter, got none")
        return slots
    raise InputError(
        f"target: expected an nn.Module with a weight, an nn.Parameter, or a list of them, "
        f"got {type(target).__name__}"
    )


def as_matrix(W: torch.Tensor) -> torch.Tensor:
    """``(out, in, *kernel)`` weights as ``(out, in * prod(kernel))`` matrices (a view)."""
    return W.reshape(W.shape[0], -1)
