"""Solvers of the continuous Lyapunov equation ``B X + X B = C`` for symmetric
positive-definite ``B``, the gradient equation of the matrix square root (thesis 000,
Eq. 2.13 and Eq. 2.38).

- :func:`lyapunov_sign_solve`: the coupled Newton-Schulz iteration of the matrix sign
  function of ``H = [[B, C], [0, -B]]`` (Eq. 2.16-2.23, Algorithm 2): ``B_k -> I`` and
  ``C_k -> 2 X``. Matrix products only; no host synchronisation in its default path.
- :func:`lyapunov_exact`: the exact solution through the eigendecomposition of ``B``
  (``B = U diag(s) U^T``, ``X = U ((U^T C U) / (s_i + s_j)) U^T``), the Bartels-Stewart
  reference of Table 2.9.
- :func:`normalising_scale`: the per-matrix scale ``s`` used to pre-normalise ``B / s``
  (Frobenius norm as in the thesis, a spectral-norm estimate, or the Schatten 4-norm).

Everything is batched over ``(B, n, n)`` (any leading batch is flattened by the caller) and
computed in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ...core.scaling import divide_by_peak

__all__ = [
    "SCALINGS",
    "lyapunov_exact",
    "lyapunov_exact_eig",
    "lyapunov_sign_iterates",
    "lyapunov_sign_solve",
    "normalised_lower_bound",
    "normalising_scale",
    "schatten_scale_and_square",
    "sign_step_coefficients",
    "sign_steps_to_reach",
]

SCALINGS = ("frobenius", "spectral", "schatten")
"""Names accepted by :func:`normalising_scale`."""

# Power-iteration steps of the "spectral" scale, and the guaranteed bound it keeps: the scale
# is never below ``upper_bound / _SPECTRAL_SAFETY`` so that ||A / s||_2 <= 1.6 < sqrt(3), inside
# the convergence region of the Newton-Schulz sign iteration and of the Taylor series (< 2).
_POWER_STEPS = 6
_SPECTRAL_SAFETY = 1.6


def _frobenius(A: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(A, ord="fro", keepdim=True)


def normalising_scale(A: torch.Tensor, scaling: str = "frobenius") -> torch.Tensor:
    """Per-matrix scale ``s (B, 1, 1) > 0`` with ``||A / s||_2 <= 1.6`` for symmetric PSD
    ``A (B, n, n)`` (``<= 1`` for ``"frobenius"`` and ``"schatten"``).

    ``"frobenius"``
        ``s = ||A||_F`` (thesis 000, Eq. 2.7 and Sec. 2.3.2). Since ``||A||_F`` can exceed
        ``||A||_2`` by up to ``sqrt(n)``, the smallest eigenvalues of ``A / s`` get smaller and
        the series and the sign iteration converge more slowly on large, flat spectra.
    ``"spectral"``
        An estimate of ``||A||_2 = lambda_max``: 6 power-iteration steps from
        the all-ones vector give a Rayleigh quotient ``r <= lambda_max``; the scale is
        ``max(r, u / 1.6)`` where ``u = min(||A||_F, ||A||_inf) >= lambda_max``, so
        ``||A / s||_2 <= 1.6`` holds whatever the start vector. Costs matrix-vector products
        only. (eigenflow extension; measured in ``docs/matfn.rst``.)
    ``"schatten"``
        The Schatten 4-norm ``s = ||A^2||_F^(1/2) = (sum_i lambda_i^4)^(1/4)``: still a
        guaranteed bound ``s >= lambda_max``, but tighter than the Frobenius norm (``s /
        lambda_max <= n^(1/4)`` instead of ``n^(1/2)``), so the small eigenvalues of ``A / s``
        are larger and the series and the sign iteration converge in fewer steps. Costs one
        matrix product, which the callers reuse (:func:`schatten_scale_and_square`).
        (eigenflow extension; measured in ``docs/matfn.rst``.)

    Every scale is computed on ``A / max|A|`` and multiplied back (they are all homogeneous),
    so no sum of squares overflows or underflows wherever ``A`` itself is representable
    (``||A||_F`` of entries above about 1e19 is ``inf`` in float32). The scale is floored at
    the dtype's smallest normal number so the zero matrix gives finite results. No host
    synchronisation.
    """
    if scaling == "schatten":
        return schatten_scale_and_square(A)[0]
    if scaling not in SCALINGS:
        raise ValueError(f"scaling = {scaling!r} is invalid: expected one of {SCALINGS}")
    tiny = torch.finfo(A.dtype).tiny
    A, peak = divide_by_peak(A)
    fro = _frobenius(A)
    if scaling == "frobenius":
        return (fro * peak).clamp_min(tiny)
    inf_norm = A.abs().sum(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)
    upper = torch.minimum(fro, inf_norm)
    v = torch.ones((*A.shape[:-1], 1), dtype=A.dtype, device=A.device)
    for _ in range(_POWER_STEPS):
        w = A @ v
        v = w / _frobenius(w).clamp_min(tiny)
    rayleigh = (v.mT @ (A @ v)) / (v.mT @ v).clamp_min(tiny)
    return (torch.maximum(rayleigh, upper / _SPECTRAL_SAFETY) * peak).clamp_min(tiny)


def schatten_scale_and_square(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, (A / s)^2)`` with ``s = ||A^2||_F^(1/2)`` (the ``"schatten"`` scale of
    :func:`normalising_scale`) for symmetric ``A (B, n, n)``; one matrix product.

    The square is taken of ``A / ||A||_F`` (entries at most 1), and ``||A||_F`` as ``max|A|
    ||A / max|A| ||_F``, so that nothing overflows or underflows where ``A`` itself is
    representable; ``(A / s)^2`` is returned because the callers need it (the first power of
    the Padé series, the first step of the sign iteration).
    """
    tiny = torch.finfo(A.dtype).tiny
    unit, peak = divide_by_peak(A)
    fro = (_frobenius(unit) * peak).clamp_min(tiny)
    A1 = A / fro
    A1_sq = A1 @ A1
    # t = ||A1^2||_F^(1/2) lies in [||A1||_2, ||A1||_F] = [n^(-1/2), 1] for A != 0; the floor
    # (a valid lower bound) keeps the zero matrix finite.
    t = _frobenius(A1_sq).sqrt().clamp_min(A.shape[-1] ** -0.5)
    return (fro * t).clamp_min(tiny), A1_sq / (t * t)


def _flat(X: torch.Tensor) -> torch.Tensor:
    """``(..., n, n) -> (b, n, n)`` (``bmm`` needs exactly one batch dimension)."""
    return X.reshape(-1, X.shape[-2], X.shape[-1])


def sign_step_coefficients(iters: int, lower: float | None = None) -> list[tuple[float, float]]:
    """Coefficients ``(a_k, b_k)`` of the steps ``B_{k+1} = a_k B_k + b_k B_k^3``.

    ``lower = None``: the Newton-Schulz step of Eq. 2.22, ``(1.5, -0.5)`` every time.
    ``lower = l`` in ``(0, 1)``: scaled steps for a spectrum assumed in ``[l, 1]``: step ``k``
    is the Newton-Schulz step applied to ``alpha_k B_k`` with ``alpha_k^2 = 3 / (1 + l_k +
    l_k^2)``, the scale for which the cubic ``f(x) = alpha x (3 - alpha^2 x^2) / 2`` takes
    equal values at both ends of ``[l_k, 1]`` (its maximum, 1, is inside), so ``[l_k, 1]``
    maps into ``[l_{k+1}, 1]`` with ``l_{k+1} = f(l_k)``, about ``2.6 l_k`` while ``l_k`` is
    small instead of ``1.5 l_k`` (the scaled Newton-Schulz variant of Chen and Chow, 2014;
    eigenflow extension). ``alpha_k -> 1`` as ``l_k -> 1``, so the last steps are Eq. 2.22.
    Eigenvalues below ``l`` still converge, only later (a step multiplies such an ``x`` by
    ``alpha_k (3 - alpha_k^2 x^2) / 2 >= alpha_k >= 1``, about ``1.5 alpha_k`` when ``x`` is
    small, and the last steps are the plain ones); eigenvalues above 1 are not allowed
    (``alpha_k x`` must stay below ``sqrt(3)``), hence the Frobenius or Schatten
    pre-normalisation.
    """
    if lower is None:
        return [(1.5, -0.5)] * iters
    coefficients, low = [], float(lower)
    for _ in range(iters):
        alpha = math.sqrt(3.0 / (1.0 + low + low * low))
        coefficients.append((1.5 * alpha, -0.5 * alpha**3))
        low = 0.5 * alpha * low * (3.0 - (alpha * low) ** 2)
    return coefficients


def sign_steps_to_reach(lower: float, target: float, scaled: bool, cap: int = 64) -> int:
    """Fewest sign steps after which every eigenvalue of ``B_0`` in ``[lower, 1]`` is within
    ``target`` of 1, in exact arithmetic (the scalar model of the iteration).

    Every ``B_k`` is the same scalar polynomial of ``B_0`` (Eq. 2.22), so the iteration acts on
    each eigenvalue separately. With the plain steps (``scaled=False``) ``x -> x (3 - x^2) / 2``
    is increasing on ``[0, 1]``, so ``lower`` converges last; with the scaled steps of
    :func:`sign_step_coefficients` (``scaled=True``, for ``[lower, 1]``) both ends of ``[l_k,
    1]`` map to ``l_{k+1}``, the worst value. Either way the worst error after ``k`` steps is
    ``1 - x_k`` with ``x_0 = lower``. Since the relative error of ``X_k`` is bounded by the
    largest ``|1 - g_k(b)|`` (see :func:`lyapunov_sign_solve`), this is the count that
    brings the solution within ``target`` for every ``B / s`` with spectrum in ``[lower, 1]``.
    Returns ``cap`` when ``target`` is not reached by then.
    """
    if not 0.0 < lower <= 1.0:
        raise ValueError(f"lower = {lower!r} is invalid: expected a number in (0, 1]")
    x = lower
    coefficients = sign_step_coefficients(cap, lower if scaled else None)
    for k, (a, b) in enumerate(coefficients, start=1):
        x = a * x + b * x**3
        if 1.0 - x <= target:
            return k
    return cap


def normalised_lower_bound(n: int, scaling: str, condition: float) -> float:
    """Guaranteed lower end of the spectrum of ``B / s`` for a symmetric positive definite
    ``B (n, n)`` with condition number at most ``condition``, ``s`` the scale that
    :func:`lyapunov_sign_solve` uses with ``scaling``.

    ``s <= c lambda_max`` with ``c = sqrt(n)`` (Frobenius norm), ``n^(1/4)`` (Schatten 4-norm)
    or ``max(1.6, sqrt(n)) * 1.6`` (the spectral estimate times its safety factor, as the
    scaled steps use it), so ``lambda_min / s >= 1 / (c condition)``.
    """
    factor = {
        "frobenius": math.sqrt(n),
        "schatten": n**0.25,
        "spectral": max(_SPECTRAL_SAFETY, math.sqrt(n)) * _SPECTRAL_SAFETY,
    }
    if scaling not in factor:
        raise ValueError(f"scaling = {scaling!r} is invalid: expected one of {SCALINGS}")
    return min(1.0, 1.0 / (factor[scaling] * condition))


def _sign_step(
    Bk: torch.Tensor,
    Ck: torch.Tensor,
    B2: torch.Tensor | None = None,
    a: float = 1.5,
    b: float = -0.5,
    last: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One coupled step of Eq. 2.22 (6 matrix products, additions fused into them).

    ``H_{k+1} = a H_k + b H_k^3`` for ``H = [[B, C], [0, -B]]``: ``B_{k+1} = a B + b B B^2``
    and ``C_{k+1} = a C - b (B C) B + b B (B C) + b C B^2``; ``(a, b) = (1.5, -0.5)`` is Eq.
    2.22 with ``3I - B^2`` expanded so every sum is a ``baddbmm``. ``B2``: ``B_k^2`` when the
    caller already has it (one product fewer). ``last``: skip ``B_{k+1}`` (returned as
    ``None``; one product fewer), for the final step of a fixed count.
    """
    B2 = torch.bmm(Bk, Bk) if B2 is None else B2
    BC = torch.bmm(Bk, Ck)
    B_next = None if last else torch.baddbmm(Bk, Bk, B2, beta=a, alpha=b)
    C_next = torch.baddbmm(Ck, BC, Bk, beta=a, alpha=-b)
    C_next.baddbmm_(Bk, BC, alpha=b)  # in place on the new tensor: no copy
    C_next.baddbmm_(Ck, B2, alpha=b)
    return B_next, C_next


def _sign_step_symmetric(
    Bk: torch.Tensor,
    Ck: torch.Tensor,
    B2: torch.Tensor | None = None,
    a: float = 1.5,
    b: float = -0.5,
    last: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`_sign_step` for symmetric ``C_k``: 5 matrix products instead of 6 (4 with
    ``B2``; 3 with ``last``, which skips ``B_k^2`` and ``B_{k+1}``).

    Every ``B_k`` is a polynomial in the symmetric ``B_0``, so when ``C_0`` is symmetric so is
    every ``C_k``, and ``C_k B_k^2 = (B_k^2 C_k)^T``: with ``M = B C`` (so ``B M = B^2 C``,
    ``M B = B C B``), ``C_{k+1} = a C - b M B + b (B M + (B M)^T)``. In exact arithmetic
    these are the iterates of :func:`_sign_step`.
    """
    B_next = None
    if not last:
        B2 = torch.bmm(Bk, Bk) if B2 is None else B2
        B_next = torch.baddbmm(Bk, Bk, B2, beta=a, alpha=b)
    M = torch.bmm(Bk, Ck)
    # C_{k+1} = H + H^T with H = b B M - b M B / 2 + a C / 2: exactly symmetric, so rounding
    # leaves no skew part (which this step, unlike Eq. 2.22, would amplify 2x per iteration).
    # Accumulated in place in the tensor of the first product (no copies).
    H = torch.bmm(Bk, M)
    H.baddbmm_(M, Bk, beta=b, alpha=-0.5 * b)
    H.add_(Ck, alpha=0.5 * a)
    return B_next, H + H.mT


def _initial_iterates(
    B: torch.Tensor, C: torch.Tensor, scaling: str, symmetric: bool, lower: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(B_0, C_0, B_0^2 or None)``: the pre-normalised start of the sign iteration.

    With scaled steps (``lower``) and the ``"spectral"`` estimate, the scale is multiplied by
    its safety factor 1.6 so that ``||B_0||_2 <= 1`` holds, as the scaled steps need."""
    B0_sq = None
    if scaling == "schatten":
        s, B0_sq = schatten_scale_and_square(B)
    else:
        s = normalising_scale(B, scaling)
        if lower is not None and scaling == "spectral":
            s = s * _SPECTRAL_SAFETY
    C0 = torch.add(C, C.mT).mul_(0.5 / s) if symmetric else C / s
    return B / s, C0, B0_sq


def _check_lower(lower: float | None, scaling: str) -> None:
    if lower is None:
        return
    if not 0.0 < lower < 1.0:
        raise ValueError(f"lower = {lower!r} is invalid: expected a number in (0, 1) or None")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling = {scaling!r} is invalid: expected one of {SCALINGS}")


def lyapunov_sign_iterates(
    B: torch.Tensor,
    C: torch.Tensor,
    iters: int,
    scaling: str = "frobenius",
    symmetric: bool = False,
    lower: float | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(k, B_k, X_k = C_k / 2)`` for ``k = 0..iters`` of the sign iteration.

    For studying convergence (Table 2.9 of thesis 000); :func:`lyapunov_sign_solve` is the
    solver (same arguments).
    """
    _check_lower(lower, scaling)
    B, C = _flat(B), _flat(C)
    Bk, Ck, B2 = _initial_iterates(B, C, scaling, symmetric, lower)
    step = _sign_step_symmetric if symmetric else _sign_step
    yield 0, Bk, 0.5 * Ck
    for k, (a, b) in enumerate(sign_step_coefficients(iters, lower), start=1):
        Bk, Ck = step(Bk, Ck, B2, a, b)
        B2 = None
        yield k, Bk, 0.5 * Ck


def lyapunov_sign_solve(
    B: torch.Tensor,
    C: torch.Tensor,
    iters: int = 8,
    tol: float | None = None,
    scaling: str = "frobenius",
    symmetric: bool = False,
    lower: float | None = None,
) -> torch.Tensor:
    """Solve ``B X + X B = C`` by the coupled sign iteration (Algorithm 2 of thesis 000).

    ``B_0 = B / s``, ``C_0 = C / s`` with ``s`` from :func:`normalising_scale` (per matrix),
    then ``B_{k+1} = B_k (3I - B_k^2) / 2``, ``C_{k+1} = (-B_k^2 C_k + B_k C_k B_k +
    C_k (3I - B_k^2)) / 2`` (Eq. 2.22), and ``X = C_k / 2`` (Eq. 2.23). 6 matrix products per
    iteration; 5 with ``symmetric=True``; the ``"schatten"`` scale costs one product and
    saves one in the first iteration. The relative error of ``X_k`` is governed by the scalar
    iteration alone: in the eigenbasis of ``B``, ``(X_k)_ij = X_ij (g_k(b_i) + g_k(b_j)) / 2``
    where ``B_k = g_k(B_0)``, so ``||B_k - I||`` bounds it.

    Parameters
    ----------
    B
        ``(..., n, n)`` symmetric positive (semi-)definite.
    C
        ``(..., n, n)`` right-hand side (need not be symmetric), same shape as ``B``.
    iters
        Number of iterations; with ``tol``, the cap.
    tol
        ``None`` (default): exactly ``iters`` iterations. A number: the termination criterion
        ``||B_k - I||_F < tol`` of Sec. 2.3.2, per matrix. A matrix that meets it is frozen
        (masked update with ``torch.where``, no host read), so each matrix stops at its own
        ``k`` while the loop always runs ``iters`` steps (capturable in a CUDA graph, traceable
        by ``torch.compile`` without a graph break). Since ``||X_k - X|| / ||X|| <=
        ||B_k - I||_2`` to first order, ``tol`` bounds the relative error of the result.
    scaling
        Pre-normalisation, see :func:`normalising_scale`.
    symmetric
        ``False`` (default): solve for ``C`` as given. ``True``: solve for its symmetric part
        ``(C + C^T) / 2`` and return the symmetric solution (which is the symmetric part of the
        solution for ``C``, since the operator ``X -> B X + X B`` commutes with transposition),
        with the 5-product step (eigenflow extension). For a gradient with respect to a
        symmetric matrix only this part matters; ``torch.linalg.eigh``'s backward returns it
        too.
    lower
        ``None`` (default): the steps of Eq. 2.22. A number ``l`` in ``(0, 1)``: the scaled
        steps of :func:`sign_step_coefficients` for a normalised spectrum assumed in ``[l,
        1]`` (same cost per step; fewer steps when ``l`` is close to the true smallest
        eigenvalue of ``B / s``). The steps need ``||B / s||_2 <= 1``: with the
        ``"spectral"`` estimate the scale is multiplied by its safety factor 1.6 for them.

    Returns
    -------
    torch.Tensor
        ``X`` with the shape of ``C``.
    """
    _check_lower(lower, scaling)
    shape = C.shape
    B, C = _flat(B), _flat(C)
    Bk, Ck, B2 = _initial_iterates(B, C, scaling, symmetric, lower)
    step = _sign_step_symmetric if symmetric else _sign_step
    eye = torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    for k, (a, b) in enumerate(sign_step_coefficients(iters, lower), start=1):
        if tol is None:
            # The last B_k is not used: its products are skipped.
            Bk, Ck = step(Bk, Ck, B2, a, b, last=k == iters)
            B2 = None
            continue
        active = _frobenius(Bk - eye) >= tol
        B_next, C_next = step(Bk, Ck, B2, a, b, last=k == iters)
        B2 = None
        Bk = Bk if B_next is None else torch.where(active, B_next, Bk)
        Ck = torch.where(active, C_next, Ck)
    return (0.5 * Ck).reshape(shape)


def lyapunov_exact_eig(
    s: torch.Tensor, U: torch.Tensor, C: torch.Tensor, floor: float | None = None
) -> torch.Tensor:
    """Exact solution of ``B X + X B = C`` given ``B = U diag(s) U^T``.

    ``X = U ((U^T C U) / (s_i + s_j)) U^T`` (Bartels-Stewart with the eigendecomposition).

    Parameters
    ----------
    s
        ``(b, n)`` eigenvalues of ``B`` (clamped at 0).
    U
        ``(b, n, n)`` orthonormal eigenvectors (columns).
    C
        ``(b, n, n)`` right-hand side.
    floor
        Relative floor of ``s_i + s_j`` (times ``max s``); ``None``: the dtype's machine
        epsilon. Keeps ``X`` finite when ``B`` is singular (the exact solution is then not
        unique or unbounded).
    """
    s = s.clamp_min(0)
    eps = torch.finfo(s.dtype).eps if floor is None else floor
    denom = s.unsqueeze(-1) + s.unsqueeze(-2)
    smax = s.amax(dim=-1, keepdim=True).unsqueeze(-1)
    denom = torch.maximum(denom, (eps * smax).clamp_min(torch.finfo(s.dtype).tiny))
    return U @ ((U.mT @ C @ U) / denom) @ U.mT


def lyapunov_exact(B: torch.Tensor, C: torch.Tensor, floor: float | None = None) -> torch.Tensor:
    """Exact solution of ``B X + X B = C`` for symmetric PSD ``B (b, n, n)`` through
    ``torch.linalg.eigh(B)`` (see :func:`lyapunov_exact_eig`). Note that ``eigh`` cannot be
    captured in a CUDA graph."""
    s, U = torch.linalg.eigh(B)
    return lyapunov_exact_eig(s, U, C, floor)
