"""Constraints on the gradient and the learning rate: ``nog`` and ``olr`` (thesis 000,
Sec. 3.5.5-3.5.6, Eq. 3.53-3.60; Sec. 4.3).

Both act on the gradients already in ``.grad``, immediately before ``optimizer.step()``: pass
the optimizer to ``attach(target, optimizer=opt)`` and they run as the optimizer's step
pre-hooks, or call ``apply()`` yourself between ``backward()`` and ``step()``. In a training
step ``loss.backward(); clip_grad_norm_(...); opt.step()`` they therefore see the clipped
gradient. NOG's output ``U V^T`` does not depend on the gradient's scale, so clipping does not
change a NOG-constrained weight's update (it still counts the original gradient in the total
norm that scales the other parameters). Several step pre-hooks run in the order they were
attached: attach ``nog`` before ``olr`` so that OLR's ``eta*`` sees the orthogonal gradient
(``ConstraintSet`` does this for you).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.component import Constraint
from ...core.config import config, floating, integer, one_of, option, optional
from ...core.errors import InputError, NotSupportedError
from ...core.polar import POLAR_METHODS, nearest_orthogonal
from ._targets import Slot, as_matrix, resolve_slots, undo_on_error

__all__ = [
    "NOGConfig",
    "NearestOrthogonalGradient",
    "OLRConfig",
    "OptimalLearningRate",
    "optimal_learning_rate",
]


class _StepHookConstraint(Constraint):
    """A constraint that runs ``apply()`` as a step pre-hook of an optimizer."""

    order = 10

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._slots: list[Slot] = []
        self._handles: list[Any] = []
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def attached(self) -> bool:
        return bool(self._slots)

    def attach(
        self, target: Any, optimizer: torch.optim.Optimizer | None = None
    ) -> _StepHookConstraint:
        """Constrain ``target`` (a layer with a weight, a parameter, or a list of them).

        With ``optimizer``, ``apply()`` runs automatically before each ``optimizer.step()``.
        A weight parametrized by several tensors (``householder``) is refused here, with
        :class:`~eigenflow.NotSupportedError`, not at the first step.
        """
        if self.attached:
            raise NotSupportedError(f"constraint {self.name!r} is already attached; detach first")
        slots = resolve_slots(target)
        for slot in slots:
            slot.leaf(self.name)  # the single parameter the gradient treatment acts on
        self._slots = slots
        self.optimizer = optimizer
        if optimizer is not None:
            self._handles.append(optimizer.register_step_pre_hook(self._pre_hook))
        return self

    def detach(self) -> None:
        """Remove the hooks; the layers and the optimizer are left as before ``attach``."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._slots = []
        self.optimizer = None

    def _pre_hook(self, _optimizer: Any, _args: Any, _kwargs: Any) -> None:
        self.apply()

    def apply(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- NOG


@config
class NOGConfig:
    """Options of ``nog`` (thesis 000, Sec. 3.5.5, Eq. 3.53-3.56).

    The thesis uses the SVD (Eq. 3.56); the Newton-Schulz polar iteration is eigenflow's
    decomposition-free alternative (only matrix products).
    """

    method: str = option(
        "svd",
        validator=one_of(POLAR_METHODS),
        help="how to compute U V^T: 'svd' (exact, Eq. 3.56) or 'newton-schulz' (polar iteration)",
    )
    iters: int = option(
        30,
        validator=integer(1, 1000),
        help="Newton-Schulz iterations (about log(||G||_F / sigma_min) / log 1.5 + 5 needed)",
    )


class NearestOrthogonalGradient(_StepHookConstraint):
    """Replace each constrained weight's gradient ``G = U S V^T`` by ``U V^T`` (Eq. 3.56).

    ``U V^T`` solves ``min_R ||G - R||_F`` subject to ``R R^T = I`` (Eq. 3.53); for a
    rectangular ``(m, n)`` gradient it has orthonormal rows (``m <= n``) or columns. Conv
    weights ``(out, in, kh, kw)`` are treated as ``(out, in*kh*kw)``. Gradients of equal shape
    are stacked and orthogonalised in one batched call. Under a parametrization (e.g.
    ``orth-weight``) the gradient of the unconstrained parameter is the one replaced.

    A gradient that is exactly zero (per weight) stays zero, whatever the ``method``: it has no
    nearest orthogonal direction, and a zero gradient must not move the weight. This is decided
    on the device (no host synchronisation).
    """

    Config = NOGConfig
    source = "000 (Song 2023), Sec. 3.5.5, Eq. 3.53-3.56; Sec. 4.3"
    order = 10

    @torch.no_grad()
    def apply(self) -> None:
        """Orthogonalise the current gradients in place (call before ``optimizer.step()``)."""
        groups: dict[tuple, list[torch.Tensor]] = {}
        for slot in self._slots:
            grad = slot.leaf().grad
            if grad is None:
                continue
            key = (tuple(as_matrix(grad).shape), grad.dtype, grad.device)
            groups.setdefault(key, []).append(grad)
        for grads in groups.values():
            G = torch.stack([as_matrix(g) for g in grads])
            R = nearest_orthogonal(G, self.config.method, self.config.iters)
            # a zero gradient has no direction: it stays zero (the SVD would return some
            # orthogonal matrix, a full step); decided on the device, per matrix
            nonzero = G.ne(0).flatten(1).any(dim=1)
            R = torch.where(nonzero[:, None, None], R, torch.zeros_like(R))
            for g, r in zip(grads, R.unbind(0)):
                g.copy_(r.view_as(g))


# --------------------------------------------------------------------------- OLR


def optimal_learning_rate(W: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``eta*`` of Eq. 3.59 for weights ``W`` and gradients ``G`` of shape ``(..., m, n)``.

    ``eta* = (w.w)(l.w) / ((w.w)(l.l) + 2 (l.w)^2)`` with ``w = vec W``, ``l = vec G``; it is the
    first-order stationary point of the thesis's vectorised error (Eq. 3.58). Returns
    ``(...)``; zero where ``G = 0``.
    """
    ww = (W * W).sum(dim=(-2, -1))
    lw = (G * W).sum(dim=(-2, -1))
    ll = (G * G).sum(dim=(-2, -1))
    denom = ww * ll + 2.0 * lw * lw
    return ww * lw / denom.clamp_min(torch.finfo(denom.dtype).tiny)


@config
class OLRConfig:
    """Options of ``olr`` (thesis 000, Sec. 3.5.6, Eq. 3.57-3.60).

    ``lr`` is the learning rate of "the other layers" of the switch Eq. 3.60. The thesis does
    not treat negative ``eta*`` (gradient anti-aligned with the weight); eigenflow clamps the
    learning rate at 0 so that OLR never turns a step into gradient ascent.
    """

    lr: float | None = option(
        None,
        validator=optional(floating(0.0, min_open=True)),
        help="learning rate of the other layers in the switch Eq. 3.60 (None: the optimizer's "
        "lr of the parameter's group, read at every step so schedulers apply)",
    )
    apply_as: str = option(
        "lr",
        validator=one_of(["lr", "grad-scale"]),
        help="'lr': the weight gets its own param group whose lr is set to eta each step (any "
        "optimizer; one host sync per step for all layers); 'grad-scale': the gradient is "
        "multiplied by eta/lr (no sync; exact only for SGD without momentum)",
    )


class OptimalLearningRate(_StepHookConstraint):
    """Per-layer learning rate ``eta = min(eta*, lr)`` (Eq. 3.59-3.60), clamped at 0.

    What "learning rate" means: the optimizer moves the weight by ``lr * d`` with ``d`` its
    update direction; OLR replaces this weight's ``lr`` by ``eta``. For SGD (no momentum)
    ``d = G`` and the update is exactly the thesis's ``W - eta G``. For adaptive optimizers
    (Adam, RMSProp) ``d`` is the preconditioned direction ``m_hat / (sqrt(v_hat) + eps)``, so
    ``eta`` (computed from the raw gradient, as in the thesis) acts as a per-layer step-size
    cap next to the other layers' ``lr``. With ``apply_as='lr'`` a weight that shares a param
    group is moved into its own group (same hyper-parameters) and put back by ``detach``; the
    group's ``lr`` is set to ``eta`` just before ``step()`` and restored right after it, so
    learning-rate schedulers keep seeing their own values.
    """

    Config = OLRConfig
    source = "000 (Song 2023), Sec. 3.5.6, Eq. 3.57-3.60, Proposition 3; Sec. 4.3"
    order = 20

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._groups: list[dict[str, Any]] = []  # own param group per slot
        self._sources: list[tuple[dict[str, Any], int] | None] = []  # (source group, index)
        self._saved_lr: list[Any] = []
        self.last_lr: torch.Tensor | None = None

    def attach(
        self, target: Any, optimizer: torch.optim.Optimizer | None = None
    ) -> OptimalLearningRate:
        super().attach(target, optimizer)
        if optimizer is None:
            return self
        if self.config.apply_as == "lr":
            with undo_on_error(self.detach):
                for slot in self._slots:
                    self._own_group(optimizer, slot.leaf(self.name))
                self._handles.append(optimizer.register_step_post_hook(self._post_hook))
        return self

    def _own_group(self, optimizer: torch.optim.Optimizer, param: nn.Parameter) -> None:
        for group in optimizer.param_groups:
            for index, p in enumerate(group["params"]):
                if p is param:
                    if len(group["params"]) == 1:
                        self._groups.append(group)
                        self._sources.append(None)
                        return
                    group["params"].pop(index)
                    own = {k: v for k, v in group.items() if k != "params"}
                    own["params"] = [param]
                    optimizer.add_param_group(own)
                    self._groups.append(optimizer.param_groups[-1])
                    self._sources.append((group, index))
                    return
        raise InputError(
            f"target: a constrained weight of shape {tuple(param.shape)} is not in the "
            "optimizer's param groups"
        )

    def detach(self) -> None:
        optimizer = self.optimizer
        for group, source in reversed(list(zip(self._groups, self._sources))):
            if source is None or optimizer is None:
                continue
            src, index = source
            optimizer.param_groups[:] = [g for g in optimizer.param_groups if g is not group]
            src["params"].insert(index, group["params"][0])
        self._groups, self._sources, self._saved_lr = [], [], []
        super().detach()

    def _base_lr(self, i: int) -> float:
        if self.config.lr is not None:
            return self.config.lr
        if self._groups:
            source = self._sources[i]
            return (source[0] if source is not None else self._groups[i])["lr"]
        if self.optimizer is not None:
            leaf = self._slots[i].leaf()
            for group in self.optimizer.param_groups:
                if any(p is leaf for p in group["params"]):
                    return group["lr"]
        raise NotSupportedError(
            "olr needs the other layers' learning rate: set the option lr or attach with "
            "optimizer=..."
        )

    @torch.no_grad()
    def learning_rates(self) -> torch.Tensor:
        """``eta = clamp(min(eta*, lr), 0)`` per constrained weight, shape ``(L,)``.

        Weights without a gradient get 0.
        """
        etas = []
        for i, slot in enumerate(self._slots):
            leaf = slot.leaf()
            if leaf.grad is None:
                etas.append(leaf.new_zeros(()))
                continue
            W, G = as_matrix(leaf.detach()), as_matrix(leaf.grad)
            eta = optimal_learning_rate(W, G)
            etas.append(eta.clamp(min=0.0, max=self._base_lr(i)))  # Eq. 3.60
        return torch.stack([e.to(etas[0].dtype) for e in etas])

    @torch.no_grad()
    def apply(self) -> None:
        """Set this step's learning rates (``apply_as='lr'``) or scale the gradients."""
        etas = self.learning_rates()
        self.last_lr = etas
        if self.config.apply_as == "grad-scale":
            for i, slot in enumerate(self._slots):
                grad = slot.leaf().grad
                if grad is not None:
                    grad.mul_(etas[i].to(grad.dtype) / self._base_lr(i))
            return
        if not self._groups:
            raise NotSupportedError(
                "olr with apply_as='lr' sets the optimizer's learning rate: attach it with "
                "optimizer=..., or use apply_as='grad-scale'"
            )
        self._saved_lr = [group["lr"] for group in self._groups]
        for group, eta in zip(self._groups, etas.tolist()):  # one host sync for all layers
            group["lr"] = eta

    def _post_hook(self, _optimizer: Any, _args: Any, _kwargs: Any) -> None:
        for group, lr in zip(self._groups, self._saved_lr):
            group["lr"] = lr
        self._saved_lr = []
