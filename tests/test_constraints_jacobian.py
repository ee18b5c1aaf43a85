"""``jacobian-alignment`` (seed 001, Alg. 2-3) and the core power iteration on J^T J."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.jacobian import alignment_mask, leading_eigenpairs, normal_jacobian_mv
from eigenflow.plugins.constraints.jacobian import alignment_signs


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Linear(nn.Module):
    """G(z) = A z: J^T J = A^T A for every z."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, z):
        return z @ self.A.mT


class Quadratic(nn.Module):
    """G(z) = (A z, (b.z)^2 / 2): J = [A; (b.z) b^T], so J^T J = A^T A + (b.z)^2 b b^T."""

    def __init__(self, A, b):
        super().__init__()
        self.A, self.b = nn.Parameter(A), nn.Parameter(b)

    def forward(self, z):
        return torch.cat([z @ self.A.mT, 0.5 * (z @ self.b)[:, None] ** 2], dim=1)


def test_normal_jacobian_products_against_the_explicit_matrix():
    g = _gen(0)
    A = torch.randn(7, 5, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    z = torch.randn(3, 5, generator=g, dtype=torch.float64)
    V = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    out = normal_jacobian_mv(Quadratic(A, b), z, 2)(V)
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda x: Quadratic(A, b)(x[None])[0], z[i])
        torch.testing.assert_close(out[i], J.mT @ J @ V[i])


def test_masks_of_eq_11_and_12():
    M = alignment_mask(5, 3, dtype=torch.float64, device=torch.device("cpu"))
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1.0]])
    torch.testing.assert_close(M, expected.double())
    S = alignment_signs(4, 2, False, dtype=torch.float64, device=torch.device("cpu"))
    torch.testing.assert_close(S, torch.tensor([[-1, 1], [1, -1], [1, 1], [1, 1.0]]).double())
    Sw = alignment_signs(4, 3, True, dtype=torch.float64, device=torch.device("cpu"))
    alpha = 2 / (3 * 4)  # Eq. 13: column j weighted by alpha (k - j + 1)
    torch.testing.assert_close(Sw[0], torch.tensor([-3, 2, 1.0]).double() * alpha)


def test_power_iteration_finds_axis_aligned_eigenpairs():
    # J^T J = diag(16, 9, 4, 1, 0.25, ...): eigenvectors are the axes, as Alg. 2 assumes
    s = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5, 0.25], dtype=torch.float64)
    G = Linear(torch.diag(s))
    z = torch.zeros(2, 6, dtype=torch.float64)
    V0 = torch.randint(0, 2, (2, 6, 3), generator=_gen(1)).double() * 2 - 1
    lam, V = leading_eigenpairs(normal_jacobian_mv(G, z, 3), V0, iters=60)
    ref = torch.linalg.eigvalsh(torch.diag(s) @ torch.diag(s)).flip(0)[:3]
    torch.testing.assert_close(lam, ref.expand(2, 3), rtol=1e-6, atol=0)
    torch.testing.assert_close(
        V.abs(), torch.eye(6, 3, dtype=torch.float64).expand(2, 6, 3), atol=1e-6, rtol=0
    )


def test_unmasked_power_iteration_matches_the_top_eigenvector():
    A = torch.randn(8, 5, generator=_gen(2), dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(A.mT @ A)
    lam, V = leading_eigenpairs(
        lambda X: (A.mT @ A) @ X, torch.ones(5, 1, dtype=torch.float64), iters=300, masked=False
    )
    assert float(lam[0]) == pytest.approx(float(evals[-1]), rel=1e-8)
    assert float((V[:, 0] @ evecs[:, -1]).abs()) == pytest.approx(1.0, abs=1e-8)


def test_penalty_is_minus_lambda_when_aligned_and_larger_otherwise():
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    aligned = Linear(torch.diag(s))
    c = ef.create("constraint", "jacobian-alignment", k=3, iters=80, weight=0.1).attach(aligned)
    z = torch.randn(4, 6, generator=_gen(3), dtype=torch.float64)
    assert float(c.penalty(z).detach()) == pytest.approx(-0.1, abs=1e-8)  # sum of weights = 1
    Q = torch.linalg.qr(torch.randn(6, 6, generator=_gen(4), dtype=torch.float64))[0]
    rotated = Linear(torch.diag(s) @ Q)
    c.attach(rotated)
    assert float(c.penalty(z).detach()) > -0.09


def test_penalty_is_differentiable_and_training_aligns_the_generator():
    torch.manual_seed(5)
    Q = torch.linalg.qr(torch.randn(4, 4, generator=_gen(6)))[0]
    G = Linear(torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.5])) @ Q)
    c = ef.create(
        "constraint", "jacobian-alignment", k=2, iters=8, weight=1.0, latent_dim=4, batch_size=4
    ).attach(G)
    opt = torch.optim.Adam(G.parameters(), lr=2e-2)
    first = None
    for _ in range(150):
        opt.zero_grad()
        p = c.penalty()
        first = float(p.detach()) if first is None else first
        p.backward()
        assert torch.isfinite(G.A.grad).all()
        opt.step()
    _, vecs = torch.linalg.eigh(G.A.detach().mT @ G.A.detach())
    assert float(p.detach()) < first
    assert float(vecs[0, -1].abs()) > 0.95  # top right-singular vector is now e_1
    assert c.last_eigenvalues.shape == (4, 2)


def test_errors():
    c = ef.create("constraint", "jacobian-alignment", k=3)
    with pytest.raises(ef.NotSupportedError, match="not attached"):
        c.penalty(torch.zeros(2, 4))
    c.attach(Linear(torch.eye(4)))
    with pytest.raises(ef.NotSupportedError, match="latent_dim"):
        c.penalty()
    with pytest.raises(ef.InputError, match="smaller than k"):
        c.penalty(torch.zeros(2, 2))
    with pytest.raises(ef.InputError, match="generator"):
        c.attach(lambda z: z)
