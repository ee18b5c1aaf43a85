"""Lyapunov solvers (eigenflow.plugins.matfn.lyapunov) against scipy's Bartels-Stewart solver."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _matfn_common import eig_sqrt, one_thread, rel_err, spd  # noqa: F401 - fixture
from scipy.linalg import solve_continuous_lyapunov

from eigenflow.plugins.matfn.lyapunov import (
    lyapunov_exact,
    lyapunov_exact_eig,
    lyapunov_sign_iterates,
    lyapunov_sign_solve,
    normalising_scale,
    sign_step_coefficients,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def scipy_lyapunov(B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """Reference: scipy.linalg.solve_continuous_lyapunov (B X + X B^T = C), per matrix."""
    out = [solve_continuous_lyapunov(b, c) for b, c in zip(B.double().numpy(), C.double().numpy())]
    return torch.from_numpy(np.stack(out))


def problem(b=4, n=12, cond=10.0, seed=0):
    B = eig_sqrt(spd((b,), n, cond, seed=seed))
    C = torch.randn(b, n, n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return B, C


@pytest.mark.parametrize("cond", [1e1, 1e4, 1e8])
def test_exact_solver_matches_scipy(cond):
    B, C = problem(cond=cond)
    X = lyapunov_exact(B, C)
    torch.testing.assert_close(X, scipy_lyapunov(B, C), rtol=1e-8, atol=1e-10)
    assert rel_err(B @ X + X @ B, C) < 1e-10


def test_exact_with_eigenpairs_and_singular_b_is_finite():
    B, C = problem(n=6)
    s, U = torch.linalg.eigh(B)
    torch.testing.assert_close(lyapunov_exact_eig(s, U, C), scipy_lyapunov(B, C))
    s_singular = s.clone()
    s_singular[:, :2] = 0.0  # B singular: the solution is unbounded, kept finite by the floor
    assert torch.isfinite(lyapunov_exact_eig(s_singular, U, C)).all()


@pytest.mark.parametrize("cond", [1e1, 1e2, 1e4])
@pytest.mark.parametrize("scaling", ["frobenius", "spectral"])
def test_sign_iteration_converges_to_scipy(cond, scaling):
    B, C = problem(n=16, cond=cond)
    X = lyapunov_sign_solve(B, C, iters=40, scaling=scaling)
    assert rel_err(X, scipy_lyapunov(B, C)) < 1e-11


def test_sign_iteration_float32():
    B, C = problem(n=16, cond=10.0)
    X = lyapunov_sign_solve(B.float(), C.float(), iters=20)
    assert X.dtype == torch.float32
    assert rel_err(X, scipy_lyapunov(B, C)) < 1e-5


def test_convergence_table_2_9_shape():
    # ||B_k - I||_F decreases with k, and so does ||X_k - X||_F once the iteration is in its
    # quadratic phase (Table 2.9: 5 -> 9 iterations drop the error by orders of magnitude).
    B, C = problem(b=8, n=32, cond=10.0)
    X = scipy_lyapunov(B, C)
    eye = torch.eye(32, dtype=torch.float64)
    b_err, x_err = [], []
    for _, Bk, Xk in lyapunov_sign_iterates(B, C, 14):
        b_err.append(float(torch.linalg.matrix_norm(Bk - eye).mean()))
        x_err.append(float(torch.linalg.matrix_norm(Xk - X).mean()))
    # Strictly decreasing until round-off (reached at k = 11 here, measured).
    assert all(b1 < b0 for b0, b1 in itertools.pairwise(b_err[:11]))
    assert all(x1 < x0 for x0, x1 in itertools.pairwise(x_err[:11]))
    assert b_err[9] < 1e-3 * b_err[5] and b_err[12] < 1e-12
    assert x_err[12] < 1e-10 * float(torch.linalg.matrix_norm(X).mean())


def test_tolerance_freezes_converged_matrices_and_caps():
    easy_B, easy_C = problem(b=1, n=8, cond=2.0, seed=3)
    hard_B, hard_C = problem(b=1, n=8, cond=1e12, seed=4)  # needs > 30 iterations
    B, C = torch.cat([easy_B, hard_B]), torch.cat([easy_C, hard_C])
    tol = 1e-6
    together = lyapunov_sign_solve(B, C, iters=30, tol=tol)
    alone = lyapunov_sign_solve(easy_B, easy_C, iters=30, tol=tol)
    torch.testing.assert_close(together[:1], alone, rtol=0, atol=0)  # frozen, same k
    # The easy matrix stopped early: its result differs from 30 full iterations only by the
    # remaining (tiny) error; the hard one ran to the cap and equals the fixed-count result.
    fixed = lyapunov_sign_solve(B, C, iters=30)
    assert not torch.equal(together[:1], fixed[:1])
    assert rel_err(together[:1], fixed[:1]) < 1e-5
    torch.testing.assert_close(together[1:], fixed[1:], rtol=0, atol=0)


def test_tolerance_reaches_requested_accuracy():
    B, C = problem(n=16, cond=100.0)
    X = lyapunov_sign_solve(B, C, iters=100, tol=1e-10)
    assert rel_err(X, scipy_lyapunov(B, C)) < 1e-9


def test_spectral_scale_is_safe_for_an_adversarial_start_vector():
    # Top eigenvector orthogonal to the all-ones start vector: the power iteration never sees
    # it; the guaranteed bound still keeps ||A / s||_2 <= 1.6 < sqrt(3).
    n = 8
    v = torch.zeros(n, dtype=torch.float64)
    v[0], v[1] = 1 / 2**0.5, -1 / 2**0.5
    A = (torch.eye(n, dtype=torch.float64) + 10.0 * torch.outer(v, v)).unsqueeze(0)
    s = normalising_scale(A, "spectral")
    lam_max = torch.linalg.eigvalsh(A)[..., -1]
    assert float(lam_max / s.squeeze()) <= 1.6 + 1e-12
    _, C = problem(b=1, n=n)
    X = lyapunov_sign_solve(A, C, iters=60, scaling="spectral")
    assert rel_err(X, scipy_lyapunov(A, C)) < 1e-10


@pytest.mark.parametrize("cond", [1e1, 1e3, 1e6])
def test_spectral_scale_bounds(cond):
    A = spd((6,), 32, cond)
    lam_max = torch.linalg.eigvalsh(A)[..., -1]
    for scaling in ("frobenius", "spectral"):
        ratio = lam_max / normalising_scale(A, scaling).reshape(-1)
        assert bool((ratio <= 1.6 + 1e-12).all()) and bool((ratio > 0.1).all())
    # The spectral scale is closer to lambda_max than the Frobenius norm (measured ratios
    # 0.74-1.23 against 0.37-0.77 on these spectra).
    spectral = lam_max / normalising_scale(A, "spectral").reshape(-1)
    frobenius = lam_max / normalising_scale(A, "frobenius").reshape(-1)
    assert bool((spectral > frobenius).all()) and bool((spectral > 0.7).all())


def test_spectral_scaling_needs_fewer_iterations():
    # Measured: on n = 64, cond = 100 the spectral scale saves several iterations.
    B, C = problem(b=4, n=64, cond=100.0)
    eye = torch.eye(64, dtype=torch.float64)

    def iterations_to(tol, scaling):
        for k, Bk, _ in lyapunov_sign_iterates(B, C, 60, scaling):
            if float(torch.linalg.matrix_norm(Bk - eye).max()) < tol:
                return k
        return 61

    frob, spec = iterations_to(1e-6, "frobenius"), iterations_to(1e-6, "spectral")
    assert spec <= frob - 2


def test_zero_and_empty_inputs():
    Z = torch.zeros(2, 3, 3, dtype=torch.float64)
    assert torch.equal(lyapunov_sign_solve(Z, Z), Z)  # no division by a zero scale
    E = torch.zeros(0, 4, 4)
    assert lyapunov_sign_solve(E, E).shape == (0, 4, 4)
    assert lyapunov_sign_solve(E, E, tol=1e-3).shape == (0, 4, 4)


# --------------------------------------------------------------------------- speed options


def eq_2_22_iterates(B, C, iters, s):
    """Reference: Eq. 2.22 written out literally (3I - B^2, four products per term)."""
    eye = torch.eye(B.shape[-1], dtype=B.dtype)
    Bk, Ck, out = B / s, C / s, []
    for _ in range(iters):
        B2 = Bk @ Bk
        Bk, Ck = 0.5 * Bk @ (3 * eye - B2), 0.5 * (-B2 @ Ck + Bk @ Ck @ Bk + Ck @ (3 * eye - B2))
        out.append((Bk, 0.5 * Ck))
    return out


def sym(X):
    return 0.5 * (X + X.mT)


@pytest.mark.parametrize("symmetric", [False, True])
def test_iterates_equal_eq_2_22(symmetric):
    # The default step (6 products) and the symmetric step (5 products) give the iterates of
    # Eq. 2.22; the symmetric one those for the symmetric part of C (the equation is linear).
    B, C = problem(n=16, cond=100.0)
    s = torch.linalg.matrix_norm(B).unsqueeze(-1).unsqueeze(-1)
    ref = eq_2_22_iterates(B, sym(C) if symmetric else C, 10, s)
    got = list(lyapunov_sign_iterates(B, C, 10, symmetric=symmetric))[1:]
    for (Br, Xr), (_, Bk, Xk) in zip(ref, got):
        assert rel_err(Bk, Br) < 1e-13
        assert rel_err(Xk, Xr) < 1e-12
    if symmetric:
        assert torch.equal(got[-1][2], got[-1][2].mT)  # exactly symmetric, every step


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("scaling", ["frobenius", "schatten"])
@pytest.mark.parametrize("lower", [None, 0.1])
def test_solve_equals_last_iterate(symmetric, scaling, lower):
    # The fixed-count solver skips the unused last B_k: same X as the iterates.
    B, C = problem(n=10)
    X = lyapunov_sign_solve(B, C, 5, scaling=scaling, symmetric=symmetric, lower=lower)
    last = list(lyapunov_sign_iterates(B, C, 5, scaling, symmetric, lower))[-1][2]
    torch.testing.assert_close(X, last, rtol=1e-14, atol=0)


@pytest.mark.parametrize("lower", [None, 0.01, 0.1])
@pytest.mark.parametrize("scaling", ["frobenius", "schatten"])
def test_symmetric_solution_is_symmetric_part_of_scipy(lower, scaling):
    B, C = problem(n=16, cond=100.0)
    X = lyapunov_sign_solve(B, C, 40, scaling=scaling, symmetric=True, lower=lower)
    assert rel_err(X, sym(scipy_lyapunov(B, C))) < 1e-11


def test_schatten_scale_is_a_tight_guaranteed_bound():
    A = spd((5,), 32, cond=1e3, seed=3)
    lam = torch.linalg.eigvalsh(A)
    s = normalising_scale(A, "schatten").reshape(-1)
    torch.testing.assert_close(s, lam.pow(4).sum(-1).pow(0.25), rtol=1e-12, atol=0)
    assert (s >= lam[:, -1]).all() and (s <= 32**0.25 * lam[:, -1]).all()
    assert (s < normalising_scale(A, "frobenius").reshape(-1)).all()
    # Squared after dividing by the Frobenius norm: no overflow where A is representable.
    big = (A * 1e18).float()  # ||A^2||_F would overflow float32, ||A||_F does not
    s_big = normalising_scale(big, "schatten").reshape(-1)
    assert torch.isfinite(s_big).all()
    torch.testing.assert_close(s_big.double(), s * 1e18, rtol=1e-5, atol=0)
    zero = normalising_scale(torch.zeros(2, 4, 4), "schatten")
    assert torch.isfinite(zero).all() and (zero > 0).all()


def test_scaled_step_coefficients_map_the_interval_into_itself():
    assert sign_step_coefficients(3) == [(1.5, -0.5)] * 3
    low = 0.02
    x = np.linspace(low, 1.0, 20001)
    steps = sign_step_coefficients(12, low)
    for a, b in steps:
        y = a * x + b * x**3
        # Equal values at both ends (Chen-Chow scale), maximum 1 inside, nothing negative.
        assert abs(y[0] - y[-1]) < 1e-12 and abs(y.max() - 1.0) < 1e-6 and y.min() > 0
        x = np.linspace(y.min(), 1.0, 20001)
    assert abs(steps[-1][0] - 1.5) < 1e-12 and abs(steps[-1][1] + 0.5) < 1e-12


def test_scaled_steps_need_fewer_iterations_when_lower_is_right():
    B, C = problem(n=24, cond=1e2)
    X = scipy_lyapunov(B, C)
    plain = rel_err(lyapunov_sign_solve(B, C, 5, scaling="schatten"), X)
    lam = torch.linalg.eigvalsh(B)
    low = float((lam[:, 0] / normalising_scale(B, "schatten").reshape(-1)).min())
    scaled = rel_err(lyapunov_sign_solve(B, C, 5, scaling="schatten", lower=low), X)
    assert scaled < plain / 100  # measured: 1.3e-4 against 2.5e-1
    assert rel_err(lyapunov_sign_solve(B, C, 30, scaling="schatten", lower=low), X) < 1e-11


def test_lower_is_validated():
    B, C = problem(n=4)
    with pytest.raises(ValueError, match="lower"):
        lyapunov_sign_solve(B, C, lower=1.5)
    with pytest.raises(ValueError, match="scaling"):
        lyapunov_sign_solve(B, C, scaling="frobenious", lower=0.1)


@pytest.mark.parametrize("scaling", ["frobenius", "schatten", "spectral"])
@pytest.mark.parametrize("cond", [1e1, 1e3, 1e4])
def test_default_scaled_steps_reach_the_tolerance_in_11_steps(scaling, cond):
    # The matfn default lya_lower = 1e-3 (the spectral estimate is divided by its safety
    # factor 1.6 for the scaled steps, so ||B / s||_2 <= 1 holds): measured 11 steps to
    # ||B_k - I||_F < 1e-6 for n <= 256 up to condition 1e4, where Eq. 2.22 needs 13 to 20.
    B, C = problem(n=48, cond=cond)
    X = scipy_lyapunov(B, C)
    eye = torch.eye(48, dtype=B.dtype)
    *_, (k, Bk, Xk) = lyapunov_sign_iterates(B, C, 11, scaling, lower=1e-3)
    assert k == 11
    assert float(torch.linalg.matrix_norm(Bk - eye).max()) < 1e-6
    assert rel_err(Xk, X) < 1e-6
    assert rel_err(lyapunov_sign_solve(B, C, 12, tol=1e-6, scaling=scaling, lower=1e-3), X) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_speed_options_keep_dtype_and_batch_shape(dtype):
    B = eig_sqrt(spd((2, 3), 8, cond=10.0)).to(dtype)
    C = torch.randn(2, 3, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(4))
    X = lyapunov_sign_solve(B, C, 12, scaling="schatten", symmetric=True, lower=0.1)
    assert X.dtype == dtype and X.shape == (2, 3, 8, 8)
    ref = sym(scipy_lyapunov(B.reshape(6, 8, 8), C.reshape(6, 8, 8))).reshape(2, 3, 8, 8)
    assert rel_err(X, ref) < (1e-5 if dtype == torch.float32 else 1e-12)


# --------------------------------------------------------------------------- automatic schedule


@pytest.mark.parametrize("scaling", ["frobenius", "schatten", "spectral"])
@pytest.mark.parametrize("n", [4, 32, 96])
def test_normalised_lower_bound_holds_at_the_stated_condition(n, scaling):
    # Independent check with eigvalsh: B of condition exactly c, every spectrum shape between
    # "one large, the rest small" (the worst for the norms) and log-spaced.
    from eigenflow.plugins.matfn.lyapunov import _initial_iterates, normalised_lower_bound

    c = 30.0
    bound = normalised_lower_bound(n, scaling, c)
    gen = torch.Generator().manual_seed(n)
    Q, _ = torch.linalg.qr(torch.randn(3, n, n, generator=gen, dtype=torch.float64))
    spectra = torch.stack(
        [
            torch.cat([torch.ones(1), torch.full((n - 1,), 1 / c)]).double(),
            torch.cat([torch.full((n - 1,), 1.0), torch.full((1,), 1 / c)]).double(),
            torch.logspace(0, -math.log10(c), n, dtype=torch.float64),
        ]
    )
    B = (Q * spectra.unsqueeze(-2)) @ Q.mT
    B0, _, _ = _initial_iterates(B, B, scaling, symmetric=False, lower=0.5)
    lam = torch.linalg.eigvalsh(B0)
    assert (lam[:, 0] >= bound * (1 - 1e-12)).all()
    assert (lam[:, -1] <= 1 + 1e-12).all()
    # Tight for the first shape (one large eigenvalue, the rest at the floor) under Schatten
    # and Frobenius scaling is loose by at most the norm ratio: within a factor sqrt(n).
    assert lam[:, 0].min() <= bound * math.sqrt(n) * 1.6**2


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("lower,target", [(1e-2, 1e-7), (3e-3, 1e-11), (0.2, 1e-6)])
def test_sign_steps_to_reach_is_the_fewest_steps_on_matrices(lower, target, scaled):
    # Against the matrix iteration and scipy: B / ||B||_F has its smallest eigenvalue exactly at
    # `lower` and C is the projector on that eigenvector, so the relative error of X_k is the
    # worst eigenvalue's. K steps meet the target, K - 1 do not.
    from eigenflow.plugins.matfn.lyapunov import sign_steps_to_reach

    K = sign_steps_to_reach(lower, target, scaled)
    rest = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)
    # ||(lower, rest)||_2 = 1 after rescaling rest, so the Frobenius scale leaves lower as is
    rest = rest / torch.linalg.vector_norm(rest) * math.sqrt(1 - lower**2)
    lam = torch.cat([torch.tensor([lower], dtype=torch.float64), rest])
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)).double())
    B = ((Q * lam) @ Q.T).unsqueeze(0)
    C = (Q[:, :1] @ Q[:, :1].T).unsqueeze(0)
    ref = scipy_lyapunov(B, C)
    step = lower if scaled else None
    errors = [float(rel_err(lyapunov_sign_solve(B, C, k, lower=step), ref)) for k in (K - 1, K)]
    assert errors[1] <= target * 1.01 + 1e-14
    assert K == 1 or errors[0] > target
