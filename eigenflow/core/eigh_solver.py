"""The shared code path of the eigendecomposition solvers (the ``eig`` family and
``batched-ed``): exact ``eigh`` forward, a
gradient rule for the backward (:mod:`eigenflow.core.spectral`), and the matrix functions
built from the eigenpairs (thesis 000, Eq. 3.2-3.3)."""

from __future__ import annotations

from typing import ClassVar

import torch

from .config import floating, option, optional
from .solver import Solver
from .spectral import (
    GradientRule,
    canonical_signs,
    eigenvalue_floor,
    eigh_with_rule,
    exact_rule,
    function_of_eigenpairs,
)

__all__ = ["EighSolver", "eps_option", "gate_gradient"]


def eps_option() -> float | None:
    """The ``eps`` config field shared by the eigendecomposition solvers."""
    return option(
        None,
        validator=optional(floating(0.0, 1.0)),
        help="relative eigenvalue floor eps * lambda_max for sqrt/invsqrt and the gradient "
        "rule (None: the dtype's machine epsilon; 0: no floor for sqrt/invsqrt)",
    )


class _GateGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``mask``."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, mask: torch.Tensor):  # type: ignore[override]
        ctx.save_for_backward(mask)
        return X.view_as(X)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def gate_gradient(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``X`` unchanged, with its gradient multiplied by ``mask`` (broadcast to ``X``).

    Used to let only some eigenpairs carry gradient (SVD-PI, SVD-TopN): ``mask`` of shape
    ``(..., n)`` gates eigenvalues, ``(..., 1, n)`` gates eigenvector columns.
    """
    return _GateGradient.apply(X, mask.to(X.dtype))


class EighSolver(Solver):
    """A solver whose forward is ``torch.linalg.eigh`` and whose backward uses
    :meth:`gradient_rule` for the ``F``/``K`` matrix of Eq. 3.6.

    Subclasses override :meth:`gradient_rule` and, to let only some eigenpairs carry gradient
    (SVD-PI, SVD-TopN), :meth:`gradient_mask`. The forward is always the exact ``eigh``.
    Config fields used here: ``eps`` (relative eigenvalue floor for the matrix functions;
    ``None`` means the dtype's machine epsilon).
    """

    provides_eigh: ClassVar[bool] = True
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst); the same
    # for every solver sharing this exact eigh forward. Float32 inverse roots are limited by
    # eigh's float32 eigenvalues (absolute error ~eps lambda_max).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (2e-5, 2e-5, 2e-5, 2e-5, 5e-5, 1e-4, 5e-4),
        ("invsqrt", torch.float32): (2e-5, 2e-5, 1e-4, 5e-4, 1e-2, 5e-2, 5e-1),
        ("sqrt", torch.float64): (5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14),
        ("invsqrt", torch.float64): (5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14),
    }

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        """``F (..., n, n)`` from eigenvalues ``(..., n)``; the exact rule by default."""
        return exact_rule(L)

    def gradient_mask(self, L: torch.Tensor) -> torch.Tensor | None:
        """Which eigenpairs carry gradient: ``None`` (all, the default) or a ``(..., n)``
        0/1 tensor; eigenvalues and eigenvector columns with 0 get no gradient."""
        return None

    def _rule(self) -> GradientRule:
        return self.gradient_rule

    def _decompose(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``eigh`` with this solver's backward rule and gradient mask."""
        L, V = eigh_with_rule(A, self._rule())
        mask = self.gradient_mask(L.detach())
        if mask is not None:
            L = gate_gradient(L, mask)
            V = gate_gradient(V, mask.unsqueeze(-2))
        return L, V

    def _eigh(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L, V = self._decompose(A)
        return L, canonical_signs(V)

    def _eigenpairs(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenpairs used for the matrix functions (floored eigenvalues)."""
        L, V = self._decompose(A)
        eps = self.config.eps
        return eigenvalue_floor(L, torch.finfo(A.dtype).eps if eps is None else eps), V

    def _sqrt(self, A: torch.Tensor) -> torch.Tensor:
        L, V = self._eigenpairs(A)
        return function_of_eigenpairs(L, V, torch.sqrt)

    def _invsqrt(self, A: torch.Tensor) -> torch.Tensor:
        L, V = self._eigenpairs(A)
        return function_of_eigenpairs(L, V, torch.rsqrt)

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L, V = self._eigenpairs(A)
        return function_of_eigenpairs(L, V, torch.sqrt), function_of_eigenpairs(L, V, torch.rsqrt)
