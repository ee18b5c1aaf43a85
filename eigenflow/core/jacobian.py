"""Products with the "normal Jacobian" ``M_z = J^T J`` of a generator, and the simultaneous
power iteration of seed 001 (Ramesh et al., Alg. 2) for its leading eigenpairs.

The generator ``G`` maps latent codes ``(B, m)`` to outputs ``(B, ...)``; ``J`` is the Jacobian
of one sample's flattened output with respect to its code. Products ``J v`` come from the
double-backward trick (seed 001, Appendix A, Listing 1: ``J v = d/du <J^T u, v>``), products
``J^T w`` from ordinary backward, both with ``create_graph=True`` so that anything computed
from them is differentiable with respect to the generator's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["alignment_mask", "leading_eigenpairs", "normal_jacobian_mv"]


def normal_jacobian_mv(
    generator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, k: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``mv(V) = J(z)^T J(z) V`` for ``k`` vectors per latent code.

    The generator runs once on ``z`` repeated ``k`` times (so the ``k`` columns are computed in
    one batched call); it must treat samples independently (no batch statistics).

    Parameters
    ----------
    generator
        Maps ``(B*k, m)`` codes to ``(B*k, ...)`` outputs.
    z
        ``(B, m)`` latent codes (their own gradient is not tracked).
    k
        Number of vectors per code.

    Returns
    -------
    Callable
        ``mv(V)`` for ``V`` of shape ``(B, m, k)``, returning ``(B, m, k)``; differentiable with
        respect to the generator's parameters.
    """
    B, m = z.shape
    z_rep = z.detach()[:, None, :].expand(B, k, m).reshape(B * k, m)

    def flat(codes: torch.Tensor) -> torch.Tensor:
        return generator(codes).reshape(B * k, -1)

    # Forward mode for J v, reverse mode for J^T (J v): torch.func transforms, which
    # torch.compile traces whole (torch.autograd.grad inside a traced region it does not), and
    # which stay differentiable in the generator's parameters (captured tensors).
    _, pullback = torch.func.vjp(flat, z_rep)

    def mv(V: torch.Tensor) -> torch.Tensor:
        v = V.mT.reshape(B * k, m)
        _, Jv = torch.func.jvp(flat, (z_rep,), (v,))
        (JtJv,) = pullback(Jv)
        return JtJv.reshape(B, k, m).mT

    return mv


def alignment_mask(m: int, k: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The mask ``M_k`` of seed 001 Eq. 11, ``(m, k)``: column ``j`` is zero in rows ``< j``.

    Zeroing the first ``j`` coordinates projects onto ``span(e_1, .., e_j)^perp``, valid once the
    leading ``j`` eigenvectors are aligned with the first ``j`` axes.
    """
    rows = torch.arange(m, device=device)[:, None]
    cols = torch.arange(k, device=device)[None, :]
    return (rows >= cols).to(dtype)


def leading_eigenpairs(
    mv: Callable[[torch.Tensor], torch.Tensor],
    V: torch.Tensor,
    iters: int,
    *,
    masked: bool = True,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simultaneous power iteration for the top-``k`` eigenpairs (seed 001, Alg. 2).

    ``V_0 = M_k o V``; ``T`` times: ``V <- M_k o mv(V)``, ``Lambda = column norms``,
    ``V <- V (Lambda + eps I)^{-1}``.

    Parameters
    ----------
    mv
        ``(..., m, k) -> (..., m, k)`` products with a symmetric PSD matrix.
    V
        ``(..., m, k)`` initial estimates (e.g. Rademacher).
    iters
        Number ``T >= 1`` of power iterations.
    masked
        Apply the mask ``M_k`` (Eq. 11); without it every column converges to the top
        eigenvector.
    eps
        Guard against division by small norms (Alg. 2 uses ``1e-8``).

    Returns
    -------
    tuple
        ``(Lambda, V)``: ``(..., k)`` eigenvalue estimates and ``(..., m, k)`` unit eigenvector
        estimates.
    """
    m, k = V.shape[-2:]
    mask = alignment_mask(m, k, dtype=V.dtype, device=V.device) if masked else None
    if mask is not None:
        V = mask * V
    lam = V.new_zeros((*V.shape[:-2], k))
    for _ in range(iters):
        V = mv(V)
        if mask is not None:
            V = mask * V
        lam = torch.linalg.vector_norm(V, dim=-2)
        V = V / (lam + eps)[..., None, :]
    return lam, V
