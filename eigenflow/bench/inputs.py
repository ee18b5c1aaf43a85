"""Benchmark inputs: random SPD matrices of a chosen condition number, made
deterministically from a seed, and the upstream gradients of the backward.
"""

from __future__ import annotations

import math

import torch

__all__ = ["make_spd"]


def make_spd(batch: int, n: int, cond: float = 1e3, seed: int = 0) -> torch.Tensor:
    """Random symmetric positive-definite matrices ``(batch, n, n)`` in float64 on the CPU.

    ``A = s Q diag(lambda) Q^T`` with ``Q`` Haar-random orthogonal (QR of a Gaussian matrix,
    signs fixed by ``diag(R)``), eigenvalues ``lambda_i = cond^(-u_i)`` with ``u`` sorted
    uniform in ``[0, 1]`` and its ends pinned to 0 and 1 (so each matrix has condition number
    exactly ``cond`` when ``n >= 2``), and a per-matrix scale ``s = 10^U(-1, 1)`` (solvers must
    normalise per matrix). Deterministic for a given ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    u = torch.rand(batch, n, generator=gen, dtype=torch.float64).sort(dim=-1).values
    if n >= 2:
        u[:, 0], u[:, -1] = 0.0, 1.0
    else:
        u.zero_()
    lam = torch.as_tensor(float(cond), dtype=torch.float64) ** (-u)
    scale = 10.0 ** (2.0 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64) - 1.0)
    A = scale * (Q * lam.unsqueeze(-2)) @ Q.mT
    return 0.5 * (A + A.mT)


def _upstream(op: str, batch: int, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Fixed upstream gradients (float64, CPU) for the backward of ``op``'s outputs."""
    gen = torch.Generator().manual_seed(seed + 7919)
    G = torch.randn(batch, n, n, generator=gen, dtype=torch.float64) / n
    if op == "eigh":
        gL = torch.randn(batch, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        return gL, G
    return (0.5 * (G + G.mT),)
