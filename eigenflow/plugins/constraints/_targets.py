"""What a constraint can attach to: a layer with a ``weight``, a raw parameter, or a list;
and the all-or-nothing rule every ``attach`` follows (:func:`undo_on_error`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...core.errors import InputError, NotSupportedError

__all__ = [
    "Slot",
    "as_matrix",
    "layer_name",
    "parametrization_names",
    "resolve_slots",
    "undo_on_error",
    "weight_shape",
]


@contextmanager
def undo_on_error(undo: Callable[[], None]) -> Iterator[None]:
    """Make an ``attach`` all-or-nothing: if the body raises, call ``undo`` and re-raise.

    ``undo`` must put back what the body changed so far (for the constraints: their own
    ``detach``, with ``restore=True`` for parametrizations), so that a failed
    ``attach([a, b])`` leaves ``a`` unconstrained and the constraint detached, ready for a
    retry. Should ``undo`` itself fail, the original error is raised with a note saying so.
    """
    try:
        yield
    except BaseException as error:
        try:
            undo()
        except Exception as undo_error:  # keep the first error: it says what was wrong
            error.add_note(f"eigenflow could not undo the partial attach: {undo_error!r}")
        raise


def parametrization_names(module: nn.Module) -> list[str]:
    """The parametrizations of ``module.weight``, first to last, by constraint name.

    An eigenflow parametrization names its constraint in a class attribute ``constraint``
    (e.g. ``'orth-weight'``); any other is named by its class.
    """
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [
        getattr(p, "constraint", None) or type(p).__name__ for p in module.parametrizations.weight
    ]


class Slot:
    """One constrained weight: ``module.weight`` of a layer, or a raw parameter."""

    def __init__(self, module: nn.Module | None = None, param: nn.Parameter | None = None):
        self.module = module
        self.param = param

    @property
    def label(self) -> str:
        return layer_name(self.module) if self.module is not None else "parameter"

    def weight(self) -> torch.Tensor:
        """The weight as the model sees it (after any parametrization)."""
        return self.module.weight if self.module is not None else self.param

    def leaf(self, constraint: str | None = None) -> nn.Parameter:
        """The parameter the optimizer updates (the unconstrained one under a parametrization).

        Raises :class:`~eigenflow.NotSupportedError` (naming ``constraint``, the one asking)
        when the weight is parametrized by several tensors (``householder``).
        """
        if self.param is not None:
            return self.param
        if parametrize.is_parametrized(self.module, "weight"):
            entry = self.module.parametrizations.weight
            if not hasattr(entry, "original"):
                names = " + ".join(repr(n) for n in parametrization_names(self.module))
                who = "this constraint" if constraint is None else f"constraint {constraint!r}"
                raise NotSupportedError(
                    f"{who} cannot act on {self.label}.weight "
                    f"{weight_shape(self.module)}: it is parametrized by {names} through "
                    "several tensors (householder: its reflector vectors), not the single weight "
                    "parameter that gradient and learning-rate constraints act on"
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


def layer_name(module: nn.Module) -> str:
    """The class name of ``module`` as the user wrote it (``Linear``, not the
    ``ParametrizedLinear`` subclass that a parametrization swaps in)."""
    cls = type(module)
    if parametrize.is_parametrized(module) and cls.__name__.startswith("Parametrized"):
        cls = cls.__bases__[0]
    return cls.__name__


def _weight_size(module: nn.Module) -> torch.Size | None:
    """The shape of ``module.weight`` (``None`` if it has no tensor ``weight``), read without
    evaluating a parametrization (that would, e.g., advance ``spectral-norm``'s power
    iteration): from the unconstrained tensor, whose shape the parametrized weight has, or
    from the parametrization's own ``shape`` (``householder``); evaluated only for a
    several-tensor parametrization that has no ``shape``."""
    if parametrize.is_parametrized(module, "weight"):
        chain = module.parametrizations.weight
        if hasattr(chain, "original"):
            return chain.original.shape
        shape = getattr(chain[0], "shape", None)
        return torch.Size(shape) if shape is not None else module.weight.shape  # last resort
    weight = getattr(module, "weight", None)
    return weight.shape if isinstance(weight, torch.Tensor) else None


def weight_shape(module: nn.Module) -> str:
    """``(out x in x ...)``: the shape of ``module.weight`` for messages (not evaluated)."""
    shape = _weight_size(module)
    return "" if shape is None else "(" + " x ".join(str(n) for n in shape) + ")"


def _slot(item: Any) -> Slot:
    if isinstance(item, nn.Parameter):
        if item.dim() < 2:
            raise InputError(
                f"target: expected a parameter with at least 2 dimensions, got shape "
                f"{tuple(item.shape)}"
            )
        return Slot(param=item)
    if isinstance(item, nn.Module):
        shape = _weight_size(item)
        if shape is None or len(shape) < 2:
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
        seen: dict[int, int] = {}
        for i, slot in enumerate(slots):
            obj = slot.module if slot.module is not None else slot.param
            if id(obj) in seen:
                raise InputError(
                    f"target: item {i} is the same {slot.label} as item {seen[id(obj)]}; "
                    "expected each layer or parameter at most once"
                )
            seen[id(obj)] = i
        return slots
    raise InputError(
        f"target: expected an nn.Module with a weight, an nn.Parameter, or a list of them, "
        f"got {type(target).__name__}"
    )


def as_matrix(W: torch.Tensor) -> torch.Tensor:
    """``(out, in, *kernel)`` weights as ``(out, in * prod(kernel))`` matrices (a view)."""
    return W.reshape(W.shape[0], -1)
