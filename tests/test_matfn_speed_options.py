"""The speed options of ``mpa-lya`` (issue 3, CPU target): ``solve="cholesky"``,
``scaling="schatten"``, ``lya_symmetric``, ``lya_lower``. References are independent of the
code under test: float64 ``torch.linalg.eigh`` and scipy's Bartels-Stewart solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _matfn_common import eig_invsqrt, eig_sqrt, one_thread, rel_err, spd  # noqa: F401 - fixture
from scipy.linalg import solve_continuous_lyapunov

import eigenflow as ef
from eigenflow.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {
    "solve": "cholesky",
    "scaling": "schatten",
    "lya_symmetric": True,
    "lya_lower": 0.1,
    "lya_tol": None,
}
# The thesis's settings (one Padé approximant, 8 backward iterations), against which the
# speed options were measured.
THESIS = {"steps": 1, "scaling": "frobenius", "lya_iters": 8, "lya_tol": None, "lya_lower": None}


def mpa(**opts):
    return ef.create("solver", "mpa-lya", **opts)


def wishart(batch, n, seed=0, dtype=torch.float64):
    X = torch.randn(*batch, n, 2 * n, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return X @ X.mT / (2 * n)


def sym(X):
    return 0.5 * (X + X.mT)


def exact_sqrt_gradient(A, G):
    """dl/dA of l = <A^(1/2), G>: the Lyapunov solution A^(1/2) X + X A^(1/2) = G (Eq. 2.13)."""
    B = eig_sqrt(A).numpy()
    G = G.double().numpy()
    flat_B, flat_G = B.reshape(-1, *B.shape[-2:]), G.reshape(-1, *G.shape[-2:])
    X = np.stack([solve_continuous_lyapunov(b, g) for b, g in zip(flat_B, flat_G)])
    return torch.from_numpy(X.reshape(G.shape))


def sqrt_gradient(s, A, G):
    X = A.clone().requires_grad_()
    (s.sqrt(X) * G).sum().backward()
    return X.grad


def test_defaults_differ_from_the_thesis_where_documented():
    # The stopping rule (issue 17): scaled steps for the guaranteed spectrum, counted to
    # lya_tol; the forward (issue 17): Schatten scale and a refinement step; the solve (issue
    # 15): Newton-Schulz, matrix products only, equal to LU to rounding.
    cfg = mpa().config
    assert (cfg.solve, cfg.scaling, cfg.lya_symmetric) == ("auto", "schatten", False)
    assert (cfg.steps, cfg.step_degree) == (2, "auto")
    assert mpa().solve_method == "newton"
    assert (cfg.lya_iters, cfg.lya_tol, cfg.lya_lower) == (None, 1e-6, "auto")


@pytest.mark.parametrize(
    "opts,needle",
    [
        ({"solve": "qr"}, "solve"),
        ({"lya_lower": 0.0}, "lya_lower"),
        ({"lya_lower": 1.0}, "lya_lower"),
        ({"lya_symmetric": "yes"}, "lya_symmetric"),
        ({"scaling": "schaten"}, "schatten"),
        # Float roots of P_19 put a zero of P(z) just below z = 1: not positive definite.
        ({"solve": "cholesky", "degree": [19, 20]}, "cholesky"),
    ],
)
def test_bad_options_raise_config_error(opts, needle):
    with pytest.raises(ConfigError, match=needle):
        mpa(**opts)


@pytest.mark.parametrize("degree", [(5, 5), (3, 3), (6, 4), (4, 6)])
@pytest.mark.parametrize("scaling", ["frobenius", "spectral", "schatten"])
def test_cholesky_solve_equals_lu_solve(degree, scaling):
    A = spd((3,), 16, cond=1e3)
    lu = mpa(degree=list(degree), scaling=scaling).sqrt_invsqrt(A)
    chol = mpa(degree=list(degree), scaling=scaling, solve="cholesky").sqrt_invsqrt(A)
    for x, y in zip(chol, lu):
        assert rel_err(x, y) < 1e-10


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_schatten_forward_is_more_accurate_than_frobenius(dtype):
    A = wishart((8,), 64, dtype=dtype)
    ref_root, ref_inv = eig_sqrt(A), eig_invsqrt(A)
    root, inv = mpa(**{**THESIS, **FAST}).sqrt_invsqrt(A)
    assert root.dtype == dtype and inv.dtype == dtype
    default_root, default_inv = mpa(**THESIS).sqrt_invsqrt(A)
    # Measured (float64): 5.5e-3 / 3.3e-2 against 2.3e-2 / 1.0e-1 for sqrt / invsqrt.
    assert rel_err(root, ref_root) < 0.5 * rel_err(default_root, ref_root)
    assert rel_err(inv, ref_inv) < 0.5 * rel_err(default_inv, ref_inv)
    assert rel_err(root, ref_root) < 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_backward_reaches_the_default_accuracy_in_3_iterations(dtype):
    # The benchmark setting: Wishart covariances of size 64 (normalised spectrum of the root
    # in about [0.085, 0.55] under the Schatten scale, so lya_lower = 0.1 fits).
    A = wishart((8,), 64, dtype=dtype)
    G = sym(torch.randn(8, 64, 64, generator=torch.Generator().manual_seed(1), dtype=dtype))
    exact = exact_sqrt_gradient(A, G)
    default = rel_err(sqrt_gradient(mpa(**THESIS), A, G), exact)
    fast = rel_err(sqrt_gradient(mpa(**{**THESIS, **FAST, "lya_iters": 3}), A, G), exact)
    four = rel_err(sqrt_gradient(mpa(**{**THESIS, **FAST, "lya_iters": 4}), A, G), exact)
    # Measured (float64): default 8 iterations 8.7e-2, fast 3 iterations 7.5e-2, 4: 1.7e-2.
    assert fast < default and four < 0.5 * default


@pytest.mark.parametrize("want", ["sqrt", "invsqrt", "both"])
def test_fast_options_converge_to_the_exact_gradient(want):
    A = spd((2, 3), 8, cond=10.0)
    gen = torch.Generator().manual_seed(2)
    G_root = sym(torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64))
    G_inv = sym(torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64))
    opts = {**FAST, "lya_iters": 25}
    got, ref = [], []
    for s in (mpa(**opts), mpa(**opts, backward="exact")):
        X = A.clone().requires_grad_()
        if want == "sqrt":
            (s.sqrt(X) * G_root).sum().backward()
        elif want == "invsqrt":
            (s.invsqrt(X) * G_inv).sum().backward()
        else:
            root, inv = s.sqrt_invsqrt(X)
            ((root * G_root).sum() + (inv * G_inv).sum()).backward()
        (got if s.config.backward == "lyapunov" else ref).append(X.grad)
    assert got[0].shape == (2, 3, 8, 8) and got[0].dtype == torch.float64
    assert rel_err(got[0], ref[0]) < 1e-10
    if want == "sqrt":
        # Against the true root's gradient the Padé forward error remains (measured 9.1e-4).
        assert rel_err(got[0], exact_sqrt_gradient(A, G_root)) < 5e-3


def test_lya_symmetric_gradient_is_the_symmetric_part_of_the_default():
    # Same iterates on the symmetric part of the incoming gradient (the equation is linear
    # and commutes with transposition), for any iteration count.
    A = spd((4,), 12, cond=1e2)
    G = torch.randn(4, 12, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for iters in (3, 8):
        default = sqrt_gradient(mpa(lya_iters=iters), A, G)
        symmetric = sqrt_gradient(mpa(lya_iters=iters, lya_symmetric=True), A, G)
        assert rel_err(symmetric, sym(default)) < 1e-12
        assert torch.equal(symmetric, symmetric.mT)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_options_on_singular_psd_input_stay_finite(dtype):
    X = torch.randn(3, 8, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    A = torch.cat([X @ X.mT, torch.zeros(1, 8, 8, dtype=torch.float64)]).to(dtype)
    leaf = A.clone().requires_grad_()
    root = mpa(**FAST, lya_iters=4).sqrt(leaf)
    assert torch.isfinite(root).all()
    root.square().sum().backward()
    assert torch.isfinite(leaf.grad).all()
    assert rel_err(root[:3], eig_sqrt(A[:3])) < 0.5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fast_options_cuda_match_cpu():
    A = wishart((4,), 16)
    G = sym(torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(8), dtype=A.dtype))
    s = mpa(**FAST, lya_iters=4)
    torch.testing.assert_close(
        sqrt_gradient(s, A.cuda(), G.cuda()).cpu(), sqrt_gradient(s, A, G), rtol=1e-8, atol=1e-10
    )
