"""Test matrices with known spectra, built independently of any solver."""

from __future__ import annotations

import torch

__all__ = ["random_orthogonal", "random_spd", "reference_sqrt_invsqrt", "spd_from_eigenvalues"]


def random_orthogonal(
    *shape: int, dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Haar-distributed orthogonal matrices of shape ``(*batch, n, n)`` (QR with sign fix)."""
    G = torch.randn(*shape, dtype=torch.float64, generator=generator)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    return Q.to(dtype)


def spd_from_eigenvalues(
    eigenvalues: torch.Tensor,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``U diag(eigenvalues) U^T`` with a random orthogonal ``U``; eigenvalues ``(..., n)``."""
    n = eigenvalues.shape[-1]
    U = random_orthogonal(*eigenvalues.shape[:-1], n, n, generator=generator)
    A = (U * eigenvalues.to(torch.float64).unsqueeze(-2)) @ U.mT
    A = 0.5 * (A + A.mT)
    return A.to(dtype or eigenvalues.dtype)


def random_spd(
    n: int,
    *batch: int,
    cond: float = 10.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    scale: float = 1.0,
) -> torch.Tensor:
    """Random symmetric positive-definite matrices ``(*batch, n, n)`` with condition number
    ``cond`` (eigenvalues log-spaced from ``scale/cond`` to ``scale``), built in float64."""
    gen = torch.Generator().manual_seed(seed)
    if n == 1:
        eig = torch.full((*batch, 1), scale, dtype=torch.float64)
    else:
        eig = torch.logspace(0.0, -torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
        eig = (scale * eig).flip(-1).expand(*batch, n).clone()
    return spd_from_eigenvalues(eig, generator=gen, dtype=dtype)


def reference_sqrt_invsqrt(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 ``A^(1/2)`` and ``A^(-1/2)`` by ``torch.linalg.eigh`` (the independent reference)."""
    L, V = torch.linalg.eigh(A.to(torch.float64))
    root = (V * L.clamp_min(0).sqrt().unsqueeze(-2)) @ V.mT
    inv = (V * L.rsqrt().unsqueeze(-2)) @ V.mT
    return root, inv
