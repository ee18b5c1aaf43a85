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
  (Frobenius norm as in the thesis, or a spectral-norm estimate).

Everything is batched over ``(B, n, n)`` (any leading batch is flattened by the caller) and
computed in the input's dtype.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = [
    "SCALINGS",
    "lyapunov_exact",
    "lyapunov_exact_eig",
    "lyapunov_sign_iterates",
    "lyapunov_sign_solve",
    "normalising_scale",
]

SCALINGS = ("frobenius", "spectral")
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
    ``A (B, n, n)``.

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

    The scale is floored at the dtype's smallest normal number so the zero matrix gives finite
    results. No host synchronisation.
    """
    tiny = torch.finfo(A.dtype).tiny
    fro = _frobenius(A)
    if scaling == "frobenius":
        return fro.clamp_min(tiny)
    if scaling != "spectral":
        raise ValueError(f"scaling = {scaling!r} is invalid: expected one of {SCALINGS}")
    inf_norm = A.abs().sum(dim=-1).amax(dim=-1, keepdim=True).unsqueeze(-1)
    upper = torch.minimum(fro, inf_norm)
    v = torch.ones((*A.shape[:-1], 1), dtype=A.dtype, device=A.device)
    for _ in range(_POWER_STEPS):
        w = A @ v
        v = w / _frobenius(w).clamp_min(tiny)
    rayleigh = (v.mT @ (A @ v)) / (v.mT @ v).clamp_min(tiny)
    return torch.maximum(rayleigh, upper / _SPECTRAL_SAFETY).clamp_min(tiny)


def _flat(X: torch.Tensor) -> torch.Tensor:
    """``(..., n, n) -> (b, n, n)`` (``bmm`` needs exactly one batch dimension)."""
    return X.reshape(-1, X.shape[-2], X.shape[-1])


def _sign_step(
    Bk: torch.Tensor, Ck: torch.Tensor, eye: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One coupled step of Eq. 2.22 (6 matrix products, additions fused into them).

    ``B_{k+1} = 1.5 B - 0.5 B B^2`` and ``C_{k+1} = 1.5 C + 0.5 (B C) B - 0.5 B (B C)
    - 0.5 C B^2``, i.e. Eq. 2.22 with ``3I - B^2`` expanded so every sum is a ``baddbmm``.
    """
    del eye  # the identity is folded into the scalar coefficients
    B2 = torch.bmm(Bk, Bk)
    BC = torch.bmm(Bk, Ck)
    B_next = torch.baddbmm(Bk, Bk, B2, beta=1.5, alpha=-0.5)
    C_next = torch.baddbmm(Ck, BC, Bk, beta=1.5, alpha=0.5)
    C_next = torch.baddbmm(C_next, Bk, BC, alpha=-0.5)
    C_next = torch.baddbmm(C_next, Ck, B2, alpha=-0.5)
    return B_next, C_next


def lyapunov_sign_iterates(
    B: torch.Tensor, C: torch.Tensor, iters: int, scaling: str = "frobenius"
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(k, B_k, X_k = C_k / 2)`` for ``k = 0..iters`` of the sign iteration.

    For studying convergence (Table 2.9 of thesis 000); :func:`lyapunov_sign_solve` is the
    solver.
    """
    B, C = _flat(B), _flat(C)
    s = normalising_scale(B, scaling)
    Bk, Ck = B / s, C / s
    eye = torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    yield 0, Bk, 0.5 * Ck
    for k in range(1, iters + 1):
        Bk, Ck = _sign_step(Bk, Ck, eye)
        yield k, Bk, 0.5 * Ck


def lyapunov_sign_solve(
    B: torch.Tensor,
    C: torch.Tensor,
    iters: int = 8,
    tol: float | None = None,
    scaling: str = "frobenius",
) -> torch.Tensor:
    """Solve ``B X + X B = C`` by the coupled sign iteration (Algorithm 2 of thesis 000).

    ``B_0 = B / s``, ``C_0 = C / s`` with ``s`` from :func:`normalising_scale` (per matrix),
    then ``B_{k+1} = B_k (3I - B_k^2) / 2``, ``C_{k+1} = (-B_k^2 C_k + B_k C_k B_k +
    C_k (3I - B_k^2)) / 2`` (Eq. 2.22), and ``X = C_k / 2`` (Eq. 2.23). 6 matrix products per
    iteration.

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
        (masked update with ``torch.where``, no host synchronisation), so each matrix stops at
        its own ``k``; the loop runs to ``iters`` on accelerators, and on CPU tensors it exits
        as soon as every matrix is frozen (reading a CPU tensor costs no device sync). Results
        are the same on both.
    scaling
        Pre-normalisation, see :func:`normalising_scale`.

    Returns
    -------
    Tensor
        ``X (b, n, n)``.
    """
    shape = C.shape
    B, C = _flat(B), _flat(C)
    s = normalising_scale(B, scaling)
    Bk, Ck = B / s, C / s
    eye = torch.eye(B.shape[-1], dtype=B.dtype, device=B.device)
    can_exit_early = tol is not None and B.device.type == "cpu"
    for _ in range(iters):
        if tol is None:
            Bk, Ck = _sign_step(Bk, Ck, eye)
            continue
        active = _frobenius(Bk - eye) >= tol
        if can_exit_early and not bool(active.any()):
            break
        B_next, C_next = _sign_step(Bk, Ck, eye)
        Bk = torch.where(active, B_next, Bk)
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
