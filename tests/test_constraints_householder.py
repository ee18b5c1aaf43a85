"""``householder`` robustness: reflectors of any scale, the argument checks of
``householder_columns``, and what ``householder`` composes with (thesis 000, Sec. 4.4).

References are independent of the code under test: ``torch.linalg.householder_product``
(LAPACK ``orgqr``), explicit float64 formulas and ``scipy.linalg.expm``.
"""

from __future__ import annotations

import pytest
import scipy.linalg
import torch
from torch import nn
from torch.nn.utils import parametrize

import eigenflow as ef
from eigenflow.plugins.constraints.householder_products import (
    householder_columns,
    householder_matrix,
    householder_sequential,
    reflector,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _lapack_reference(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reflector rows ``(d, d)`` in LAPACK form and their product by ``orgqr`` (float64)."""
    A = torch.randn(d, d, generator=_gen(seed), dtype=F64)
    V = torch.tril(A, -1) + torch.eye(d, dtype=F64)  # v_i = (0, .., 0, 1, a_{i+1..})
    tau = 2.0 / (V * V).sum(0)
    return V.mT.contiguous(), torch.linalg.householder_product(V, tau)


# --------------------------------------------------------------------------- any scale

SCALES = {
    torch.float32: [1e-30, 1e-25, 1e25, 1e30],  # squares under/overflow float32
    F64: [1e-300, 1e-200, 1e200, 1e300],  # squares under/overflow float64
}


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_reflectors_of_any_scale_are_exact(dtype):
    """``H(c h) = H(h)``: the product of scaled reflectors equals LAPACK's product of the
    unscaled ones, for scales whose squares under- or overflow the dtype."""
    vectors, ref = _lapack_reference(6, seed=1)
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    for c in SCALES[dtype]:
        scaled = (vectors * c).to(dtype)  # scaled in float64, then rounded once
        for Q in (householder_matrix(scaled), householder_sequential(scaled)):
            assert torch.isfinite(Q).all(), c
            torch.testing.assert_close(Q.to(F64), ref, atol=tol, rtol=0, msg=f"scale {c}")
        H = reflector(scaled[2])
        h = vectors[2]
        H_ref = torch.eye(6, dtype=F64) - 2.0 * torch.outer(h, h) / (h @ h)
        torch.testing.assert_close(H.to(F64), H_ref, atol=tol, rtol=0, msg=f"scale {c}")


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(1e-200, F64), (5e-324, F64), (1e-40, torch.float32), (1e300, F64), (3e38, torch.float32)],
)
def test_reflector_of_a_tiny_or_huge_axis_vector(value, dtype):
    """``H(c e_1) = diag(-1, 1, 1)`` down to the smallest subnormal and up to near overflow
    (the audit saw -4e215 for ``c = 1e-200``)."""
    H = reflector(torch.tensor([value, 0.0, 0.0], dtype=dtype))
    assert torch.equal(H, torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=dtype)))


def test_gradient_is_exact_at_any_scale():
    """``Q(c h) = Q(h)``, so ``dQ/dh`` at ``c h`` is the gradient at ``h`` divided by ``c``;
    and the gradient at scale 1 passes gradcheck."""
    h = torch.randn(4, 7, generator=_gen(2), dtype=F64)
    probe = torch.randn(7, 3, generator=_gen(3), dtype=F64)

    def grad_at(v: torch.Tensor) -> torch.Tensor:
        v = v.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((householder_columns(v, 3) * probe).sum(), v)
        return g

    g1 = grad_at(h)
    for c in (1e-200, 1e-20, 1e20, 1e200):  # squares of 1e+-200 under/overflow float64
        torch.testing.assert_close(grad_at(h * c) * c, g1, atol=0, rtol=1e-11)
    # a row with one dominant entry (the scale is that entry) and a row with ties
    v = torch.tensor([[3.0, -0.5, 0.25, 1.0], [2.0, -2.0, 1.0, 0.5]], dtype=F64)
    assert torch.autograd.gradcheck(lambda x: householder_columns(x, 2), (v.requires_grad_(),))


def test_zero_vector_is_the_identity_factor():
    """Documented: a zero reflector vector defines no reflection and gives the identity, in
    the WY and the sequential products, with finite gradients for the other vectors."""
    h = torch.randn(3, 5, generator=_gen(4), dtype=F64)
    with_zero = torch.cat([h[:1], torch.zeros(1, 5, dtype=F64), h[1:]])
    ref = householder_sequential(h)  # the product without the zero row
    torch.testing.assert_close(householder_matrix(with_zero), ref, atol=1e-14, rtol=0)
    torch.testing.assert_close(householder_sequential(with_zero), ref, atol=1e-14, rtol=0)
    assert torch.equal(reflector(torch.zeros(4, dtype=F64)), torch.eye(4, dtype=F64))
    leaf = with_zero.clone().requires_grad_(True)
    householder_columns(leaf, 2).square().sum().backward()
    assert torch.isfinite(leaf.grad).all()


def test_scaled_product_traces_whole():
    """The per-vector scaling is branch-free: ``fullgraph=True`` compiles it, and the compiled
    product of tiny vectors equals the eager one."""
    torch._dynamo.reset()
    h = torch.randn(2, 5, 6, generator=_gen(5)) * 1e-25
    compiled = torch.compile(
        lambda v: householder_columns(v, 3), backend="aot_eager", fullgraph=True
    )
    torch.testing.assert_close(compiled(h), householder_columns(h, 3), atol=1e-6, rtol=0)
    assert torch.isfinite(compiled(h)).all()


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.randn(3, 4), 5), {}, r"columns: expected an integer with 1 <= columns <= d = 4"),
        ((torch.randn(3, 4), 0), {}, r"columns: .* got 0"),
        ((torch.randn(3, 4), 2.0), {}, r"columns: .* got 2\.0"),
        ((torch.randn(3, 4), True), {}, r"columns: .* got True"),
        ((torch.randn(4), 2), {}, r"vectors: .*\(\.\.\., m, d\).* got shape \(4,\)"),
        ((torch.ones(2, 4, dtype=torch.long), 2), {}, "vectors: expected dtype float32 or float64"),
        ((torch.randn(2, 4).half(), 2), {}, "vectors: expected dtype float32 or float64, got f"),
        (([[1.0, 0.0]], 1), {}, "vectors: expected a torch.Tensor, got list"),
        ((torch.randn(3, 0), 1), {}, r"vectors: expected reflectors of size d >= 1"),
        ((torch.randn(3, 4), 2), {"block": 0}, r"block: expected None \(one block\) or an int"),
        ((torch.randn(3, 4), 2), {"block": -3}, r"block: .* got -3"),
        ((torch.randn(3, 4), 2), {"signs": torch.ones(3)}, r"signs: expected None or a"),
        ((torch.randn(3, 4), 2), {"signs": torch.ones(4, dtype=F64)}, r"signs: expected the dt"),
    ],
)
def test_householder_columns_rejects_bad_arguments(args, kwargs, message):
    with pytest.raises(ef.InputError, match=message):
        householder_columns(*args, **kwargs)


def test_householder_matrix_checks_like_householder_columns():
    with pytest.raises(ef.InputError, match="vectors: expected dtype"):
        householder_matrix(torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(ef.InputError, match=r"vectors: .*got shape \(3,\)"):
        householder_matrix(torch.ones(3))


def test_no_reflector_keeps_the_batch_shape():
    """``m = 0``: the product is the identity, so the result is ``I[:, :c]`` for every batch
    entry, ``(..., d, c)`` (the audit saw ``(4, 2)`` for a ``(2, 0, 4)`` input)."""
    Q = householder_columns(torch.randn(2, 0, 4), 2)
    assert Q.shape == (2, 4, 2)
    assert torch.equal(Q, torch.eye(4, 2).expand(2, 4, 2))
    signs = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, 1.0, 1.0]])
    Qs = householder_columns(torch.randn(2, 0, 4), 2, signs)
    assert torch.equal(Qs, torch.eye(4, 2) * signs[:, None, :2])
    Q[0, 0, 0] = 5.0  # a fresh tensor, not a view of a shared identity
    assert householder_matrix(torch.zeros(3, 1, 0, 5)).shape == (3, 1, 5, 5)


def test_block_larger_than_the_reflector_count_is_one_block():
    h = torch.randn(5, 6, generator=_gen(6), dtype=F64)
    one = householder_columns(h, 3, block=None)
    torch.testing.assert_close(householder_columns(h, 3, block=100), one, atol=0, rtol=0)
    torch.testing.assert_close(householder_columns(h, 3, block=1), one, atol=1e-14, rtol=0)


# --------------------------------------------------------------------------- composition


def _create(name: str):
    return ef.create("constraint", name, **({"rank": 3} if name == "householder" else {}))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("orth-weight", "householder"),
        ("spectral-norm", "householder"),
        ("householder", "orth-weight"),
        ("householder", "spectral-norm"),
        ("householder", "householder"),
    ],
)
def test_householder_never_shares_a_weight(first, second):
    """Either order is refused at attach with NotSupportedError naming both constraints and
    the weight, and leaves the layer as the first constraint made it."""
    torch.manual_seed(0)
    layer = nn.Linear(5, 5)
    _create(first).attach(layer)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    params = dict(layer.named_parameters())
    c = _create(second)
    pattern = rf"'{second}' cannot be combined with '{first}' on Linear\.weight \(5 x 5\)"
    with pytest.raises(ef.NotSupportedError, match=pattern) as info:
        c.attach(layer)
    assert "'householder' must be the only parametrization" in str(info.value)
    assert len(layer.parametrizations.weight) == 1
    assert dict(layer.named_parameters()) == params
    for k, v in layer.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert c.parametrizations == []


def test_householder_refusal_in_a_list_leaves_every_layer_untouched():
    plain, taken = nn.Linear(4, 4), nn.Linear(4, 4)
    ef.create("constraint", "orth-weight").attach(taken)
    hh = ef.create("constraint", "householder", rank=2)
    with pytest.raises(ef.NotSupportedError, match="'householder' cannot be combined"):
        hh.attach([plain, taken])
    assert not parametrize.is_parametrized(plain)
    hh.attach([plain])  # nothing half-attached: the retry works
    assert parametrize.is_parametrized(plain)


@pytest.mark.parametrize("name", ["nog", "olr"])
def test_gradient_constraints_refuse_a_householder_weight_at_attach(name):
    """Refused at attach (the audit saw nog fail only at the first optimizer.step()), with
    no hook left on the optimizer."""
    layer, plain = nn.Linear(6, 6), nn.Linear(6, 6)
    ef.create("constraint", "householder", rank=2).attach(layer)
    opt = torch.optim.SGD(list(layer.parameters()) + list(plain.parameters()), lr=0.1)
    groups = [list(g["params"]) for g in opt.param_groups]
    c = ef.create("constraint", name)
    pattern = rf"constraint '{name}' cannot act on Linear\.weight \(6 x 6\): .*'householder'"
    with pytest.raises(ef.NotSupportedError, match=pattern):
        c.attach([plain, layer], optimizer=opt)
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert [list(g["params"]) for g in opt.param_groups] == groups
    # without an optimizer too (olr's grad-scale mode would have failed at apply())
    options = {"apply_as": "grad-scale", "lr": 0.1} if name == "olr" else {}
    with pytest.raises(ef.NotSupportedError, match="several tensors"):
        ef.create("constraint", name, **options).attach(layer)
    c.attach(plain, optimizer=opt).detach()  # the refused constraint is reusable


def test_orth_loss_combines_with_householder():
    torch.manual_seed(1)
    layer = nn.Linear(6, 4)
    ef.create("constraint", "householder", rank=4).attach(layer)
    penalty = ef.create("constraint", "orth-loss").attach(layer).penalty()
    W = layer.weight.detach().double()
    ref = torch.linalg.matrix_norm(W @ W.mT - torch.eye(4, dtype=F64))
    assert float(penalty.detach()) == pytest.approx(float(ref), abs=1e-5)  # rank 4 of 4: ~0


@pytest.mark.parametrize(
    "order", [("spectral-norm", "orth-weight"), ("orth-weight", "spectral-norm")]
)
def test_orth_weight_and_spectral_norm_compose_in_attach_order(order):
    """The compositions the docs promise: parametrizations apply in attach order, checked
    against scipy's expm and float64 SVD; nog then acts on the one unconstrained parameter."""
    torch.manual_seed(2)
    layer = nn.Linear(6, 6).double()
    A = layer.weight.detach().clone()
    for name in order:
        options = {"method": "exact"} if name == "spectral-norm" else {}
        ef.create("constraint", name, **options).attach(layer)
    if order[0] == "spectral-norm":  # exp(B - B^T), B = A / sigma_max(A)
        B = (A / torch.linalg.matrix_norm(A, 2)).numpy()
        ref = scipy.linalg.expm(B - B.T)
    else:  # Q / sigma_max(Q) with Q = exp(A - A^T) orthogonal: Q itself
        Q = scipy.linalg.expm((A - A.mT).numpy())
        ref = Q / scipy.linalg.svdvals(Q)[0]
    torch.testing.assert_close(layer.weight.detach(), torch.from_numpy(ref), atol=1e-12, rtol=0)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    ef.create("constraint", "nog").attach(layer, optimizer=opt)
    layer(torch.randn(8, 6, dtype=F64)).square().sum().backward()
    opt.step()
    G = layer.parametrizations.weight.original.grad
    torch.testing.assert_close(G @ G.mT, torch.eye(6, dtype=F64), atol=1e-12, rtol=0)
