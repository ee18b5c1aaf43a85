"""Taylor and Padé coefficients of (1 - z)^alpha (eigenflow.core.pade) against scipy and mpmath."""

from __future__ import annotations

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
    matrix_horner,
    matrix_polynomials,
    pade_coefficients,
    taylor_coefficients,
)

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
    p, q = pade_coefficients(m, n, alpha)
    series = [float(c) for c in binomial_series(alpha, m + n)]
    # mpmath: (series, numerator degree, denominator degree) -> ascending coefficients
    num, den = ([float(c) for c in coeffs] for coeffs in mpmath_pade(series, m, n))
    np.testing.assert_allclose(num, [1.0, *(-x for x in p)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(den, [1.0, *(-x for x in q)], rtol=1e-9, atol=1e-12)


def test_pade_5_5_matches_the_series_to_degree_10():
    p, q = pade_coefficients(5, 5, exact=True)
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
    p, q = pade_coefficients(m, m, 0.5, exact=True)
    p_inv, q_inv = pade_coefficients(m, m, -0.5, exact=True)
    assert p_inv == q and q_inv == p


def _rational(z, p, q):
    num = 1.0 - sum(c * z ** (i + 1) for i, c in enumerate(p))
    den = 1.0 - sum(c * z ** (i + 1) for i, c in enumerate(q))
    return num / den


def test_pade_beats_taylor_near_the_branch_point():
    # Fig. 2.2: at the same number of matched terms the Padé approximant is closer.
    z = np.linspace(0.0, 0.99, 200)
    exact = np.sqrt(1 - z)
    p, q = pade_coefficients(5, 5)
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
        pade_coefficients(-1, 2)
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
