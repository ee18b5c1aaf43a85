"""Traversal ``jacobian-path``: follow the k-th leading right-singular vector of the
generator Jacobian (seed 001, Alg. 1), with eigenpairs by simultaneous power iteration on
Jacobian-vector products (Alg. 2) or exactly for small latents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...core.component import FitContext, Traversal
from ...core.config import config, floating, integer, one_of, option
from ...core.jacobian import normal_jacobian_mv
from ...core.spectral import canonical_signs
from .common import check_index, check_latents, require_fitted
from .krylov import subspace_iteration
from .metric_tensor import metric_by_jacobian

__all__ = ["JacobianPath", "JacobianPathConfig"]


@config
class JacobianPathConfig:
    """Options of ``jacobian-path`` (seed 001, Alg. 1-2; ``alpha`` and ``rho`` from Fig. 2:
    ``alpha = 5e-3, rho = 0.99``)."""

    alpha: float = option(5e-3, validator=floating(0.0, min_open=True), help="step size alpha")
    rho: float = option(
        0.99, validator=floating(0.0, 1.0, max_open=True), help="decay factor rho in [0, 1)"
    )
    method: str = option(
        "power",
        validator=one_of(["power", "exact"]),
        help="eigenvectors of J^T J by simultaneous power iteration on Jacobian-vector products "
        "(Alg. 2, warm-started along the path) or exactly from the full Jacobian (small latents)",
    )
    power_iters: int = option(
        10, validator=integer(1), help="power iterations T per path step (method='power')"
    )
    seed: int = option(0, validator=integer(0), help="seed of the initial power-iteration vectors")


class JacobianPath(Traversal):
    """Trace ``z_i = z_{i-1} - alpha w_i`` where ``w_i`` is the k-th leading eigenvector of
    ``M_z = J^T J`` at ``z_{i-1}``, sign-aligned with ``w_{i-1}`` and smoothed by
    ``w_i <- rho w_{i-1} + (1 - rho) w_i`` (Alg. 1). ``k`` counts from 0 (the leading one).

    ``fit(generator)`` stores the generator (``(B, d) -> (B, ...)``, samples independent);
    the path is non-linear, so there is no global ``directions``; ``local_directions(z, k)``
    gives the leading eigenvectors at given codes.
    """

    Config = JacobianPathConfig
    source = "001 (Ramesh et al.), Alg. 1 and Alg. 2"

    def __init__(self, config: JacobianPathConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.generator: Callable[[torch.Tensor], torch.Tensor] | None = None

    def fit_context(self, ctx: FitContext) -> JacobianPath:
        """Fit on ``ctx.generator``."""
        return self.fit(ctx.generator)

    def fit(self, generator: Callable[[torch.Tensor], torch.Tensor]) -> JacobianPath:
        """Use ``generator`` for the Jacobians."""
        self.generator = generator
        return self

    def local_directions(
        self, z: torch.Tensor, k: int, start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Leading ``k`` eigenpairs of ``J^T J`` at ``z (B, d)``: values ``(B, k)`` descending and
        vectors ``(B, d, k)``; ``start`` warm-starts the power iteration."""
        require_fitted(self.generator, "jacobian-path", "local_directions")
        z = check_latents(z)
        with torch.enable_grad():
            if self.config.method == "exact":
                H = metric_by_jacobian(self.generator, z).detach()
                values, vectors = torch.linalg.eigh(0.5 * (H + H.mT))
                return values.flip(-1)[:, :k], vectors.flip(-1)[:, :, :k]
            if start is None:
                gen = torch.Generator(device="cpu").manual_seed(self.config.seed)
                start = torch.randn(z.shape[0], z.shape[1], k, generator=gen, dtype=z.dtype)
                start = start.to(z.device)
            mv = normal_jacobian_mv(self.generator, z, k)

            def detached_mv(V: torch.Tensor) -> torch.Tensor:
                return mv(V).detach()

            values, vectors = subspace_iteration(detached_mv, start, self.config.power_iters)
        return values.detach(), vectors.detach()

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int = 20, step_size: float | None = None
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` following the k-th eigenvector from ``z0 (B, d)``."""
        require_fitted(self.generator, "jacobian-path", "traverse")
        z = check_latents(z0).detach()
        check_index(k, z.shape[1], "jacobian-path")
        alpha = self.config.alpha if step_size is None else step_size
        rho = self.config.rho
        path = [z]
        w_prev: torch.Tensor | None = None
        vectors: torch.Tensor | None = None
        for _ in range(steps):
            _, vectors = self.local_directions(z, k + 1, start=vectors)
            w = vectors[:, :, k]
            if w_prev is None:  # the first step's sign is the eigensolver's: fix it
                w = canonical_signs(w.unsqueeze(-1)).squeeze(-1)
            else:
                # Alg. 1 lines 9-12: no backtracking, then decay
                flip = (w * w_prev).sum(-1, keepdim=True) < 0
                w = torch.where(flip, -w, w)
                w = rho * w_prev + (1 - rho) * w
            z = z - alpha * w
            path.append(z)
            w_prev = w
        return torch.stack(path)
