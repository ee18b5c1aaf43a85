"""Smoothed gradient rules for the eigendecomposition backward (thesis 000, Sec. 3.3).

A rule maps eigenvalues ``L (..., n)``, ascending, to ``F (..., n, n)``, the stand-in for
``F_ij = 1/(lambda_j - lambda_i)`` (``i != j``) used by
:func:`eigenflow.core.spectral.eigh_with_rule`.
``F`` is the transpose of the thesis's ``K`` (``K_ij = 1/(lambda_i - lambda_j)``, Eq. 3.6);
the thesis sorts eigenvalues in descending order, eigenflow in ascending order, so the
thesis's upper triangle (``j > i``, ``lambda_j <= lambda_i``) is eigenflow's upper triangle of
``F`` with the roles of ``i`` and ``j`` exchanged. Every rule here computes the upper triangle
``j > i`` (where ``lambda_j >= lambda_i``) and fills the lower one by skew-symmetry.

The ratio rules (Taylor, Padé, power iteration) write, for ``j > i``,
``1/(lambda_j - lambda_i) = (1/lambda_j) f(lambda_i/lambda_j)``, ``f(x) = 1/(1-x)``
(Eq. 3.11), with ``x`` in ``[0, 1]``. They need a non-negative spectrum: eigenvalues are
shifted by ``min(lambda_min, 0)`` (differences are unchanged; PSD input is not shifted) and
floored at ``eps * max(max(mu), max|lambda|)`` (and at ``sqrt(tiny)``), so ``1/lambda_j``
stays finite on singular input; ``max|lambda| = ||A||_2`` sets the floor where the shift
leaves nothing (``-c I`` becomes the zero spectrum: floor ``eps c``, and the Padé rule's cap
``bound / c`` of ``c I``). All rules are plain tensor code: batched, device-agnostic, no host syncs.
"""

from __future__ import annotations

import math

import torch

from .errors import NotSupportedError
from .pade import RationalApproximant, geometric_pade, geometric_taylor

__all__ = [
    "PadeRule",
    "clip_rule",
    "default_eps",
    "pade_bound",
    "pade_rule",
    "power_iteration_rule",
    "ratio_spectrum",
    "skew_from_upper",
    "spectrum_scale",
    "taylor_rule",
    "topn_rule",
    "truncation_rule",
]


def default_eps(dtype: torch.dtype, eps: float | None) -> float:
    """``eps`` or, when ``None``, the machine epsilon of ``dtype``."""
    return torch.finfo(dtype).eps if eps is None else eps


def skew_from_upper(U: torch.Tensor) -> torch.Tensor:
    """``T - T^T`` with ``T`` the strict upper triangle of ``U (..., n, n)``."""
    T = torch.triu(U, diagonal=1)
    return T - T.mT


def spectrum_scale(L: torch.Tensor) -> torch.Tensor:
    """``max(lambda_max - min(lambda_min, 0), max|lambda|)`` per matrix ``(..., 1)``: the
    largest shifted eigenvalue of :func:`ratio_spectrum`, or ``||A||_2`` where the shift
    leaves less (a spectrum ``-c I`` shifts to zeros). Multiplied by ``eps`` it is the
    absolute resolution of the forward eigendecomposition."""
    shifted = L.amax(dim=-1, keepdim=True) - L.amin(dim=-1, keepdim=True).clamp_max(0.0)
    return torch.maximum(shifted, L.abs().amax(dim=-1, keepdim=True))


def ratio_spectrum(L: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Non-negative, floored eigenvalues ``mu (..., n)`` used by the ratio rules.

    ``mu = max(L - min(lambda_min, 0), floor)`` with ``floor = max(eps * s, sqrt(tiny))``
    per matrix, ``s`` from :func:`spectrum_scale` (``eps=None``: the dtype's machine epsilon).
    Order is preserved.
    """
    e = default_eps(L.dtype, eps)
    mu = L - L.amin(dim=-1, keepdim=True).clamp_max(0.0)
    floor = (e * spectrum_scale(L)).clamp_min(math.sqrt(torch.finfo(L.dtype).tiny))
    return torch.maximum(mu, floor)


def _ratios(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each pair ``(i, j)``: ``x = mu_i/mu_j``, ``y = (mu_j - mu_i)/mu_j`` (accurate near
    ``x = 1``) and ``1/mu_j``; valid (in ``[0, 1]``) on the upper triangle, clamped elsewhere."""
    small = mu.unsqueeze(-1)
    large = mu.unsqueeze(-2)
    inv = 1.0 / large
    x = (small * inv).clamp(0.0, 1.0)
    y = ((large - small) * inv).clamp(0.0, 1.0)
    return x, y, inv.expand_as(x)


def taylor_rule(L: torch.Tensor, degree: int = 100, eps: float | None = None) -> torch.Tensor:
    """SVD-Taylor (Eq. 3.11-3.13): ``F_ij = (1/mu_j) sum_{k=0}^{degree} (mu_i/mu_j)^k``.

    Bounded by ``(degree + 1)/mu_j`` (Table 3.2), attained at ``mu_i = mu_j``.
    """
    x, y, inv = _ratios(ratio_spectrum(L, eps))
    return skew_from_upper(inv * geometric_taylor(x, degree, y))


def pade_bound(dtype: torch.dtype, bound: float | None) -> float:
    """``bound`` or, when ``None``, ``1/eps`` of ``dtype`` (pole shift of one unit roundoff)."""
    return 1.0 / torch.finfo(dtype).eps if bound is None else float(bound)


def _check_bound_fits(bound: float, dtype: torch.dtype) -> None:
    """Refuse a Padé ``bound`` whose tie values cannot be represented in ``dtype``: the
    backward multiplies ``bound / lambda`` by the incoming gradient, so it must stay below
    ``max * eps`` of the dtype (4.1e31 in float32; the gradient on the identity was NaN from
    about 1e38). Plain Python on static values (traceable)."""
    info = torch.finfo(dtype)
    limit = info.max * info.eps
    if bound > limit:
        dtype_name = str(dtype).replace("torch.", "")
        raise NotSupportedError(
            f"Padé bound = {bound:.3g} (option 'bound', 'pade_bound' of batched-ed) is too "
            f"large for {dtype_name} input: at most {limit:.3g} "
            f"(max * eps of {dtype_name}), so that the gradient's tie values stay finite; "
            "lower bound or use float64"
        )


def pade_rule(
    L: torch.Tensor,
    degree: int = 100,
    bound: float | None = None,
    eps: float | None = None,
    *,
    approximant: RationalApproximant | None = None,
) -> torch.Tensor:
    """SVD-Padé (Eq. 3.14-3.18): ``F_ij = (1/mu_j) r(mu_i/mu_j)`` with ``r`` the regularised
    diagonal Padé approximant of ``1/(1-x)`` of total degree ``degree`` whose maximum on
    ``[0, 1]`` is ``bound`` (:func:`eigenflow.core.pade.geometric_pade`), capped at
    ``bound / mu_max``.

    Near ``x = 1``, ``r(x)/mu_j ~ 1/(mu_j - mu_i + mu_j/bound)``: the singularity is moved by
    ``mu_j/bound``, a relative amount. For small eigenvalues that is far below the absolute
    resolution ``~ eps * mu_max`` of the forward ``eigh``, and the tie value ``bound/mu_j``
    (``bound/(eps mu_max)`` on floored eigenvalues of singular input) only amplifies rounding.
    The cap ``bound/mu_max`` (``1/(eps mu_max)`` at the default bound) removes that without
    touching any resolvable gap: ``|F_ij| <= bound/mu_max`` (eigenflow's Table 3.2 entry;
    ``mu_max`` at least ``max|lambda|``, :func:`spectrum_scale`).

    ``approximant``: ``r`` already built for ``(degree, bound)`` and ``L``'s dtype. Without
    it, ``r`` is derived here in exact rational arithmetic (cached per process), which
    ``torch.compile`` must not trace: traced code uses :class:`PadeRule`, which builds ``r``
    once at configuration time.
    """
    b = pade_bound(L.dtype, bound)
    _check_bound_fits(b, L.dtype)
    r = geometric_pade(degree, b) if approximant is None else approximant
    mu = ratio_spectrum(L, eps)
    n = L.shape[-1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=L.device)
    small, large = mu[..., rows], mu[..., cols]  # the n(n-1)/2 pairs j > i only
    x = (small / large).clamp(0.0, 1.0)
    y = ((large - small) / large).clamp(0.0, 1.0)
    cap = b / torch.maximum(mu.amax(dim=-1, keepdim=True), spectrum_scale(L))
    upper = torch.zeros(*L.shape, n, dtype=L.dtype, device=L.device)
    upper[..., rows, cols] = torch.minimum(r(x, y) / large, cap)
    return upper - upper.mT


class PadeRule:
    """The SVD-Padé rule (:func:`pade_rule`) with its approximants built up front.

    The exact rational derivation of ``r`` (about 0.25 s at degree 100) runs here, once per
    working dtype (float32 and float64: ``bound=None`` means ``1/eps`` of the dtype), so a
    call traces under ``torch.compile`` as plain tensor code.

    Parameters
    ----------
    degree, bound, eps
        As :func:`pade_rule`.
    """

    def __init__(self, degree: int = 100, bound: float | None = None, eps: float | None = None):
        self.degree, self.bound, self.eps = degree, bound, eps
        self.approximants = {
            dtype: geometric_pade(degree, pade_bound(dtype, bound))
            for dtype in (torch.float32, torch.float64)
        }

    def __call__(self, L: torch.Tensor) -> torch.Tensor:
        """``F (..., n, n)`` from eigenvalues ``L (..., n)`` (float32 or float64)."""
        return pade_rule(
            L, self.degree, self.bound, self.eps, approximant=self.approximants[L.dtype]
        )


def truncation_rule(L: torch.Tensor, threshold: float = 1e10) -> torch.Tensor:
    """SVD-Trunc (Eq. 3.9): ``F_ij = 1/(lambda_j - lambda_i)`` truncated to ``[-T, T]``.

    Computed as ``1/max(lambda_j - lambda_i, 1/T)`` on the upper triangle, so it never forms
    ``1/0``; ``|F_ij| <= T`` (Table 3.2), attained when ``|lambda_i - lambda_j| <= 1/T``.
    """
    gap = L.unsqueeze(-2) - L.unsqueeze(-1)
    return skew_from_upper(1.0 / gap.clamp_min(1.0 / threshold))


def clip_rule(L: torch.Tensor, max_value: float = 1e6) -> torch.Tensor:
    """SVD-Clip: ``F_ij = 1/(lambda_j - lambda_i)`` clipped to ``max_value / max|lambda|``.

    The clipping level is relative to each matrix's spectral radius, so the rule is scale
    invariant (unlike SVD-Trunc's absolute ``T``): eigenvalue gaps below
    ``max|lambda| / max_value`` are treated as that gap.
    """
    tiny = math.sqrt(torch.finfo(L.dtype).tiny)
    scale = L.abs().amax(dim=-1, keepdim=True).clamp_min(tiny).unsqueeze(-1)
    gap = L.unsqueeze(-2) - L.unsqueeze(-1)
    return skew_from_upper(1.0 / torch.maximum(gap, scale / max_value))


def topn_rule(L: torch.Tensor, keep: int, eps: float | None = None) -> torch.Tensor:
    """SVD-TopN (Eq. 3.8): ``F`` of ``diag(lambda_1, ..., lambda_N, 0, ..., 0)`` (the ``keep``
    largest eigenvalues kept, the others set to 0).

    ``F_ij = 1/(lhat_j - lhat_i)`` on the upper triangle, with ``0`` where ``lhat_j = lhat_i``
    (between discarded eigenvalues, and at exact ties of kept ones). Kept eigenvalues are
    floored like :func:`ratio_spectrum`, so a kept/discarded pair gives ``1/lambda_j <=
    1/lambda_N`` (Table 3.2). Near-ties among kept eigenvalues keep the exact, large value.
    """
    n = L.shape[-1]
    kept = torch.arange(n, device=L.device) >= n - keep
    lhat = torch.where(kept, ratio_spectrum(L, eps), torch.zeros_like(L))
    gap = lhat.unsqueeze(-2) - lhat.unsqueeze(-1)
    safe = torch.where(gap > 0, gap, torch.ones_like(gap))
    return skew_from_upper(torch.where(gap > 0, 1.0 / safe, torch.zeros_like(gap)))


def power_iteration_rule(
    L: torch.Tensor, iterations: int = 20, eps: float | None = None
) -> torch.Tensor:
    """SVD-PI (Eq. 3.10): the coupling of the dominant eigenvector only.

    ``F_(i, n-1) = (1/mu_(n-1)) sum_{k=0}^{iterations} (mu_i/mu_(n-1))^k``: ``iterations``
    steps of power iteration applied to ``(I - u_1 u_1^T)`` give this truncated Neumann series
    of ``(lambda_1 I - A)^+``. All other entries are 0. Bounded by
    ``(iterations + 1)/lambda_1``.
    """
    mu = ratio_spectrum(L, eps)
    top = mu[..., -1:]
    x = (mu / top).clamp(0.0, 1.0)
    y = ((top - mu) / top).clamp(0.0, 1.0)
    column = geometric_taylor(x, iterations, y) / top
    U = torch.zeros(*L.shape, L.shape[-1], dtype=L.dtype, device=L.device)
    U[..., :, -1] = column
    return skew_from_upper(U)
