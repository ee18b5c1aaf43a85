"""Taylor and Padé coefficients of (1 - z)^alpha (eigenflow.core.pade) against scipy and mpmath,
and the matrix polynomials of the matfn solvers (eigenflow.plugins.matfn.polynomials)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from _matfn_common import one_thread  # noqa: F401 - fixture
from mpmath import pade as mpmath_pade
from scipy.special import binom

from eigenflow.core.errors import ConfigError
from eigenflow.core.pade import (
    binomial_series,
    geometric_damping,
    geometric_pade,
    pade_coefficients,
    power_pade_coefficients,
    taylor_coefficients,
)
from eigenflow.plugins.matfn.polynomials import matrix_horner, matrix_polynomials

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("alpha", [0.5, -0.5, Fraction(1, 3)])
def test_binomial_series_matches_scipy_binom(alpha):
    got = [float(c) for c in binomial_series(alpha, 20)]
    want = [(-1) ** k * binom(float(alpha), k) for k in range(21)]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


def test_taylor_signs_follow_eq_2_4_and_2_24():
    sqrt_c = taylor_coefficients(0.5, 12)
    inv_c = taylor_coefficients(-0.5, 12)
    assert sqrt_c[0] == 1.0 and all(c < 0 for c in sqrt_c[1:])  # 1 - sum |binom(1/2,k)| z^k
    assert inv_c[0] == 1.0 and all(c > 0 for c in inv_c[1:])  # 1 + sum |binom(-1/2,k)| z^k
    assert sqrt_c[1] == -0.5 and sqrt_c[2] == -0.125 and inv_c[1] == 0.5 and inv_c[2] == 0.375


@pytest.mark.parametrize("m,n", [(5, 5), (3, 3), (6, 6), (3, 2), (2, 4), (0, 3), (4, 0), (1, 1)])
@pytest.mark.parametrize("alpha", [0.5, -0.5])
def test_pade_coefficients_match_mpmath(m, n, alpha):
    p, q = power_pade_coefficients(m, n, alpha)
    series = [float(c) for c in binomial_series(alpha, m + n)]
    # mpmath: (series, numerator degree, denominator degree) -> ascending coefficients
    num, den = ([float(c) for c in coeffs] for coeffs in mpmath_pade(series, m, n))
    np.testing.assert_allclose(num, [1.0, *(-x for x in p)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(den, [1.0, *(-x for x in q)], rtol=1e-9, atol=1e-12)


def test_pade_5_5_matches_the_series_to_degree_10():
    p, q = power_pade_coefficients(5, 5, exact=True)
    c = binomial_series(0.5, 10)
    num = [Fraction(1), *(-x for x in p)]
    den = [Fraction(1), *(-x for x in q)]
    # den * series - num vanishes up to z^10 (Eq. 2.8), exactly.
    for k in range(11):
        conv = sum(den[j] * c[k - j] for j in range(min(k, 5) + 1))
        assert conv - (num[k] if k <= 5 else 0) == 0


@pytest.mark.parametrize("m", [2, 3, 5, 7])
def test_proposition_1_inverse_pade_reuses_p_and_q(m):
    # Eq. 2.33: p_m = -s_n, q_n = -r_m. In the convention (1 - sum p' z)/(1 - sum q' z) the
    # inverse square root's [m, m] approximant is Q/P: p' = q and q' = p exactly.
    p, q = power_pade_coefficients(m, m, 0.5, exact=True)
    p_inv, q_inv = power_pade_coefficients(m, m, -0.5, exact=True)
    assert p_inv == q and q_inv == p


def _rational(z, p, q):
    num = 1.0 - sum(c * z ** (i + 1) for i, c in enumerate(p))
    den = 1.0 - sum(c * z ** (i + 1) for i, c in enumerate(q))
    return num / den


def test_pade_beats_taylor_near_the_branch_point():
    # Fig. 2.2: at the same number of matched terms the Padé approximant is closer.
    z = np.linspace(0.0, 0.99, 200)
    exact = np.sqrt(1 - z)
    p, q = power_pade_coefficients(5, 5)
    pade_err = np.abs(_rational(z, p, q) - exact).max()
    taylor = np.polynomial.polynomial.polyval(z, taylor_coefficients(0.5, 10))
    taylor_err = np.abs(taylor - exact).max()
    assert pade_err < 0.3 * taylor_err  # measured 0.025 vs 0.094 at z = 0.99
    assert pade_err < 3e-2


def test_matrix_polynomials_and_horner_act_on_eigenvalues():
    gen = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(3, 6, 6, generator=gen, dtype=torch.float64))
    z = torch.rand(3, 6, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    Z = (U * z.unsqueeze(-2)) @ U.mT
    coeffs = [(1.0, -0.5, 0.25, 2.0), (0.3, 1.0), (2.0,), (1.0, 0.0, 0.0, 0.0, -1.5)]
    got = matrix_polynomials(Z, coeffs)
    for c, G in zip(coeffs, got):
        want = (
            U * torch.from_numpy(np.polynomial.polynomial.polyval(z.numpy(), c)).unsqueeze(-2)
        ) @ U.mT
        torch.testing.assert_close(G, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(matrix_horner(Z, c), want, rtol=1e-12, atol=1e-12)


def test_bad_degrees_raise_config_error():
    with pytest.raises(ConfigError):
        power_pade_coefficients(-1, 2)
    with pytest.raises(ConfigError):
        binomial_series(0.5, -1)


def test_matrix_polynomials_with_given_square_batch_dims_and_autograd():
    gen = torch.Generator().manual_seed(2)
    Z = torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64) * 0.4
    coeffs = [(1.0, -0.5, 0.25, 2.0, 0.1, -0.3), (0.3, 1.0, 0.5)]
    want = [sum(c_k * torch.linalg.matrix_power(Z, k) for k, c_k in enumerate(c)) for c in coeffs]
    for got in (matrix_polynomials(Z, coeffs), matrix_polynomials(Z, coeffs, Z @ Z)):
        for G, W in zip(got, want):
            assert G.shape == (2, 3, 5, 5) and G.dtype == torch.float64
            torch.testing.assert_close(G, W, rtol=1e-12, atol=1e-12)
    float32 = matrix_polynomials(Z.float(), coeffs)
    assert all(G.dtype == torch.float32 for G in float32)
    # Differentiable when the input requires grad (no out= products then).
    leaf = Z[0, :1].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda X: matrix_polynomials(X, coeffs)[0], (leaf,))


# ---------------------------------------------------------------- the one Padé routine, exactly


def _terminating_2f1(a: Fraction, b: Fraction, c: int, degree: int) -> list[Fraction]:
    """Coefficients of the polynomial ``2F1(a, b; c; z)`` (``a = -degree``), term by term."""
    coeffs = [Fraction(1)]
    for k in range(degree):
        coeffs.append(coeffs[-1] * (a + k) * (b + k) / ((c + k) * (k + 1)))
    return coeffs


@pytest.mark.parametrize("alpha", [Fraction(1, 2), Fraction(-1, 2), Fraction(1, 3)])
def test_power_pade_equals_the_hypergeometric_closed_form(alpha):
    # The [m/n] Padé approximant of (1 - z)^alpha is
    # 2F1(-m, -alpha - n; -m - n; z) / 2F1(-n, alpha - m; -m - n; z): an independent closed
    # form, compared in exact arithmetic (so the floats agree to the last bit too).
    for m in range(7):
        for n in range(7):
            num = _terminating_2f1(Fraction(-m), -alpha - n, -m - n, m)
            den = _terminating_2f1(Fraction(-n), alpha - m, -m - n, n)
            want = (tuple(-x for x in num[1:]), tuple(-x for x in den[1:]))
            assert power_pade_coefficients(m, n, alpha, exact=True) == want, (m, n)
            floats = power_pade_coefficients(m, n, float(alpha))
            assert floats == tuple(tuple(float(x) for x in part) for part in want), (m, n)


@pytest.mark.parametrize("m,n", [(0, 0), (1, 1), (2, 2), (3, 1), (1, 4), (5, 5), (8, 6)])
def test_pade_coefficients_of_exp_equal_the_closed_form(m, n):
    # exp: p_k = (m+n-k)! m! / ((m+n)! k! (m-k)!), q_k = (-1)^k (m+n-k)! n! / ((m+n)! k! (n-k)!)
    f = math.factorial
    series = [Fraction(1, f(k)) for k in range(m + n + 1)]
    p, q = pade_coefficients(series, m, n)
    assert p == tuple(
        Fraction(f(m + n - k) * f(m), f(m + n) * f(k) * f(m - k)) for k in range(m + 1)
    )
    assert q == tuple(
        Fraction((-1) ** k * f(m + n - k) * f(n), f(m + n) * f(k) * f(n - k)) for k in range(n + 1)
    )


@pytest.mark.parametrize("degree", [2, 9, 30])
def test_regularised_geometric_pade_has_the_closed_form_denominator(degree):
    # Damped solve for 1/(1 - x): q_l = -n / (n^2 + mu) for l = 1..n, p_k = sum_{l<=k} q_l.
    m, n = degree - degree // 2, degree // 2
    mu = geometric_damping(m, n, 1e8)
    r = geometric_pade(degree, 1e8)
    t = Fraction(n) / (n * n + mu)
    assert r.q == (1, *([-t] * n))
    assert r.p == tuple(1 - min(k, n) * t for k in range(m + 1))


def test_pade_coefficients_report_bad_input_as_config_errors():
    with pytest.raises(ConfigError, match=r"series has 3 coefficients.*needs at least 5"):
        pade_coefficients([1, 1, 1], 2, 2)
    with pytest.raises(ConfigError, match="damping"):
        pade_coefficients([1] * 5, 2, 2, damping=-1)
    with pytest.raises(ConfigError, match=r"\[-1, 2\]"):
        pade_coefficients([1] * 5, -1, 2)
    with pytest.raises(ConfigError, match="singular"):
        pade_coefficients([1] * 5, 2, 2)
