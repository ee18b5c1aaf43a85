"""The solver interface: matrix square root, inverse square root and (optionally) ``eigh``
of batches of symmetric matrices ``(..., n, n)``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .checks import check_symmetric
from .component import Component
from .errors import NotSupportedError

__all__ = ["ENVELOPE_CONDS", "ENVELOPE_MAX_N", "Solver", "first_order_only"]

#: Condition numbers at which a solver's ``error_envelope`` states its forward error: the
#: bound for ``cond`` applies to every input of condition number at most ``cond`` (and above
#: the previous entry).
ENVELOPE_CONDS: tuple[float, ...] = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
#: Largest matrix size an ``error_envelope`` covers.
ENVELOPE_MAX_N = 128

# Built-in solvers whose double backward is exact (named in the refusal message; core cannot
# ask the registry, which sits above it).
SECOND_ORDER_SOLVERS = ("svd", "svd-pade", "batched-ed", "ns", "mpa-lya", "ns-lya", "svd-lya")


class _FirstOrderOnly(torch.autograd.Function):
    """Identity whose backward raises when it runs with ``create_graph=True``.

    ``torch.autograd.grad(..., create_graph=True)`` runs every backward with grad mode on,
    ``create_graph=False`` with it off: :func:`torch.is_grad_enabled` inside ``backward``
    tells them apart without reading any tensor. Under ``torch.compile`` (AOTAutograd) the
    backward is traced once with grad mode off, so the check does not fire there; PyTorch
    then refuses ``create_graph=True`` itself ("compiled with non-empty donated buffers") or
    the compiled gradient's own backward ("does not currently support double backward"), so
    the result is never silently wrong either.
    """

    @staticmethod
    def forward(ctx, name, *tensors):  # type: ignore[override]
        ctx.solver_name = name
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        if torch.is_grad_enabled():
            raise NotSupportedError(
                f"solver {ctx.solver_name!r} does not support second-order gradients "
                "(a gradient taken with create_graph=True, e.g. a Hessian-vector product or a "
                "gradient penalty): it has no exact double backward, and a gradient without its "
                "graph would silently drop the second-order term; use a solver that "
                "declares second_order = True, e.g. "
                + ", ".join(repr(n) for n in SECOND_ORDER_SOLVERS)
            )
        return (None, *grads)


def first_order_only(name: str, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` unchanged (as views), with a backward that raises
    :class:`~eigenflow.core.errors.NotSupportedError` naming solver ``name`` when it is run
    with ``create_graph=True``.

    Ordinary backward passes gradients through untouched. Nothing is wrapped (no autograd
    node) when grad mode is off or no tensor requires grad, so inference is unaffected.
    """
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
        return tensors
    return _FirstOrderOnly.apply(name, *tensors)


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
    ``error_envelope``
        The stated forward accuracy at the default config: ``{(op, dtype): bounds}`` with
        ``op`` ``"sqrt"`` or ``"invsqrt"`` and one bound per condition number of
        :data:`ENVELOPE_CONDS`, the largest relative Frobenius error against a float64
        ``eigh`` reference for SPD input of size ``n <= ENVELOPE_MAX_N`` up to that condition
        number (measured on log-spaced spectra and Wishart covariances by
        ``benchmarks/matfn_envelope.py``, which regenerates the table in ``docs/matfn.rst``).
        Empty: no statement. :meth:`stated_error` reads it; ``eigenflow bench`` flags rows
        above it (or above 1e-2) and the conformance suite checks it at ``n = 8``.
    ``second_order``
        ``True``: the gradient can itself be differentiated (``create_graph=True``, Hessian-
        vector products, gradient penalties) and that double backward is the exact derivative
        of the solver's own backward (checked with ``gradgradcheck`` in float64 on a separated
        spectrum). ``False`` (the default, also for third-party solvers that do not declare
        it): taking a gradient with ``create_graph=True`` raises
        :class:`~eigenflow.core.errors.NotSupportedError` naming the solver, instead of
        returning a gradient that silently lacks its graph. The base class enforces this (see
        :func:`first_order_only`); a solver that declares ``True`` is responsible for it.
    """

    kind = "solver"
    provides_eigh: ClassVar[bool] = False
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = False
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-4, torch.float64: 1e-10}
    #: ``None`` when every method traces whole under ``fullgraph=True``, else why not.
    trace_blocker: ClassVar[str | None] = None
    second_order: ClassVar[bool] = False
    #: The stated forward accuracy ``{(op, dtype): bounds}`` (see the class docstring).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {}

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    # ------------------------------------------------------------------ public API

    def sqrt(self, A: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """Matrix square root ``A^(1/2)`` of symmetric PSD ``A`` of shape ``(..., n, n)``."""
        flat, shape = self._prepare(A, check, psd=True)
        return self._guard(self._sqrt(flat).reshape(shape))

    def invsqrt(self, A: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """Inverse square root ``A^(-1/2)`` of symmetric positive-definite ``A``."""
        flat, shape = self._prepare(A, check, psd=True)
        return self._guard(self._invsqrt(flat).reshape(shape))

    def sqrt_invsqrt(
        self, A: torch.Tensor, *, check: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both ``A^(1/2)`` and ``A^(-1/2)`` (cheaper than two calls for most solvers)."""
        flat, shape = self._prepare(A, check, psd=True)
        root, inv_root = self._sqrt_invsqrt(flat)
        return self._guard(root.reshape(shape), inv_root.reshape(shape))

    def eigh(self, A: torch.Tensor, *, check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (ascending, ``(..., n)``) and eigenvectors (columns, ``(..., n, n)``)."""
        if not self.provides_eigh:
            raise NotSupportedError(
                f"solver {self.name!r} computes matrix functions without an eigendecomposition "
                "and has no eigh; use a decomposition solver such as 'svd'"
            )
        flat, shape = self._prepare(A, check)
        values, vectors = self._eigh(flat)
        return self._guard(values.reshape(shape[:-1]), vectors.reshape(shape))

    @classmethod
    def stated_error(cls, op: str, dtype: torch.dtype, cond: float) -> float | None:
        """The bound :attr:`error_envelope` states for ``op`` (``"sqrt"``/``"invsqrt"``) in
        ``dtype`` on input of condition number ``cond`` (sizes up to :data:`ENVELOPE_MAX_N`,
        default config), or ``None`` where the solver states none (no entry, or ``cond``
        beyond the last condition number covered)."""
        bounds = cls.error_envelope.get((op, dtype))
        if not bounds:
            return None
        for limit, bound in zip(ENVELOPE_CONDS, bounds):
            if cond <= limit * (1.0 + 1e-9):
                return bound
        return None

    # ------------------------------------------------------------------ to implement

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A^(1/2), A^(-1/2))`` of a validated ``(B, n, n)`` batch: what a solver implements."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _sqrt(self, A: torch.Tensor) -> torch.Tensor:
        """``A^(1/2)`` of a ``(B, n, n)`` batch (override if cheaper than :meth:`_sqrt_invsqrt`)."""
        return self._sqrt_invsqrt(A)[0]

    def _invsqrt(self, A: torch.Tensor) -> torch.Tensor:
        """``A^(-1/2)`` of a ``(B, n, n)`` batch (override if cheaper than ``_sqrt_invsqrt``)."""
        return self._sqrt_invsqrt(A)[1]

    def _eigh(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(eigenvalues ascending, eigenvectors)`` of a ``(B, n, n)`` batch."""
        raise NotImplementedError  # pragma: no cover - abstract

    # ------------------------------------------------------------------ helpers

    def _guard(self, *outputs: torch.Tensor) -> Any:
        """The outputs, made to refuse double backward unless ``second_order`` is declared."""
        if not self.second_order:
            outputs = first_order_only(self.name or type(self).__name__, *outputs)
        return outputs[0] if len(outputs) == 1 else outputs

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
