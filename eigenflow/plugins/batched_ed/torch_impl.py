"""Pure PyTorch batched eigendecomposition of symmetric matrices (thesis 000, Sec. 3.4).

Two stages, each advancing a whole batch ``(B, n, n)`` together:

1. :func:`tridiagonalize` - ``A = P T P^T`` (Eq. 3.19-3.20) by ``n - 2`` Householder reflectors,
   each applied as a symmetric rank-2 update of the trailing block (Eq. 3.22-3.23), with ``P``
   accumulated in WY form ``P = I - W Y^T`` (Theorem 2, Eq. 3.25).
2. :func:`tridiagonal_qr` - shifted QR iterations on ``T`` by Givens rotations (Eq. 3.26-3.30)
   with the double Wilkinson shift of the trailing ``2 x 2`` block (Eq. 3.36-3.37), progressive
   dimension shrinkage per matrix (Eq. 3.38, Fig. 3.6), each rotation touching only the
   entries of ``T`` next to it (economic eigenvalue calculation) and two columns of the
   eigenvector matrix (Eq. 3.44).

``T`` is kept as its diagonal ``d (B, n)`` and off-diagonal ``e (B, n-1)``. Every matrix of the
batch has its own active block ``[lo, hi]``: the last unreduced block of ``T`` (all ``e``
below ``hi`` are zero, ``e[lo-1]`` is zero). A rotation at position ``k`` acts on a matrix only
when ``lo <= k < hi``; elsewhere it is the identity, so matrices that have converged, or whose
active block is smaller, ride along unchanged. Python loops run over the matrix size and the
QR steps, never over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...core.scaling import divide_by_peak
from ...core.spectral import symmetrize

__all__ = [
    "BatchedEighResult",
    "batched_eigh",
    "tridiagonal_qr",
    "tridiagonalize",
    "wy_accumulate",
]


class BatchedEighResult(NamedTuple):
    """Eigenvalues ascending ``(B, n)``, eigenvectors ``(B, n, n)`` (columns), per-matrix
    convergence flags ``(B,)`` and the number of QR steps taken (a Python int from the PyTorch
    implementation, a 0-d device tensor from the Triton kernel: ``int()`` reads either)."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    converged: torch.Tensor
    qr_steps: int | torch.Tensor


# --------------------------------------------------------------------------- stage 1


def householder_vector(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reflector ``H = I - tau u u^T`` with ``H x = beta e_1`` for each row of ``x (B, m)``.

    Eq. 3.24: ``u = x - beta e_1`` with ``|beta| = ||x||``; the sign of ``beta`` is opposite to
    ``x_1`` so that ``u_1 = x_1 - beta`` involves no cancellation. ``tau = 2 / ||u||^2``
    (Eq. 3.21), and ``tau = 0`` (no reflection) when ``x`` is already zero. ``H`` does not
    change when ``u`` is scaled, so ``u`` is formed from ``x / max|x|``: its squared norm lies
    in ``[2, 4m]`` and ``tau`` cannot overflow however small ``x`` is (a column that is zero up
    to rounding, e.g. of a rank-one matrix, would otherwise give ``tau = inf`` and NaN).

    Returns ``u (B, m)``, ``tau (B,)``, ``beta (B,)``.
    """
    peak = x.abs().amax(dim=-1)
    nonzero = peak > 0
    xs = x / torch.where(nonzero, peak, 1.0).unsqueeze(-1)
    alpha = xs[:, 0]
    norm = torch.linalg.vector_norm(xs, dim=-1)
    sign = torch.where(alpha >= 0, 1.0, -1.0).to(x.dtype)
    u = xs.clone()
    u[:, 0] = alpha + sign * norm
    # ||u||^2 = 2 ||xs|| (||xs|| + |alpha|) >= 2 for xs != 0, from already computed quantities
    unorm2 = 2.0 * norm * (norm + alpha.abs())
    tau = torch.where(nonzero, 2.0 / torch.where(nonzero, unorm2, 1.0), 0.0)
    return u, tau, -sign * norm * peak


def tridiagonalize(
    A: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Householder tridiagonalisation ``A = P T P^T`` of symmetric ``A (B, n, n)``.

    Reflector ``k`` zeroes column ``k`` below the sub-diagonal. It is applied to the trailing
    block ``S`` as the symmetric rank-2 update of Eq. 3.22-3.23,
    ``S <- S - u w^T - w u^T`` with ``p = tau S u`` and ``w = p - (tau/2)(u^T p) u``
    (the thesis prints ``K = u^T p / ||u||^2`` and ``q = p - K u``: that is the same ``w``).
    Only the lower-right block that the reflector changes is touched, so step ``k`` costs
    ``O((n-k)^2)`` per matrix.

    Returns the diagonal ``d (B, n)`` and off-diagonal ``e (B, n-1)`` of ``T`` and the
    reflectors ``U (B, n, n-2)`` (column ``k`` zero above row ``k+1``) and ``tau (B, n-2)``
    for :func:`wy_accumulate`.
    """
    B, n, _ = A.shape
    S = A.clone()
    d = A.new_zeros(B, n)
    e = A.new_zeros(B, max(n - 1, 0))
    n_refl = max(n - 2, 0)
    U = A.new_zeros(B, n, n_refl)
    taus = A.new_zeros(B, n_refl)
    for k in range(n_refl):
        d[:, k] = S[:, 0, 0]
        u, tau, beta = householder_vector(S[:, 1:, 0])
        e[:, k] = beta
        S = S[:, 1:, 1:]
        p = tau.unsqueeze(-1) * torch.linalg.vecdot(S, u.unsqueeze(-2))  # tau S u, S symmetric
        K = 0.5 * tau * torch.linalg.vecdot(u, p)
        w = p - K.unsqueeze(-1) * u
        S = S - u.unsqueeze(-1) * w.unsqueeze(-2) - w.unsqueeze(-1) * u.unsqueeze(-2)
        U[:, k + 1 :, k] = u
        taus[:, k] = tau
    if n >= 2:
        d[:, n - 2] = S[:, -2, -2]
        e[:, n - 2] = S[:, -1, -2]
    d[:, n - 1] = S[:, -1, -1]
    return d, e, U, taus


def wy_accumulate(U: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``P = H_0 H_1 ... H_{m-1} = I - W Y^T`` from reflectors ``H_k = I - tau_k u_k u_k^T``.

    WY representation (Theorem 2): ``Y = [u_0 .. u_{m-1}]`` and
    ``w_k = tau_k (u_k - W_{<k} (Y_{<k}^T u_k))``, built column by column (``O(n k)`` each),
    then ``P`` by one batched matrix product. ``U (B, n, m)``, ``tau (B, m)`` -> ``(B, n, n)``.
    """
    B, n, m = U.shape
    eye = torch.eye(n, dtype=U.dtype, device=U.device).expand(B, n, n)
    if m == 0:
        return eye.clone()
    W = torch.zeros_like(U)
    W[:, :, 0] = tau[:, :1] * U[:, :, 0]
    for k in range(1, m):
        u = U[:, :, k]
        coeff = (U[:, :, :k].mT @ u.unsqueeze(-1)).squeeze(-1)  # Y_{<k}^T u_k
        W[:, :, k] = tau[:, k : k + 1] * (u - (W[:, :, :k] @ coeff.unsqueeze(-1)).squeeze(-1))
    return eye - W @ U.mT


# --------------------------------------------------------------------------- stage 2


def _pick(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for ``x (B, m)`` and integer ``index (B,)`` (clamped into range)."""
    index = index.clamp(0, x.shape[-1] - 1)
    return torch.gather(x, -1, index.unsqueeze(-1)).squeeze(-1)


def trailing_eigenvalues(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """Eigenvalues of ``[[a, b], [b, c]]`` (Eq. 3.36): ``(mu_near, mu_far)``.

    ``mu_near`` is the one closer to ``c`` (the Wilkinson shift, ``mu_{n-1}`` of Eq. 3.37),
    ``mu_far`` the other (``mu_{n-2}``). Computed as ``c - b^2 / (delta + sign(delta) r)``
    with ``delta = (a - c)/2``, ``r = hypot(delta, b)``, which avoids cancellation.
    """
    delta = 0.5 * (a - c)
    r = torch.hypot(delta, b)
    sgn = torch.where(delta >= 0, 1.0, -1.0).to(a.dtype)
    denom = delta + sgn * r
    safe = torch.where(denom != 0, denom, 1.0)
    near = torch.where(denom != 0, c - b * b / safe, c)
    far = a + c - near  # trace
    return near, far


def active_blocks(e: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per matrix, the last unreduced block ``[lo, hi]`` of a tridiagonal with zeroed
    negligible off-diagonals ``e (B, n-1)``; ``lo == hi`` when the matrix is diagonal."""
    B = e.shape[0]
    if n < 2:
        zero = torch.zeros(B, dtype=torch.long, device=e.device)
        return zero, zero
    idx = torch.arange(n - 1, device=e.device).expand(B, n - 1)
    nonzero = e != 0
    # hi = 1 + last index j with e[j] != 0 (0 if none)
    hi = torch.where(nonzero, idx + 1, 0).amax(dim=-1)
    # lo = 1 + last index j < hi - 1 with e[j] == 0 (0 if none)
    split = (~nonzero) & (idx < (hi - 1).unsqueeze(-1))
    lo = torch.where(split, idx + 1, 0).amax(dim=-1)
    return lo, hi


def deflate(d: torch.Tensor, e: torch.Tensor, tol: float) -> torch.Tensor:
    """Zero the off-diagonals that are negligible: ``|e_j| <= tol (|d_j| + |d_{j+1}|)``
    (the shrinkage test of Fig. 3.6, relative to the neighbouring diagonal), or below the
    smallest normal number. Returns the new ``e``."""
    tiny = torch.finfo(e.dtype).tiny
    small = e.abs() <= tol * (d[:, :-1].abs() + d[:, 1:].abs()) + tiny
    return torch.where(small, torch.zeros_like(e), e)


def _jacobi_rotation(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """``(cos, sin)`` of the rotation that diagonalises ``[[a, b], [b, c]]`` exactly,
    in the convention of :func:`_qr_step` (rows ``(cos x + sin z, -sin x + cos z)``)."""
    # tan(2 theta) = 2b / (a - c); pick the small angle |theta| <= pi/4 for stability
    zeta = (c - a) / torch.where(b != 0, 2.0 * b, 1.0)
    sgn = torch.where(zeta >= 0, 1.0, -1.0).to(a.dtype)
    t = sgn / (zeta.abs() + torch.sqrt(1.0 + zeta * zeta))
    t = torch.where(b != 0, t, torch.zeros_like(t))
    cs = torch.rsqrt(1.0 + t * t)
    return cs, -t * cs


def _qr_step(
    d: torch.Tensor,
    e: torch.Tensor,
    Vt: torch.Tensor | None,
    lo: torch.Tensor,
    hi: torch.Tensor,
    shift: torch.Tensor,
    k_start: int,
    k_stop: int,
) -> None:
    """One implicitly shifted QR step (Eq. 3.27, 3.29) on each active block, in place.

    The first rotation of a block is set by ``(d_lo - shift, e_lo)``, the following ones chase
    the bulge it creates down to ``hi``. Rotation ``k`` changes ``d_k, d_{k+1}, e_{k-1}, e_k``,
    the bulge and ``e_{k+1}`` (economic eigenvalue calculation), and eigenvectors ``k, k+1``,
    stored as rows ``k, k+1`` of ``Vt`` (Eq. 3.44). A block of size two is diagonalised by its
    exact Jacobi rotation.
    """
    n = d.shape[-1]
    bulge = torch.zeros_like(d[:, 0])
    size_two = (hi - lo) == 1
    # exact rotation of two-by-two blocks, from the block's entries before the step (the
    # rotations at k < lo leave a matrix untouched)
    jc, js = _jacobi_rotation(_pick(d, lo), _pick(e, lo), _pick(d, lo + 1))
    idx = torch.arange(n, device=d.device)
    start_all = lo.unsqueeze(-1) == idx  # (B, n): rotation k opens the matrix's block
    active_all = (lo.unsqueeze(-1) <= idx) & (idx < hi.unsqueeze(-1))
    exact_all = start_all & size_two.unsqueeze(-1)
    # d_lo - shift: rotations before lo leave d_lo untouched, so it can be formed up front
    x_start = d - shift.unsqueeze(-1)
    zero = torch.zeros_like(bulge)
    for k in range(k_start, k_stop):
        start, active, exact = start_all[:, k], active_all[:, k], exact_all[:, k]
        # every read of d and e happens before the writes at the end of the iteration
        a, b, f = d[:, k], d[:, k + 1], e[:, k]
        prev = e[:, k - 1] if k > 0 else zero
        x = torch.where(start, x_start[:, k], prev)
        z = torch.where(start, f, bulge)
        # (c, s) = (x, z) / r from (x, z) / max(|x|, |z|): with subnormal x and z the
        # quotients x / r would carry a few bits only, and c^2 + s^2 would drift from 1
        peak = torch.maximum(x.abs(), z.abs())
        ok = active & (peak > 0)
        peak = torch.where(ok, peak, 1.0)  # no rotation where inactive or x = z = 0
        xs, zs = x / peak, z / peak
        r = torch.hypot(xs, zs)
        c = torch.where(exact, jc, torch.where(ok, xs / r, 1.0))
        s = torch.where(exact, js, torch.where(ok, zs / r, 0.0))
        cc, ss, cs = c * c, s * s, c * s
        two_csf = 2.0 * cs * f
        new_a = cc * a + two_csf + ss * b
        new_b = ss * a - two_csf + cc * b
        new_f = torch.where(exact, 0.0, cs * (b - a) + (cc - ss) * f)
        # e_{k-1} becomes r; where the block opens, e_{k-1} = 0 = bulge, so c*0 + s*0 = 0
        new_prev = c * prev + s * bulge if k > 0 else None
        if k + 1 < n - 1:
            g = e[:, k + 1]
            bulge = s * g
            e[:, k + 1] = c * g
        d[:, k], d[:, k + 1], e[:, k] = new_a, new_b, new_f
        if new_prev is not None:
            e[:, k - 1] = new_prev
        if Vt is not None:
            vk, vk1 = Vt[:, k], Vt[:, k + 1]
            c_, s_ = c.unsqueeze(-1), s.unsqueeze(-1)
            Vt[:, k], Vt[:, k + 1] = c_ * vk + s_ * vk1, c_ * vk1 - s_ * vk


def tridiagonal_qr(
    d: torch.Tensor,
    e: torch.Tensor,
    Vt: torch.Tensor | None,
    *,
    tol: float,
    max_sweeps: int,
    shift: str = "double-wilkinson",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Diagonalise the tridiagonal ``(d, e)`` by shifted QR sweeps, accumulating into ``V``.

    A sweep is two QR steps (Eq. 3.37). Their shifts are the two eigenvalues ``mu_{n-1}``,
    ``mu_{n-2}`` of the trailing ``2 x 2`` of each active block (Eq. 3.36), taken before the
    sweep. Between the steps each matrix deflates on its own (Eq. 3.38); ``mu_{n-2}`` is used
    for the second step when the first step shrank that block by exactly one row - it then
    estimates the eigenvalue at the new bottom. Otherwise (the first step did not deflate, or
    the block changed) the second step takes the Wilkinson shift of the current trailing block,
    which keeps Wilkinson's global convergence guarantee. ``shift="wilkinson"`` uses the
    current Wilkinson shift for both steps.

    ``Vt (B, n, n)`` holds the eigenvectors as rows (``None``: eigenvalues only).

    Returns ``d``, ``Vt`` (rows still in the order of ``d``), convergence flags ``(B,)`` and
    the number of QR steps taken.
    """
    B, n = d.shape
    steps = 0
    if n < 2:
        return d, Vt, torch.ones(B, dtype=torch.bool, device=d.device), 0
    e = deflate(d, e, tol)
    lo, hi = active_blocks(e, n)
    for _ in range(max_sweeps):
        k_start, k_stop = (int(v) for v in torch.stack([lo.min(), hi.max()]).tolist())
        if k_stop == 0:
            break
        top, bottom = _pick(d, hi - 1), _pick(d, hi)
        mu_near, mu_far = trailing_eigenvalues(top, _pick(e, hi - 1), bottom)
        _qr_step(d, e, Vt, lo, hi, mu_near, k_start, k_stop)
        steps += 1
        e = deflate(d, e, tol)
        new_lo, new_hi = active_blocks(e, n)
        k_start, k_stop = (int(v) for v in torch.stack([new_lo.min(), new_hi.max()]).tolist())
        if k_stop == 0:
            lo, hi = new_lo, new_hi
            break
        near2, _ = trailing_eigenvalues(
            _pick(d, new_hi - 1), _pick(e, new_hi - 1), _pick(d, new_hi)
        )
        if shift == "double-wilkinson":
            shrank_by_one = (new_hi == hi - 1) & (new_lo == lo)
            second = torch.where(shrank_by_one, mu_far, near2)
        else:
            second = near2
        lo, hi = new_lo, new_hi
        _qr_step(d, e, Vt, lo, hi, second, k_start, k_stop)
        steps += 1
        e = deflate(d, e, tol)
        lo, hi = active_blocks(e, n)
    converged = hi == 0
    return d, Vt, converged, steps


# --------------------------------------------------------------------------- driver


def batched_eigh(
    A: torch.Tensor,
    *,
    tol: float | None = None,
    max_sweeps_per_dim: int = 15,
    shift: str = "double-wilkinson",
    eigenvectors: bool = True,
) -> BatchedEighResult:
    """Eigendecomposition of symmetric ``A (B, n, n)`` like ``torch.linalg.eigh``.

    Each matrix is scaled by its largest entry first (undone on the eigenvalues), so neither
    the sums of squares of the reflectors nor the rotations overflow or underflow.

    Parameters
    ----------
    A
        Symmetric matrices ``(B, n, n)``, float32 or float64 (only the lower triangle is used
        to form ``T``; the input is symmetrised first).
    tol
        Deflation tolerance (relative to the neighbouring diagonal entries); ``None``: the
        dtype's machine epsilon.
    max_sweeps_per_dim
        The QR sweep cap is ``max_sweeps_per_dim * n`` (two QR steps a sweep).
    shift
        ``"double-wilkinson"`` (Eq. 3.37) or ``"wilkinson"``.
    eigenvectors
        When ``False`` only the eigenvalues are computed (``V`` is not accumulated).

    Returns
    -------
    BatchedEighResult
        Eigenvalues ascending ``(B, n)``, eigenvectors ``(B, n, n)`` (identity-shaped
        placeholder when ``eigenvectors=False``), ``converged (B,)``, QR steps taken.
    """
    B, n, _ = A.shape
    if B == 0:
        empty = A.new_empty(0, n)
        flags = torch.ones(0, dtype=torch.bool, device=A.device)
        return BatchedEighResult(empty, A.new_empty(0, n, n), flags, 0)
    tol = torch.finfo(A.dtype).eps if tol is None else tol
    A, scale = divide_by_peak(symmetrize(A))
    scale = scale[:, 0, 0]
    d, e, U, taus = tridiagonalize(A)
    # eigenvectors as rows, so that a rotation updates two contiguous rows
    Vt = wy_accumulate(U, taus).mT.contiguous() if eigenvectors else None
    d, Vt, converged, steps = tridiagonal_qr(
        d, e, Vt, tol=tol, max_sweeps=max_sweeps_per_dim * n, shift=shift
    )
    L, order = torch.sort(d, dim=-1)
    L = L * scale[:, None]
    if eigenvectors:
        V = torch.gather(Vt, -2, order.unsqueeze(-1).expand(B, n, n)).mT.contiguous()
    else:
        V = torch.eye(n, dtype=A.dtype, device=A.device).expand(B, n, n)
    return BatchedEighResult(L, V, converged, steps)
