"""Householder products (core) and the ``householder`` low-rank orthogonal projector
(thesis 000, Sec. 4.4, Eq. 4.5, Theorems 5-6)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

import eigenflow as ef
from eigenflow.plugins.constraints.householder_products import (
    compact_wy,
    householder_columns,
    householder_matrix,
    householder_sequential,
    householder_vectors,
    reflector,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orth_err(Q: torch.Tensor) -> float:
    Q = Q.detach().to(torch.float64)
    eye = torch.eye(Q.shape[-1], dtype=Q.dtype)
    return float(torch.linalg.matrix_norm(Q.mT @ Q - eye).max())


# --------------------------------------------------------------------------- core products


def test_reflector_is_a_symmetric_involution():
    h = torch.randn(4, 7, generator=_gen(0), dtype=torch.float64)
    H = reflector(h)
    torch.testing.assert_close(H, H.mT)
    torch.testing.assert_close(H @ H, torch.eye(7, dtype=torch.float64).expand(4, 7, 7))
    torch.testing.assert_close(H @ h[..., None], -h[..., None])  # h is reflected


@pytest.mark.parametrize("m,d", [(1, 5), (6, 6), (4, 9), (12, 12)])
def test_compact_wy_equals_sequential_product(m, d):
    h = torch.randn(2, 3, m, d, generator=_gen(m + d), dtype=torch.float64)
    seq = householder_sequential(h)
    wy = householder_matrix(h)
    torch.testing.assert_close(wy, seq, atol=1e-13, rtol=0)
    # the explicit factors of Theorem 6: I - Y T Y^T with T upper triangular
    Y, T_inv = compact_wy(h)
    T = torch.linalg.inv(T_inv)
    assert torch.allclose(T, torch.triu(T), atol=1e-14)
    eye = torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(eye - Y @ T @ Y.mT, seq, atol=1e-13, rtol=0)
    # leading columns only
    torch.testing.assert_close(householder_columns(h, 2), seq[..., :2], atol=1e-13, rtol=0)


@pytest.mark.parametrize("block", [1, 3, 7, 20, None])
def test_blocked_compact_wy_equals_sequential_product(block):
    """Blocks of ``b < m`` reflectors applied from the last block to the first (the library
    default is 64, above the sizes of the other tests), a block size that does not divide
    ``m``, one block, and one reflector per block: same product, same gradient."""
    m, d = 20, 11
    h = torch.randn(2, m, d, generator=_gen(7), dtype=torch.float64, requires_grad=True)
    probe = torch.randn(d, 4, generator=_gen(8), dtype=torch.float64)
    seq = householder_sequential(h)
    for columns in (d, 4):
        Q = householder_columns(h, columns, block=block)
        torch.testing.assert_close(Q, seq[..., :columns], atol=1e-13, rtol=0)
    (g_blocked,) = torch.autograd.grad((householder_columns(h, 4, block=block) * probe).sum(), h)
    (g_seq,) = torch.autograd.grad((seq[..., :4] * probe).sum(), h)
    torch.testing.assert_close(g_blocked, g_seq, atol=1e-12, rtol=0)


def test_compact_wy_gradient_equals_sequential_gradient():
    h = torch.randn(5, 8, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    probe = torch.randn(8, 3, generator=_gen(2), dtype=torch.float64)
    (g_wy,) = torch.autograd.grad((householder_columns(h, 3) * probe).sum(), h)
    (g_seq,) = torch.autograd.grad((householder_sequential(h)[:, :3] * probe).sum(), h)
    torch.testing.assert_close(g_wy, g_seq, atol=1e-12, rtol=0)
    small = torch.randn(3, 4, generator=_gen(3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: householder_columns(v, 2), (small,))


def test_compact_wy_matches_torch_householder_product():
    # LAPACK convention: v_i = (0, .., 0, 1, a_{i+1..}), tau_i = 2 / ||v_i||^2
    d, m = 10, 6
    A = torch.randn(d, m, generator=_gen(4), dtype=torch.float64)
    V = torch.tril(A, -1) + torch.eye(d, m, dtype=torch.float64)
    tau = 2.0 / (V * V).sum(0)
    ref = torch.linalg.householder_product(V, tau)  # (d, m): first m columns
    torch.testing.assert_close(householder_columns(V.mT, m), ref, atol=1e-13, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_householder_vectors_reproduce_any_orthogonal_matrix(dtype):
    d = 9
    Q = torch.linalg.qr(torch.randn(5, d, d, generator=_gen(5), dtype=torch.float64))[0]
    Q[1, :, 0] *= -1  # both determinants
    Q[2] = torch.eye(d, dtype=torch.float64)  # already reduced: LAPACK tau = 0 everywhere
    Q[3] = torch.diag(torch.tensor([1.0, -1, 1, 1, -1, 1, 1, 1, -1], dtype=torch.float64))
    Q = Q.to(dtype)
    vectors, signs = householder_vectors(Q)
    assert vectors.shape == (5, d, d) and signs.shape == (5, d)
    assert bool(((signs == 1) | (signs == -1)).all())
    assert bool((torch.linalg.vector_norm(vectors, dim=-1) >= 1).all())  # no zero reflector
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(householder_matrix(vectors, signs), Q, atol=tol, rtol=0)
    torch.testing.assert_close(householder_sequential(vectors, signs), Q, atol=tol, rtol=0)


# --------------------------------------------------------------------------- the constraint


def _factors(layer: nn.Module):
    chain = layer.parametrizations.weight
    proj = chain[0]
    return proj.left(chain.original0), proj.right(chain.original1)


def test_projector_is_low_rank_orthogonal_eq_4_5():
    torch.manual_seed(0)
    layer = nn.Linear(16, 12)
    hh = ef.create("constraint", "householder", rank=5, init="random").attach(layer)
    s = torch.linalg.svdvals(layer.weight.detach().double())
    torch.testing.assert_close(s[:5], torch.ones(5, dtype=torch.float64), atol=1e-5, rtol=0)
    assert float(s[5:].max()) < 1e-5
    D = hh.directions()
    assert D.shape == (16, 5) and _orth_err(D) < 1e-5
    # directions are right singular vectors: W^T W D = D
    W = layer.weight.detach()
    torch.testing.assert_close(W.mT @ (W @ D), D, atol=1e-5, rtol=0)


def test_pretrained_init_is_the_nearest_orthogonal_part():
    torch.manual_seed(1)
    layer = nn.Linear(10, 7).double()
    A = layer.weight.detach().clone().numpy()
    ef.create("constraint", "householder", rank=None).attach(layer)
    polar = scipy.linalg.polar(A, side="right")[0]  # nearest semi-orthogonal (Sec. 4.4.2)
    np.testing.assert_allclose(layer.weight.detach().numpy(), polar, atol=1e-12)
    layer2 = nn.Linear(10, 7).double()
    with torch.no_grad():
        layer2.weight.copy_(torch.from_numpy(A))
    ef.create("constraint", "householder", rank=3).attach(layer2)
    U, _, Vt = np.linalg.svd(A)
    np.testing.assert_allclose(layer2.weight.detach().numpy(), U[:, :3] @ Vt[:3], atol=1e-12)


def test_assigning_an_orthogonal_matrix_reproduces_it():
    Q = torch.linalg.qr(torch.randn(8, 8, generator=_gen(6)))[0]
    Q[:, 0] *= -1 if torch.det(Q) > 0 else 1  # determinant -1
    layer = nn.Linear(8, 8, bias=False)
    ef.create("constraint", "householder", rank=None, init="random").attach(layer)
    layer.weight = Q  # right_inverse: reflectors of Q
    torch.testing.assert_close(layer.weight.detach(), Q, atol=1e-5, rtol=0)


def test_stays_orthogonal_after_200_adam_steps_float32():
    torch.manual_seed(2)
    layer = nn.Linear(24, 16)
    ef.create("constraint", "householder", rank=6).attach(layer)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.randn(64, 24)
    y = torch.randn(64, 16)
    start = None
    for _ in range(200):
        opt.zero_grad()
        loss = (layer(x) - y).square().mean()
        start = float(loss.detach()) if start is None else start
        loss.backward()
        opt.step()
    assert float(loss.detach()) < start  # it trained
    U, V = _factors(layer)
    assert _orth_err(U) < 1e-5 and _orth_err(V) < 1e-5
    s = torch.linalg.svdvals(layer.weight.detach().double())
    assert float((s[:6] - 1).abs().max()) < 1e-5 and float(s[6:].max()) < 1e-5


def test_state_dict_round_trip_is_exact():
    torch.manual_seed(3)
    a = nn.Conv2d(3, 8, 3)
    ef.create("constraint", "householder", rank=4).attach(a)
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        a(torch.randn(2, 3, 5, 5)).square().mean().backward()
        opt.step()
    sd = a.state_dict()
    assert {
        "parametrizations.weight.original0",
        "parametrizations.weight.original1",
        "parametrizations.weight.0.signs_u",
        "parametrizations.weight.0.signs_v",
    } <= set(sd)
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    b = nn.Conv2d(3, 8, 3)
    ef.create("constraint", "householder", rank=4, init="random").attach(b)
    b.load_state_dict(loaded)
    assert torch.equal(a.weight, b.weight)
    x = torch.randn(1, 3, 5, 5)
    assert torch.equal(a(x), b(x))


def test_detach_keeps_or_restores_the_weight():
    torch.manual_seed(4)
    layer = nn.Linear(6, 5)
    original = layer.weight
    values = original.detach().clone()
    hh = ef.create("constraint", "householder", rank=3).attach(layer)
    constrained = layer.weight.detach().clone()
    hh.detach()
    assert type(layer) is nn.Linear and isinstance(layer.weight, nn.Parameter)
    assert torch.equal(layer.weight.detach(), constrained)
    hh2 = ef.create("constraint", "householder", rank=3).attach(layer)
    hh2.detach(restore=True)
    assert torch.equal(layer.weight.detach(), constrained)
    layer.weight = original
    hh3 = ef.create("constraint", "householder", rank=3).attach(layer)
    hh3.detach(restore=True)
    assert layer.weight is original and torch.equal(layer.weight.detach(), values)


def test_rank_too_large_and_nog_on_reflectors_are_errors():
    with pytest.raises(ef.ConfigError, match="rank"):
        ef.create("constraint", "householder", rank=9).attach(nn.Linear(8, 4))
    layer = nn.Linear(6, 6)
    ef.create("constraint", "householder", rank=2).attach(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    # refused at attach (it once attached and failed at the first optimizer.step())
    with pytest.raises(ef.NotSupportedError, match="several tensors"):
        ef.create("constraint", "nog").attach(layer, optimizer=opt)
    assert not opt._optimizer_step_pre_hooks
