"""The shared code path of the eigendecomposition solvers: exact ``eigh`` forward, a
gradient rule for the backward (:mod:`eigenflow.core.spectral`), and the matrix functions
built from the eigenpairs (thesis 000, Eq. 3.2-3.3)."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.solver import Solver
from ...core.spectral import (
    GradientRule,
    eigenvalue_floor,
    eigh_with_rule,
    exact_rule,
    function_of_eigenpairs,
)

__all__ = ["EighSolver", "canonical_signs"]


def canonical_signs(V: torch.Tensor) -> torch.Tensor:
    """Flip each eigenvector (column) so its entry of largest magnitude is positive.

    Makes the returned eigenvectors deterministic (LAPACK's signs are arbitrary). Ties in
    magnitude resolve to the first such entry. The flip is differentiated as a constant.
    """
    idx = V.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sign(torch.gather(V, -2, idx)).detach()
    return V * torch.where(sign == 0, torch.ones_like(sign), sign)


class EighSolver(Solver):
    """A solver whose forward is ``torch.linalg.eigh`` and whose backward uses
    :meth:`gradient_rule` for the ``F``/``K`` matrix of Eq. 3.6.

    Subclasses override :meth:`gradient_rule` (and may override :meth:`_eigenpairs` to change
    what the forward keeps, e.g. SVD-TopN). Config fields used here: ``eps`` (relative
    eigenvalue floor for the matrix functions; ``None`` means the dtype's machine epsilon).
    """

    provides_eigh: ClassVar[bool] = True

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        """``F (..., n, n)`` from eigenvalues ``(..., n)``; the exact rule by default."""
        return exact_rule(L)

    def _rule(self) -> GradientRule:
        return self.gradient_rule

    def _eigh(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L, V = eigh_with_rule(A, self._rule())
        return L, canonical_signs(V)

    def _eigenpairs(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenpairs used for the matrix functions (floored eigenvalues)."""
        L, V = eigh_with_rule(A, self._rule())
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
