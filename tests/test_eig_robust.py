"""Robust differentiable eigendecomposition (issue 4; thesis 000, Sec. 3.2-3.3): the
approximations of 1/(1-x), the gradient rules, and the solvers svd-pade, svd-taylor, svd-pi,
svd-trunc, svd-topn, svd-clip, against independent references (exact rational arithmetic,
the exact rule 1/(lambda_j - lambda_i), the Daleckii-Krein gradient, finite differences)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

import eigenflow as ef
from eigenflow.bench.gradients import (
    QUALITY_COLUMNS,
    eigh_solver_names,
    exact_sqrt_gradient,
    gradient_quality,
    time_forward_backward,
    write_gradient_report,
)
from eigenflow.core.errors import ConfigError, NotSupportedError
from eigenflow.core.gradient_rules import (
    clip_rule,
    pade_rule,
    power_iteration_rule,
    taylor_rule,
    topn_rule,
    truncation_rule,
)
from eigenflow.core.pade import (
    geometric_damping,
    geometric_pade,
    geometric_taylor,
    pade_coefficients,
)
from eigenflow.core.spectral import exact_rule
from eigenflow.testing import random_orthogonal, random_spd, spd_from_eigenvalues

ROBUST = ["svd-pade", "svd-taylor", "svd-pi", "svd-trunc", "svd-topn", "svd-clip"]
EPS64 = torch.finfo(torch.float64).eps
F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sym(X: torch.Tensor) -> torch.Tensor:
    return 0.5 * (X + X.mT)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


def _separated_spd(n: int, batch: int, seed: int, ratio: float = 0.7) -> torch.Tensor:
    """SPD matrices whose consecutive eigenvalues have ratio ``ratio`` (well separated)."""
    eig = ratio ** torch.arange(n, dtype=F64).flip(0)
    return spd_from_eigenvalues(eig.expand(batch, n).clone(), generator=_gen(seed))


def _exact_matrix_function_gradient(A: torch.Tensor, G: torch.Tensor, power: float):
    """Daleckii-Krein gradient of sum(A^power * G) in float64 (closed-form divided
    differences for power +-1/2, no cancellation)."""
    L, V = torch.linalg.eigh(A.to(F64))
    s = L.sqrt()
    si, sj = s.unsqueeze(-1), s.unsqueeze(-2)
    D = 1.0 / (si + sj) if power == 0.5 else -1.0 / (si * sj * (si + sj))
    return V @ (D * (V.mT @ _sym(G.to(F64)) @ V)) @ V.mT


def _grad(solver, A: torch.Tensor, loss) -> torch.Tensor:
    X = A.detach().clone().requires_grad_()
    loss(solver, X).backward()
    return X.grad


def _rank_deficient(n: int, rank: int, batch: int, seed: int) -> torch.Tensor:
    X = torch.randn(batch, n, rank, dtype=F64, generator=_gen(seed))
    return _sym(X @ X.mT / rank)


# --------------------------------------------------------------------------- rational math


def test_pade_equations_reproduce_the_known_pade_approximants_of_exp():
    series = [Fraction(1, math.factorial(k)) for k in range(6)]
    p, q = pade_coefficients(series, 2, 2)
    assert p == (1, Fraction(1, 2), Fraction(1, 12))
    assert q == (1, Fraction(-1, 2), Fraction(1, 12))
    p, q = pade_coefficients(series, 1, 1)
    assert (p, q) == ((1, Fraction(1, 2)), (1, Fraction(-1, 2)))


def test_pade_equations_of_the_geometric_series_are_singular():
    with pytest.raises(ValueError, match="singular"):
        pade_coefficients([1] * 101, 50, 50)


@pytest.mark.parametrize("degree", [10, 51, 100])
def test_regularised_pade_matches_series_and_is_bounded(degree):
    bound = 1e12
    r = geometric_pade(degree, bound)
    m, n = len(r.p) - 1, len(r.q) - 1
    assert m + n == degree and m - n in (0, 1)
    # P - S*Q vanishes through order m (Eq. 3.16, numerator equations).
    for k in range(m + 1):
        assert sum(r.q[l] for l in range(min(k, n) + 1)) == r.p[k]
    gamma = sum(r.q)
    assert 0 < gamma < Fraction(1, 10**8)
    assert r.exact(1) == Fraction(bound)  # the maximum is exactly the requested bound
    grid = [Fraction(i, 400) for i in range(401)] + [1 - Fraction(1, 10**k) for k in (3, 6, 9)]
    grid.sort()
    values = [r.exact(x) for x in grid]
    assert all(0 < v <= bound for v in values)
    assert all(a < b for a, b in itertools.pairwise(values))  # increasing, so max at x = 1
    qs = [sum(c * x**i for i, c in enumerate(r.q)) for x in grid]
    assert all(a > b > 0 for a, b in itertools.pairwise(qs))  # Q decreases from 1 to gamma > 0


def test_bound_must_exceed_the_taylor_maximum():
    with pytest.raises(ValueError, match="bound must exceed"):
        geometric_damping(50, 50, 40.0)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_evaluation_is_accurate_in_both_bases(dtype, tol):
    r = geometric_pade(100, 1.0 / torch.finfo(dtype).eps)
    y64 = torch.cat([torch.logspace(-15, 0, 60, dtype=F64), torch.zeros(1, dtype=F64)])
    y64 = [*y64[y64 >= torch.finfo(dtype).eps].tolist(), 0.0]
    ys = torch.tensor(y64, dtype=dtype)
    xs = 1.0 - ys
    got = r(xs, ys).tolist()
    for x, y, v in zip(xs.tolist(), ys.tolist(), got):
        exact = r.exact(1 - Fraction(y)) if y < 0.5 else r.exact(Fraction(x))
        assert abs(Fraction(v) - exact) / exact < tol, (x, y)


def test_table_3_1_pade_beats_taylor_at_degree_100_in_float64():
    """Thesis Table 3.1: |approximation - 1/(1-x)| at degree 100 in double precision."""
    thesis_taylor = {0.9: 2e-4, 0.99: 36.0, 0.999: 904.0}
    thesis_pade = {0.9: 3e-16, 0.99: 8e-13, 0.999: 3e-10}
    r = geometric_pade(100, 1.0 / EPS64)
    xs = [0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999]
    x = torch.tensor(xs, dtype=F64)
    pade = r(x, 1.0 - x).tolist()
    taylor = geometric_taylor(x.clone(), 100).tolist()
    for xi, p, t in zip(xs, pade, taylor):
        exact = 1 / (1 - Fraction(xi))
        err_p, err_t = abs(float(Fraction(p) - exact)), abs(float(Fraction(t) - exact))
        assert err_p <= err_t + 4 * EPS64 * float(exact)
        assert err_p < 1e-9
        if xi in thesis_taylor:
            assert 0.5 < err_t / thesis_taylor[xi] < 2.0  # Taylor reproduces the thesis
            assert err_p < 10 * thesis_pade[xi] + 4 * EPS64 * float(exact)
            assert err_p < 1e-6 * err_t


# --------------------------------------------------------------------------- gradient rules


def _random_spectrum(batch: int, n: int, seed: int) -> torch.Tensor:
    """Ascending spectra with ties, near-ties, zeros and tiny eigenvalues."""
    gen = _gen(seed)
    L = torch.rand(batch, n, dtype=F64, generator=gen) ** 4
    L[:, :3] = 0.0
    L[:, 3] = EPS64
    L[:, 4] = L[:, 5]
    L[:, 6] = L[:, 7] * (1 - 1e-12)
    return L.sort(dim=-1).values


def test_pade_rule_matches_exact_rule_on_separated_spectra():
    L = 0.9 ** torch.arange(12, dtype=F64).flip(0) * torch.rand(4, 1, dtype=F64) * 10
    off = ~torch.eye(12, dtype=torch.bool)
    exact = exact_rule(L)
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-5)):
        F = pade_rule(L.to(dtype)).to(F64)
        assert ((F - exact).abs()[..., off] / exact.abs()[..., off]).max() < tol


def test_taylor_rule_is_the_truncated_series():
    L = torch.tensor([[0.2, 0.5, 0.9, 1.0]], dtype=F64)
    exact = exact_rule(L)
    ratio = torch.minimum(L.unsqueeze(-1) / L.unsqueeze(-2), L.unsqueeze(-2) / L.unsqueeze(-1))
    expected = exact * (1 - ratio**11)
    torch.testing.assert_close(taylor_rule(L, degree=10), expected, rtol=1e-13, atol=0)


def test_rules_are_skew_symmetric_and_finite():
    L = _random_spectrum(5, 12, seed=1)
    for F in (
        pade_rule(L),
        taylor_rule(L),
        truncation_rule(L),
        clip_rule(L),
        topn_rule(L, keep=9),
        power_iteration_rule(L),
    ):
        assert torch.isfinite(F).all()
        torch.testing.assert_close(F, -F.mT, rtol=0, atol=0)


def test_table_3_2_upper_bounds_hold():
    """Each rule stays below its analytical bound (Table 3.2) on spectra with ties, zeros,
    and eigenvalues at machine epsilon."""
    L = _random_spectrum(8, 16, seed=2)
    mu = L.clamp_min(EPS64 * L.amax(-1, keepdim=True))  # the floored spectrum of the rules
    lam_j = mu.unsqueeze(-2).expand(-1, 16, -1)
    lam_max = mu.amax(-1)[:, None, None]
    upper = torch.ones(16, 16, dtype=torch.bool).triu(1)
    tol = 1 + 1e-12
    B = 1.0 / EPS64
    assert (pade_rule(L).abs() <= tol * B / lam_max).all()
    assert (taylor_rule(L)[..., upper] <= tol * 101 / lam_j[..., upper]).all()
    assert (truncation_rule(L).abs() <= 1e10 * tol).all()
    assert (clip_rule(L).abs() <= tol * 1e6 / lam_max).all()
    assert (power_iteration_rule(L).abs() <= tol * 21 / lam_max).all()
    kept = 12
    lam_n = mu[:, -kept][:, None, None]
    F = topn_rule(L, keep=kept)
    assert (F[:, : 16 - kept, :].abs() <= tol / lam_n).all()  # discarded rows: <= 1/lambda_N
    assert (F[:, : 16 - kept, : 16 - kept] == 0).all()


@pytest.mark.parametrize("c", [3.0, 1e-3, 1e3])
def test_ratio_rules_bound_a_negative_multiple_of_the_identity_like_a_positive_one(c):
    """``-c I`` shifts to the zero spectrum; the floor and the Padé cap once came from that
    zero (``sqrt(tiny)``), giving |F| ~ 1e169 where ``c I`` gives ``bound / c``. They now come
    from ``max|lambda| = c`` (the resolution ``eps ||A||_2`` of the forward). The uncapped
    Taylor and power-iteration rules keep their Table 3.2 bound ``(degree + 1) / mu_j`` on the
    floored ``mu_j = eps c``, as on a singular covariance."""
    for n in (2, 5):
        pos = torch.full((1, n), c, dtype=F64)
        assert pade_rule(-pos).abs().max() <= (1 + 1e-12) * pade_rule(pos).abs().max()
        assert pade_rule(-pos).abs().max() <= (1 + 1e-12) / (EPS64 * c)
        for rule, terms in ((taylor_rule, 101), (power_iteration_rule, 21)):
            assert rule(-pos).abs().max() <= (1 + 1e-12) * terms / (EPS64 * c)
    # and through a solver's backward, on a rotated -3 I
    Q = random_orthogonal(4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    G = torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    grads = []
    for sign in (1.0, -1.0):
        A = (sign * 3.0 * Q @ Q.mT).requires_grad_(True)
        _, V = ef.eigh(A, method="svd-pade")
        (V * G).sum().backward()
        grads.append(A.grad.abs().max())
    assert grads[1] <= 10 * grads[0]


@pytest.mark.parametrize(("name", "option"), [("svd-pade", "bound"), ("batched-ed", "pade_bound")])
def test_pade_bound_beyond_the_dtype_is_refused_not_nan(name, option):
    """float32 gradients on the identity were NaN from ``bound`` ~1e38 (the validator allows
    up to 1e300 for float64): refused with the limit ``max * eps``; float64 is unaffected."""
    G = torch.arange(16.0).reshape(4, 4)
    solver = ef.create("solver", name, **{option: 1e39})
    A = torch.eye(4, requires_grad=True)
    with pytest.raises(NotSupportedError, match=r"Padé bound = 1e\+39 .* at most 4.06e\+31"):
        _, V = solver.eigh(A)
        (V * G).sum().backward()
    A64 = torch.eye(4, dtype=F64, requires_grad=True)
    _, V = solver.eigh(A64)
    (V * G.double()).sum().backward()
    assert torch.isfinite(A64.grad).all()


def test_table_3_2_maximal_values_at_the_trigger_conditions():
    """Thesis Table 3.2 values (EPS = 2.22e-16): Taylor 4.55e17, Trunc 1e10, TopN 4.50e15,
    Padé 6.00e36 (with the thesis's bound), SVD infinite."""
    eps = torch.tensor([[EPS64, EPS64, 1.0]], dtype=F64)  # lambda_i = lambda_j <= EPS
    assert taylor_rule(eps)[0, 0, 1].item() == pytest.approx(4.55e17, rel=2e-3)
    assert truncation_rule(torch.tensor([[1.0, 1.0]], dtype=F64))[0, 0, 1].item() == 1e10
    topn = topn_rule(torch.tensor([[0.0, EPS64, 1.0]], dtype=F64), keep=2)
    assert topn[0, 0, 1].item() == pytest.approx(4.50e15, rel=2e-3)
    both_eps = torch.tensor([[EPS64, EPS64]], dtype=F64)
    assert pade_rule(both_eps, bound=1.33e21)[0, 0, 1].item() == pytest.approx(6.0e36, rel=2e-3)
    # eigenflow's default: bound 1/eps, capped at bound / lambda_max.
    assert pade_rule(eps)[0, 0, 1].item() == pytest.approx(1.0 / EPS64, rel=1e-12)
    assert torch.isinf(exact_rule(both_eps)[0, 0, 1])


# --------------------------------------------------------------------------- solvers


def test_solvers_are_registered_with_eigh():
    names = ef.list("solver")
    for name in ["svd", *ROBUST]:
        assert name in names
        assert ef.get("solver", name).provides_eigh
        assert ef.get("solver", name).robust_gradient is (name != "svd")
    assert set(["svd", *ROBUST]) <= set(eigh_solver_names())


@pytest.mark.parametrize("power", [0.5, -0.5])
def test_svd_pade_gradient_matches_exact_gradient_float64(power):
    A = _separated_spd(12, 3, seed=3)
    G = torch.randn(3, 12, 12, dtype=F64, generator=_gen(4))
    solver = ef.create("solver", "svd-pade")
    fn = solver.sqrt if power == 0.5 else solver.invsqrt
    X = A.clone().requires_grad_()
    (fn(X) * G).sum().backward()
    assert _rel(X.grad, _exact_matrix_function_gradient(A, G, power)) < 1e-8


def test_svd_pade_passes_gradcheck_on_a_separated_spectrum():
    A = spd_from_eigenvalues(torch.tensor([[0.5, 0.9, 1.4, 3.0]], dtype=F64), generator=_gen(5))
    G = torch.randn(1, 4, 4, dtype=F64, generator=_gen(6))
    solver = ef.create("solver", "svd-pade")

    def loss(X):
        L, V = solver.eigh(_sym(X), check=False)
        return (solver.sqrt(_sym(X), check=False) * G).sum() + (V**3).sum() + L.sum()

    assert torch.autograd.gradcheck(loss, (A.clone().requires_grad_(),), eps=1e-6, atol=1e-7)


def test_svd_pade_beats_svd_taylor_on_clustered_spectra():
    """Close eigenvalues (ratio 0.995) are where the truncated series fails (Table 3.1)."""
    A = _separated_spd(10, 2, seed=7, ratio=0.995)
    G = torch.randn(2, 10, 10, dtype=F64, generator=_gen(8))
    exact = _exact_matrix_function_gradient(A, G, 0.5)
    loss = lambda s, X: (s.sqrt(X) * G).sum()  # noqa: E731
    err_pade = _rel(_grad(ef.create("solver", "svd-pade"), A, loss), exact)
    err_taylor = _rel(_grad(ef.create("solver", "svd-taylor"), A, loss), exact)
    assert err_pade < 1e-8
    assert err_taylor > 1e-3


def test_svd_pade_eigenvector_gradient_matches_exact_svd_float64():
    A = _separated_spd(8, 2, seed=9)
    W = torch.randn(2, 8, 8, dtype=F64, generator=_gen(10))

    def loss(s, X):
        L, V = s.eigh(X)
        return (V * W).sum() + (L**2).sum()

    ref = _grad(ef.create("solver", "svd"), A, loss)
    assert _rel(_grad(ef.create("solver", "svd-pade"), A, loss), ref) < 1e-8


def _hard_inputs(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    eye = torch.eye(6, dtype=F64).expand(2, 6, 6)
    repeated = spd_from_eigenvalues(
        torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 3.0]], dtype=F64).expand(2, 6), generator=_gen(11)
    )
    cond12 = spd_from_eigenvalues(
        torch.logspace(-12, 0, 6, dtype=F64).expand(2, 6), generator=_gen(12)
    )
    return {
        "identity": eye.to(dtype),
        "repeated": repeated.to(dtype),
        "rank-deficient": _rank_deficient(6, 2, 2, seed=13).to(dtype),
        "cond-1e12": cond12.to(dtype),
    }


def _all_losses(solver, X: torch.Tensor) -> torch.Tensor:
    root, inv = solver.sqrt_invsqrt(X)
    L, V = solver.eigh(X)
    return root.square().sum() + inv.sum() + root.sum() + (V**3).sum() + L.sum()


@pytest.mark.parametrize("name", ROBUST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_robust_solvers_give_finite_gradients_on_hard_inputs(name, dtype):
    solver = ef.create("solver", name)
    for case, A in _hard_inputs(dtype).items():
        grad = _grad(solver, A, _all_losses)
        assert grad.dtype == dtype
        assert torch.isfinite(grad).all(), f"{name} {case}"


def test_svd_documented_behaviour_non_finite_at_exact_repeats():
    """`svd` keeps the exact K_ij = 1/(lambda_i - lambda_j): at exactly repeated eigenvalues
    (the identity) the gradient of a matrix function is NaN (inf * 0), as documented; with
    distinct eigenvalues, however close, it stays finite."""
    svd = ef.create("solver", "svd")
    eye = torch.eye(5, dtype=F64)[None]
    L, _ = torch.linalg.eigh(eye)
    assert (L == 1).all()  # the ties are exact
    assert not torch.isfinite(_grad(svd, eye, lambda s, X: s.sqrt(X).square().sum())).all()
    near = spd_from_eigenvalues(torch.tensor([[1.0, 1.0 + 1e-9, 2.0]], dtype=F64), _gen(14))
    assert torch.isfinite(_grad(svd, near, lambda s, X: s.sqrt(X).sum())).all()


def test_all_eigh_solvers_share_the_forward_and_its_convention():
    """Eigenvalues ascending, eigenvectors orthonormal with the largest-magnitude entry of each
    column positive, identical across solvers and across batch composition."""
    A = spd_from_eigenvalues(torch.rand(3, 7, dtype=F64, generator=_gen(15)) + 0.1, _gen(16))
    A = A - 0.3 * torch.eye(7, dtype=F64)  # indefinite too
    L0, V0 = ef.eigh(A, method="svd")
    for name in ROBUST:
        L, V = ef.eigh(A, method=name)
        assert torch.equal(L, L0) and torch.equal(V, V0), name
    assert (L0[..., 1:] >= L0[..., :-1]).all()
    idx = V0.abs().argmax(dim=-2, keepdim=True)
    assert (torch.gather(V0, -2, idx) > 0).all()
    torch.testing.assert_close(V0.mT @ V0, torch.eye(7, dtype=F64).expand(3, 7, 7))
    torch.testing.assert_close((V0 * L0.unsqueeze(-2)) @ V0.mT, A, rtol=0, atol=1e-12)
    _L1, V1 = ef.eigh(A[1:2], method="svd-pade")
    torch.testing.assert_close(V1[0], V0[1], rtol=0, atol=1e-13)
    flipped = random_orthogonal(7, 7, generator=_gen(17))  # same matrix, other basis order
    _, V2 = ef.eigh(flipped.mT @ (flipped @ A[0] @ flipped.mT) @ flipped, method="svd-pade")
    assert (torch.gather(V2, -2, V2.abs().argmax(dim=-2, keepdim=True)) > 0).all()


@pytest.mark.parametrize("name", ROBUST)
def test_mixed_conditioning_in_one_batch(name):
    """One call on [identity, repeated, rank-deficient, cond 1e12, well separated]: all
    gradients finite, and the well-separated member's gradient is what it is alone."""
    hard = _hard_inputs(F64)
    good = _separated_spd(6, 1, seed=18)
    batch = torch.cat(
        [
            hard["identity"][:1],
            hard["repeated"][:1],
            hard["rank-deficient"][:1],
            hard["cond-1e12"][:1],
            good,
        ]
    )
    solver = ef.create("solver", name)
    G = torch.randn(6, 6, dtype=F64, generator=_gen(19))
    loss = lambda s, X: (s.sqrt(X) * G).sum() + s.eigh(X)[1].pow(3).sum()  # noqa: E731
    together = _grad(solver, batch, loss)
    assert torch.isfinite(together).all()
    alone = _grad(solver, good, loss)
    torch.testing.assert_close(together[-1:], alone, rtol=1e-10, atol=1e-12)
    if name == "svd-pade":
        exact = _exact_matrix_function_gradient(good, G, 0.5)
        assert _rel(_grad(solver, good, lambda s, X: (s.sqrt(X) * G).sum()), exact) < 1e-8


def test_float32_svd_pade_gradient_accuracy():
    A = _separated_spd(8, 2, seed=20)
    G = torch.randn(2, 8, 8, dtype=F64, generator=_gen(21))
    solver = ef.create("solver", "svd-pade")
    grad = _grad(solver, A.float(), lambda s, X: (s.sqrt(X) * G.float()).sum())
    assert grad.dtype == torch.float32
    assert _rel(grad.double(), _exact_matrix_function_gradient(A, G, 0.5)) < 1e-4


def test_rank_deficient_gradients_stay_at_the_scale_of_the_exact_method():
    """On singular covariances the bounded rules do not amplify rounding: the gradient of a
    matrix function stays at the magnitude `svd` gives (where `svd` is finite)."""
    P = _rank_deficient(24, 8, 2, seed=22)
    G = torch.randn(24, 24, dtype=F64, generator=_gen(23))
    loss = lambda s, X: (s.sqrt(X) * G).sum()  # noqa: E731
    for dtype in (F64, torch.float32):
        ref = _grad(ef.create("solver", "svd"), P.to(dtype), loss).abs().max()
        for name in ("svd-pade", "svd-taylor", "svd-trunc", "svd-clip"):
            got = _grad(ef.create("solver", name), P.to(dtype), loss).abs().max()
            assert got < 10 * ref, (name, dtype)


def test_trunc_and_clip_are_exact_when_gaps_are_large():
    A = _separated_spd(6, 2, seed=24)
    G = torch.randn(2, 6, 6, dtype=F64, generator=_gen(25))
    loss = lambda s, X: (s.sqrt(X) * G).sum() + s.eigh(X)[1].pow(3).sum()  # noqa: E731
    ref = _grad(ef.create("solver", "svd"), A, loss)
    for name in ("svd-trunc", "svd-clip"):
        torch.testing.assert_close(_grad(ef.create("solver", name), A, loss), ref)
    # ... and are not once a gap falls below their threshold
    clipped = _grad(ef.create("solver", "svd-clip", max_value=2.0), A, loss)
    assert _rel(clipped, ref) > 1e-3


def test_topn_keeps_only_the_top_eigenpairs():
    A = _separated_spd(6, 2, seed=26)
    G = torch.randn(2, 6, 6, dtype=F64, generator=_gen(27))
    loss = lambda s, X: (s.sqrt(X) * G).sum()  # noqa: E731
    ref = _grad(ef.create("solver", "svd"), A, loss)
    all_kept = _grad(ef.create("solver", "svd-topn", keep=6), A, loss)
    torch.testing.assert_close(all_kept, ref, rtol=1e-10, atol=1e-12)
    assert ef.create("solver", "svd-topn").kept(10) == 8
    # the gradient of the smallest eigenvalue is dropped (it is discarded, Eq. 3.8)
    top4 = ef.create("solver", "svd-topn", keep=4)
    assert _grad(top4, A, lambda s, X: s.eigh(X)[0][..., 0].sum()).abs().max() == 0
    g = _grad(top4, A, lambda s, X: s.eigh(X)[0][..., -1].sum())
    _L, V = torch.linalg.eigh(A)
    torch.testing.assert_close(g, V[..., -1:] @ V[..., -1:].mT)  # d lambda_max / dA
    for bad in (0, 1.5, True, "all"):
        with pytest.raises(ConfigError, match="keep"):
            ef.create("solver", "svd-topn", keep=bad)


def test_power_iteration_gradient_of_the_dominant_eigenpair():
    """With a dominant eigenvalue (ratio 0.2 to the next), the PI gradient of losses on the
    top eigenpair equals the exact one up to the truncated Neumann series (0.2^21)."""
    eig = torch.tensor([[0.01, 0.05, 0.1, 0.2, 1.0]], dtype=F64)
    A = spd_from_eigenvalues(eig, generator=_gen(28))
    w = torch.randn(5, dtype=F64, generator=_gen(29))
    loss = lambda s, X: (s.eigh(X)[1][..., -1] * w).sum() + s.eigh(X)[0][..., -1].sum()  # noqa: E731
    ref = _grad(ef.create("solver", "svd"), A, loss)
    assert _rel(_grad(ef.create("solver", "svd-pi"), A, loss), ref) < 1e-12
    # the other eigenpairs carry no gradient
    pi = ef.create("solver", "svd-pi")
    assert _grad(pi, A, lambda s, X: s.eigh(X)[0][..., 0].sum()).abs().max() == 0


def test_configs_validate():
    with pytest.raises(ConfigError):
        ef.create("solver", "svd-pade", degree=1)
    with pytest.raises(ConfigError):
        ef.create("solver", "svd-pade", bound=10.0)
    with pytest.raises(ConfigError):
        ef.create("solver", "svd-trunc", threshold=0.0)
    with pytest.raises(ConfigError):
        ef.create("solver", "svd-taylor", degre=3)
    assert ef.create("solver", "svd-pade").config.degree == 100
    assert ef.create("solver", "svd-taylor").config.degree == 100
    assert ef.create("solver", "svd-trunc").config.threshold == 1e10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ROBUST)
def test_cuda_matches_cpu(name):
    A = _separated_spd(6, 3, seed=30)  # the size of the hard inputs
    hard = _hard_inputs(F64)
    batch = torch.cat([A, hard["identity"], hard["rank-deficient"]])
    G = torch.randn(6, 6, dtype=F64, generator=_gen(31))
    loss = lambda s, X: (s.sqrt(X) * G.to(X.device)).sum()  # noqa: E731
    solver = ef.create("solver", name)
    cpu = _grad(solver, batch, loss)
    gpu = _grad(solver, batch.cuda(), loss)
    assert torch.isfinite(gpu).all()
    torch.testing.assert_close(gpu[:3].cpu(), cpu[:3], rtol=1e-8, atol=1e-10)
    g32 = _grad(solver, batch.float().cuda(), loss)
    assert torch.isfinite(g32).all()


# --------------------------------------------------------------------------- benchmark module


def test_exact_sqrt_gradient_matches_autograd_through_eigh():
    A = _separated_spd(6, 2, seed=32)
    G = torch.randn(2, 6, 6, dtype=F64, generator=_gen(33))
    X = A.clone().requires_grad_()
    L, V = torch.linalg.eigh(X)
    ((V * L.sqrt().unsqueeze(-2)) @ V.mT * _sym(G)).sum().backward()
    torch.testing.assert_close(exact_sqrt_gradient(A, G), _sym(X.grad), rtol=1e-10, atol=1e-12)
    eye = torch.eye(4, dtype=F64)[None]  # repeated eigenvalues: d sqrt(I)[E] = E/2
    Gi = torch.randn(1, 4, 4, dtype=F64, generator=_gen(34))
    torch.testing.assert_close(exact_sqrt_gradient(eye, Gi), _sym(Gi) / 2)


def test_gradient_quality_report(tmp_path):
    rows = gradient_quality(conds=(1.0, 1e2, 1e12), n=8, batch=2)
    names = eigh_solver_names()
    assert len(rows) == 3 * len(names)
    assert all(tuple(r) == QUALITY_COLUMNS for r in rows)
    by = {(r["solver"], r["cond"]): r for r in rows}
    for cond in (1e2, 1e12):
        assert by[("svd-pade", cond)]["rel_error_max"] < 1e-8
    # svd on the rotated identity: non-finite where LAPACK returns exact ties, else inaccurate
    svd_at_1 = by[("svd", 1.0)]
    assert svd_at_1["finite_fraction"] < 1.0 or svd_at_1["rel_error_median"] > 0.1
    assert all(by[(n, 1.0)]["finite_fraction"] == 1.0 for n in ROBUST)
    timing = time_forward_backward(
        ["svd", "svd-pade"], n=8, batch=4, repeats=2, dtype=torch.float64
    )
    assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in timing)
    written = write_gradient_report(rows, tmp_path / "out", timing=timing)
    assert {p.name for p in written} == {
        "gradient_quality.csv",
        "gradient_quality.json",
        "gradient_quality.png",
        "timing.csv",
    }
    assert (tmp_path / "out" / "gradient_quality.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "name,finite",
    [
        ("svd-pade", True),
        ("batched-ed", True),
        ("mpa-lya", True),
        ("mtp-lya", True),
        ("ns", True),
        ("ns-lya", True),
        ("svd", False),  # exact rule: 1/0 on ties, first order too
        ("svd-lya", False),  # recomputed through torch.linalg.eigh (documented)
    ],
)
def test_second_order_on_repeated_eigenvalues(name, finite):
    # Issue 17: which declared double backwards stay finite where eigenvalues repeat (the
    # identity, and two double eigenvalues), as docs/matfn.rst and eig-robust.rst say.
    W = torch.arange(25.0, dtype=torch.float64).reshape(1, 5, 5)
    spectra = [torch.ones(5), torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0])]
    for lam in spectra:
        X = torch.diag(lam.double())[None].requires_grad_()
        root, inv = ef.create("solver", name).sqrt_invsqrt(X)
        loss = root.square().sum() + (inv * inv.detach().flip(-1)).sum()
        (g,) = torch.autograd.grad(loss, X, create_graph=True)
        (h,) = torch.autograd.grad((g * W).sum(), X)
        assert bool(torch.isfinite(h).all()) == finite


@pytest.mark.parametrize("name", ["svd", "svd-pade", "batched-ed"])
def test_hessian_vector_product_matches_finite_differences_of_the_own_gradient(name):
    # The declared double backward against a central difference of the solver's own
    # gradient, for a loss with both Gauss-Newton and curvature terms (separated spectrum:
    # the Padé rule equals the exact one there to rounding).
    A = random_spd(5, 1, cond=20.0, seed=21)
    gen = torch.Generator().manual_seed(22)
    G, E, W = (torch.randn(1, 5, 5, dtype=torch.float64, generator=gen) for _ in range(3))
    E, W = E + E.mT, W + W.mT
    solver = ef.create("solver", name)

    def grad(X, create_graph=False):
        X = X.clone().requires_grad_()
        root, inv = solver.sqrt_invsqrt(X)
        loss = inv.sum() ** 2 + (root * G).sum() + solver.eigh(X)[1][..., -1].pow(3).sum()
        return X, torch.autograd.grad(loss, X, create_graph=create_graph)[0]

    X, g = grad(A, create_graph=True)
    (hv,) = torch.autograd.grad((g * W).sum(), X)
    h = 1e-5
    fd = ((grad(A + h * E)[1] - grad(A - h * E)[1]) / (2 * h) * W).sum()
    torch.testing.assert_close((hv * E).sum(), fd, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("keep", "n", "kept"), [(0.5, 5, 3), (0.5, 3, 2), (0.5, 7, 4), (0.8, 5, 4), (3, 5, 3)]
)
def test_topn_fraction_rounds_half_up(keep, n, kept):
    """A fraction ``keep`` keeps ``floor(keep * n + 1/2)`` eigenvalues: half up at ties, the same
    at every n (Python's ``round`` keeps 2 of 5 but 2 of 3 for 0.5)."""
    assert ef.create("solver", "svd-topn", keep=keep).kept(n) == kept
