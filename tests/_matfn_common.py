"""Shared fixtures of the matfn tests: SPD matrices with a chosen spectrum and float64
eigendecomposition references (independent of the code under test)."""

from __future__ import annotations

import pytest
import torch


def spd(
    batch: tuple[int, ...],
    n: int,
    cond: float = 10.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> torch.Tensor:
    """Random SPD matrices ``(*batch, n, n)`` with eigenvalues log-spaced in ``[1/cond, 1]``
    and Haar-random eigenvectors (built in float64, then cast)."""
    gen = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(*batch, n, n, generator=gen, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    L = torch.logspace(0.0, -float(torch.log10(torch.tensor(cond))), n, dtype=torch.float64)
    A = (Q * L.unsqueeze(-2)) @ Q.mT
    return (0.5 * (A + A.mT)).to(dtype)


def eig_sqrt(A: torch.Tensor) -> torch.Tensor:
    """Float64 reference ``A^(1/2)`` from ``torch.linalg.eigh`` (negative rounding clamped)."""
    L, V = torch.linalg.eigh(A.double())
    return (V * L.clamp_min(0).sqrt().unsqueeze(-2)) @ V.mT


def eig_invsqrt(A: torch.Tensor) -> torch.Tensor:
    """Float64 reference ``A^(-1/2)``."""
    L, V = torch.linalg.eigh(A.double())
    return (V * L.rsqrt().unsqueeze(-2)) @ V.mT


def eig_apply(A: torch.Tensor, fn) -> torch.Tensor:
    """``V diag(fn(L)) V^T`` in float64 for a scalar function ``fn`` of the eigenvalues."""
    L, V = torch.linalg.eigh(A.double())
    return (V * fn(L).unsqueeze(-2)) @ V.mT


def rel_err(X: torch.Tensor, R: torch.Tensor) -> float:
    """Largest per-matrix relative Frobenius error of ``X`` against ``R``."""
    X, R = X.detach().double(), R.detach().double()
    num = torch.linalg.matrix_norm(X - R)
    den = torch.linalg.matrix_norm(R).clamp_min(1e-300)
    return float((num / den).max()) if num.numel() else 0.0


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread (restored after): these tests use small matrices,
    for which OpenMP threads only add synchronisation, and on an oversubscribed machine they
    made the suite ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
