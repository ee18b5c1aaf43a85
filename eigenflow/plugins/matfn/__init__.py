"""Plugin family ``matfn``: matrix square root and inverse square root without (or
with) an eigendecomposition, after thesis 000, Ch. 2 (Song 2023).

The solvers are defined here; the math only they use lives beside them:
:mod:`~eigenflow.plugins.matfn.lyapunov` (the Lyapunov solvers of the backward and the
pre-normalisation scales) and :mod:`~eigenflow.plugins.matfn.polynomials` (matrix
polynomial evaluation). The Taylor and Padé coefficients come from :mod:`eigenflow.core.pade`,
shared with the smoothed eigendecomposition gradients.

Solvers registered here (kind ``solver``):

``mtp-lya``
    Matrix Taylor polynomial forward (Eq. 2.7, Eq. 2.26), Lyapunov backward (Algorithm 2).
``mpa-lya``
    Matrix Padé approximant forward (Eq. 2.8-2.11, Eq. 2.27; by default followed by one step
    of the coupled Padé iteration), Lyapunov backward (Eq. 2.20-2.23 for the square root,
    Eq. 2.38-2.39 for the inverse).
``ns``
    Coupled Newton-Schulz iteration (Eq. 2.3) differentiated by autograd (iSQRT-COV baseline).
``ns-lya``
    One-variable Newton-Schulz iteration (Eq. 2.49) with the Lyapunov backward.
``svd-lya``
    ``torch.linalg.eigh`` forward (Eq. 3.2-3.3) with the Lyapunov backward.

The solvers with a Lyapunov backward take ``backward="lyapunov"`` (the iterative solver,
:func:`eigenflow.plugins.matfn.lyapunov.lyapunov_sign_solve`) or ``backward="exact"`` (the
eigendecomposition-based Bartels-Stewart solution used as reference in Table 2.9), with
``lya_iters`` / ``lya_tol``, ``lya_symmetric`` and ``scaling``.

Every normalisation is per matrix; float64 input is computed in float64; the public methods
of :class:`~eigenflow.core.solver.Solver` flatten any leading batch dimensions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from ...core.config import (
    boolean,
    config,
    floating,
    integer,
    one_of,
    option,
    optional,
)
from ...core.errors import ConfigError
from ...core.pade import power_pade_coefficients, taylor_coefficients
from ...core.solver import Solver
from ...core.spectral import eigenvalue_floor, function_of_eigenpairs, symmetrize
from ...registry import hookimpl
from .lyapunov import (
    SCALINGS,
    lyapunov_exact,
    lyapunov_exact_eig,
    lyapunov_sign_solve,
    normalised_lower_bound,
    normalising_scale,
    schatten_scale_and_square,
    sign_steps_to_reach,
)
from .polynomials import matrix_horner, matrix_polynomials

__all__ = [
    "MPALyaConfig",
    "MPALyaSolver",
    "MTPLyaConfig",
    "MTPLyaSolver",
    "NSConfig",
    "NSLyaConfig",
    "NSLyaSolver",
    "NSSolver",
    "SVDLyaConfig",
    "SVDLyaSolver",
]

# What a forward computes: the square root, the inverse square root, or both.
SQRT, INVSQRT, BOTH = "sqrt", "invsqrt", "both"


# =========================================================================== configs


# The condition number of A up to which the automatic backward schedule (lya_lower="auto",
# lya_iters=None) guarantees lya_tol; the matrix B of the Lyapunov equation, A^(1/2) or
# A^(-1/2), has its square root (issue 17: "1e-6 ... at condition up to 1e3").
AUTO_CONDITION = 1e3


def _lya_iters_option() -> Any:
    return option(
        None,
        validator=optional(integer(0, 1000)),
        help="iterations of the coupled Lyapunov sign iteration. None (default): the fewest "
        "that bring the gradient within lya_tol / 10 (or 8 eps of the dtype, whichever is "
        "larger) for every A with condition number <= 1e3, from the scalar model of the "
        "iteration, computed from n, the dtype and lya_lower when called (8 in float32 and 8 "
        "in float64 at n = 64; 9 at n = 256); an integer: that many, the cap when lya_tol "
        "is set. Thesis 000 Table 2.9: lya_iters=8, lya_tol=None, lya_lower=None",
    )


def _lya_tol_option() -> Any:
    return option(
        1e-6,
        validator=optional(floating(0.0, min_open=True)),
        help="relative accuracy of the gradient (the criterion ||B_k - I||_F < lya_tol of Sec. "
        "2.3.2). With lya_iters=None it sets the automatic step count (reached without any "
        "check: no cost beyond the steps); with an integer lya_iters each matrix is frozen once "
        "it meets the criterion (masked on the device, no host sync, every call runs "
        "lya_iters steps). None: exactly lya_iters steps (the thesis's fixed count)",
    )


def _backward_option() -> Any:
    return option(
        "lyapunov",
        validator=one_of(("lyapunov", "exact")),
        help="'lyapunov': iterative sign-function solver (Alg. 2); 'exact': solve the "
        "Lyapunov equation through an eigendecomposition (Bartels-Stewart, Table 2.9)",
    )


def _lya_symmetric_option() -> Any:
    return option(
        False,
        validator=boolean(),
        help="solve the Lyapunov equation for the symmetric part of the incoming gradient and "
        "return a symmetric dl/dA (what eigh + autograd returns) with 5 matrix products per "
        "iteration instead of 6 (eigenflow extension); False: the thesis's Eq. 2.22 on the "
        "gradient as given",
    )


def _lower_or_auto(_inst: Any, attribute: Any, value: Any) -> None:
    if value is None or value == "auto":
        return
    try:
        floating(0.0, 1.0, min_open=True, max_open=True)(_inst, attribute, value)
    except ConfigError as err:
        raise ConfigError(f"{err}, or 'auto' or None") from None


def _lya_lower_option() -> Any:
    return option(
        "auto",
        validator=_lower_or_auto,
        help="assumed lower end l of the normalised spectrum of B / s: scaled Newton-Schulz "
        "sign steps (Chen-Chow) for [l, 1], same cost per step, fewer steps when l is close "
        "to the true value, more when far below it (eigenflow extension); 'auto' (default): "
        "the guaranteed lower end for condition numbers of A up to 1e3 under the configured "
        "scaling, from n when called (1 / (sqrt(1e3) n^(1/4)) for 'schatten', 1 / (sqrt(1e3) "
        "n^(1/2)) for 'frobenius'); None: the thesis's Eq. 2.22",
    )


def _scaling_option(
    applies_to: str = "the forward series and the Lyapunov iteration",
    default: str = "frobenius",
    why: str = "",
) -> Any:
    return option(
        default,
        validator=one_of(SCALINGS),
        help=f"pre-normalisation of {applies_to}: 'frobenius' (thesis, Eq. 2.7), "
        "'spectral' (power-iteration estimate of ||A||_2) or 'schatten' (||A^2||_F^(1/2), "
        "a tighter guaranteed bound; one matrix product, reused) (eigenflow extensions)" + why,
    )


def _pair(value: Any) -> Any:
    """``5 -> (5, 5)``, ``[5, 4] -> (5, 4)``; anything else is left for the validator."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple(value)
    return value


def _degree_pair(_inst: Any, attribute: Any, value: Any) -> None:
    ok = isinstance(value, tuple) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 30 for v in value)
    ok = ok and value[0] + value[1] >= 1
    if not ok:
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected [M, N] with integers "
            "0 <= M, N <= 30 and M + N >= 1 (or one integer for [M, M])"
        )


# step_degree="auto" of mpa-lya per dtype: a cheap polynomial step where float rounding
# limits the accuracy anyway, the [5, 5] Padé step in float64 (issue 17; docs/matfn.rst).
AUTO_STEP_DEGREE = {torch.float64: (5, 5)}
AUTO_STEP_DEGREE_DEFAULT = (0, 2)


def _step_degree(_inst: Any, attribute: Any, value: Any) -> None:
    if value == "auto":
        return
    try:
        _degree_pair(_inst, attribute, value)
    except ConfigError as err:
        raise ConfigError(f"{err}, or 'auto'") from None


@config
class LyapunovBackwardConfig:
    """Options shared by the solvers with a Lyapunov backward (thesis 000, Alg. 2): the
    backward method, the stopping rule and the pre-normalisation.

    Defaults (eigenflow's, issue 17): the scaled sign steps (Chen-Chow) for the guaranteed
    normalised spectrum ``[l, 1]`` of every ``A`` with condition number up to 1e3
    (``lya_lower="auto"``,
    :func:`~eigenflow.plugins.matfn.lyapunov.normalised_lower_bound`), as many as the scalar
    model of the iteration needs to bring the gradient within ``lya_tol / 10 = 1e-7`` (at
    least 8 eps of the dtype; ``lya_iters=None``,
    :func:`~eigenflow.plugins.matfn.lyapunov.sign_steps_to_reach`). The count is fixed by
    ``n`` and the dtype, so the stop costs no check (8 steps at n = 64 under the
    Schatten scale, 9 under the Frobenius scale). Measured in float64, the gradient is within
    1e-6 of the exact one (``backward="exact"``) up to condition 1e3 at n <= 256; the
    thesis's 8 plain steps (Table 2.9: ``lya_iters=8, lya_tol=None, lya_lower=None``) leave
    1e-3 to 0.7 there (``docs/matfn.rst``). An integer
    ``lya_iters`` with ``lya_tol`` runs that many steps and freezes each matrix once
    ``||B_k - I||_F < lya_tol`` (masked on the device).
    """

    backward: str = _backward_option()
    lya_iters: int | None = _lya_iters_option()
    lya_tol: float | None = _lya_tol_option()
    lya_symmetric: bool = _lya_symmetric_option()
    lya_lower: float | str | None = _lya_lower_option()
    scaling: str = _scaling_option()


@config
class MPALyaConfig(LyapunovBackwardConfig):
    """Options of ``mpa-lya`` (thesis 000, Sec. 2.3-2.4).

    Defaults: Padé degree ``[5, 5]`` (Table 2.8: "we hence set the forward degrees as [5, 5] for
    our MPA"), a Newton-Schulz or LU solve (``solve="auto"``; the thesis only says "solve"
    instead of inverting), and the backward of
    :class:`~eigenflow.plugins.matfn.LyapunovBackwardConfig`. eigenflow's (issue 17;
    ``docs/matfn.rst``, "Accuracy"): ``steps = 2`` with ``step_degree = "auto"`` (below float64
    one coupled Newton-Schulz-type refinement with the degree-2 Taylor polynomial of ``(1 -
    e)^(-1/2)``, 4 matrix products, no solve; in float64 one step of the coupled ``[5, 5]`` Padé
    iteration, 1e-14 at condition 10) and ``scaling = "schatten"``. The thesis's Algorithm 1 is
    ``steps = 1, scaling = "frobenius"``: its single approximant returns ``sqrt(||A||_F) P_M(1)
    / Q_N(1) = sqrt(||A||_F) / 11`` for an eigenvalue that tends to 0, so above condition ~1e2
    it lost to ``ns``; the refinement step fixes that and the tighter scale raises the small
    eigenvalues of ``A / s``, at the same cost as the thesis's settings. Table 2.9's backward:
    ``lya_iters=8, lya_tol=None, lya_lower=None``.
    """

    degree: tuple[int, int] = option(
        (5, 5),
        converter=_pair,
        validator=_degree_pair,
        help="[M, N] degrees of the numerator P_M and denominator Q_N (Eq. 2.8-2.10)",
    )
    steps: int = option(
        2,
        validator=integer(1, 8),
        help="steps of the coupled Padé iteration: 1 is the thesis's single approximant "
        "(Eq. 2.11, 2.27); each further step applies the step_degree approximant and raises "
        "the convergence order to M' + N' + 1 (eigenflow extension; 2 with the default "
        "step_degree: as accurate as ns or better at every condition number, see "
        "docs/matfn.rst)",
    )
    step_degree: tuple[int, int] | str = option(
        "auto",
        converter=_pair,
        validator=_step_degree,
        help="[M', N'] degrees of the Padé approximant used by steps 2.. of the coupled "
        "iteration: [0, N'] is the degree-N' Taylor polynomial of (1 - e)^(-1/2), matrix "
        "products only (N' + 2 per step; [0, 1] is the Newton-Schulz step); M' > 0 adds a "
        "solve ([5, 5]: max(M', N') + 3 products and one solve per step). 'auto' (default): "
        "[0, 2] below float64 (as accurate as [5, 5] there: float32 rounding dominates) and "
        "[5, 5] in float64 (1e-14 instead of 1e-7 at condition 10, about 3x the forward cost)",
    )
    scaling: str = _scaling_option(
        default="schatten",
        why="; mpa-lya's default is 'schatten' (eigenflow, issue 17: more accurate than the "
        "thesis's Frobenius scale at every condition number, one product that the series "
        "reuses)",
    )
    solve: str = option(
        "auto",
        validator=one_of(("auto", "newton", "lu", "cholesky")),
        help="linear solve of Eq. 2.11 / 2.27: 'newton' (Newton-Schulz inverse of the "
        "denominator from a minimax polynomial start, matrix products only: no LU, no host "
        "sync, capturable in a CUDA graph; to float rounding), 'lu' (batched LU) or 'cholesky' "
        "(Cholesky and two triangular solves); 'auto': 'newton' where the Padé polynomials "
        "are safely positive on the spectrum (degrees up to about [9, 9]), else 'lu' "
        "(eigenflow extensions; the thesis only says 'solve')",
    )


@config
class MTPLyaConfig(LyapunovBackwardConfig):
    """Options of ``mtp-lya`` (thesis 000, Sec. 2.3-2.4).

    Defaults: Taylor degree 11 (Table 2.8 text: "as 11 for our MTP"), Frobenius
    pre-normalisation (Eq. 2.7), and the backward stopping rule of
    :class:`~eigenflow.plugins.matfn.LyapunovBackwardConfig` (scaled steps to 1e-6 up to
    condition 1e3; Table 2.9's 8 plain steps: ``lya_iters=8, lya_tol=None, lya_lower=None``).
    """

    degree: int = option(
        11, validator=integer(1, 200), help="degree K of the matrix Taylor polynomial (Eq. 2.7)"
    )


@config
class NSConfig:
    """Options of ``ns`` (thesis 000, Eq. 2.3).

    Default 5 iterations: "the NS iteration often takes 5 iterations to achieve reasonable
    performances [148, 104]" (Sec. 2.1, the iSQRT-COV setting). Frobenius pre-normalisation
    ``Y_0 = A / ||A||_F`` (Sec. 2.1).
    """

    iters: int = option(5, validator=integer(1, 200), help="Newton-Schulz iterations (Eq. 2.3)")
    scaling: str = _scaling_option("the Newton-Schulz iteration")


@config
class NSLyaConfig(LyapunovBackwardConfig):
    """Options of ``ns-lya`` (thesis 000, Eq. 2.49, Table 2.10).

    Default 5 forward iterations, the NS setting of Sec. 2.1, and the backward stopping rule of
    :class:`~eigenflow.plugins.matfn.LyapunovBackwardConfig` (scaled steps to 1e-6 up to
    condition 1e3; Table 2.9's 8 plain steps: ``lya_iters=8, lya_tol=None, lya_lower=None``).
    """

    iters: int = option(
        5,
        validator=integer(1, 200),
        help="one-variable Newton-Schulz iterations (Eq. 2.49). The one-variable form is "
        "unstable in floating point: beyond about 8 iterations it diverges on input of "
        "condition ~100 and more, where ns converges (docs/matfn.rst)",
    )


@config
class SVDLyaConfig(LyapunovBackwardConfig):
    """Options of ``svd-lya`` (thesis 000, Table 2.10; forward Eq. 3.2-3.3).

    Backward: the backward stopping rule of
    :class:`~eigenflow.plugins.matfn.LyapunovBackwardConfig` (scaled steps to 1e-6 up to
    condition 1e3; Table 2.9's 8 plain steps: ``lya_iters=8, lya_tol=None, lya_lower=None``).
    ``eps`` is eigenflow's eigenvalue floor (as in ``svd``) keeping the square root of singular
    PSD input finite.
    """

    scaling: str = _scaling_option("the Lyapunov iteration (the forward is eigh)")
    eps: float | None = option(
        None,
        validator=optional(floating(0.0, 1.0)),
        help="relative eigenvalue floor eps * lambda_max (None: the dtype's machine epsilon; "
        "0: no floor)",
    )


# =========================================================================== autograd


# A forward returns (root or None, inverse root or None, eigenvalues or None,
# eigenvectors or None); the eigenpairs of A, when known, serve the exact backward.
ForwardResult = tuple[
    torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None
]
ForwardFn = Callable[[torch.Tensor, str], ForwardResult]


def _lyapunov_problem(
    want: str,
    root: torch.Tensor | None,
    inv: torch.Tensor | None,
    g_root: torch.Tensor | None,
    g_inv: torch.Tensor | None,
) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The Lyapunov equation ``B X + X B = C`` whose solution is ``dl/dA``.

    Returns ``(which, B, C)`` with ``which`` naming ``B``: ``"root"`` or ``"inv"``.

    - square root: ``B = A^(1/2)``, ``C = dl/dA^(1/2)`` (Eq. 2.13);
    - inverse square root: ``B = A^(-1/2)``, ``C = -A^(-1) (dl/dA^(-1/2)) A^(-1)``
      (Eq. 2.38, second line; 3 matrix products);
    - both: ``B = A^(1/2)``, ``C = dl/dA^(1/2) - A^(-1/2) (dl/dA^(-1/2)) A^(-1/2)``
      (Eq. 2.13 plus Eq. 2.38, first line: the equations are linear, one solve suffices).
    """
    if want == SQRT:
        return "root", root, g_root
    if want == INVSQRT:
        a_inv = inv @ inv
        return "inv", inv, -(a_inv @ g_inv @ a_inv)
    C = torch.zeros_like(root) if g_root is None else g_root
    if g_inv is not None:
        C = C - inv @ g_inv @ inv
    return "root", root, C


def sign_schedule(
    opts: LyapunovBackwardConfig, n: int, dtype: torch.dtype, root_exponent: float = 0.5
) -> tuple[int, float | None, float | None]:
    """``(iters, tol, lower)`` of the backward's sign iteration for ``n x n`` matrices.

    ``lya_lower="auto"``: the guaranteed lower end of the normalised spectrum for condition
    numbers of ``A`` up to :data:`AUTO_CONDITION`; that of ``B``, the forward's ``A^(+-1/2)``,
    is at most its power ``root_exponent`` (1/2 for an accurate forward; a forward that does
    not converge on small eigenvalues, like Newton-Schulz, leaves ``B`` worse conditioned).
    ``lya_iters=None``: the count the scalar model needs to bring every such spectrum within
    ``max(lya_tol / 10, 8 eps)`` of 1, and no per-step check (``tol = None``); an integer
    ``lya_iters`` keeps ``lya_tol`` as the per-matrix stop. Plain Python on ``n`` and the
    dtype (static under ``torch.compile``).
    """
    auto_lower = normalised_lower_bound(n, opts.scaling, AUTO_CONDITION**root_exponent)
    lower = min(auto_lower, 0.5) if opts.lya_lower == "auto" else opts.lya_lower
    if opts.lya_iters is not None:
        return opts.lya_iters, opts.lya_tol, lower
    target = max((opts.lya_tol or 0.0) / 10.0, 8.0 * torch.finfo(dtype).eps)
    start = auto_lower if lower is None else lower
    return sign_steps_to_reach(start, target, scaled=lower is not None), None, lower


class _LyapunovBackward(torch.autograd.Function):
    """A forward given as a function, differentiated by solving the Lyapunov equation.

    Double backward (``create_graph=True``): the backward is itself a function of ``A`` (through
    the forward's ``A^(1/2)`` or ``A^(-1/2)``) and of the incoming gradient, made of
    differentiable matrix operations (the sign iteration, or the eigendecomposition solve).
    Under ``create_graph=True`` (grad mode on inside ``backward``) the forward is recomputed
    with autograd recording and the backward runs on that, so autograd differentiates the
    backward exactly as computed (``gradgradcheck`` against finite differences of this
    backward); ordinary backward does neither (no extra cost).

    Not supported: ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``: no
    ``setup_context``/vmap rule). Ordinary autograd, any batch, CPU and CUDA are. The
    iterative backward is graph-capturable (matrix products only, no host sync);
    ``backward="exact"`` calls ``torch.linalg.eigh``.
    """

    @staticmethod
    def forward(ctx, A, forward_fn, want, opts, root_exponent):  # type: ignore[override]
        root, inv, L, V = forward_fn(A, want)
        ctx.want, ctx.opts, ctx.forward_fn = want, opts, forward_fn
        ctx.root_exponent = root_exponent
        ctx.save_for_backward(A, root, inv, L, V)
        if want == SQRT:
            return root
        if want == INVSQRT:
            return inv
        return root, inv

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        A, root, inv, L, V = ctx.saved_tensors
        want, opts = ctx.want, ctx.opts
        if torch.is_grad_enabled():
            # create_graph=True: the forward again, recorded, so that the backward below is
            # differentiated through A^(1/2)(A) (not through this node's own approximation).
            root, inv, L, V = ctx.forward_fn(A, want)
        g_root = grads[0] if want in (SQRT, BOTH) else None
        g_inv = grads[-1] if want in (INVSQRT, BOTH) else None
        if g_root is None and g_inv is None:
            return None, None, None, None, None
        which, B, C = _lyapunov_problem(want, root, inv, g_root, g_inv)
        if opts.backward == "exact":
            if L is not None:
                s = L.sqrt() if which == "root" else L.rsqrt()
                X = lyapunov_exact_eig(s, V, C)
            else:
                X = lyapunov_exact(symmetrize(B), C)
        else:
            iters, tol, lower = sign_schedule(opts, B.shape[-1], B.dtype, ctx.root_exponent)
            X = lyapunov_sign_solve(
                B, C, iters, tol, opts.scaling, symmetric=opts.lya_symmetric, lower=lower
            )
        return X, None, None, None, None


# =========================================================================== base


class _MatFnSolver(Solver):
    """Shared code of the solvers here: a forward computing what is asked for (``_forward``)
    wrapped in :class:`_LyapunovBackward`. Subclasses implement :meth:`_forward`.

    ``second_order``: the double backward differentiates the Lyapunov backward as computed
    (through a recorded recomputation of the forward, see :class:`_LyapunovBackward`), every
    option included; with ``backward="exact"`` or the ``svd-lya`` forward it goes through
    ``torch.linalg.eigh``, so it is non-finite on repeated eigenvalues.
    """

    second_order: ClassVar[bool] = True
    #: The condition number of the forward's ``A^(1/2)`` is at most that of ``A`` to this
    #: power (``sign_schedule``); 1/2 for a forward accurate on small eigenvalues.
    root_exponent: ClassVar[float] = 0.5

    def _forward(self, A: torch.Tensor, want: str) -> ForwardResult:
        raise NotImplementedError  # pragma: no cover - abstract

    def _run(self, A: torch.Tensor, want: str) -> Any:
        return _LyapunovBackward.apply(A, self._forward, want, self.config, self.root_exponent)

    def _sqrt(self, A: torch.Tensor) -> torch.Tensor:
        return self._run(A, SQRT)

    def _invsqrt(self, A: torch.Tensor) -> torch.Tensor:
        return self._run(A, INVSQRT)

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(A, BOTH)


def _normalised(A: torch.Tensor, scaling: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I - A / s, s)``: the argument ``Z`` of the series and the per-matrix scale."""
    s = normalising_scale(A, scaling)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return eye - A / s, s


def _normalised_with_square(
    A: torch.Tensor, scaling: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(Z, s, Z^2 or None)``; with the ``"schatten"`` scale, ``Z^2 = I - 2 A / s + (A / s)^2``
    comes from the square the scale computed anyway (no extra product)."""
    if scaling != "schatten":
        return (*_normalised(A, scaling), None)
    s, An_sq = schatten_scale_and_square(A)
    Z = A / -s
    Z2 = An_sq.add_(Z, alpha=2.0)  # (A / s)^2 - 2 A / s, in place (fewer passes)
    Z.diagonal(dim1=-2, dim2=-1).add_(1.0)
    Z2.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return Z, s, Z2


def _solve_commuting_spd(
    Q: torch.Tensor, P: torch.Tensor, method: str, start: torch.Tensor | None = None, iters: int = 0
) -> torch.Tensor:
    """``Q^(-1) P`` for ``Q``, ``P`` polynomials in the same symmetric ``Z`` (so they commute).

    ``"newton"``: ``iters`` Newton-Schulz steps ``X <- 2 X - X Q X`` for ``Q^(-1)`` from
    ``start`` (a polynomial in ``Z``, :class:`_NewtonInverse`), then ``X P``: ``2 iters + 1``
    matrix products, nothing else. ``"lu"``: ``torch.linalg.solve_ex`` (no error check).
    ``"cholesky"``: ``Q = U^T U`` and ``Q^(-1) P = P Q^(-1) = (P U^(-1)) U^(-T)``, two
    triangular solves from the right (on CPU, float32, 64 x 64 x 64: 2.9 ms against 5.0 ms from
    the left and 5.4 ms for the LU solve, measured). ``"newton"`` and ``"cholesky"`` need ``Q``
    positive definite, which the config checks for the Padé polynomials on the spectrum.
    """
    if method == "newton":
        X = start
        for _ in range(iters):
            X = torch.baddbmm(X, X, Q @ X, beta=2.0, alpha=-1.0)
        return X @ P
    if method == "lu":
        return torch.linalg.solve_ex(Q, P, check_errors=False)[0]
    U = torch.linalg.cholesky_ex(Q, upper=True, check_errors=False)[0]
    Y = torch.linalg.solve_triangular(U, P, upper=True, left=False)
    return torch.linalg.solve_triangular(U.mT, Y, upper=False, left=False)


class _NewtonInverse:
    """A Newton-Schulz inverse of ``Q(Z)`` for a scalar polynomial ``Q`` positive on the
    interval holding the spectrum of ``Z``, prepared at configuration time.

    The start ``S(Z)`` is the degree-``degree`` polynomial minimising ``max |1 - Q(z) S(z)|``
    on the interval (Lawson's iteratively reweighted least squares on 2000 Chebyshev points,
    in float64); it costs no matrix product beyond the powers of ``Z`` the Padé polynomials
    already need. With ``rho`` that maximum, ``k`` steps leave ``|1 - Q(z) X_k(z)| <=
    rho^(2^k)`` for every eigenvalue (all iterates are functions of ``Z``), so the relative
    error of ``X_k P`` is at most ``rho^(2^k)``: :meth:`iterations` picks the smallest ``k``
    below a quarter of the dtype's unit roundoff. For ``[5, 5]`` on ``[0, 1]``: ``rho`` 0.14
    for ``Q_N`` (4 steps in float32, 5 in float64) and 0.60 for ``P_M`` (6 and 7).
    """

    def __init__(self, coeffs: tuple[float, ...], lo: float, hi: float, degree: int):
        margin = 0.005 * (hi - lo)  # rounding can put eigenvalues just outside [lo, hi]
        lo, hi = lo - margin, hi + margin
        points = np.polynomial.chebyshev.chebpts1(2000) * (hi - lo) / 2 + (hi + lo) / 2
        q = np.polynomial.polynomial.polyval(points, coeffs)
        if not (q > 0).all():
            raise ConfigError(f"not positive on [{lo:.3g}, {hi:.3g}]")
        basis = (
            np.polynomial.chebyshev.chebvander((2 * points - (hi + lo)) / (hi - lo), degree)
            * q[:, None]
        )
        weights = np.full(len(points), 1.0 / len(points))
        for _ in range(100):
            root = np.sqrt(weights)
            cheb, *_ = np.linalg.lstsq(basis * root[:, None], root, rcond=None)
            residual = np.abs(1.0 - basis @ cheb)
            weights = weights * residual / np.sum(weights * residual)
        series = np.polynomial.Chebyshev(cheb, domain=[lo, hi]).convert(
            kind=np.polynomial.Polynomial
        )
        self.start = tuple(float(c) for c in series.coef)
        self.rho = float(np.max(np.abs(1.0 - q * series(points))))
        if not self.rho < 0.99:
            raise ConfigError(
                f"the best start reaches only |1 - Q S| <= {self.rho:.3g} on [{lo:.3g}, {hi:.3g}]"
            )

    def iterations(self, dtype: torch.dtype, target: float | None = None) -> int:
        """Steps for ``rho^(2^k) <= target`` (default: ``eps(dtype) / 4``)."""
        target = torch.finfo(dtype).eps / 4 if target is None else max(target, 1e-300)
        return max(0, math.ceil(math.log2(math.log(target) / math.log(self.rho))))


# Residual |1 - P X| of the Newton-Schulz inverse that starts a polynomial refinement step:
# the step's error is about c e^3 in e = 1 - y w, so 1e-3 leaves ~1e-9, below float32 rounding.
_REFINED_START_RESIDUAL = 1e-3


def _pade_polynomials(M: int, N: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Ascending coefficients of ``P_M(z) = 1 - sum p_m z^m`` and ``Q_N(z) = 1 - sum q_n z^n``
    with ``P_M / Q_N`` the ``[M, N]`` Padé approximant of ``sqrt(1 - z)`` (Eq. 2.8-2.10)."""
    p, q = power_pade_coefficients(M, N)
    return (1.0, *(-c for c in p)), (1.0, *(-c for c in q))


def _symmetric_part_times(X: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``c (X + X^T) / 2`` in two passes (``c`` per matrix, ``(B, 1, 1)``)."""
    return torch.add(X, X.mT).mul_(0.5 * c)


def _z_interval(scaling: str) -> tuple[float, float]:
    """The interval holding the eigenvalues of ``Z = I - A / s`` for PSD ``A``: ``[0, 1]``
    when ``s >= lambda_max``, ``[-0.6, 1]`` for the spectral estimate (``||A / s||_2 <= 1.6``)."""
    return (-0.6, 1.0) if scaling == "spectral" else (0.0, 1.0)


def _positive_on(coeffs: tuple[float, ...], lo: float, hi: float) -> bool:
    """Whether ``c_0 + c_1 z + ... > 0`` on ``[lo, hi]`` (no real root there, positive at
    ``lo``)."""
    values = np.polynomial.polynomial.polyval([lo, hi], coeffs)
    roots = np.polynomial.polynomial.polyroots(coeffs) if len(coeffs) > 1 else np.array([])
    real = roots[np.abs(roots.imag) <= 1e-12 * np.maximum(1.0, np.abs(roots))].real
    return bool(values[0] > 0 and values[1] > 0 and not np.any((real >= lo) & (real <= hi)))


# =========================================================================== mpa-lya


class MPALyaSolver(_MatFnSolver):
    """Matrix Padé approximant forward with the iterative Lyapunov backward (MPA-Lya).

    Forward (Algorithm 1): ``Z = I - A / ||A||_F``; ``P_M = I - sum_m p_m Z^m``,
    ``Q_N = I - sum_n q_n Z^n`` (Eq. 2.10) with the ``[M, N]`` coefficients of Eq. 2.8-2.9
    derived by :func:`eigenflow.core.pade.power_pade_coefficients`; ``A^(1/2)`` solves
    ``Q_N X = sqrt(||A||_F) P_M`` (Eq. 2.11) and ``A^(-1/2)`` solves
    ``P_M X = Q_N / sqrt(||A||_F)`` (Eq. 2.27): no explicit inverse, one batched LU solve per
    factor (``torch.linalg.solve_ex`` without error checks, so no host sync; ``solve=
    "cholesky"``: a Cholesky factorisation and two triangular solves). ``max(M, N) - 1``
    matrix products. That is ``steps=1``; the default ``steps=2`` continues from the inverse
    approximant with one step of the coupled iteration (``_coupled_steps``) with the
    degree-2 Taylor polynomial (4 products, no solve; the ``[5, 5]`` Padé step in float64,
    ``step_degree="auto"``), which makes it
    at least as accurate as ``ns`` at every condition number (the single approximant is not
    above condition ~1e2).

    Backward: the coupled Lyapunov sign iteration (Eq. 2.20-2.23) on ``A^(1/2)``, or on
    ``A^(-1/2)`` with the right-hand side of Eq. 2.38-2.39 for the inverse square root, by
    default with the step count that reaches 1e-6 up to condition 1e3
    (:class:`~eigenflow.plugins.matfn.LyapunovBackwardConfig`; ``backward="exact"``: the
    eigendecomposition-based solution instead).

    Speed options (eigenflow extensions, ``docs/matfn.rst``): ``solve="cholesky"``,
    ``lya_lower``, ``lya_iters``. On CPU, 64 float32 matrices of size 64, ``steps=1,
    solve="cholesky", lya_lower=0.1, lya_iters=3, lya_tol=None`` ran forward+backward 1.35x
    faster than ``eigh`` + autograd with two threads (measured before issue 17), with smaller
    forward and gradient errors than the thesis's settings (not than the current defaults) on
    covariance matrices whose normalised root spectrum starts near 0.1.

    The backward is an approximation of the derivative of the true square root, not the
    derivative of the Padé approximant (``exact_gradient = False``); it never divides by
    eigenvalue differences, so it stays finite on repeated eigenvalues. Implemented as a
    custom ``torch.autograd.Function``: not supported under ``torch.func`` transforms
    (``vmap``, ``grad``, ``jacrev``); double backward is (``second_order``).
    """

    Config = MPALyaConfig
    source = "000 (Song 2023), Sec. 2.3-2.4, Eq. 2.8-2.11, 2.20-2.23, 2.27, 2.38-2.39, Alg. 1-2"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    # Measured max (cond <= 10, n <= 64) 8.3e-7 in float32 and 2.1e-15 in float64 with the
    # defaults (steps = 1, the thesis's: 1.0e-2 in both, growing with n under Frobenius
    # scaling: 2e-2 at n = 128, 3.7e-2 at n = 256).
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-5, torch.float64: 3e-14}
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (2e-5, 2e-5, 5e-2, 5e-1, 5e-1, 5e-1, 5e-1),
        ("invsqrt", torch.float32): (2e-5, 1e-4, 5e-1, 2e0, 2e0, 2e0, 2e0),
        ("sqrt", torch.float64): (5e-14, 5e-14, 1e-7, 1e-3, 5e-2, 5e-2, 5e-2),
        ("invsqrt", torch.float64): (5e-14, 5e-14, 5e-6, 1e-1, 1e0, 2e0, 2e0),
    }

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        # Derived once, in exact arithmetic, outside any traced region (torch.compile).
        self._coefficients = _pade_polynomials(*self.config.degree)
        step_degrees = (
            {AUTO_STEP_DEGREE_DEFAULT, *AUTO_STEP_DEGREE.values()}
            if self.config.step_degree == "auto"
            else {self.config.step_degree}
        )
        self._step_coefficients = {d: _pade_polynomials(*d) for d in sorted(step_degrees)}
        if self.config.solve == "cholesky":
            self._check_cholesky_applies()
        self._newton: dict[tuple[str, str], _NewtonInverse] = {}
        #: the solve the forward uses ('auto' resolved here, at configuration time)
        self.solve_method = self.config.solve
        if self.config.solve in ("auto", "newton"):
            try:
                self._prepare_newton()
                self.solve_method = "newton"
            except ConfigError:
                if self.config.solve == "newton":
                    raise
                self.solve_method = "lu"

    def _prepare_newton(self) -> None:
        """Newton-Schulz starts for ``P_M`` and ``Q_N`` on the spectra of ``Z`` and ``E``."""
        # Z = I - A/s has its spectrum in _z_interval; E = I - W Y of the coupled steps in
        # [0, 1) (measured >= -2e-10 for eigenvalues of A/s in (0, 1.6]).
        problems: dict[Any, tuple] = {
            "Z": (self._coefficients, self.config.degree, _z_interval(self.config.scaling))
        }
        if self.config.steps > 1:
            for step_degree, polynomials in self._step_coefficients.items():
                if step_degree[0] > 0:
                    problems[step_degree] = (polynomials, step_degree, (0.0, 1.0))
        for where, (polynomials, degree, (lo, hi)) in problems.items():
            for label, coeffs in zip(("P_M", "Q_N"), polynomials):
                try:
                    inverse = _NewtonInverse(coeffs, lo, hi, max(degree))
                except ConfigError as err:
                    option = "degree" if where == "Z" else "step_degree"
                    raise ConfigError(
                        f"solver 'mpa-lya': solve: 'newton' is invalid with {option} = "
                        f"{list(degree)} and scaling = {self.config.scaling!r}: {label} "
                        f"({err}); use solve='lu' or 'auto'"
                    ) from None
                self._newton[where, label[0]] = inverse

    def _polynomial_coefficients(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Ascending coefficients of ``P_M`` and ``Q_N`` (Eq. 2.10)."""
        return self._coefficients

    def step_degree_for(self, dtype: torch.dtype) -> tuple[int, int]:
        """The ``[M', N']`` of the coupled steps for input of ``dtype`` (``step_degree``,
        with ``"auto"`` resolved)."""
        if self.config.step_degree != "auto":
            return self.config.step_degree
        return AUTO_STEP_DEGREE.get(dtype, AUTO_STEP_DEGREE_DEFAULT)

    def _step_factor(self, E: torch.Tensor) -> torch.Tensor:
        """``R = P_M'(E)^(-1) Q_N'(E)``, the ``step_degree`` approximant of ``(I - E)^(-1/2)``;
        for ``M' = 0`` the polynomial ``Q_N'(E)`` alone (no solve)."""
        degree = self.step_degree_for(E.dtype)
        if degree[0] == 0:
            return matrix_polynomials(E, self._step_coefficients[degree][1:])[0]
        _, Q, solve = self._solver_polynomials(E, degree, ("P",), None)
        return solve["P"](Q)

    def _check_cholesky_applies(self) -> None:
        lo, hi = _z_interval(self.config.scaling)
        for label, coeffs in zip(("P_M", "Q_N"), self._polynomial_coefficients()):
            if not _positive_on(coeffs, lo, hi):
                raise ConfigError(
                    f"solver 'mpa-lya': solve: 'cholesky' is invalid with degree = "
                    f"{list(self.config.degree)} and scaling = {self.config.scaling!r}: "
                    f"{label}(z) is not positive on [{lo}, {hi}], so {label}(Z) is not positive "
                    "definite; use solve='lu'"
                )

    def _solver_polynomials(
        self,
        Z: torch.Tensor,
        where: str | tuple[int, int],
        denominators: tuple[str, ...],
        Z2: torch.Tensor | None,
        target: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Callable]]:
        """``P_M(Z)``, ``Q_N(Z)`` and, per polynomial in ``denominators`` (``"P"``/``"Q"``),
        a function ``numerator -> denominator^(-1) numerator`` by the configured solve (the
        Newton-Schulz starts share the powers of ``Z``). ``where``: ``"Z"`` for the
        approximant of ``degree``, a step degree ``[M', N']`` for the coupled steps' one;
        ``target``: the Newton-Schulz residual (default a quarter of the unit roundoff)."""
        method = self.solve_method
        newton = [self._newton[where, d] for d in denominators] if method == "newton" else []
        coefficients = self._coefficients if where == "Z" else self._step_coefficients[where]
        polys = matrix_polynomials(Z, (*coefficients, *(n.start for n in newton)), Z2)
        P, Q = polys[0], polys[1]
        by_label = {"P": P, "Q": Q}
        solves = {}
        for i, label in enumerate(denominators):
            if method == "newton":
                start, iters = polys[2 + i], newton[i].iterations(Z.dtype, target)
            else:
                start, iters = None, 0
            solves[label] = functools.partial(
                _solve_commuting_spd, by_label[label], method=method, start=start, iters=iters
            )
        return P, Q, solves

    def _forward(self, A: torch.Tensor, want: str) -> ForwardResult:
        Z, s, Z2 = _normalised_with_square(A, self.config.scaling)
        if self.config.steps > 1:
            # A polynomial refinement step corrects any start that is a function of A: with
            # the Newton-Schulz solve it needs only |1 - P X| <= 1e-3, which its cubic
            # convergence takes below float32 rounding (4 Newton steps instead of 6).
            coarse = self.step_degree_for(A.dtype)[0] == 0
            target = _REFINED_START_RESIDUAL if coarse else None
            _, Q, solve = self._solver_polynomials(Z, "Z", ("P",), Z2, target)
            W = solve["P"](Q)  # (A / s)^(-1/2) to [N, M] Padé accuracy
            return self._coupled_steps(A / s, W, s, want)
        needed = (("Q",) if want in (SQRT, BOTH) else ()) + (
            ("P",) if want in (INVSQRT, BOTH) else ()
        )
        P, Q, solve = self._solver_polynomials(Z, "Z", needed, Z2)
        root = inv = None
        if want in (SQRT, BOTH):
            root = _symmetric_part_times(solve["Q"](P), s.sqrt())
        if want in (INVSQRT, BOTH):
            inv = _symmetric_part_times(solve["P"](Q), s.rsqrt())
        return root, inv, None, None

    def _coupled_steps(
        self, An: torch.Tensor, W: torch.Tensor, s: torch.Tensor, want: str
    ) -> ForwardResult:
        """Steps ``2..steps`` of the coupled Padé iteration for ``An = A / s`` from ``W_1 =
        P_M(Z)^(-1) Q_N(Z)``, the first step (Eq. 2.27 without the scale).

        ``Y_1 = An W_1``; then ``E = I - W_k Y_k``, ``R = P_M'(E)^(-1) Q_N'(E)`` (the ``[N',
        M']`` Padé approximant of ``(1 - e)^(-1/2)``, ``[M', N'] = step_degree``),
        ``Y_{k+1} = Y_k R``, ``W_{k+1} = R W_k``: the Padé family of iterations for the square
        root in coupled form (Higham 2008, *Functions of Matrices*, thesis ref. [94]; the
        Newton-Schulz iteration of Eq. 2.3 is its ``[0, 1]`` member, ``R = I + E / 2``). Every
        iterate is a rational function of ``An``, so they commute, the same solve applies,
        and ``1 - y w`` goes to 0 with order ``M' + N' + 1``.
        The square root is ``An W``, not the thesis's ``P_M(Z) / Q_N(Z)``: as an eigenvalue
        ``x`` of ``An`` tends to 0 it tends to 0 (``sqrt(x)`` is approached from below) instead of
        ``P_M(1) / Q_N(1) = 1/11``; the eigenvalues of ``E`` stay in ``[0, 1)`` (measured
        ``>= -2e-10`` for ``x`` in ``(0, 1.6]``), where ``P_M`` and ``Q_N`` are positive, so
        ``solve="cholesky"`` applies to every step. ``max(M', N') + 3`` matrix products and
        one solve per step, ``N' + 2`` and no solve for ``M' = 0`` (one product fewer in the
        last when only one factor is wanted).
        """
        eye = torch.eye(An.shape[-1], dtype=An.dtype, device=An.device).expand_as(An)
        Y = An @ W
        for k in range(2, self.config.steps + 1):
            # E = I - W Y, as Eq. 2.3 forms 3I - Z_k Y_k: with Y <- Y R and W <- R W that order
            # keeps rounding errors from growing step by step (with I - Y W, steps = 8
            # diverged: 0.5 relative error in float32 at condition 100, inf in float64)
            E = torch.baddbmm(eye, W, Y, alpha=-1.0)
            R = self._step_factor(E)
            last = k == self.config.steps
            Y = Y if last and want == INVSQRT else Y @ R
            W = W if last and want == SQRT else R @ W
        root = _symmetric_part_times(Y, s.sqrt()) if want in (SQRT, BOTH) else None
        inv = _symmetric_part_times(W, s.rsqrt()) if want in (INVSQRT, BOTH) else None
        return root, inv, None, None


# =========================================================================== mtp-lya


class MTPLyaSolver(_MatFnSolver):
    """Matrix Taylor polynomial forward with the iterative Lyapunov backward (MTP-Lya).

    Forward (Algorithm 1): ``A^(1/2) = sqrt(||A||_F) (I - sum_{k=1}^K |binom(1/2, k)| Z^k)``
    (Eq. 2.7) and ``A^(-1/2) = (I + sum_{k=1}^K |binom(-1/2, k)| Z^k) / sqrt(||A||_F)``
    (Eq. 2.26), ``Z = I - A / ||A||_F``, each by Horner's rule (``K - 1`` matrix products per
    function). The series converges slowly near ``z = 1`` (small eigenvalues of
    ``A / ||A||_F``), so the forward error grows with the condition number and the size; see
    the accuracy table in ``docs/matfn.rst``.

    Backward as ``mpa-lya`` (``exact_gradient = False``, ``robust_gradient = True``; no
    ``torch.func`` transforms; double backward supported).
    """

    Config = MTPLyaConfig
    source = "000 (Song 2023), Sec. 2.3-2.4, Eq. 2.4-2.7, 2.24-2.26, 2.20-2.23, 2.38-2.39"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    # Measured max 7.7e-2 (cond <= 10, n <= 64, both dtypes).
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-1, torch.float64: 1e-1}
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (1e-1, 5e-1, 2e0, 5e0, 5e0, 5e0, 5e0),
        ("invsqrt", torch.float32): (5e-1, 1e0, 2e0, 2e0, 2e0, 2e0, 2e0),
        ("sqrt", torch.float64): (1e-1, 5e-1, 2e0, 5e0, 5e0, 5e0, 5e0),
        ("invsqrt", torch.float64): (5e-1, 1e0, 2e0, 2e0, 2e0, 2e0, 2e0),
    }

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        # Derived once, in exact arithmetic, outside any traced region (torch.compile).
        K = self.config.degree
        self._root_coefficients = taylor_coefficients(0.5, K)
        self._inv_coefficients = taylor_coefficients(-0.5, K)

    def _forward(self, A: torch.Tensor, want: str) -> ForwardResult:
        Z, s = _normalised(A, self.config.scaling)
        root = inv = None
        if want in (SQRT, BOTH):
            root = matrix_horner(Z, self._root_coefficients) * s.sqrt()
        if want in (INVSQRT, BOTH):
            inv = matrix_horner(Z, self._inv_coefficients) * s.rsqrt()
        return root, inv, None, None


# =========================================================================== ns


def coupled_newton_schulz(
    A: torch.Tensor, iters: int, scaling: str = "frobenius"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coupled Newton-Schulz iteration (thesis 000, Eq. 2.3) on ``A (B, n, n)``.

    ``Y_0 = A / s``, ``Z_0 = I``; ``T = (3I - Z_k Y_k) / 2``, ``Y_{k+1} = Y_k T``,
    ``Z_{k+1} = T Z_k``; returns ``(sqrt(s) Y_k, Z_k / sqrt(s))`` approximating
    ``(A^(1/2), A^(-1/2))``. Differentiable by autograd (3 matrix products per iteration).
    """
    s = normalising_scale(A, scaling)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    Y = A / s
    Z = eye.expand_as(A)
    for _ in range(iters):
        T = 0.5 * (3.0 * eye - Z @ Y)
        Y, Z = Y @ T, T @ Z
    return Y * s.sqrt(), Z * s.rsqrt()


class NSSolver(Solver):
    """Coupled Newton-Schulz iteration (Eq. 2.3) with plain autograd backward: the iSQRT-COV
    baseline of thesis 000.

    The gradient is autograd's exact derivative of the finite iteration (``exact_gradient``),
    including the normalisation; it is finite on repeated eigenvalues. Supports ``torch.func``
    (pure tensor operations). Backward cost about ``4 + 10 x iters`` matrix products
    (Table 2.2).
    """

    Config = NSConfig
    source = "000 (Song 2023), Sec. 2.1, Eq. 2.3"
    exact_gradient: ClassVar[bool] = True
    robust_gradient: ClassVar[bool] = True
    second_order: ClassVar[bool] = True  # plain autograd: any order
    # Measured max 2.4e-2 (cond <= 10, n <= 64, both dtypes).
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 5e-2, torch.float64: 5e-2}
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (1e-2, 1e-1, 1e0, 1e0, 1e0, 1e0, 1e0),
        ("invsqrt", torch.float32): (1e-2, 5e-1, 2e0, 2e0, 2e0, 2e0, 2e0),
        ("sqrt", torch.float64): (1e-2, 1e-1, 1e0, 1e0, 1e0, 1e0, 1e0),
        ("invsqrt", torch.float64): (1e-2, 5e-1, 2e0, 2e0, 2e0, 2e0, 2e0),
    }

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return coupled_newton_schulz(A, self.config.iters, self.config.scaling)


# =========================================================================== ns-lya


class NSLyaSolver(_MatFnSolver):
    """One-variable Newton-Schulz forward (Eq. 2.49) with the Lyapunov backward (NS-Lya).

    ``Z_0 = I``, ``Z_{k+1} = (3 Z_k - Z_k^3 A / ||A||_F) / 2`` converges to
    ``(A / ||A||_F)^(-1/2)`` (3 matrix products per iteration); ``A^(-1/2) = Z_k /
    sqrt(||A||_F)`` and ``A^(1/2) = Z_k A / sqrt(||A||_F)`` (Proposition 2: ``Y_k = Z_k A /
    ||A||_F``, one more product). Backward as ``mpa-lya`` (``exact_gradient = False``; no
    ``torch.func`` transforms; double backward supported).

    The iterates equal ``ns``'s in exact arithmetic only: the one-variable form amplifies a
    rounding error between eigenvalues ``a_i``, ``a_j`` of ``A / s`` by ``(r + sqrt(r) - 2) /
    2`` per step near convergence (``r = a_j / a_i``), so beyond about 8 iterations it
    diverges on input of condition ~100 and more where ``ns`` converges (``docs/matfn.rst``).
    """

    Config = NSLyaConfig
    # Newton-Schulz leaves an eigenvalue x << 1 of A / s near 1.5^iters x instead of sqrt(x):
    # the root can be as ill-conditioned as A itself (the automatic backward schedule's bound).
    root_exponent: ClassVar[float] = 1.0
    source = "000 (Song 2023), Sec. 2.5.6, Eq. 2.49-2.52, Table 2.10; Alg. 2"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    # Measured max 2.4e-2 (cond <= 10, n <= 64, both dtypes; at 5 iterations the errors of ``ns``).
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 5e-2, torch.float64: 5e-2}
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (1e-2, 1e-1, 1e0, 1e0, 1e0, 1e0, 1e0),
        ("invsqrt", torch.float32): (1e-2, 5e-1, 2e0, 2e0, 2e0, 2e0, 2e0),
        ("sqrt", torch.float64): (1e-2, 1e-1, 1e0, 1e0, 1e0, 1e0, 1e0),
        ("invsqrt", torch.float64): (1e-2, 5e-1, 2e0, 2e0, 2e0, 2e0, 2e0),
    }

    def _forward(self, A: torch.Tensor, want: str) -> ForwardResult:
        s = normalising_scale(A, self.config.scaling)
        An = A / s
        Z = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand_as(A)
        for _ in range(self.config.iters):
            Z = 0.5 * (3.0 * Z - Z @ Z @ Z @ An)
        Z = symmetrize(Z)
        root = symmetrize(Z @ A) * s.rsqrt() if want in (SQRT, BOTH) else None
        inv = Z * s.rsqrt() if want in (INVSQRT, BOTH) else None
        return root, inv, None, None


# =========================================================================== svd-lya


class SVDLyaSolver(_MatFnSolver):
    """Eigendecomposition forward (``torch.linalg.eigh``, Eq. 3.2-3.3) with the Lyapunov
    backward (SVD-Lya, Table 2.10).

    Eigenvalues are floored at ``eps * lambda_max`` (config ``eps``) before the square root.
    With ``backward="exact"`` the Lyapunov equation is solved with the forward's own
    eigenpairs (no second decomposition), which is the exact derivative of the floored
    square root: such an instance reports ``exact_gradient = True`` (the class attribute
    describes the default ``backward="lyapunov"``, an approximation). The backward never
    divides by eigenvalue differences (``robust_gradient``). Note that ``eigh`` cannot be
    captured in a CUDA graph. Custom ``torch.autograd.Function``: no ``torch.func``
    transforms; double backward supported (through ``eigh``: non-finite on ties).
    """

    Config = SVDLyaConfig
    source = "000 (Song 2023), Table 2.10, Eq. 3.2-3.3; backward Alg. 2 / Eq. 2.38-2.39"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    # Measured max 1.0e-6 (float32) and 0 (float64) against float64 eigh (cond <= 10, n <= 64).
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-5, torch.float64: 1e-11}
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst); float32
    # inverse roots are limited by eigh's float32 eigenvalues (absolute error ~eps lambda_max).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (2e-5, 2e-5, 2e-5, 2e-5, 5e-5, 1e-4, 5e-4),
        ("invsqrt", torch.float32): (2e-5, 2e-5, 1e-4, 5e-4, 1e-2, 5e-2, 5e-1),
        ("sqrt", torch.float64): (5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14),
        ("invsqrt", torch.float64): (5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14, 5e-14),
    }

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        if self.config.backward == "exact":
            self.exact_gradient = True  # type: ignore[misc] - per-instance promise

    def _forward(self, A: torch.Tensor, want: str) -> ForwardResult:
        L, V = torch.linalg.eigh(A)
        eps = self.config.eps
        L = eigenvalue_floor(L, torch.finfo(A.dtype).eps if eps is None else eps)
        root = function_of_eigenpairs(L, V, torch.sqrt) if want in (SQRT, BOTH) else None
        inv = function_of_eigenpairs(L, V, torch.rsqrt) if want in (INVSQRT, BOTH) else None
        return root, inv, L, V


# =========================================================================== registration


@hookimpl
def eigenflow_register(registry):
    """Registers this family's components."""
    registry.add("solver", MPALyaSolver, name="mpa-lya")
    registry.add("solver", MTPLyaSolver, name="mtp-lya")
    registry.add("solver", NSSolver, name="ns")
    registry.add("solver", NSLyaSolver, name="ns-lya")
    registry.add("solver", SVDLyaSolver, name="svd-lya")
