"""Traversals and generator geometry against closed forms on linear generators and exact
Hessians on small nonlinear ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.spectral import canonical_signs
from eigenflow.plugins.traversals.metric_tensor import (
    hvp_operator,
    metric_by_backprop,
    metric_by_jacobian,
)

D, P = 6, 9


def linear_generator(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """G(z) = W z with singular values 5, 4, 3, 2, 1, 0.5 and known right singular vectors."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(P, D, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    layer = nn.Linear(D, P, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(U @ torch.diag(s) @ V.mT)
    return layer, s, V


def small_generator(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 40), nn.Sigmoid()).double()


def assert_same_directions(found: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    cos = (found * expected).sum(-2).abs()
    assert torch.all(cos > 1 - tol), cos


def test_sefa_gives_eigenvectors_of_wtw():
    layer, s, V = linear_generator()
    sefa = ef.create("traversal", "sefa", num_directions=4).fit(layer)
    assert sefa.directions.shape == (D, 4)
    assert_same_directions(sefa.directions, V[:, :4], 1e-10)
    torch.testing.assert_close(sefa.eigenvalues, s[:4] ** 2)
    z0 = torch.zeros(3, D, dtype=torch.float64)
    path = sefa.traverse(z0, k=1, steps=4, step_size=0.5)
    assert path.shape == (5, 3, D)
    torch.testing.assert_close(path[-1, 0], 2.0 * sefa.directions[:, 1])


@pytest.mark.parametrize("method", ["power", "exact"])
def test_jacobian_directions_are_right_singular_vectors(method):
    layer, _, V = linear_generator()
    jp = ef.create("traversal", "jacobian-path", method=method, power_iters=200).fit(layer)
    z = torch.randn(2, D, dtype=torch.float64)
    values, vectors = jp.local_directions(z, 3)
    assert_same_directions(vectors, V[:, :3].expand(2, D, 3), 1e-8)
    torch.testing.assert_close(values, torch.tensor([25.0, 16.0, 9.0]).double().expand(2, 3))


def test_jacobian_path_on_linear_generator_is_a_straight_line():
    layer, _, V = linear_generator()
    jp = ef.create("traversal", "jacobian-path", method="exact", rho=0.0, alpha=0.1).fit(layer)
    z0 = torch.randn(1, D, dtype=torch.float64)
    path = jp.traverse(z0, k=2, steps=5)
    steps = path[1:] - path[:-1]
    for step in steps:
        assert_same_directions(step[0, :, None] / 0.1, V[:, 2:3], 1e-10)
    assert torch.allclose(steps, steps[0].expand_as(steps))  # no backtracking, constant step


def test_jacobian_path_keeps_sign_continuity_on_nonlinear_generator():
    G = small_generator()
    jp = ef.create("traversal", "jacobian-path", alpha=0.05, rho=0.5, power_iters=30).fit(G)
    path = jp.traverse(torch.randn(3, 8, dtype=torch.float64), k=0, steps=12)
    steps = path[1:] - path[:-1]
    cos = (steps[1:] * steps[:-1]).sum(-1)
    assert path.shape == (13, 3, 8) and torch.all(cos > 0)


def test_jacobian_path_does_not_depend_on_the_eigensolvers_sign(monkeypatch):
    # cuSOLVER and LAPACK return eigenvectors of either sign: the first step fixes it
    G = small_generator()
    jp = ef.create("traversal", "jacobian-path", method="exact", alpha=0.05).fit(G)
    z0 = torch.randn(3, 8, dtype=torch.float64)
    path = jp.traverse(z0, k=1, steps=4)
    found = type(jp).local_directions

    def flipped(self, z, k, start=None):
        values, vectors = found(self, z, k, start)
        return values, -vectors

    monkeypatch.setattr(type(jp), "local_directions", flipped)
    torch.testing.assert_close(jp.traverse(z0, k=1, steps=4), path, rtol=0, atol=0)


def test_canonical_signs_make_the_largest_entry_positive():
    V = torch.tensor([[0.6, -0.1], [-0.8, 0.2], [0.0, -0.9]], dtype=torch.float64)
    expected = torch.tensor([[-0.6, 0.1], [0.8, -0.2], [0.0, 0.9]], dtype=torch.float64)
    torch.testing.assert_close(canonical_signs(V), expected, rtol=0, atol=0)
    torch.testing.assert_close(canonical_signs(-V), expected, rtol=0, atol=0)


@pytest.mark.parametrize("hvp", ["backward", "forward", "finite-difference"])
def test_hessian_metric_on_linear_generator(hvp):
    layer, s, V = linear_generator()
    hm = ef.create("traversal", "hessian-metric", num_directions=3, hvp=hvp)
    hm.fit(layer, torch.randn(4, D, dtype=torch.float64))
    tol = 1e-6 if hvp == "finite-difference" else 1e-10
    torch.testing.assert_close(hm.local_eigenvalues, (s[:3] ** 2).expand(4, 3), rtol=tol, atol=0)
    assert_same_directions(hm.directions, V[:, :3], 1e-8)
    assert hm.traverse(torch.zeros(D, dtype=torch.float64), 0, steps=3).shape == (4, 1, D)


@pytest.mark.parametrize("hvp", ["backward", "forward"])
def test_lanczos_matches_exact_hessian_on_nonlinear_generator(hvp):
    G = small_generator()
    z = torch.randn(3, 8, dtype=torch.float64)
    exact = ef.create("traversal", "hessian-metric", method="exact", num_directions=4)
    lanczos = ef.create("traversal", "hessian-metric", num_directions=4, hvp=hvp)
    ref_values, _ = exact.eigenpairs(G, z, 4)
    values, vectors = lanczos.eigenpairs(G, z, 4)
    torch.testing.assert_close(values, ref_values, rtol=1e-4, atol=0)
    H = metric_by_jacobian(G, z).detach()
    residual = H @ vectors - vectors * values[:, None, :]
    assert residual.norm() < 1e-6 * values.max()


def test_feature_map_is_composed():
    layer, s, _ = linear_generator()
    scale = lambda x: 3.0 * x  # noqa: E731 - a feature map that scales distances by 3
    hm = ef.create("traversal", "hessian-metric", num_directions=2)
    hm.fit(layer, torch.randn(2, D, dtype=torch.float64), feature_map=scale)
    torch.testing.assert_close(hm.local_eigenvalues, (9 * s[:2] ** 2).expand(2, 2))


def test_hvp_modes_and_exact_metric_agree():
    G = small_generator()
    z = torch.randn(2, 8, dtype=torch.float64)
    H = metric_by_jacobian(G, z).detach()
    torch.testing.assert_close(metric_by_backprop(G, z).detach(), H, rtol=1e-10, atol=1e-12)
    v = torch.randn(2, 8, dtype=torch.float64)
    ref = (H @ v[..., None])[..., 0]
    for mode, tol in [("backward", 1e-10), ("forward", 1e-10), ("finite-difference", 1e-5)]:
        torch.testing.assert_close(hvp_operator(G, z, mode)(v).detach(), ref, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="mode must be"):
        hvp_operator(G, z, "sideways")


def test_hessian_spectrum_metric():
    layer, _, _ = linear_generator()
    result = ef.create("metric", "hessian-spectrum", fraction=0.99)(
        layer, torch.randn(3, D, dtype=torch.float64)
    )
    # eigenvalues 25, 16, 9, 4, 1, 0.25: 99% of the trace (55.25) needs the top 5
    assert result["anisotropy"] == 5
    assert result["homogeneity"] == pytest.approx(1.0, abs=1e-9)


def test_clear_errors_before_fit_and_for_bad_arguments():
    sefa = ef.create("traversal", "sefa")
    with pytest.raises(ef.NotSupportedError, match="call fit"):
        sefa.traverse(torch.zeros(1, 3), 0)
    layer, _, _ = linear_generator()
    sefa.fit(layer)
    with pytest.raises(ef.InputError, match=r"k: expected an integer in \[0, 5\]"):
        sefa.traverse(torch.zeros(1, D, dtype=torch.float64), 7)
    with pytest.raises(ef.InputError, match="z0: expected latent size 6"):
        sefa.traverse(torch.zeros(1, 4, dtype=torch.float64), 0)
    with pytest.raises(ef.ConfigError, match="one of 'lanczos', 'exact'"):
        ef.create("traversal", "hessian-metric", method="full")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_traversals_on_cuda_match_cpu():
    G = small_generator()
    z = torch.randn(3, 8, dtype=torch.float64)
    results = {}
    for device in ("cpu", "cuda"):
        Gd, zd = G.to(device), z.to(device)
        hm = ef.create("traversal", "hessian-metric", num_directions=3).fit(Gd, zd)
        jp = ef.create("traversal", "jacobian-path", method="exact", alpha=0.05).fit(Gd)
        sefa = ef.create("traversal", "sefa", num_directions=3).fit(Gd[0])
        results[device] = (
            hm.local_eigenvalues.cpu(),
            jp.traverse(zd, 0, steps=3).cpu(),
            sefa.traverse(zd, 1, steps=2).cpu(),
        )
        assert hm.directions.device.type == device
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        torch.testing.assert_close(gpu, cpu, rtol=1e-8, atol=1e-10)
