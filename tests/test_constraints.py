"""Tests of the gradient / learning-rate / weight constraints: nog, olr, spectral-norm,
orth-loss, orth-weight (thesis 000, Sec. 3.5), and their composition."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.optimize import minimize_scalar
from torch import nn

import eigenflow as ef
from eigenflow.core.polar import POLAR_METHODS, nearest_orthogonal, newton_schulz_polar
from eigenflow.plugins.constraints import ConstraintSet, optimal_learning_rate

DTYPES = [torch.float32, torch.float64]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orth_residual(R: torch.Tensor) -> float:
    R = R.to(torch.float64)
    G = R @ R.mT if R.shape[-2] <= R.shape[-1] else R.mT @ R
    eye = torch.eye(G.shape[-1], dtype=G.dtype)
    return float(torch.linalg.matrix_norm(G - eye).max())


def _step_with_grad(layer: nn.Module, grad: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()
    (layer.weight * grad).sum().backward()  # d/dW = grad (before any constraint)
    opt.step()


# --------------------------------------------------------------------------- NOG


@pytest.mark.parametrize("shape", [(24, 24), (16, 40), (40, 16)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nog_is_orthogonal_and_equals_scipy_polar(shape, dtype):
    G = torch.randn(3, *shape, generator=_gen(1), dtype=torch.float64)
    R = nearest_orthogonal(G.to(dtype), method="svd")
    assert R.dtype == dtype and R.shape == G.shape
    assert _orth_residual(R) < (1e-5 if dtype == torch.float32 else 1e-12)
    for b in range(3):
        ref = scipy.linalg.polar(G[b].numpy())[0]  # independent reference: the polar factor
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        np.testing.assert_allclose(R[b].double().numpy(), ref, atol=tol)


def test_nog_is_a_local_and_global_minimiser_of_eq_3_53():
    G = torch.randn(6, 6, generator=_gen(2), dtype=torch.float64)
    R = nearest_orthogonal(G)
    best = torch.linalg.matrix_norm(G - R)
    # random orthogonal competitors, and small rotations of R itself
    Q = torch.linalg.qr(torch.randn(500, 6, 6, generator=_gen(3), dtype=torch.float64))[0]
    assert bool((torch.linalg.matrix_norm(G - Q) >= best).all())
    K = torch.randn(200, 6, 6, generator=_gen(4), dtype=torch.float64) * 1e-3
    near = R @ torch.linalg.matrix_exp(K - K.mT)
    assert bool((torch.linalg.matrix_norm(G - near) >= best - 1e-14).all())


def _orthogonal_2x2(theta: float, reflect: bool) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, s], [s, -c]]) if reflect else np.array([[c, -s], [s, c]])


def _distance_2x2(theta: float, g: np.ndarray, reflect: bool) -> float:
    return float(np.linalg.norm(g - _orthogonal_2x2(theta, reflect)))


def test_nog_matches_brute_force_on_2x2():
    for seed in range(10):
        G = torch.randn(2, 2, generator=_gen(10 + seed), dtype=torch.float64)
        g = G.numpy()
        best_val, best_R = math.inf, None
        for reflect in (False, True):
            grid = np.linspace(-math.pi, math.pi, 721)
            vals = [np.linalg.norm(g - _orthogonal_2x2(t, reflect)) for t in grid]
            t0 = grid[int(np.argmin(vals))]
            res = minimize_scalar(
                _distance_2x2,
                args=(g, reflect),
                bounds=(t0 - 0.01, t0 + 0.01),
                method="bounded",
                options={"xatol": 1e-12},
            )
            if res.fun < best_val:
                best_val, best_R = res.fun, _orthogonal_2x2(res.x, reflect)
        R = nearest_orthogonal(G).numpy()
        np.testing.assert_allclose(R, best_R, atol=1e-7)


def test_newton_schulz_polar_matches_svd():
    # well conditioned input: converges to float64 accuracy within the iteration budget
    U = torch.linalg.qr(torch.randn(4, 20, 20, generator=_gen(5), dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(4, 30, 20, generator=_gen(6), dtype=torch.float64))[0]
    s = torch.linspace(0.2, 3.0, 20, dtype=torch.float64)
    A = U @ torch.diag_embed(s.expand(4, 20)) @ V.mT  # (4, 20, 30)
    ref = torch.from_numpy(np.stack([scipy.linalg.polar(a.numpy())[0] for a in A]))
    torch.testing.assert_close(newton_schulz_polar(A, 30), ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(newton_schulz_polar(A.mT, 30), ref.mT, atol=1e-12, rtol=0)
    R32 = nearest_orthogonal(A.float(), method="newton-schulz", iters=30)
    assert _orth_residual(R32) < 1e-5


@pytest.mark.parametrize("scale", [1e-25, 1e20])
def test_newton_schulz_polar_at_extreme_scales(scale):
    """polar(c A) = polar(A): the Frobenius normalisation once overflowed (float32 entries
    above ~1e19: error 1.0) or underflowed (below ~1e-22: NaN)."""
    A = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    ref = nearest_orthogonal(A.double(), method="svd").float()
    torch.testing.assert_close(newton_schulz_polar(A * scale, 30), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["svd", "newton-schulz"])
def test_nog_replaces_gradients_of_many_layers(method):
    torch.manual_seed(0)
    layers = [nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(20, 8), nn.Conv2d(3, 6, 3)]
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.SGD(params, lr=0.0)
    nog = ef.create("constraint", "nog", method=method, iters=60).attach(layers, optimizer=opt)
    x = torch.randn(64, 12)  # enough samples for full-rank gradients (unique U V^T)
    loss = layers[1](torch.tanh(layers[0](x))).square().sum()
    loss = loss + layers[2](torch.randn(64, 20)).square().sum()
    loss = loss + layers[3](torch.randn(2, 3, 6, 6)).square().sum()
    loss.backward()
    raw = [layer.weight.grad.clone() for layer in layers]
    bias_grad = layers[0].bias.grad.clone()
    opt.step()
    for layer, g in zip(layers, raw):
        G = layer.weight.grad.reshape(layer.weight.shape[0], -1).double()
        assert _orth_residual(G) < 1e-5
        ref = scipy.linalg.polar(g.reshape(g.shape[0], -1).double().numpy())[0]
        np.testing.assert_allclose(G.numpy(), ref, atol=2e-5)
    torch.testing.assert_close(layers[0].bias.grad, bias_grad)  # biases untouched
    nog.detach()


def test_nog_ignores_clipping_and_runs_after_it():
    torch.manual_seed(1)
    a = nn.Linear(8, 8)
    b = copy.deepcopy(a)
    G = torch.randn(8, 8) * 100.0
    results = []
    for layer, clip in ((a, True), (b, False)):
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        ef.create("constraint", "nog").attach(layer, optimizer=opt)
        opt.zero_grad()
        (layer.weight * G).sum().backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(layer.parameters(), 1.0)
        opt.step()
        results.append(layer.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1])  # U V^T is scale invariant


def test_nog_detach_leaves_layer_and_optimizer_as_before():
    layer = nn.Linear(6, 6)
    before = copy.deepcopy(layer.state_dict())
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    nog = ef.create("constraint", "nog").attach(layer, optimizer=opt)
    nog.detach()
    G = torch.randn(6, 6, generator=_gen(7))
    _step_with_grad(layer, G, opt)
    torch.testing.assert_close(layer.weight.detach(), before["weight"] - 0.1 * G)


# --------------------------------------------------------------------------- OLR


def _eta_formula(W: np.ndarray, G: np.ndarray) -> float:
    w, g = W.ravel(), G.ravel()
    return (w @ w) * (g @ w) / ((w @ w) * (g @ g) + 2 * (g @ w) ** 2)


def _vectorised_error(eta: float, w: np.ndarray, l: np.ndarray) -> float:
    """Eq. 3.58 with the identity term dropped, as in the derivation of Eq. 3.59."""
    return float(np.sum((w - eta * l) ** 2) ** 2)


def _matrix_error(eta: float, W: np.ndarray, G: np.ndarray) -> float:
    """The objective of Eq. 3.57."""
    R = W - eta * G
    return float(np.linalg.norm(R @ R.T - np.eye(W.shape[0])))


def test_olr_eta_is_the_first_order_minimiser_of_the_vectorised_objective():
    """Eq. 3.59 drops the eta^2 term of de/deta for e = (||w - eta l||^2)^2 (Eq. 3.58, the
    vectorised Eq. 3.57); the exact minimiser is l.w / l.l, so eta* / argmin = 1/(1+2cos^2)."""
    for seed in range(6):
        g = _gen(20 + seed)
        W = torch.randn(16, 16, generator=g, dtype=torch.float64)
        G = torch.randn(16, 16, generator=g, dtype=torch.float64) + 0.3 * seed * W
        eta = float(optimal_learning_rate(W, G))
        w, l = W.numpy().ravel(), G.numpy().ravel()
        res = minimize_scalar(
            _vectorised_error,
            args=(w, l),
            bounds=(-10, 10),
            method="bounded",
            options={"xatol": 1e-12},
        )
        cos2 = (l @ w) ** 2 / ((l @ l) * (w @ w))
        assert eta == pytest.approx(res.x / (1 + 2 * cos2), rel=1e-6)
        if seed == 0:  # nearly orthogonal vectors: the neglected term is small
            assert cos2 < 0.05 and abs(eta / res.x - 1) <= 2 * cos2


def test_olr_eta_versus_matrix_objective_eq_3_57():
    """Against the matrix objective ||(W - eta G)(W - eta G)^T - I||_F itself: eta* from the
    vectorised derivation lands within a factor 3 of the scipy minimiser, on the same side
    of zero, and lowers the objective relative to a plain step of the same size times 3."""
    for seed in range(5):
        g = _gen(40 + seed)
        W = 2.0 * torch.randn(16, 16, generator=g, dtype=torch.float64) / 4.0
        G = 0.5 * W + 0.3 * torch.randn(16, 16, generator=g, dtype=torch.float64)
        args = (W.numpy(), G.numpy())
        res = minimize_scalar(
            _matrix_error, args=args, bounds=(-10, 10), method="bounded", options={"xatol": 1e-12}
        )
        eta = float(optimal_learning_rate(W, G))
        assert eta * res.x > 0
        assert res.x / 3 <= eta <= 3 * res.x
        assert _matrix_error(eta, *args) < _matrix_error(0.0, *args)


def test_olr_respects_proposition_3_bounds():
    N = 12
    checked = 0
    for seed in range(40):
        g = _gen(100 + seed)
        W = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))[0]
        if seed % 2:  # gradients near W: <G, W> close to N
            K = 0.3 * torch.randn(N, N, generator=g, dtype=torch.float64)
            G = W @ torch.linalg.matrix_exp(K - K.mT)
        else:
            G = torch.linalg.qr(torch.randn(N, N, generator=g, dtype=torch.float64))[0]
        lw = float((G * W).sum())
        if lw < 0:
            G, lw = -G, -lw
        if lw < 1:  # Eq. 3.66 (<G, W> >= 1) is an assumption of the proof
            continue
        eta = float(optimal_learning_rate(W, G))
        assert 1 / (N**2 + 2) <= eta <= N**2 / (N**2 + 2)
        checked += 1
    assert checked >= 20


def test_olr_with_sgd_is_the_thesis_update_and_restores_lr():
    torch.manual_seed(3)
    layer = nn.Linear(10, 10)
    other = nn.Linear(10, 10)
    opt = torch.optim.SGD(list(layer.parameters()) + list(other.parameters()), lr=0.5)
    groups_before = [list(g["params"]) for g in opt.param_groups]
    olr = ef.create("constraint", "olr").attach(layer, optimizer=opt)
    assert len(opt.param_groups) == 2  # the weight got its own group
    for step in range(3):
        W0 = layer.weight.detach().double().numpy().copy()
        G = W0 * (0.2 + step) + 0.1 * np.random.default_rng(step).standard_normal((10, 10))
        eta = min(max(_eta_formula(W0, G), 0.0), 0.5)
        _step_with_grad(layer, torch.from_numpy(G).float(), opt)
        np.testing.assert_allclose(layer.weight.detach().double().numpy(), W0 - eta * G, atol=1e-5)
        assert float(olr.last_lr[0]) == pytest.approx(eta, rel=1e-4)
        assert all(g["lr"] == 0.5 for g in opt.param_groups)  # restored after the step
    olr.detach()
    assert [list(g["params"]) for g in opt.param_groups] == groups_before


def test_olr_switch_eq_3_60_uses_the_smaller_rate():
    layer = nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(6))
    opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
    olr = ef.create("constraint", "olr").attach(layer, optimizer=opt)
    _step_with_grad(layer, torch.eye(6), opt)  # eta* = 6*6/(36+72) = 1/3 > lr
    assert float(olr.last_lr[0]) == pytest.approx(1e-3)
    torch.testing.assert_close(layer.weight.detach(), torch.eye(6) * (1 - 1e-3))


def test_olr_with_adam_sets_the_group_learning_rate():
    torch.manual_seed(4)
    a = nn.Linear(8, 8)
    b = copy.deepcopy(a)
    opt_a = torch.optim.Adam(a.parameters(), lr=0.05)
    olr = ef.create("constraint", "olr").attach(a, optimizer=opt_a)
    opt_b = torch.optim.Adam([{"params": [b.weight]}, {"params": [b.bias]}], lr=0.05)
    for step in range(4):
        G = torch.randn(8, 8, generator=_gen(60 + step)) + a.weight.detach()
        eta = min(
            max(_eta_formula(a.weight.detach().double().numpy(), G.double().numpy()), 0.0), 0.05
        )
        opt_b.param_groups[0]["lr"] = eta  # reference: plain Adam with lr = eta for W
        _step_with_grad(a, G, opt_a)
        _step_with_grad(b, G, opt_b)
        torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a.bias, b.bias)
    assert float(olr.last_lr[0]) > 0


def test_olr_grad_scale_mode_without_sync():
    torch.manual_seed(5)
    layer = nn.Linear(7, 7, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.2)
    ef.create("constraint", "olr", apply_as="grad-scale").attach(layer, optimizer=opt)
    W0 = layer.weight.detach().double().numpy().copy()
    G = W0 + 0.05
    eta = min(max(_eta_formula(W0, G), 0.0), 0.2)
    _step_with_grad(layer, torch.from_numpy(G).float(), opt)
    np.testing.assert_allclose(layer.weight.detach().double().numpy(), W0 - eta * G, atol=1e-6)


def test_olr_clamps_negative_eta_and_needs_an_optimizer_or_lr():
    layer = nn.Linear(4, 4, bias=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    olr = ef.create("constraint", "olr").attach(layer, optimizer=opt)
    W0 = layer.weight.detach().clone()
    _step_with_grad(layer, -W0, opt)  # <G, W> < 0: eta* < 0, clamped to 0
    assert float(olr.last_lr[0]) == 0.0
    torch.testing.assert_close(layer.weight.detach(), W0)
    lone = ef.create("constraint", "olr").attach(nn.Linear(4, 4))
    with pytest.raises(ef.NotSupportedError, match="optimizer"):
        lone.apply()


def test_olr_rejects_a_weight_not_in_the_optimizer():
    layer = nn.Linear(4, 4)
    opt = torch.optim.SGD(nn.Linear(4, 4).parameters(), lr=0.1)
    with pytest.raises(ef.InputError, match="not in the optimizer"):
        ef.create("constraint", "olr").attach(layer, optimizer=opt)
    assert not opt._optimizer_step_pre_hooks


# --------------------------------------------------------------------------- weight treatments


def test_orth_weight_is_the_matrix_exponential_of_the_skew_part():
    torch.manual_seed(6)
    layer = nn.Linear(9, 9).double()
    A = layer.weight.detach().clone()
    ow = ef.create("constraint", "orth-weight").attach(layer)
    ref = scipy.linalg.expm((A - A.T).numpy())  # Eq. 3.52
    np.testing.assert_allclose(layer.weight.detach().numpy(), ref, atol=1e-12)
    ow.detach(restore=True)
    assert torch.equal(layer.weight.detach(), A)


@pytest.mark.parametrize("shape", [(16, 16), (8, 20), (20, 8)])
def test_orth_weight_stays_orthogonal_under_adam(shape):
    torch.manual_seed(7)
    layer = nn.Linear(shape[1], shape[0])
    ef.create("constraint", "orth-weight").attach(layer)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    target = torch.randn(32, shape[0])
    x = torch.randn(32, shape[1])
    for _ in range(50):
        opt.zero_grad()
        (layer(x) - target).square().mean().backward()
        opt.step()
    assert _orth_residual(layer.weight.detach()) < 1e-5


def test_orth_weight_on_conv_and_raw_parameter_error():
    conv = nn.Conv2d(2, 6, 3)
    ef.create("constraint", "orth-weight").attach(conv)
    assert _orth_residual(conv.weight.detach().reshape(6, -1)) < 1e-5
    with pytest.raises(ef.NotSupportedError, match="raw parameter"):
        ef.create("constraint", "orth-weight").attach(nn.Parameter(torch.randn(3, 3)))


@pytest.mark.parametrize("method", ["exact", "power"])
def test_spectral_norm_divides_by_the_largest_singular_value(method):
    torch.manual_seed(8)
    layer = nn.Linear(12, 10).double()
    W = layer.weight.detach().clone()
    sn = ef.create("constraint", "spectral-norm", method=method, power_iters=5).attach(layer)
    for _ in range(20):  # power iteration converges over training-mode forwards
        layer(torch.randn(2, 12, dtype=torch.float64))
    sigma = np.linalg.norm(W.numpy(), 2)
    tol = 1e-12 if method == "exact" else 1e-6
    np.testing.assert_allclose(layer.weight.detach().numpy(), W.numpy() / sigma, atol=tol)
    sn.detach(restore=True)
    assert torch.equal(layer.weight.detach(), W)


def test_orth_loss_value_and_effect():
    torch.manual_seed(9)
    layers = [nn.Linear(6, 6), nn.Linear(10, 4)]
    ol = ef.create("constraint", "orth-loss", weight=0.5).attach(layers)
    ref = 0.0
    for layer in layers:
        W = layer.weight.detach().double().numpy()
        ref += np.linalg.norm(W @ W.T - np.eye(W.shape[0]))
    assert float(ol.penalty().detach()) == pytest.approx(0.5 * ref, rel=1e-5)
    opt = torch.optim.SGD([p for layer in layers for p in layer.parameters()], lr=0.05)
    start = float(ol.penalty().detach())
    for _ in range(100):
        opt.zero_grad()
        ol.penalty().backward()
        opt.step()
    assert float(ol.penalty().detach()) < 0.2 * start


# --------------------------------------------------------------------------- composition


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_nog_orth_weight_olr_compose(optim):
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 3))
    pre = model[2]
    names = ["olr", "nog", "orth-weight", "orth-loss"]
    cs = ConstraintSet([ef.create("constraint", n) for n in names])
    assert [c.name for c in cs.constraints] == ["orth-weight", "orth-loss", "nog", "olr"]
    cs.attach(pre)
    opt = (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if optim == "sgd"
        else torch.optim.Adam(model.parameters(), lr=1e-2)
    )
    cs.attach_optimizer(opt)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    leaf = pre.parametrizations.weight.original
    for _ in range(10):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + 1e-3 * cs.penalty()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        assert _orth_residual(leaf.grad) < 1e-5  # NOG acted on the unconstrained parameter
        assert torch.isfinite(cs.constraints[-1].last_lr).all()
    assert _orth_residual(pre.weight.detach()) < 1e-5
    n_groups = len(opt.param_groups)
    cs.detach()
    assert len(opt.param_groups) == n_groups - 1
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    assert type(pre) is nn.Linear


def test_every_constraint_attach_detach_leaves_a_layer_as_it_was():
    for name in ef.list("constraint"):
        torch.manual_seed(11)
        layer = nn.Linear(6, 6)
        before = {k: v.clone() for k, v in layer.state_dict().items()}
        params = dict(layer.named_parameters())
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        c = ef.create("constraint", name)
        opts = {"rank": 3} if name == "householder" else {}
        if opts:
            c = ef.create("constraint", name, **opts)
        if name in ("nog", "olr"):
            c.attach(layer, optimizer=opt)
        else:
            c.attach(layer)
        if hasattr(c, "parametrizations"):
            c.detach(restore=True)
        else:
            c.detach()
        assert type(layer) is nn.Linear, name
        assert dict(layer.named_parameters()) == params, name
        for k, v in layer.state_dict().items():
            assert torch.equal(v, before[k]), name
        assert len(opt.param_groups) == 1 and not opt._optimizer_step_pre_hooks, name


def test_bad_targets_are_clear_errors():
    with pytest.raises(ef.InputError, match="target"):
        ef.create("constraint", "nog").attach(nn.ReLU())
    with pytest.raises(ef.InputError, match="target"):
        ef.create("constraint", "nog").attach("weight")
    with pytest.raises(ef.ConfigError, match="method"):
        ef.create("constraint", "nog", method="qr")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_constraints_on_cuda():
    torch.manual_seed(12)
    dev = torch.device("cuda")
    model = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)).to(dev)
    cs = ConstraintSet([ef.create("constraint", n) for n in ("nog", "olr", "orth-weight")])
    cs.attach(model[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cs.attach_optimizer(opt)
    x = torch.randn(32, 8, device=dev)
    for _ in range(5):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert _orth_residual(model[1].weight.detach().cpu()) < 1e-5
    hh = ef.create("constraint", "householder", rank=4).attach(model[2])
    assert model[2].weight.device.type == "cuda"
    assert hh.directions().shape == (16, 4)


# --------------------------------------------------------------------------- all-or-nothing attach


def _snapshot(layers: list[nn.Module]) -> list[tuple]:
    return [
        (
            type(layer),
            dict(layer.named_parameters()),
            {k: v.clone() for k, v in layer.state_dict().items()},
        )
        for layer in layers
    ]


def _assert_as_before(layers: list[nn.Module], snapshot: list[tuple]) -> None:
    for layer, (cls, params, state) in zip(layers, snapshot):
        assert type(layer) is cls
        assert dict(layer.named_parameters()) == params  # the same parameter objects
        assert set(layer.state_dict()) == set(state)
        for k, v in layer.state_dict().items():
            assert torch.equal(v, state[k]), k


def test_failed_householder_attach_on_a_list_leaves_no_layer_constrained():
    """The audit's case: rank 3 is invalid for the second layer (a 6 x 1 weight)."""
    a, b = nn.Linear(6, 6), nn.Linear(1, 6)
    before = _snapshot([a, b])
    hh = ef.create("constraint", "householder", rank=3)
    with pytest.raises(ef.ConfigError, match="rank"):
        hh.attach([a, b])
    _assert_as_before([a, b], before)
    assert hh.parametrizations == []
    hh.attach([a])  # no "already attached": the failed attach left nothing behind
    assert torch.nn.utils.parametrize.is_parametrized(a, "weight")


@pytest.mark.parametrize("name", ["orth-weight", "spectral-norm", "householder"])
def test_parametrization_attach_is_undone_when_a_later_layer_fails(name):
    """A failure after some layers were parametrized (here: the third of three) restores
    them all, classes, parameter objects and values; a retry then works."""
    torch.manual_seed(13)
    layers = [nn.Linear(5, 5), nn.Conv2d(2, 4, 3), nn.Linear(5, 3)]
    before = _snapshot(layers)
    c = ef.create("constraint", name, **({"rank": 2} if name == "householder" else {}))
    real = c.make_parametrization
    seen: list[nn.Module] = []

    def fails_on_the_third(module: nn.Module) -> nn.Module:
        seen.append(module)
        if len(seen) == 3:
            raise RuntimeError("third layer fails")
        return real(module)

    c.make_parametrization = fails_on_the_third
    with pytest.raises(RuntimeError, match="third layer fails"):
        c.attach(layers)
    assert len(seen) == 3  # the first two were parametrized before the failure
    _assert_as_before(layers, before)
    assert c.parametrizations == []
    del c.make_parametrization
    c.attach(layers)
    assert len(c.parametrizations) == 3


def test_undone_attach_keeps_an_earlier_constraint_of_the_same_weight():
    torch.manual_seed(14)
    a, b = nn.Linear(5, 5), nn.Linear(5, 5)
    ef.create("constraint", "orth-weight").attach(a)
    original = a.parametrizations.weight.original
    weight = a.weight.detach().clone()
    sn = ef.create("constraint", "spectral-norm")
    real = sn.make_parametrization

    def fails_on_b(module: nn.Module) -> nn.Module:
        if module is b:
            raise RuntimeError("b fails")
        return real(module)

    sn.make_parametrization = fails_on_b
    with pytest.raises(RuntimeError, match="b fails"):
        sn.attach([a, b])
    assert len(a.parametrizations.weight) == 1  # orth-weight only, as before
    assert a.parametrizations.weight.original is original
    torch.testing.assert_close(a.weight.detach(), weight, atol=0, rtol=0)
    assert not torch.nn.utils.parametrize.is_parametrized(b)


def test_failed_olr_attach_on_a_list_restores_the_param_groups():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    opt = torch.optim.SGD(a.parameters(), lr=0.1)  # b is not in the optimizer
    groups = [list(g["params"]) for g in opt.param_groups]
    olr = ef.create("constraint", "olr")
    with pytest.raises(ef.InputError, match="not in the optimizer"):
        olr.attach([a, b], optimizer=opt)  # a's weight was moved to its own group first
    assert [list(g["params"]) for g in opt.param_groups] == groups
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    olr.attach([a], optimizer=opt)
    assert len(opt.param_groups) == 2


def test_constraint_set_attach_is_all_or_nothing():
    layer = nn.Linear(6, 6)
    before = _snapshot([layer])
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    cs = ConstraintSet(
        [ef.create("constraint", "householder", rank=2), ef.create("constraint", "nog")]
    )
    with pytest.raises(ef.NotSupportedError, match=r"'nog' cannot act on Linear\.weight"):
        cs.attach(layer, optimizer=opt)  # householder attaches first, then nog refuses
    _assert_as_before([layer], before)
    assert not opt._optimizer_step_pre_hooks
    # attach_optimizer: nog attaches, then olr fails (the layer is not in this optimizer)
    cs = ConstraintSet([ef.create("constraint", n) for n in ("nog", "olr")]).attach(layer)
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ef.InputError, match="not in the optimizer"):
        cs.attach_optimizer(other)
    assert not other._optimizer_step_pre_hooks and not other._optimizer_step_post_hooks
    cs.attach_optimizer(opt)  # the retry with the right optimizer works
    assert len(opt._optimizer_step_pre_hooks) == 2
    cs.detach()


@pytest.mark.parametrize("name", ["nog", "orth-weight", "orth-loss"])
def test_the_same_layer_twice_is_an_input_error(name):
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    with pytest.raises(ef.InputError, match="item 2 is the same Linear as item 0"):
        ef.create("constraint", name).attach([a, b, a])
    assert not torch.nn.utils.parametrize.is_parametrized(a)
    p = nn.Parameter(torch.randn(3, 3))
    if name != "orth-weight":
        with pytest.raises(ef.InputError, match="item 1 is the same parameter as item 0"):
            ef.create("constraint", name).attach([p, p])


# --------------------------------------------------------------------------- zero gradients


@pytest.mark.parametrize("method", POLAR_METHODS)
def test_nog_keeps_a_zero_gradient_zero(method):
    """Per weight and for every method: a zero gradient gives a zero update (the SVD made it
    a full orthogonal step), while a non-zero gradient of the same shape, orthogonalised in
    the same batched call, is still replaced by its polar factor."""
    torch.manual_seed(15)
    layers = [nn.Linear(4, 4, bias=False) for _ in range(3)] + [nn.Conv2d(2, 3, 2, bias=False)]
    opt = torch.optim.SGD([layer.weight for layer in layers], lr=0.1)
    ef.create("constraint", "nog", method=method, iters=60).attach(layers, optimizer=opt)
    Q1 = torch.linalg.qr(torch.randn(4, 4, generator=_gen(16)))[0]
    Q2 = torch.linalg.qr(torch.randn(4, 4, generator=_gen(17)))[0]
    G = Q1 @ torch.diag(torch.tensor([1.0, 1.5, 2.0, 3.0])) @ Q2
    weights = [layer.weight.detach().clone() for layer in layers]
    for layer in layers:
        layer.weight.grad = torch.zeros_like(layer.weight)
    layers[1].weight.grad = G.clone()
    opt.step()
    for i in (0, 2, 3):
        assert torch.equal(layers[i].weight.grad, torch.zeros_like(layers[i].weight)), i
        assert torch.equal(layers[i].weight.detach(), weights[i]), i
    ref = torch.from_numpy(scipy.linalg.polar(G.double().numpy())[0]).float()
    torch.testing.assert_close(layers[1].weight.grad, ref, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- spectral-norm warm-up


def _weight_with_spectrum(s: torch.Tensor, seed: int) -> torch.Tensor:
    n = s.shape[0]
    U = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed + 1), dtype=torch.float64))[0]
    return U @ torch.diag(s) @ V.mT


def test_spectral_norm_warms_up_at_attach():
    """15 power iterations at attach (torch's spectral_norm does the same at registration):
    right after attach, in eval mode, ||W||_2 = 1 against float64 matrix_norm; with
    warmup_iters=0 the random start vector leaves the weight far from normalised."""
    s = torch.cat([torch.tensor([2.0]), torch.linspace(1.0, 0.1, 31)]).double()
    W = _weight_with_spectrum(s, seed=18)  # sigma_1 / sigma_2 = 2: (1/2)^30 after 15 steps
    results = {}
    for warmup in (15, 0):
        torch.manual_seed(19)
        layer = nn.Linear(32, 32).double()
        with torch.no_grad():
            layer.weight.copy_(W)
        options = {} if warmup == 15 else {"warmup_iters": 0}
        ef.create("constraint", "spectral-norm", **options).attach(layer)
        layer.eval()
        results[warmup] = float(torch.linalg.matrix_norm(layer.weight.detach(), 2))
        if warmup == 15:
            u = layer.parametrizations.weight[0].u
            U_ref = torch.linalg.svd(W)[0][:, 0]
            assert float((u @ U_ref).abs()) == pytest.approx(1.0, abs=1e-12)
            before = u.clone()
            layer(torch.randn(3, 32, dtype=torch.float64))
            assert torch.equal(u, before)  # eval mode does not iterate
    assert results[15] == pytest.approx(1.0, abs=1e-10)
    assert results[0] > 1.1


def test_spectral_norm_eval_right_after_attach_audit_case():
    """The audit's case: a default-initialised 64 x 64 layer, eval right after attach, had
    ||W||_2 = 1.32 without the warm-up (still so with warmup_iters=0); 7.6e-5 from 1 now."""
    norms = {}
    for warmup in (15, 0):
        torch.manual_seed(0)
        layer = nn.Linear(64, 64)
        ef.create("constraint", "spectral-norm", warmup_iters=warmup).attach(layer)
        layer.eval()
        norms[warmup] = float(torch.linalg.matrix_norm(layer.weight.detach().double(), 2))
    assert abs(norms[15] - 1.0) < 1e-3
    assert norms[0] > 1.2
    with pytest.raises(ef.ConfigError, match="warmup_iters"):
        ef.create("constraint", "spectral-norm", warmup_iters=-1)
