"""Learned latent potentials ``u^k(z, t)`` and the PDE residuals that train them.

Thesis 000, Sec. 4.5-4.6: a latent code moves along the gradient of a scalar potential,
``z_t = z_{t-1} + grad_z u^k(z_{t-1}, t)`` (Eq. 4.6), and each potential is a small MLP of
``[z; t]`` with a sinusoidal time embedding (Sec. 4.5.2, "MLP for Modeling PDEs"). The PDE
constraints are imposed as physics-informed (PINN) residuals:

- wave equation (Eq. 4.7): ``d^2 u / dt^2 - c^2 Laplacian_z u``;
- Hamilton-Jacobi with a non-positive driving force (Eq. 4.33-4.34):
  ``du/dt + 0.5 ||grad_z u||^2 - f`` with ``f = -MLP([z; t])^2``.

All K potentials of a family are evaluated at once with stacked weights (no Python loop over
potentials or over the batch); a per-sample weight vector ``w (B, K)`` selects one potential
(one-hot), mixes them (Gumbel-softmax weights, Eq. 4.23) or superposes them (all ones,
Sec. 4.6.4).

The Laplacian is computed exactly (one Hessian-vector product per latent dimension, batched
with ``is_grads_batched``) or by Hutchinson's estimator ``E_v[v^T H v]`` with Rademacher
probes ``v`` (unbiased because ``E[v v^T] = I``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "FlowStep",
    "PotentialFamily",
    "SinusoidalTimeEmbedding",
    "StackedLinear",
    "exact_laplacian",
    "hessian",
    "hj_residual",
    "hutchinson_laplacian",
    "potential_derivatives",
    "wave_residual",
]


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style embedding of a scalar time: ``[sin(t w_i), cos(t w_i)]``.

    ``w_i = 10000^(-i / (half - 1))`` for ``i < half = dim // 2``. Differentiable in ``t``,
    which the PDE residuals need (``du/dt``, ``d^2u/dt^2``).

    Parameters
    ----------
    dim
        Embedding size (even, >= 4).
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t (B,)`` -> ``(B, dim)``."""
        angles = t.unsqueeze(-1) * self.freqs.to(t.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class StackedLinear(nn.Module):
    """K independent linear maps applied at once: ``(B, K, n_in) -> (B, K, n_out)``.

    An input of shape ``(B, n_in)`` is shared by the K maps. Initialised like ``nn.Linear``.
    """

    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_in)`` or ``(B, K, n_in)`` -> ``(B, K, n_out)``."""
        if x.dim() == 2:
            return torch.einsum("bi,kio->bko", x, self.weight) + self.bias
        return torch.einsum("bki,kio->bko", x, self.weight) + self.bias


class PotentialFamily(nn.Module):
    """K scalar fields ``u^k(z, t) = MLP_k([z; t])`` (thesis 000, Sec. 4.5.2).

    Space branch ``tanh(W_z z)``, time branch ``W_2 gelu(W_1 emb(t))``, fused by addition
    and a ``tanh`` layer, then a linear read-out to a scalar; separate weights per k.
    ``squared_negative=True`` returns ``-MLP^2`` instead (the non-positive force ``f`` of
    Eq. 4.34).

    Parameters
    ----------
    num_potentials
        K.
    latent_dim
        d, the size of ``z``.
    hidden
        Hidden width of every layer.
    time_dim
        Size of the sinusoidal time embedding.
    squared_negative
        Output ``-MLP^2`` (a non-positive field).
    """

    def __init__(
        self,
        num_potentials: int,
        latent_dim: int,
        hidden: int = 64,
        time_dim: int = 32,
        squared_negative: bool = False,
    ):
        super().__init__()
        self.num_potentials = num_potentials
        self.latent_dim = latent_dim
        self.squared_negative = squared_negative
        self.embed = SinusoidalTimeEmbedding(time_dim)
        self.space = StackedLinear(num_potentials, latent_dim, hidden)
        self.time1 = StackedLinear(num_potentials, time_dim, hidden)
        self.time2 = StackedLinear(num_potentials, hidden, hidden)
        self.fuse = StackedLinear(num_potentials, hidden, hidden)
        self.out = StackedLinear(num_potentials, hidden, 1)

    def all(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Every potential at every point: ``z (B, d)``, ``t (B,)`` -> ``(B, K)``."""
        hz = torch.tanh(self.space(z))
        ht = self.time2(nn.functional.gelu(self.time1(self.embed(t))))
        h = torch.tanh(self.fuse(hz + ht))
        u = self.out(h).squeeze(-1)
        return -u.square() if self.squared_negative else u

    def forward(self, z: torch.Tensor, t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k u^k(z, t)``: ``z (B, d)``, ``t (B,)``, ``weights (B, K)`` -> ``(B,)``."""
        return (self.all(z, t) * weights).sum(-1)


class FlowStep(NamedTuple):
    """Derivatives of a potential at ``(z, t)``; every field is per sample."""

    u: torch.Tensor  # (B,)
    grad_z: torch.Tensor  # (B, d)
    du_dt: torch.Tensor  # (B,)
    laplacian: torch.Tensor | None  # (B,) or None when not requested


def exact_laplacian(grad_z: torch.Tensor, z: torch.Tensor, *, create_graph: bool) -> torch.Tensor:
    """``tr(d grad_z / d z)`` per sample: the trace of :func:`hessian`.

    ``grad_z (B, d)`` must be the gradient of a sum over independent samples (so that the
    Hessian is block diagonal across the batch). Cost: d backward passes, batched.
    """
    return torch.diagonal(hessian(grad_z, z, create_graph=create_graph), dim1=-2, dim2=-1).sum(-1)


def hutchinson_laplacian(
    grad_z: torch.Tensor,
    z: torch.Tensor,
    *,
    probes: int = 1,
    create_graph: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hutchinson's unbiased estimate ``mean_v v^T H v`` of the Laplacian, Rademacher ``v``.

    Parameters
    ----------
    grad_z, z
        As for :func:`exact_laplacian`.
    probes
        Number of probe vectors averaged (each one Hessian-vector product, batched).
    generator
        Optional random generator for the probes.
    """
    v = torch.randint(0, 2, (probes, *z.shape), device=z.device, generator=generator)
    v = v.to(z.dtype) * 2.0 - 1.0
    (hv,) = torch.autograd.grad(
        grad_z,
        z,
        grad_outputs=v,
        create_graph=create_graph,
        retain_graph=True,
        is_grads_batched=True,
    )
    return (hv * v).sum(-1).mean(0)


def potential_derivatives(
    field: nn.Module,
    z: torch.Tensor,
    t: torch.Tensor,
    weights: torch.Tensor,
    *,
    laplacian: str | None = "exact",
    probes: int = 1,
    create_graph: bool = True,
) -> FlowStep:
    """Evaluate ``u = field(z, t, weights)`` with ``grad_z u``, ``du/dt`` and the Laplacian.

    Parameters
    ----------
    field
        A module mapping ``(z (B, d), t (B,), weights (B, K)) -> (B,)``.
    z
        ``(B, d)`` points (need not require grad: a differentiable view is made).
    t
        ``(B,)`` times.
    weights
        ``(B, K)`` potential weights.
    laplacian
        ``"exact"``, ``"hutchinson"`` or ``None`` (skip).
    probes
        Hutchinson probes.
    create_graph
        Keep the graph so losses of these derivatives can be trained (``False`` at test
        time).
    """
    if not z.requires_grad:
        z = z.detach().requires_grad_(True)
    t = t.detach().to(z.dtype).requires_grad_(True)
    with torch.enable_grad():
        u = field(z, t, weights)
        grad_z, du_dt = torch.autograd.grad(u.sum(), (z, t), create_graph=True)
        lap = None
        if laplacian == "exact":
            lap = exact_laplacian(grad_z, z, create_graph=create_graph)
        elif laplacian == "hutchinson":
            lap = hutchinson_laplacian(grad_z, z, probes=probes, create_graph=create_graph)
        elif laplacian is not None:
            raise ValueError(f"laplacian must be 'exact', 'hutchinson' or None, got {laplacian!r}")
    if not create_graph:
        u, grad_z, du_dt = u.detach(), grad_z.detach(), du_dt.detach()
        lap = None if lap is None else lap.detach()
    return FlowStep(u, grad_z, du_dt, lap)


def hj_residual(step: FlowStep, force: torch.Tensor) -> torch.Tensor:
    """Hamilton-Jacobi residual ``du/dt + 0.5 ||grad_z u||^2 - f`` (Eq. 4.33); ``(B,)``."""
    return step.du_dt + 0.5 * step.grad_z.square().sum(-1) - force


def wave_residual(
    field: nn.Module,
    z: torch.Tensor,
    t: torch.Tensor,
    weights: torch.Tensor,
    c: torch.Tensor,
    *,
    laplacian: str = "exact",
    probes: int = 1,
) -> tuple[torch.Tensor, FlowStep]:
    """Wave-equation residual ``d^2u/dt^2 - c^2 Laplacian_z u`` (Eq. 4.7) and the step.

    Returns
    -------
    tuple
        ``(residual, step)``: the ``(B,)`` residual and the :class:`FlowStep`, which carries
        ``grad_z u`` for the update of Eq. 4.6.
    """
    z = z if z.requires_grad else z.detach().requires_grad_(True)
    t = t.detach().to(z.dtype).requires_grad_(True)
    with torch.enable_grad():
        u = field(z, t, weights)
        grad_z, du_dt = torch.autograd.grad(u.sum(), (z, t), create_graph=True)
        (d2u_dt2,) = torch.autograd.grad(du_dt.sum(), t, create_graph=True)
        if laplacian == "exact":
            lap = exact_laplacian(grad_z, z, create_graph=True)
        else:
            lap = hutchinson_laplacian(grad_z, z, probes=probes, create_graph=True)
    step = FlowStep(u, grad_z, du_dt, lap)
    return d2u_dt2 - c.square() * lap, step


def hessian(grad_z: torch.Tensor, z: torch.Tensor, *, create_graph: bool) -> torch.Tensor:
    """Per-sample Hessian ``(B, d, d)`` from ``grad_z (B, d)`` (d batched Hessian-vector
    products; for small latents)."""
    d = z.shape[-1]
    eye = torch.eye(d, dtype=z.dtype, device=z.device).unsqueeze(1).expand(d, *z.shape)
    (rows,) = torch.autograd.grad(
        grad_z,
        z,
        grad_outputs=eye,
        create_graph=create_graph,
        retain_graph=True,
        is_grads_batched=True,
    )
    return rows.transpose(0, 1)
