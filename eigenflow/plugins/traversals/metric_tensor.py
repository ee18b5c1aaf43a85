"""The metric tensor ``H(z) = J(z)^T J(z)`` of a map ``phi: R^d -> R^P`` (a generator, or a
generator followed by a feature map), as the Hessian of the pulled-back squared distance
``d^2(z0, z) = 1/2 ||phi(z) - phi(z0)||^2`` at ``z = z0`` (seed 003, Eq. 1-2 and App. A.2).

``phi`` maps a batch ``(B, d)`` to ``(B, ...)`` and must treat samples independently; every
operator here is batched over ``B`` (one metric per code).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "hvp_operator",
    "metric_by_backprop",
    "metric_by_jacobian",
    "spectrum_consistency",
    "squared_distance_gradient",
]

Map = Callable[[torch.Tensor], torch.Tensor]


def squared_distance_gradient(phi: Map, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, g)``: a leaf copy ``z`` of ``z0 (B, d)`` and ``g = d/dz d^2(z0, z)`` with its graph
    kept, so that Hessian-vector products can be taken by back-propagating through ``g``."""
    target = phi(z0.detach()).detach()
    z = z0.detach().clone().requires_grad_(True)
    d2 = 0.5 * (phi(z) - target).flatten(1).square().sum()
    (g,) = torch.autograd.grad(d2, z, create_graph=True)
    return z, g


def hvp_operator(
    phi: Map, z0: torch.Tensor, mode: str = "backward", fd_eps: float = 1e-3
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v (B, d) -> H(z0) v`` without forming ``H`` (seed 003, Eq. 7-8).

    Parameters
    ----------
    phi
        The map whose metric is wanted.
    z0
        ``(B, d)`` base points.
    mode
        ``"backward"``: ``d/dz (v^T g(z))`` by double back-propagation (Eq. 7);
        ``"forward"``: the directional derivative of ``g`` by forward-mode AD
        (``torch.func.jvp``; ``phi`` must be ``torch.func``-compatible);
        ``"finite-difference"``: ``(g(z0 + e v) - g(z0 - e v)) / 2e`` with ``e = fd_eps / ||v||``
        (Eq. 8, first-order gradients only).
    fd_eps
        Step of the finite difference, in latent units.
    """
    if mode == "backward":
        z, g = squared_distance_gradient(phi, z0)

        def mv(v: torch.Tensor) -> torch.Tensor:
            (hv,) = torch.autograd.grad(g, z, v, retain_graph=True)
            return hv

        return mv
    target = phi(z0.detach()).detach()

    def grad_at(z: torch.Tensor) -> torch.Tensor:
        z = z.detach().requires_grad_(True)
        d2 = 0.5 * (phi(z) - target).flatten(1).square().sum()
        (g,) = torch.autograd.grad(d2, z)
        return g

    if mode == "finite-difference":

        def mv(v: torch.Tensor) -> torch.Tensor:
            norm = v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
            step = fd_eps * v / norm
            with torch.enable_grad():
                diff = grad_at(z0 + step) - grad_at(z0 - step)
            return diff * norm / (2 * fd_eps)

        return mv
    if mode == "forward":

        def d2_total(z: torch.Tensor) -> torch.Tensor:
            return 0.5 * (phi(z) - target).flatten(1).square().sum()

        grad_fn = torch.func.grad(d2_total)

        def mv(v: torch.Tensor) -> torch.Tensor:
            _, hv = torch.func.jvp(grad_fn, (z0.detach(),), (v,))
            return hv

        return mv
    raise ValueError(f"mode must be 'backward', 'forward' or 'finite-difference', got {mode!r}")


def metric_by_backprop(phi: Map, z0: torch.Tensor) -> torch.Tensor:
    """The full ``H(z0) (B, d, d)`` by back-propagating through ``g`` once per latent
    dimension (seed 003's "Full BackProp"; cost proportional to ``d``)."""
    z, g = squared_distance_gradient(phi, z0)
    d = z.shape[-1]
    rows = []
    for i in range(d):
        (col,) = torch.autograd.grad(g[:, i].sum(), z, retain_graph=i < d - 1)
        rows.append(col)
    H = torch.stack(rows, dim=-2)
    return 0.5 * (H + H.mT)


def metric_by_jacobian(phi: Map, z0: torch.Tensor) -> torch.Tensor:
    """``J^T J (B, d, d)`` from the explicit Jacobian (forward mode, one pass per latent
    dimension; for small latents and as a reference)."""
    z0 = z0.detach()
    B, d = z0.shape
    basis = torch.eye(d, dtype=z0.dtype, device=z0.device)
    cols = []
    for i in range(d):
        _, jv = torch.func.jvp(phi, (z0,), (basis[i].expand(B, d),))
        cols.append(jv.reshape(B, -1))
    J = torch.stack(cols, dim=-1)  # (B, P, d)
    return J.mT @ J


def spectrum_consistency(
    U_i: torch.Tensor, H_j: torch.Tensor, L_j: torch.Tensor, log: bool = True
) -> torch.Tensor:
    """Seed 003 Eq. 5-6: ``corr(diag(U_i^T H_j U_i), Lambda_j)`` (on log scale by default).

    ``U_i (d, r)`` eigenvectors at ``z_i``; ``H_j (d, d)`` and its eigenvalues ``L_j (r,)`` at
    ``z_j`` (same order as the columns of ``U_i``). Returns a scalar tensor.
    """
    lam_ij = torch.einsum("dr,de,er->r", U_i, H_j, U_i)
    a, b = lam_ij, L_j
    if log:
        floor = torch.finfo(a.dtype).tiny
        a, b = a.clamp_min(floor).log(), b.clamp_min(floor).log()
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny)
