"""Make any eigendecomposition forward differentiable with a pluggable gradient rule.

:func:`eigenflow.core.spectral.eigh_with_rule` differentiates ``torch.linalg.eigh``; solvers
with their own forward (e.g. ``batched-ed``) wrap it with :func:`eigh_autograd`, which runs the
forward without recording a graph and gives it the same backward (thesis 000, Eq. 3.6):
``dl/dA = sym(V (diag(dl/dL) + F o (V^T dl/dV)) V^T)`` with ``F = rule(L)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .spectral import GradientRule, exact_rule, symmetrize

__all__ = ["EighForward", "eigh_autograd", "eigh_backward"]

EighForward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def eigh_backward(
    L: torch.Tensor,
    V: torch.Tensor,
    grad_L: torch.Tensor | None,
    grad_V: torch.Tensor | None,
    rule: GradientRule,
) -> torch.Tensor:
    """Gradient with respect to symmetric ``A (..., n, n)`` of a loss of ``(L, V)``.

    ``L (..., n)`` ascending eigenvalues, ``V (..., n, n)`` eigenvectors as columns,
    ``grad_L``/``grad_V`` the incoming gradients (``None`` for none), ``rule(L) -> F``.
    """
    inner = torch.zeros_like(V)
    if grad_V is not None:
        inner = rule(L) * (V.mT @ grad_V)
    if grad_L is not None:
        inner = inner + torch.diag_embed(grad_L)
    return symmetrize(V @ inner @ V.mT)


class _EighAutograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A: torch.Tensor, forward_fn: EighForward, rule: GradientRule):  # type: ignore[override]
        L, V = forward_fn(A)
        ctx.rule = rule
        ctx.save_for_backward(L, V)
        return L, V

    @staticmethod
    def backward(ctx, grad_L: torch.Tensor | None, grad_V: torch.Tensor | None):  # type: ignore[override]
        L, V = ctx.saved_tensors
        return eigh_backward(L, V, grad_L, grad_V, ctx.rule), None, None


def eigh_autograd(
    forward_fn: EighForward, A: torch.Tensor, rule: GradientRule = exact_rule
) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward_fn(A)`` made differentiable with the eigendecomposition backward of ``rule``.

    Parameters
    ----------
    forward_fn
        Maps symmetric ``A (..., n, n)`` to eigenvalues ascending ``(..., n)`` and orthonormal
        eigenvectors ``(..., n, n)``. It runs without autograd recording.
    A
        Symmetric input ``(..., n, n)``.
    rule
        Gradient rule ``L (..., n) -> F (..., n, n)`` (see :mod:`eigenflow.core.spectral`).

    Returns
    -------
    tuple of Tensor
        ``(L, V)`` from ``forward_fn``, differentiable with respect to ``A``. Not supported
        under ``torch.func`` transforms (no vmap rule); ordinary autograd is.
    """
    return _EighAutograd.apply(A, forward_fn, rule)
