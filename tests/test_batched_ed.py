"""Tests of ``batched-ed`` (thesis 000, Sec. 3.4) against float64 ``torch.linalg.eigh``."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import eigenflow as ef
from eigenflow.core.errors import ConfigError, InputError, NotSupportedError
from eigenflow.core.gradient_rules import pade_rule
from eigenflow.plugins.batched_ed import (
    BatchedEDSolver,
    ConvergenceError,
    ConvergenceWarning,
    torch_impl,
)
from eigenflow.testing.matrices import spd_from_eigenvalues

DTYPES = (torch.float32, torch.float64)
# normwise tolerances of the issue: 1e-5 in float32, 1e-10 in float64
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
HAS_TRITON = importlib.util.find_spec("triton") is not None


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_eigh_accuracy(A64: torch.Tensor, L: torch.Tensor, V: torch.Tensor, tol: float) -> None:
    """Eigenvalues, orthogonality and reconstruction against float64 ``torch.linalg.eigh``,
    all relative to the spectral norm of each matrix."""
    A64 = A64.to(torch.float64)
    L, V = L.to(torch.float64), V.to(torch.float64)
    n = A64.shape[-1]
    ref = torch.linalg.eigvalsh(A64)
    norm = torch.linalg.matrix_norm(A64, ord=2).clamp_min(torch.finfo(torch.float64).tiny)
    assert torch.all(L[..., 1:] >= L[..., :-1]), "eigenvalues not ascending"
    value_err = (L - ref).abs().amax(dim=-1) / norm
    orth_err = torch.linalg.matrix_norm(V.mT @ V - torch.eye(n, dtype=torch.float64), ord=2)
    recon = (V * L.unsqueeze(-2)) @ V.mT
    recon_err = torch.linalg.matrix_norm(A64 - recon, ord=2) / norm
    zero = norm <= torch.finfo(torch.float64).tiny
    recon_err = torch.where(zero, torch.linalg.matrix_norm(recon, ord=2), recon_err)
    assert value_err.max() <= tol, f"eigenvalue error {value_err.max():.2e} > {tol:.0e}"
    assert orth_err.max() <= tol, f"orthogonality error {orth_err.max():.2e} > {tol:.0e}"
    assert recon_err.max() <= tol, f"reconstruction error {recon_err.max():.2e} > {tol:.0e}"


def random_covariance(n: int, batch: int, seed: int) -> torch.Tensor:
    X = torch.randn(batch, n, 2 * n, dtype=torch.float64, generator=_gen(seed))
    return X @ X.mT / (2 * n)


def random_symmetric(n: int, batch: int, seed: int) -> torch.Tensor:
    X = torch.randn(batch, n, n, dtype=torch.float64, generator=_gen(seed))
    return X + X.mT


def special_matrices(n: int, batch: int, seed: int) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    half = n // 2
    repeated = torch.tensor([1.0] * half + [2.0] * (n - half), dtype=torch.float64)
    cond = torch.logspace(0.0, -10.0, n, dtype=torch.float64) if n > 1 else torch.ones(1)
    block = torch.randn(batch, n, n, dtype=torch.float64, generator=g)
    block[:, :half, half:] = 0
    block[:, half:, :half] = 0
    low_rank = torch.randn(batch, n, max(1, n // 4), dtype=torch.float64, generator=g)
    return {
        "diagonal": torch.diag_embed(torch.randn(batch, n, dtype=torch.float64, generator=g)),
        "zero": torch.zeros(batch, n, n, dtype=torch.float64),
        "identity": torch.eye(n, dtype=torch.float64).expand(batch, n, n).clone(),
        "repeated": spd_from_eigenvalues(repeated.expand(batch, n), generator=g),
        "clustered": spd_from_eigenvalues(
            1.0 + 1e-6 * torch.rand(batch, n, dtype=torch.float64, generator=g), generator=g
        ),
        "cond-1e10": spd_from_eigenvalues(cond.expand(batch, n), generator=g),
        "negative": spd_from_eigenvalues(
            torch.linspace(-5.0, 3.0, n, dtype=torch.float64).expand(batch, n), generator=g
        ),
        "rank-deficient": low_rank @ low_rank.mT,
        "block-diagonal": block + block.mT,
        "tiny-scale": 1e-25 * random_covariance(n, batch, seed + 1),
        "huge-scale": 1e25 * random_symmetric(n, batch, seed + 2),
    }


# --------------------------------------------------------------------------- forward accuracy


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(
    ("n", "batch"),
    [(1, 7), (2, 64), (3, 4096), (4, 4096), (5, 33), (8, 1024), (16, 64), (33, 4), (64, 2)],
)
def test_random_matrices_match_eigh(n: int, batch: int, dtype: torch.dtype) -> None:
    A = torch.cat([random_covariance(n, batch, seed=n), random_symmetric(n, batch, seed=n + 100)])
    result = torch_impl.batched_eigh(A.to(dtype))
    assert result.converged.all()
    assert result.eigenvalues.dtype == dtype and result.eigenvectors.dtype == dtype
    assert_eigh_accuracy(A, result.eigenvalues, result.eigenvectors, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_size_128(dtype: torch.dtype) -> None:
    A = torch.cat([random_covariance(128, 1, seed=1), random_symmetric(128, 1, seed=2)])
    result = torch_impl.batched_eigh(A.to(dtype))
    assert result.converged.all()
    assert_eigh_accuracy(A, result.eigenvalues, result.eigenvectors, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n", [1, 2, 3, 6, 17, pytest.param(40, marks=pytest.mark.slow)])
def test_special_matrices_match_eigh(n: int, dtype: torch.dtype) -> None:
    cases = special_matrices(n, 4, seed=n)
    result = torch_impl.batched_eigh(torch.cat(list(cases.values())).to(dtype))
    assert result.converged.all()
    for i, (name, A) in enumerate(cases.items()):
        part = slice(4 * i, 4 * i + 4)
        try:
            assert_eigh_accuracy(A, result.eigenvalues[part], result.eigenvectors[part], TOL[dtype])
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


def rounding_hard_matrices(n: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Inputs whose Householder columns or rotations are zero up to rounding or tiny: the
    all-ones and integer rank-one matrices (float32 rounding leaves columns of norm ~1e-8
    and smaller), a tiny coupling, and entries near the top of the range (exact eigenvalues
    by float64 ``eigh`` on the same numbers)."""
    v = torch.randint(1, 4, (n,), generator=_gen(n)).to(dtype)
    tiny = 1e-20 if dtype == torch.float32 else 1e-160
    coupled = torch.diag(torch.arange(1.0, n + 1, dtype=dtype))
    coupled[0, 1] = coupled[1, 0] = tiny
    # a diagonal entry above half the range (a + a overflows), eigenvalues still representable
    top = torch.finfo(dtype).max
    huge = random_symmetric(n, 1, seed=n)[0] * (1e-3 * top / (2 * n))
    huge[0, 0] = 0.6 * top
    huge = huge.to(dtype)
    return {
        "ones": torch.ones(n, n, dtype=dtype),
        "integer rank one": v[:, None] * v[None, :],
        "tiny coupling": coupled,
        "near overflow": huge,
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n", [3, 9, 10, 21, 26, 34, 45, 46])
def test_rounding_hard_matrices_match_eigh(n: int, dtype: torch.dtype) -> None:
    """Before the reflectors were formed from ``x / max|x|`` and the rotations from
    ``(x, z) / max(|x|, |z|)``, these gave ``tau = inf`` (NaN eigenvalues and a
    ConvergenceError, e.g. ``ones(21, 21)`` in float32) or rotations whose ``c^2 + s^2`` drifted
    from 1 (orthogonality error 4e-3 at n = 34); ``(A + A^T) / 2`` overflowed to NaN above half
    the range."""
    tol = float32_tolerance(n) if dtype == torch.float32 else TOL[dtype]
    for name, A in rounding_hard_matrices(n, dtype).items():
        result = torch_impl.batched_eigh(A.unsqueeze(0))
        assert result.converged.all(), name
        # checked on A / max|A| (the reference's norms of the near-overflow case overflow)
        peak = A.abs().max().double()
        L = result.eigenvalues.double() / peak
        try:
            assert_eigh_accuracy(A.unsqueeze(0).double() / peak, L, result.eigenvectors, tol)
        except AssertionError as err:
            raise AssertionError(f"{name}: {err}") from None


def test_diagonal_and_zero_need_no_qr_steps() -> None:
    D = torch.diag_embed(torch.tensor([[3.0, -1.0, 2.0, 0.5]], dtype=torch.float64))
    result = torch_impl.batched_eigh(torch.cat([D, torch.zeros_like(D)]))
    assert result.qr_steps == 0
    torch.testing.assert_close(result.eigenvalues[0], torch.tensor([-1.0, 0.5, 2.0, 3.0]).double())
    assert torch.equal(result.eigenvalues[1], torch.zeros(4, dtype=torch.float64))


@pytest.mark.parametrize("shift", ["double-wilkinson", "wilkinson"])
def test_both_shift_strategies_are_accurate(shift: str) -> None:
    A = random_symmetric(24, 16, seed=7)
    result = torch_impl.batched_eigh(A, shift=shift)
    assert result.converged.all()
    assert_eigh_accuracy(A, result.eigenvalues, result.eigenvectors, 1e-12)


def test_deflation_is_per_matrix() -> None:
    """A matrix decomposed inside a mixed batch gives the same result as alone."""
    mixed = torch.cat(
        [
            random_symmetric(12, 2, seed=1),
            torch.diag_embed(torch.arange(12.0, dtype=torch.float64)).unsqueeze(0),
            1e-6 * random_covariance(12, 1, seed=2),
            special_matrices(12, 1, seed=3)["block-diagonal"],
        ]
    )
    together = torch_impl.batched_eigh(mixed)
    for i in range(mixed.shape[0]):
        alone = torch_impl.batched_eigh(mixed[i : i + 1])
        torch.testing.assert_close(together.eigenvalues[i], alone.eigenvalues[0], rtol=0, atol=0)
        torch.testing.assert_close(
            together.eigenvectors[i], alone.eigenvectors[0], rtol=1e-12, atol=1e-14
        )


# --------------------------------------------------------------------------- building blocks


def test_tridiagonalisation_and_wy_product() -> None:
    A = random_symmetric(9, 5, seed=11)
    d, e, U, tau = torch_impl.tridiagonalize(A)
    P = torch_impl.wy_accumulate(U, tau)
    # reference product H_0 H_1 ... built one reflector at a time
    eye = torch.eye(9, dtype=torch.float64)
    P_ref = eye.expand(5, 9, 9).clone()
    for k in range(U.shape[-1]):
        u = U[:, :, k : k + 1]
        P_ref = P_ref @ (eye - tau[:, k, None, None] * (u @ u.mT))
    torch.testing.assert_close(P, P_ref, rtol=0, atol=1e-13)
    T = torch.diag_embed(d) + torch.diag_embed(e, 1) + torch.diag_embed(e, -1)
    torch.testing.assert_close(P.mT @ A @ P, T, rtol=0, atol=1e-12)
    torch.testing.assert_close(P.mT @ P, eye.expand_as(P), rtol=0, atol=1e-14)


def test_trailing_eigenvalues_closed_form() -> None:
    a, b, c = (torch.tensor([2.0, 1.0, 5.0, 0.0], dtype=torch.float64) for _ in range(3))
    b = torch.tensor([0.5, 1e-20, -3.0, 0.0], dtype=torch.float64)
    c = torch.tensor([1.0, 1.0, 5.0, 0.0], dtype=torch.float64)
    near, far = torch_impl.trailing_eigenvalues(a, b, c)
    M = torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)
    ref = torch.linalg.eigvalsh(M)
    got = torch.sort(torch.stack([near, far], -1), dim=-1).values
    torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)
    assert torch.all((near - c).abs() <= (far - c).abs() + 1e-15)


# --------------------------------------------------------------------------- non-convergence


def _unconvergeable_batch() -> torch.Tensor:
    """A diagonal matrix (converges at once) next to a random one that cannot meet a
    tolerance of 1e-300 within one sweep per dimension."""
    D = torch.diag_embed(torch.arange(1.0, 7.0, dtype=torch.float64)).unsqueeze(0)
    return torch.stack([D[0], random_symmetric(6, 1, seed=3)[0]]).reshape(2, 1, 6, 6)


def test_non_convergence_raises_by_default() -> None:
    solver = ef.create("solver", "batched-ed", tol=1e-300, max_sweeps_per_dim=1)
    with pytest.raises(ConvergenceError, match="1 of 2 matrices"):
        solver.eigh(_unconvergeable_batch())


def test_non_convergence_flag_and_warn() -> None:
    A = _unconvergeable_batch()
    flagged = ef.create("solver", "batched-ed", tol=1e-300, max_sweeps_per_dim=1, on_failure="flag")
    flagged.eigh(A)
    assert flagged.last_converged.tolist() == [[True], [False]]
    warned = ef.create("solver", "batched-ed", tol=1e-300, max_sweeps_per_dim=1, on_failure="warn")
    with pytest.warns(ConvergenceWarning, match="last_converged") as record:
        warned.eigh(A)
        warned.sqrt(A @ A.mT)
    assert warned.last_converged.shape == (2, 1)
    # attributed to these lines, not to torch/autograd/function.py (where a fixed stacklevel
    # landed: the once-per-location filter then hid the warning from every other caller)
    assert {w.filename for w in record} == {__file__}


# --------------------------------------------------------------------------- solver API


def test_registered_and_configured() -> None:
    assert ef.get("solver", "batched-ed") is BatchedEDSolver
    solver = ef.create("solver", "batched-ed")
    assert solver.config.backward == "pade" and solver.config.backend == "auto"
    with pytest.raises(ConfigError, match="backend"):
        ef.create("solver", "batched-ed", backend="cuda")
    with pytest.raises(ConfigError, match="on_failure"):
        ef.create("solver", "batched-ed", on_failure="ignore")
    with pytest.raises(NotSupportedError, match="64"):
        ef.create("solver", "batched-ed", backend="triton").eigh(torch.eye(65))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_solver_eigh_and_matrix_functions(dtype: torch.dtype) -> None:
    A64 = random_covariance(7, 6, seed=5).reshape(2, 3, 7, 7) + 0.1 * torch.eye(7).double()
    solver = ef.create("solver", "batched-ed")
    L, V = solver.eigh(A64.to(dtype))
    assert L.shape == (2, 3, 7) and V.shape == (2, 3, 7, 7)
    assert solver.last_converged.shape == (2, 3) and solver.last_converged.all()
    assert_eigh_accuracy(A64.reshape(6, 7, 7), L.reshape(6, 7), V.reshape(6, 7, 7), TOL[dtype])
    ref_L, ref_V = torch.linalg.eigh(A64)
    ref_root = (ref_V * ref_L.sqrt().unsqueeze(-2)) @ ref_V.mT
    ref_inv = (ref_V * ref_L.rsqrt().unsqueeze(-2)) @ ref_V.mT
    root, inv = solver.sqrt_invsqrt(A64.to(dtype))
    scale = 10 * TOL[dtype]
    assert (root.double() - ref_root).norm() / ref_root.norm() < scale
    assert (inv.double() - ref_inv).norm() / ref_inv.norm() < scale
    assert (solver.sqrt(A64.to(dtype)).double() - ref_root).norm() / ref_root.norm() < scale


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (torch.ones(3, 4, dtype=torch.float64), "square"),
        (torch.arange(9.0, dtype=torch.float64).reshape(3, 3), "symmetric"),
        (torch.full((2, 2), float("nan"), dtype=torch.float64), "NaN"),
        (torch.eye(3, dtype=torch.int64), "dtype"),
    ],
    ids=["non-square", "non-symmetric", "non-finite", "integer"],
)
def test_bad_input_is_a_clear_error(bad: torch.Tensor, fragment: str) -> None:
    solver = ef.create("solver", "batched-ed")
    for method in (solver.eigh, solver.sqrt, solver.invsqrt):
        with pytest.raises(InputError, match=fragment):
            method(bad)


# --------------------------------------------------------------------------- gradients


def _well_separated(n: int, batch: int, seed: int) -> torch.Tensor:
    values = torch.linspace(-2.0, 3.0, n, dtype=torch.float64).expand(batch, n)
    return spd_from_eigenvalues(values, generator=_gen(seed))


def test_gradcheck_exact_rule() -> None:
    solver = ef.create("solver", "batched-ed", backward="exact")
    A = _well_separated(5, 2, seed=1).requires_grad_()
    G = torch.randn(2, 5, 5, dtype=torch.float64, generator=_gen(2))
    w = torch.randn(2, 5, dtype=torch.float64, generator=_gen(3))

    def loss(X: torch.Tensor) -> torch.Tensor:
        L, V = solver.eigh(0.5 * (X + X.mT), check=False)
        # sign-invariant function of the eigenvectors plus a weighted sum of eigenvalues
        return (L * w).sum() + ((V * V) * G).sum()

    assert torch.autograd.gradcheck(loss, (A,), eps=1e-6, atol=1e-7, rtol=1e-6)

    def loss_sqrt(X: torch.Tensor) -> torch.Tensor:
        return (solver.sqrt(0.5 * (X + X.mT) + 3 * torch.eye(5).double(), check=False) * G).sum()

    assert torch.autograd.gradcheck(loss_sqrt, (A,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_pade_backward_close_to_exact_on_separated_spectrum() -> None:
    A = spd_from_eigenvalues(
        torch.tensor([[0.5, 1.0, 2.0, 4.0, 8.0]], dtype=torch.float64), generator=_gen(4)
    )
    grads = {}
    for rule in ("exact", "pade"):
        X = A.clone().requires_grad_()
        root = ef.create("solver", "batched-ed", backward=rule).sqrt(X)
        (root * torch.arange(25.0).double().reshape(5, 5)).sum().backward()
        grads[rule] = X.grad
    torch.testing.assert_close(grads["pade"], grads["exact"], rtol=1e-6, atol=1e-8)
    # and the rule used is core's SVD-Padé rule
    L = torch.tensor([[0.5, 1.0, 2.0]], dtype=torch.float64)
    solver = ef.create("solver", "batched-ed")
    torch.testing.assert_close(solver.gradient_rule(L), pade_rule(L))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_pade_gradients_finite_on_repeated_eigenvalues(dtype: torch.dtype) -> None:
    solver = ef.create("solver", "batched-ed")
    repeated = spd_from_eigenvalues(
        torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0]], dtype=torch.float64), generator=_gen(5)
    )
    for A in (torch.eye(5, dtype=torch.float64)[None], repeated):
        X = A.to(dtype).requires_grad_()
        L, V = solver.eigh(X)
        root, inv = solver.sqrt_invsqrt(X)
        (L.sum() + V.abs().sum() + root.square().sum() + inv.sum()).backward()
        assert torch.isfinite(X.grad).all()


# --------------------------------------------------------------------------- Triton kernel

triton_only = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")


@pytest.fixture
def triton_impl(monkeypatch: pytest.MonkeyPatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    from eigenflow.plugins.batched_ed import triton_impl

    return triton_impl


@triton_only
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_triton_kernel_matches_eigh(triton_impl, dtype: torch.dtype) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = (1, 2, 3, 5) if dtype == torch.float64 else (4,)
    for n in sizes:
        mats = [random_symmetric(n, 2, seed=n), random_covariance(n, 1, seed=n)]
        mats += list(special_matrices(n, 1, seed=n).values())
        A = torch.cat(mats)
        result = triton_impl.batched_eigh(A.to(dtype).to(device))
        assert result.converged.all()
        assert_eigh_accuracy(A, result.eigenvalues.cpu(), result.eigenvectors.cpu(), TOL[dtype])


def _square_wishart(n: int, batch: int, seed: int) -> torch.Tensor:
    """``X X^T / n`` with square ``X``: ``batched_ed_bench.py``'s matrices (many eigenvalues
    near 0), on which the first GPU run's eigenvectors were wrong at n = 48 and 64."""
    X = torch.randn(batch, n, n, dtype=torch.float64, generator=_gen(seed))
    return X @ X.mT / n


@triton_only
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_triton_kernel_on_rounding_hard_matrices(triton_impl, dtype: torch.dtype) -> None:
    """The kernel's reflectors and rotations on the inputs of
    :func:`test_rounding_hard_matrices_match_eigh` (small sizes: the interpreter is slow).
    Before the fix the tiny coupling returned ``[nan, 3.1e-41, 4.3e+15]`` in float32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tol = TOL[dtype]
    for n in (3, 9) if dtype == torch.float32 else (3,):
        for name, A in rounding_hard_matrices(n, dtype).items():
            result = triton_impl.batched_eigh(A.unsqueeze(0).to(device))
            assert result.converged.all(), name
            peak = A.abs().max().double()
            L, V = result.eigenvalues.cpu().double() / peak, result.eigenvectors.cpu()
            try:
                assert_eigh_accuracy(A.unsqueeze(0).double() / peak, L, V, tol)
            except AssertionError as err:
                raise AssertionError(f"n = {n}, {name}: {err}") from None


@triton_only
@pytest.mark.parametrize("n", [17, 33])
def test_triton_kernel_padded_tiles(triton_impl, n: int) -> None:
    """Sizes that are not a power of two (the tile is padded to 32 and 64) in float32."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    A = torch.cat([_square_wishart(n, 1, seed=n), random_symmetric(n, 1, seed=n + 1)])
    result = triton_impl.batched_eigh(A.float().to(device))
    assert result.converged.all()
    assert_eigh_accuracy(
        A, result.eigenvalues.cpu(), result.eigenvectors.cpu(), float32_tolerance(n)
    )


@pytest.mark.slow
@triton_only
@pytest.mark.parametrize(("n", "batch"), [(48, 8), (64, 4)])
def test_triton_kernel_at_the_sizes_the_first_gpu_run_got_wrong(triton_impl, n, batch) -> None:
    """The first matrices of the GPU run's failing inputs (same seeds) under the interpreter
    (or on a GPU): exact to float32 rounding."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    A = _square_wishart(n, 64 if n == 48 else 1024, seed=n * 7919 + (64 if n == 48 else 1024))
    A = A[:batch]
    result = triton_impl.batched_eigh(A.float().to(device))
    assert result.converged.all()
    assert_eigh_accuracy(
        A, result.eigenvalues.cpu(), result.eigenvectors.cpu(), float32_tolerance(n)
    )


@triton_only
def test_triton_backend_through_solver(triton_impl) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    A = random_covariance(6, 2, seed=9).to(device)
    solver = ef.create("solver", "batched-ed", backend="triton")
    L, V = solver.eigh(A)
    assert solver.last_converged.all()
    assert_eigh_accuracy(A.cpu(), L.cpu(), V.cpu(), 1e-10)
    # same result as the PyTorch implementation
    L_ref, _ = ef.create("solver", "batched-ed", backend="torch").eigh(A.cpu())
    torch.testing.assert_close(L.cpu(), L_ref, rtol=0, atol=1e-12)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_cuda_matches_eigh(backend: str) -> None:
    solver = ef.create("solver", "batched-ed", backend=backend)
    for n, batch in ((4, 4096), (16, 256), (32, 64), (64, 16)):
        A = random_symmetric(n, batch, seed=n)
        L, V = solver.eigh(A.float().cuda())
        assert_eigh_accuracy(A, L.cpu(), V.cpu(), float32_tolerance(n))


def float32_tolerance(n: int) -> float:
    """``TOL`` in float32, widened to ``4 n eps`` for large ``n``: the backward error of a
    Householder tridiagonalisation grows like ``n eps ||A||`` (the first GPU run measured a
    reconstruction error of 1.01e-5 at ``n = 64``, against 1e-5)."""
    return max(TOL[torch.float32], 4 * n * torch.finfo(torch.float32).eps)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cuda_rounding_hard_matrices(backend: str) -> None:
    """:func:`rounding_hard_matrices` on the GPU, where float32 subnormals may flush to zero
    (the kernel's reflectors and rotations are formed from scaled vectors since an audit
    found ``tau = inf`` and drifting rotations on them)."""
    solver = ef.create("solver", "batched-ed", backend=backend)
    for n in (9, 21, 34, 46):
        for name, A in rounding_hard_matrices(n, torch.float32).items():
            L, V = solver.eigh(A.unsqueeze(0).cuda())
            assert solver.last_converged.all(), (n, name)
            peak = A.abs().max().double()
            try:
                assert_eigh_accuracy(
                    A.unsqueeze(0).double() / peak,
                    L.cpu().double() / peak,
                    V.cpu(),
                    float32_tolerance(n),
                )
            except AssertionError as err:
                raise AssertionError(f"n = {n}, {name}: {err}") from None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize(("n", "batch"), [(48, 64), (64, 1024)])
def test_cuda_triton_eigenvectors_where_the_first_gpu_run_failed(n: int, batch: int) -> None:
    """The archived H200 run had correct eigenvalues but ``||V^T V - I||_2 = 1`` on these
    inputs (``benchmarks/batched_ed_bench.py``'s, same seeds); ``backend="auto"`` avoids the
    kernel above ``n = 32`` until this passes (``benchmarks/batched_ed_gpu_diagnose.py``
    localises a failure)."""
    X = torch.randn(batch, n, n, dtype=torch.float64, generator=_gen(n * 7919 + batch))
    A = X @ X.mT / n
    solver = ef.create("solver", "batched-ed", backend="triton")
    L, V = solver.eigh(A.float().cuda())
    assert solver.last_converged.all()
    assert_eigh_accuracy(A, L.cpu(), V.cpu(), float32_tolerance(n))


def test_eigenvalues_only_mode_matches() -> None:
    A = random_symmetric(10, 4, seed=12)
    full = torch_impl.batched_eigh(A)
    values = torch_impl.batched_eigh(A, eigenvectors=False)
    torch.testing.assert_close(values.eigenvalues, full.eigenvalues, rtol=0, atol=1e-13)
    assert math.isclose(float(values.eigenvalues.sum()), float(torch.diagonal(A, 0, -2, -1).sum()))


def test_empty_batch() -> None:
    solver = ef.create("solver", "batched-ed")
    L, V = solver.eigh(torch.empty(0, 3, 4, 4, dtype=torch.float64))
    assert L.shape == (0, 3, 4) and V.shape == (0, 3, 4, 4)
    assert solver.last_converged.shape == (0, 3)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_path_reads_nothing_on_the_host() -> None:
    """With on_failure='flag', a CUDA call through the Triton kernel never synchronises (CUDA's
    sync debug mode turns any synchronising call into an error)."""
    solver = ef.create("solver", "batched-ed", on_failure="flag")
    A = random_symmetric(32, 64, seed=3).float().cuda()
    solver.eigh(A, check=False)  # build the kernel first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        L, V = solver.eigh(A, check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_eigh_accuracy(A.cpu(), L.cpu(), V.cpu(), TOL[torch.float32])
    assert int(solver.last_qr_steps) > 0


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_auto_backend_uses_the_kernel_only_where_a_gpu_verified_it() -> None:
    """``backend="auto"`` on CUDA: the kernel up to n = 32, PyTorch above (the first GPU run's
    eigenvectors were wrong at n = 48 and 64); an explicit ``backend="triton"`` keeps n <= 64.
    A stand-in object with the two attributes the choice reads (no GPU here)."""
    from types import SimpleNamespace

    def cuda(n: int) -> SimpleNamespace:
        return SimpleNamespace(is_cuda=True, shape=(2, n, n))

    auto = ef.create("solver", "batched-ed")
    assert [auto.backend_for(cuda(n)) for n in (4, 32, 33, 48, 64, 65)] == (
        ["triton"] * 2 + ["torch"] * 4
    )
    assert auto.backend_for(torch.zeros(2, 8, 8)) == "torch"
    explicit = ef.create("solver", "batched-ed", backend="triton")
    assert explicit.backend_for(cuda(64)) == "triton"
    with pytest.raises(NotSupportedError, match="up to 64"):
        explicit.backend_for(cuda(65))
