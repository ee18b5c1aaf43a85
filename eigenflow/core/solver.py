"""The solver interface: matrix square root, inverse square root and (optionally) ``eigh``
of batches of symmetric matrices ``(..., n, n)``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .checks import check_symmetric
from .component import Component
from .errors import NotSupportedError

__all__ = ["Solver"]


class Solver(Component):
    """Base of every solver plugin.

    Subclasses implement :meth:`_sqrt_invsqrt` (and :meth:`_sqrt`, :meth:`_invsqrt` when one
    factor is cheaper alone) on a flat batch ``(B, n, n)``; solvers that decompose also
    implement :meth:`_eigh` and set ``provides_eigh``. The public methods validate the input
    (unless ``check=False``), flatten any leading batch dimensions and restore them.

    Class attributes describe what a solver promises; the conformance suite
    (:mod:`eigenflow.testing`) checks each promise:

    ``provides_eigh``
        ``eigh`` is available.
    ``exact_gradient``
        The backward is the exact derivative of the forward (checked with ``gradcheck``).
    ``robust_gradient``
        Gradients stay finite on repeated eigenvalues (identity, rank-deficient input).
    ``forward_rtol``
        Relative Frobenius error of ``sqrt`` on well-conditioned SPD matrices (condition
        number <= 10), per dtype, at the default config.
    ``trace_blocker``
        ``None`` when every method, forward and backward, traces whole under
        ``torch.compile(fullgraph=True)`` with ``check=False`` (no host synchronisation, no
        branch on a tensor's value); otherwise why not. Either way the solver compiles (with
        graph breaks where it declares them) and gives the eager gradients.
    """

    kind = "solver"
    provides_eigh: ClassVar[bool] = False
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = False
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-4, torch.float64: 1e-10}
    trace_blocker: ClassVar[str | None] = None

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    # ------------------------------------------------------------------ public API

    def sqrt(self, A: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """Matrix square root ``A^(1/2)`` of symmetric PSD ``A`` of shape ``(..., n, n)``."""
        flat, shape = self._prepare(A, check, psd=True)
        return self._sqrt(flat).reshape(shape)

    def invsqrt(self, A: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """Inverse square root ``A^(-1/2)`` of symmetric positive-definite ``A``."""
        flat, shape = self._prepare(A, check, psd=True)
        return self._invsqrt(flat).reshape(shape)

    def sqrt_invsqrt(
        self, A: torch.Tensor, *, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both ``A^(1/2)`` and ``A^(-1/2)`` (cheaper than two calls for most solvers)."""
        flat, shape = self._prepare(A, check, psd=True)
        root, inv_root = self._sqrt_invsqrt(flat)
        return root.reshape(shape), inv_root.reshape(shape)

    def eigh(self, A: torch.Tensor, *, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (ascending, ``(..., n)``) and eigenvectors (columns, ``(..., n, n)``)."""
        if not self.provides_eigh:
            raise NotSupportedError(
                f"solver {self.name!r} computes matrix functions without an eigendecomposition "
                "and has no eigh; use a decomposition solver such as 'svd'"
            )
        flat, shape = self._prepare(A, check)
        values, vectors = self._eigh(flat)
        return values.reshape(shape[:-1]), vectors.reshape(shape)

    # ------------------------------------------------------------------ to implement

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _sqrt(self, A: torch.Tensor) -> torch.Tensor:
        return self._sqrt_invsqrt(A)[0]

    def _invsqrt(self, A: torch.Tensor) -> torch.Tensor:
        return self._sqrt_invsqrt(A)[1]

    def _eigh(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _prepare(
        A: torch.Tensor, check: bool, psd: bool = False
    ) -> tuple[torch.Tensor, torch.Size]:
        """Validate ``A`` (``check``: finite, symmetric and, with ``psd``, positive
        semidefinite; see :mod:`eigenflow.core.checks` for eager and compiled behaviour) and
        flatten its batch dimensions to ``(B, n, n)``."""
        if check:
            check_symmetric(A, "A", psd=psd)
        n = A.shape[-1]
        return A.reshape(-1, n, n), A.shape

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
