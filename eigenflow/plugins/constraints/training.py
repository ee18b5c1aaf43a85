"""Training helpers: attach several constraints in the right order, and record the
conditioning of constrained weights (or of a layer's covariance) at every optimizer step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ...core.component import Constraint
from ...core.errors import InputError
from ...core.polar import condition_number, orthogonality_error
from ._targets import as_matrix, resolve_slots, undo_on_error
from .gradient import _StepHookConstraint

__all__ = ["ConstraintSet", "MetricRecorder"]


class ConstraintSet:
    """Several constraints on the same target, attached in a safe order.

    Parametrizations (``orth-weight``, ``householder``, ``spectral-norm``) first, then
    penalties, then gradient treatments (``nog`` before ``olr``, so that ``eta*`` is computed on
    the orthogonal gradient; thesis 000 Table 3.12's NOG+OW+OLR). ``detach`` runs in reverse.

    Examples
    --------
    >>> cs = ConstraintSet([ef.create("constraint", n) for n in ("olr", "nog", "orth-weight")])
    >>> cs.attach(layer)                  # doctest: +SKIP
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)  # after the parametrizations
    >>> cs.attach_optimizer(opt)          # doctest: +SKIP
    >>> loss = task_loss + cs.penalty()   # doctest: +SKIP
    """

    def __init__(self, constraints: Iterable[Constraint]):
        self.constraints = sorted(constraints, key=lambda c: getattr(c, "order", 50))
        self._target: Any = None
        self._optimizer_attached: list[Constraint] = []

    def attach(self, target: Any, optimizer: torch.optim.Optimizer | None = None) -> ConstraintSet:
        """Attach every constraint; with ``optimizer`` the step hooks are registered too.

        Parametrizations create new parameters: when one is in the set, build the optimizer
        afterwards and call :meth:`attach_optimizer`. All or nothing: if one constraint
        refuses, those this call attached are detached again (parametrizations with
        ``restore=True``) before the error is raised.
        """
        chosen = [
            c for c in self.constraints if optimizer is not None or not _needs_optimizer(c)
        ]  # without an optimizer, gradient treatments wait for attach_optimizer
        self._attach_all(chosen, target, optimizer)
        self._target = target
        return self

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> ConstraintSet:
        """Attach the gradient / learning-rate treatments to ``optimizer`` (all or nothing)."""
        chosen = [
            c for c in self.constraints if _needs_optimizer(c) and c not in self._optimizer_attached
        ]
        self._attach_all(chosen, self._target, optimizer)
        return self

    def _attach_all(self, chosen: list[Constraint], target: Any, optimizer: Any) -> None:
        done: list[Constraint] = []
        with undo_on_error(lambda: _detach_all(done, restore=True)):
            for c in chosen:
                c.attach(target, optimizer=optimizer)
                done.append(c)
        self._optimizer_attached.extend(done)

    def penalty(self) -> torch.Tensor | float:
        """Sum of the constraints' penalties (0 when none adds one)."""
        terms = [p for c in self.constraints if (p := c.penalty()) is not None]
        return sum(terms) if terms else 0.0

    def detach(self, **kwargs: Any) -> None:
        """Detach in reverse order (keyword arguments go to parametrization constraints)."""
        _detach_all(self._optimizer_attached, **kwargs)
        self._optimizer_attached = []


def _needs_optimizer(c: Constraint) -> bool:
    return isinstance(c, _StepHookConstraint)


def _detach_all(constraints: list[Constraint], **kwargs: Any) -> None:
    """Detach ``constraints`` last to first; ``kwargs`` go to parametrization constraints."""
    for c in reversed(constraints):
        if hasattr(c, "parametrizations"):
            c.detach(**kwargs)
        else:
            c.detach()


class MetricRecorder:
    """Record ``condition-number`` and ``orthogonality-error`` of weights at every step.

    Attach to an optimizer (step post-hook) or call :meth:`record` yourself. Values are kept
    as tensors on the device (no host synchronisation per step) and converted by
    :meth:`history`.

    Parameters
    ----------
    target
        A layer with a weight, a parameter, or a list of them (their current, constrained
        weights are measured).
    covariance
        Optional callable returning ``(..., d, d)`` covariance matrices (e.g. the input of a
        whitening layer, captured by a forward hook); its condition number (Eq. 3.47) is
        recorded as ``covariance_condition``.
    """

    def __init__(self, target: Any, covariance: Callable[[], torch.Tensor] | None = None):
        self._slots = resolve_slots(target)
        self._covariance = covariance
        self._rows: list[dict[str, torch.Tensor]] = []
        self._handle: Any = None

    def attach(self, optimizer: torch.optim.Optimizer) -> MetricRecorder:
        """Record after every ``optimizer.step()``."""
        self._handle = optimizer.register_step_post_hook(lambda *_: self.record())
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @torch.no_grad()
    def record(self) -> None:
        """Measure now."""
        row = {}
        for i, slot in enumerate(self._slots):
            W = as_matrix(slot.weight().detach())
            row[f"condition_number/{i}"] = condition_number(W)
            row[f"orthogonality_error/{i}"] = orthogonality_error(W)
        if self._covariance is not None:
            C = self._covariance()
            if C is None:
                raise InputError("covariance: the callable returned None (no forward yet?)")
            row["covariance_condition"] = condition_number(C.detach(), symmetric=True).mean()
        self._rows.append(row)

    def history(self) -> dict[str, list[float]]:
        """Per-metric lists over the recorded steps (one host transfer)."""
        if not self._rows:
            return {}
        keys = list(self._rows[0])
        table = torch.stack(
            [torch.stack([r[k].to(torch.float64) for k in keys]) for r in self._rows]
        ).cpu()
        return {k: table[:, j].tolist() for j, k in enumerate(keys)}
