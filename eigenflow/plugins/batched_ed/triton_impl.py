"""Fused Triton kernel of ``batched-ed`` for ``n <= 64`` (thesis 000, Sec. 3.4).

One program per matrix runs the whole algorithm of :mod:`.torch_impl` in a single launch:

- the matrix is loaded once into registers (padded to a power of two ``NP``), scaled by its
  largest entry, tridiagonalised by ``n - 2`` Householder reflectors applied as symmetric
  rank-2 updates of the register tile (Eq. 3.22-3.23), with the WY factors ``W``, ``Y`` of
  ``P`` (Theorem 2) built in registers as well;
- ``P^T`` (eigenvectors as rows) and the diagonals ``d``, ``e`` go to a per-matrix scratch
  (a few KiB per matrix: they stay in L1/L2);
- the shifted QR iterations run with per-matrix scalar control flow (deflation and the active
  block ``[lo, hi]`` are this matrix's own), each rotation reading two scalars and one
  eigenvector row and writing two rows (Eq. 3.44): the rotated values carry over in registers
  to the next rotation of the bulge chase;
- eigenvalues are sorted by ranking inside the kernel (every comparison made on one loaded
  copy of ``d``, so the ranks are a permutation whatever the memory system does) and the
  eigenvectors written as columns, in that order, to their own output buffer (not in place
  over the scratch rows they are read from).

The first GPU run (H200, 2026-11-30, ``benchmarks/results/h200-2026-11-30``) returned
eigenvector matrices with ``||V^T V - I||_2 = 1`` (as if a column were lost or repeated) at
``n = 48``, and at ``n = 64`` with batches of 1024 and more, with correct eigenvalues; the
first 64 of those ``n = 48`` inputs are exact to float32 rounding under the interpreter, so
the fault needs the GPU. Two steps of the final sort could differ between GPU threads and
cannot under the interpreter (the ranks compared two separate loads of ``d``, and the
permutation was written in place over the rows it read); both are gone. Whether that was
the cause is measured by ``benchmarks/batched_ed_gpu_diagnose.py`` on the next GPU run.
Until then the solver's ``backend="auto"`` uses the kernel only for ``n <= 32``
(``solver.TRITON_AUTO_MAX_N``), the sizes the GPU run verified.

Triton is an optional dependency: this module is imported only by the ``triton`` backend.
On a CPU the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``), which is how
it is tested without a GPU.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ...core.errors import NotSupportedError
from .torch_impl import BatchedEighResult

__all__ = ["MAX_N", "batched_eigh"]

MAX_N = 64


@triton.jit
def _deflate(D_ptr, E_ptr, vec, rows, n, tol, tiny):
    """Zero negligible off-diagonals of this matrix; return its active block ``(lo, hi)``."""
    tl.debug_barrier()
    dv = tl.load(D_ptr + vec + rows)
    dn = tl.load(D_ptr + vec + rows + 1, mask=rows + 1 < n, other=0.0)
    ev = tl.load(E_ptr + vec + rows)
    small = tl.abs(ev) <= tol * (tl.abs(dv) + tl.abs(dn)) + tiny
    ev = tl.where(small | (rows >= n - 1), 0.0, ev)
    tl.debug_barrier()
    tl.store(E_ptr + vec + rows, ev)
    hi = tl.max(tl.where(ev != 0, rows + 1, 0), axis=0)
    lo = tl.max(tl.where((ev == 0) & (rows < hi - 1), rows + 1, 0), axis=0)
    tl.debug_barrier()
    return lo, hi


@triton.jit
def _eigh_kernel(
    A_ptr,
    L_ptr,
    V_ptr,
    S_ptr,
    D_ptr,
    E_ptr,
    conv_ptr,
    steps_ptr,
    n,
    tol,
    tiny,
    max_steps,
    NP: tl.constexpr,
    DOUBLE_SHIFT: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, NP)
    cols = tl.arange(0, NP)
    inside = (rows[:, None] < n) & (cols[None, :] < n)
    mat = pid * n * n
    vec = pid * NP
    A = tl.load(A_ptr + mat + rows[:, None] * n + cols[None, :], mask=inside, other=0.0)
    A = 0.5 * A + 0.5 * tl.trans(A)  # (A + A^T) / 2 overflows above half the range
    scale = tl.max(tl.max(tl.abs(A), axis=1), axis=0)
    scale = tl.where(scale > 0, scale, 1.0)
    A = A / scale

    # ---- Householder tridiagonalisation (rank-2 updates) and WY factors of P
    W = tl.zeros((NP, NP), dtype=A.dtype)
    Y = tl.zeros((NP, NP), dtype=A.dtype)
    for k in range(0, n - 2):
        column = tl.sum(tl.where(cols[None, :] == k, A, 0.0), axis=1)
        x = tl.where(rows > k, column, 0.0)
        # u from x / max|x| (H does not change with the scale of u): ||u||^2 >= 2, so tau
        # cannot overflow on a column that is zero up to rounding (torch_impl's reflector)
        peak = tl.max(tl.abs(x), axis=0)
        x = x / tl.where(peak > 0, peak, 1.0)
        alpha = tl.sum(tl.where(rows == k + 1, x, 0.0), axis=0)
        norm = tl.sqrt(tl.sum(x * x, axis=0))
        beta = tl.where(alpha >= 0, -norm, norm)
        u = tl.where(rows == k + 1, x - beta, x)
        unorm2 = 2.0 * norm * (norm + tl.abs(alpha))
        tau = tl.where(peak > 0, 2.0 / tl.where(peak > 0, unorm2, 1.0), 0.0)
        p = tau * tl.sum(A * u[None, :], axis=1)
        K = 0.5 * tau * tl.sum(u * p, axis=0)
        w = p - K * u
        A = A - u[:, None] * w[None, :] - w[:, None] * u[None, :]
        ytu = tl.sum(Y * u[:, None], axis=0)
        wk = tau * (u - tl.sum(W * ytu[None, :], axis=1))
        Y = tl.where(cols[None, :] == k, u[:, None], Y)
        W = tl.where(cols[None, :] == k, wk[:, None], W)
    # T's diagonals first, so that the tile A is dead while P is formed
    d = tl.sum(tl.where(rows[:, None] == cols[None, :], A, 0.0), axis=1)
    e = tl.sum(tl.where(rows[:, None] == cols[None, :] + 1, A, 0.0), axis=0)
    # P = I - W Y^T, one rank-1 term per reflector, on chip
    P = tl.where(rows[:, None] == cols[None, :], 1.0, 0.0).to(A.dtype)
    for j in range(0, n - 2):
        wj = tl.sum(tl.where(cols[None, :] == j, W, 0.0), axis=1)
        yj = tl.sum(tl.where(cols[None, :] == j, Y, 0.0), axis=1)
        P = P - wj[:, None] * yj[None, :]
    tl.store(D_ptr + vec + rows, d)
    tl.store(E_ptr + vec + cols, tl.where(cols < n - 1, e, 0.0))
    # eigenvector j (column j of P) as row j of the scratch
    tl.store(S_ptr + mat + cols[None, :] * n + rows[:, None], P, mask=inside)
    tl.debug_barrier()

    # ---- shifted QR iterations with per-matrix deflation
    steps = 0
    lo, hi = _deflate(D_ptr, E_ptr, vec, rows, n, tol, tiny)
    prev_lo = lo - 1
    prev_hi = hi - 1
    far = tl.sum(d, axis=0) * 0.0
    while (hi > 0) & (steps < max_steps):
        top = tl.load(D_ptr + vec + hi - 1)
        bottom = tl.load(D_ptr + vec + hi)
        off = tl.load(E_ptr + vec + hi - 1)
        # eigenvalues of the trailing 2x2 block (Eq. 3.36): near = Wilkinson shift
        delta = 0.5 * (top - bottom)
        root = tl.sqrt(delta * delta + off * off)
        denom = tl.where(delta >= 0, delta + root, delta - root)
        near = tl.where(denom != 0, bottom - off * off / tl.where(denom != 0, denom, 1.0), bottom)
        shift = near
        if DOUBLE_SHIFT:
            # second step of a sweep: the other eigenvalue of the sweep's 2x2 block when the
            # first step shrank the block by one row (Eq. 3.37-3.38)
            same_block = (hi == prev_hi - 1) & (lo == prev_lo)
            shift = tl.where(((steps % 2) == 1) & same_block, far, near)
            far = tl.where((steps % 2) == 0, top + bottom - near, far)
        prev_lo = lo
        prev_hi = hi
        # bulge chase over [lo, hi]; a, f: d[k], e[k] as left by rotation k-1
        a = tl.load(D_ptr + vec + lo)
        f = tl.load(E_ptr + vec + lo)
        b_lo = tl.load(D_ptr + vec + lo + 1)
        x = a - shift
        z = f
        two_by_two = (hi - lo) == 1
        # a two-by-two block gets its exact Jacobi rotation, given here as (x, z) = (c, s)
        zeta = (b_lo - a) / tl.where(f != 0, 2.0 * f, 1.0)
        t = tl.where(zeta >= 0, 1.0, -1.0) / (tl.abs(zeta) + tl.sqrt(1.0 + zeta * zeta))
        t = tl.where(f != 0, t, 0.0)
        cj = 1.0 / tl.sqrt(1.0 + t * t)
        x = tl.where(two_by_two, cj, x)
        z = tl.where(two_by_two, -t * cj, z)
        vk = tl.load(S_ptr + mat + lo * n + cols, mask=cols < n, other=0.0)
        for k in range(lo, hi):
            b = tl.load(D_ptr + vec + k + 1)
            # (c, s) from (x, z) / max(|x|, |z|): x * x underflows below 1e-19 in float32,
            # and the quotients of subnormal numbers would leave c^2 + s^2 away from 1
            peak = tl.maximum(tl.abs(x), tl.abs(z))
            nonzero = peak > 0
            xs = x / tl.where(nonzero, peak, 1.0)
            zs = z / tl.where(nonzero, peak, 1.0)
            rs = tl.sqrt(xs * xs + zs * zs)
            r = peak * rs
            c = tl.where(nonzero, xs / tl.where(nonzero, rs, 1.0), 1.0)
            s = tl.where(nonzero, zs / tl.where(nonzero, rs, 1.0), 0.0)
            if k > lo:
                tl.store(E_ptr + vec + k - 1, r)
            cc = c * c
            ss = s * s
            cs = c * s
            two_csf = 2.0 * cs * f
            tl.store(D_ptr + vec + k, cc * a + two_csf + ss * b)
            new_f = cs * (b - a) + (cc - ss) * f
            a = ss * a - two_csf + cc * b
            x = tl.where(two_by_two, 0.0, new_f)
            g = tl.load(E_ptr + vec + k + 1, mask=k + 1 < n - 1, other=0.0)
            z = s * g
            f = c * g
            vk1 = tl.load(S_ptr + mat + (k + 1) * n + cols, mask=cols < n, other=0.0)
            tl.store(S_ptr + mat + k * n + cols, c * vk + s * vk1, mask=cols < n)
            vk = c * vk1 - s * vk
        tl.store(D_ptr + vec + hi, a)
        tl.store(E_ptr + vec + hi - 1, x)
        tl.store(S_ptr + mat + hi * n + cols, vk, mask=cols < n)
        steps += 1
        lo, hi = _deflate(D_ptr, E_ptr, vec, rows, n, tol, tiny)
    tl.store(conv_ptr + pid, (hi == 0).to(tl.int8))
    tl.store(steps_ptr + pid, steps)

    # ---- sort ascending by ranking, write eigenvectors as columns
    # One load of d: both sides of every comparison are the same registers, so the ranks of
    # the n entries are a permutation of 0..n-1 (ties broken by position).
    dv = tl.load(D_ptr + vec + rows)
    valid = rows[None, :] < n
    before = (dv[None, :] < dv[:, None]) | (
        (dv[None, :] == dv[:, None]) & (rows[None, :] < rows[:, None])
    )
    rank = tl.sum(tl.where(valid & before, 1, 0), axis=1)
    tl.store(L_ptr + vec + rank, dv * scale, mask=rows < n)
    Vt = tl.load(S_ptr + mat + rows[:, None] * n + cols[None, :], mask=inside, other=0.0)
    tl.store(V_ptr + mat + cols[None, :] * n + rank[:, None], Vt, mask=inside)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def batched_eigh(
    A: torch.Tensor,
    *,
    tol: float | None = None,
    max_sweeps_per_dim: int = 15,
    shift: str = "double-wilkinson",
    num_warps: int | None = None,
) -> BatchedEighResult:
    """Eigendecomposition of symmetric ``A (B, n, n)``, ``n <= 64``, in one kernel launch.

    Same contract and options as :func:`.torch_impl.batched_eigh`; ``qr_steps`` is the
    largest number of QR steps any matrix took, as a 0-d tensor on ``A``'s device (the kernel
    decides convergence on the device; nothing here reads a value on the host). ``A`` must be
    on a CUDA device, or on the CPU with ``TRITON_INTERPRET=1`` set before this module was
    imported. ``num_warps``: warps per program (``None``: 4 up to ``n = 16``, else 8), for
    diagnosing the kernel (``benchmarks/batched_ed_gpu_diagnose.py``).
    """
    B, n, _ = A.shape
    if n > MAX_N:
        raise NotSupportedError(f"the Triton kernel handles n <= {MAX_N}, got n = {n}")
    if not A.is_cuda and not _interpreted():
        raise NotSupportedError(
            "the Triton backend needs a CUDA tensor (or TRITON_INTERPRET=1 on a CPU); "
            f"got a tensor on {A.device}: use backend 'torch'"
        )
    tol = torch.finfo(A.dtype).eps if tol is None else tol
    NP = max(2, triton.next_power_of_2(n))
    A = A.contiguous()
    L = A.new_empty(B, NP)
    V = A.new_empty(B, n, n)
    scratch = A.new_empty(B, n, n)  # eigenvectors as rows while the QR steps rotate them
    D = A.new_empty(B, NP)
    E = A.new_zeros(B, NP)
    converged = torch.empty(B, dtype=torch.int8, device=A.device)
    steps = torch.empty(B, dtype=torch.int32, device=A.device)
    if B > 0:
        _eigh_kernel[(B,)](
            A, L, V, scratch, D, E, converged, steps, n, tol, torch.finfo(A.dtype).tiny,
            2 * max_sweeps_per_dim * n, NP=NP, DOUBLE_SHIFT=shift == "double-wilkinson",
            num_warps=num_warps or (4 if NP <= 16 else 8),
        )  # fmt: skip
    # kept on the device: reading it would be a host synchronisation per call
    qr_steps = steps.amax() if B > 0 else 0
    return BatchedEighResult(L[:, :n], V, converged.bool(), qr_steps)
