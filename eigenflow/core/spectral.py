"""Eigendecomposition with a pluggable backward rule, shared by every eigh-based solver.

The backward of ``A = V diag(L) V^T`` (thesis 000, Eq. 3.6, written for ascending eigenvalues)
is ``dl/dA = V (diag(dl/dL) + F o (V^T dl/dV)) V^T``, symmetrised, where ``F_ij`` stands for
``1/(lambda_j - lambda_i)`` off the diagonal and 0 on it. A *gradient rule* is a function
``rule(L) -> F`` of the eigenvalues ``(..., n)`` returning ``(..., n, n)``; the exact rule
(:func:`exact_rule`) and the smoothed rules of the SVD-Padé family plug in here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "EighForward",
    "GradientRule",
    "eigenvalue_floor",
    "eigh_autograd",
    "eigh_backward",
    "eigh_with_rule",
    "exact_rule",
    "function_of_eigenpairs",
    "symmetrize",
]

GradientRule = Callable[[torch.Tensor], torch.Tensor]


def symmetrize(X: torch.Tensor) -> torch.Tensor:
    """``(X + X^T) / 2`` over the last two dimensions, as ``X/2 + X^T/2`` (the same rounding,
    but no overflow for entries above half the range)."""
    return 0.5 * X + 0.5 * X.mT


def exact_rule(L: torch.Tensor) -> torch.Tensor:
    """``F_ij = 1/(lambda_j - lambda_i)`` for ``i != j``, 0 on the diagonal (Eq. 3.6).

    Infinite where two eigenvalues coincide: the instability SVD-Padé removes. The diagonal
    divides by 1, not 0, before it is masked: ``where(eye, 0, 1/0)`` is right in value, but
    its derivative ``0 * inf = NaN`` made every second-order gradient NaN, even on distinct
    eigenvalues.
    """
    diff = L.unsqueeze(-2) - L.unsqueeze(-1)  # diff[i, j] = lambda_j - lambda_i
    eye = torch.eye(L.shape[-1], dtype=torch.bool, device=L.device)
    safe = torch.where(eye, torch.ones_like(diff), diff)
    return torch.where(eye, torch.zeros_like(diff), 1.0 / safe)


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
    ``grad_L``/``grad_V`` the incoming gradients (``None`` for none), ``rule(L) -> F``:
    ``sym(V (diag(dl/dL) + F o (V^T dl/dV)) V^T)`` (Eq. 3.6).
    """
    inner = torch.zeros_like(V)
    if grad_V is not None:
        inner = rule(L) * (V.mT @ grad_V)
    if grad_L is not None:
        inner = inner + torch.diag_embed(grad_L)
    return symmetrize(V @ inner @ V.mT)


class _EighAutograd(torch.autograd.Function):
    """An eigendecomposition forward with the backward of a given gradient rule.

    The backward is written in differentiable tensor operations, so a gradient taken with
    ``create_graph=True`` can be differentiated again. Every derivative of the eigenpairs in
    that double backward, including those of the eigenpairs the downstream functions saved,
    comes from this same node, i.e. from ``rule``: the double backward is the derivative of
    the backward only where ``rule`` equals the exact rule of Eq. 3.6 (``exact_rule``; the
    SVD-Padé rule to rounding on resolvable gaps). Rules that drop or truncate couplings
    (SVD-PI, SVD-TopN, SVD-Trunc, SVD-Clip, SVD-Taylor near ties) give a wrong double
    backward; their solvers declare ``second_order = False``.
    """

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
        eigenvectors ``(..., n, n)`` (e.g. ``torch.linalg.eigh`` or the ``batched-ed``
        forward). It runs without autograd recording.
    A
        Symmetric input ``(..., n, n)``.
    rule
        Gradient rule ``L (..., n) -> F (..., n, n)``.

    Returns
    -------
    tuple of torch.Tensor
        ``(L, V)``, differentiable with respect to ``A``. Not supported under ``torch.func``
        transforms (no vmap rule); ordinary autograd, batching and CUDA are.
    """
    return _EighAutograd.apply(A, forward_fn, rule)


def eigh_with_rule(
    A: torch.Tensor, rule: GradientRule = exact_rule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable ``torch.linalg.eigh`` of symmetric ``A (..., n, n)`` with backward rule
    ``rule``: eigenvalues ascending ``(..., n)`` and eigenvectors as columns ``(..., n, n)``."""
    return eigh_autograd(torch.linalg.eigh, A, rule)


def canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each eigenvector (column) of ``vectors (..., d, k)`` so that its entry of largest
    magnitude is positive (the first such entry on ties).

    An eigenvector's sign is arbitrary and LAPACK, cuSOLVER and iterative methods choose
    differently; this makes results that follow a direction (paths, traversals) the same on
    every device. The flip is differentiated as a constant.
    """
    index = vectors.abs().argmax(dim=-2, keepdim=True)  # (..., 1, k)
    sign = torch.sign(torch.gather(vectors, -2, index)).detach()
    return vectors * torch.where(sign == 0, torch.ones_like(sign), sign)


def eigenvalue_floor(L: torch.Tensor, eps: float) -> torch.Tensor:
    """Clamp eigenvalues ``(..., n)`` below ``eps * max(|lambda_max|, tiny)`` of each matrix.

    Keeps square roots of PSD matrices with rounding-negative or zero eigenvalues finite, and
    their gradients bounded. The floor itself is not differentiated.
    """
    tiny = torch.finfo(L.dtype).tiny
    floor = (eps * L.abs().amax(dim=-1, keepdim=True)).clamp_min(tiny).detach()
    return torch.maximum(L, floor)


def function_of_eigenpairs(
    L: torch.Tensor, V: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``V diag(fn(L)) V^T`` for eigenvalues ``(..., n)`` and eigenvectors ``(..., n, n)``."""
    return (V * fn(L).unsqueeze(-2)) @ V.mT
