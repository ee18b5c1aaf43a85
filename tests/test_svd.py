"""The `svd` solver against independent float64 references."""

from __future__ import annotations

import pytest
import torch

import eigenflow as ef
from eigenflow.testing import random_spd, reference_sqrt_invsqrt, spd_from_eigenvalues


@pytest.mark.parametrize("cond", [1e1, 1e4, 1e8])
def test_forward_matches_reference_float64(cond):
    A = random_spd(16, 2, 3, cond=cond, seed=1)
    root, inv = ef.matrix_sqrt_invsqrt(A, method="svd", eps=0.0)
    ref_root, ref_inv = reference_sqrt_invsqrt(A)
    torch.testing.assert_close(root, ref_root, rtol=1e-10, atol=1e-12)
    rel = torch.linalg.matrix_norm(inv - ref_inv) / torch.linalg.matrix_norm(ref_inv)
    assert rel.max() < 1e-12 * cond


def test_eigh_convention_ascending_signs_fixed():
    A = random_spd(7, 4, cond=30.0, seed=2) - 0.5 * torch.eye(7, dtype=torch.float64)
    L, V = ef.eigh(A, method="svd")
    assert (L[..., 1:] >= L[..., :-1]).all()
    idx = V.abs().argmax(dim=-2, keepdim=True)
    assert (torch.gather(V, -2, idx) > 0).all()
    torch.testing.assert_close((V * L[..., None, :]) @ V.mT, A, rtol=0, atol=1e-12)
    _, V2 = ef.eigh(A.clone(), method="svd")
    assert torch.equal(V, V2)


def test_backward_matches_torch_autograd_of_eigh():
    A = random_spd(6, 3, cond=20.0, seed=3)
    G = torch.randn(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X1 = A.clone().requires_grad_()
    (ef.matrix_sqrt(X1, method="svd", eps=0.0) * G).sum().backward()
    X2 = A.clone().requires_grad_()
    L, V = torch.linalg.eigh(0.5 * (X2 + X2.mT))
    ((V * L.sqrt()[..., None, :]) @ V.mT * G).sum().backward()
    torch.testing.assert_close(X1.grad, X2.grad, rtol=1e-9, atol=1e-11)


def test_gradient_matches_finite_differences_float64():
    A = spd_from_eigenvalues(
        torch.tensor([[0.5, 1.0, 2.0, 4.0]], dtype=torch.float64),
        generator=torch.Generator().manual_seed(4),
    )
    dA = torch.randn(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    dA = 0.5 * (dA + dA.mT)
    X = A.clone().requires_grad_()
    ef.matrix_invsqrt(X, method="svd").sum().backward()
    h = 1e-6
    fd = (
        ef.matrix_invsqrt(A + h * dA, method="svd").sum()
        - ef.matrix_invsqrt(A - h * dA, method="svd").sum()
    ) / (2 * h)
    torch.testing.assert_close((X.grad * dA).sum(), fd, rtol=1e-7, atol=1e-9)


def test_documented_failure_on_repeated_eigenvalues():
    """`svd` has the exact gradient: with two equal eigenvalues K_ij = 1/0 and the gradient
    is not finite (the motivation for svd-pade)."""
    X = torch.eye(4, dtype=torch.float64).requires_grad_()
    _, V = ef.eigh(X, method="svd")
    (V[..., 0] ** 3).sum().backward()
    assert not torch.isfinite(X.grad).all()


def test_singular_psd_input_gives_finite_sqrt_and_gradient():
    X = torch.randn(2, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    P = (X @ X.mT).requires_grad_()  # rank 3 of 6
    root = ef.matrix_sqrt(P, method="svd")
    ref, _ = reference_sqrt_invsqrt(P.detach())
    assert torch.isfinite(root).all()
    torch.testing.assert_close(root, ref, rtol=0, atol=1e-6)
    (root * torch.randn(6, 6, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(P.grad).all()


def test_float32_accuracy_and_dtype():
    A = random_spd(32, 8, cond=100.0, seed=7)
    root = ef.matrix_sqrt(A.float(), method="svd")
    ref, _ = reference_sqrt_invsqrt(A)
    assert root.dtype == torch.float32
    rel = torch.linalg.matrix_norm(root.double() - ref) / torch.linalg.matrix_norm(ref)
    assert rel.max() < 1e-5


def test_eigh_refused_for_function_only_solver_names_alternatives(fresh_registry):
    from eigenflow.core import Solver

    class Poly(Solver):
        """Identity-based toy solver without eigh."""

        def _sqrt_invsqrt(self, A):
            return A, A

    class Plugin:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("solver", Poly, name="toy-poly")

    ef.registry.register_plugin(Plugin(), name="toy-poly-plugin")
    with pytest.raises(ef.NotSupportedError, match=r"solvers with eigh: .*svd"):
        ef.eigh(torch.eye(2, dtype=torch.float64), method="toy-poly")


def test_hessian_vector_product_on_distinct_eigenvalues_issue_17():
    # The issue's reproducer: the exact rule's masked 1/0 on the diagonal made every
    # second-order gradient NaN. loss = ||A^(1/2)||_F^2 = tr(A), so grad = I and the
    # Hessian is 0 exactly.
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).requires_grad_()
    (g,) = torch.autograd.grad((ef.matrix_sqrt(A, method="svd") ** 2).sum(), A, create_graph=True)
    torch.testing.assert_close(g, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    (h,) = torch.autograd.grad(g.pow(2).sum(), A)
    torch.testing.assert_close(h, torch.zeros(3, 3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_hessian_vector_product_matches_finite_differences_of_a_nonlinear_loss():
    # loss = sum(A^(-1/2))^2 + <G, A^(1/2)>: a Hessian with both the Gauss-Newton and the
    # curvature term, against a central difference of the (exact) gradient.
    A = random_spd(5, 1, cond=20.0, seed=8)
    gen = torch.Generator().manual_seed(9)
    G, E, W = (torch.randn(1, 5, 5, dtype=torch.float64, generator=gen) for _ in range(3))
    E = E + E.mT

    def grad(X, create_graph=False):
        X = X.clone().requires_grad_()
        root, inv = ef.matrix_sqrt_invsqrt(X, method="svd")
        loss = inv.sum() ** 2 + (root * G).sum()
        return X, torch.autograd.grad(loss, X, create_graph=create_graph)[0]

    X, g = grad(A, create_graph=True)
    (hv,) = torch.autograd.grad((g * W).sum(), X)
    h = 1e-5
    fd = ((grad(A + h * E)[1] - grad(A - h * E)[1]) / (2 * h) * W).sum()
    torch.testing.assert_close((hv * E).sum(), fd, rtol=1e-7, atol=0)


@pytest.mark.parametrize("name", ["svd-pi", "svd-topn", "svd-taylor", "svd-trunc", "svd-clip"])
def test_smoothed_rules_refuse_create_graph(name):
    # Their double backward differentiates the eigenpairs with their own smoothed rule,
    # which disagreed with finite differences of their own gradient (issue 17: svd-pi
    # -6.53 vs -16.50, svd-topn -0.257 vs +0.104): declared unsupported, so it raises.
    assert ef.get("solver", name).second_order is False
    X = random_spd(4, 1, cond=5.0, seed=10).requires_grad_()
    loss = ef.matrix_sqrt(X, method=name).square().sum()
    with pytest.raises(ef.NotSupportedError, match=name) as info:
        torch.autograd.grad(loss, X, create_graph=True)
    assert "'svd-pade'" in str(info.value) and "'svd'" in str(info.value)
