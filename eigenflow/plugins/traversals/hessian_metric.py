"""Traversal ``hessian-metric`` and metric ``hessian-spectrum``: the metric tensor
``H(z) = J^T J`` of a generator, or of a generator followed by a feature map (seed 003)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...core.component import FitContext, Metric, Traversal
from ...core.config import config, floating, integer, one_of, option, optional
from .common import check_index, check_latents, linear_path, require_fitted
from .krylov import lanczos_topk
from .metric_tensor import hvp_operator, metric_by_backprop, spectrum_consistency

__all__ = ["HessianMetric", "HessianMetricConfig", "HessianSpectrum", "anisotropy"]

Map = Callable[[torch.Tensor], torch.Tensor]


def _compose(generator: Map, feature_map: Map | None) -> Map:
    if feature_map is None:
        return generator
    return lambda z: feature_map(generator(z))


@config
class HessianMetricConfig:
    """Options of ``hessian-metric`` (seed 003, Sec. 3 and App. A.2)."""

    num_directions: int = option(10, validator=integer(1), help="top-k eigenpairs kept")
    method: str = option(
        "lanczos",
        validator=one_of(["lanczos", "exact"]),
        help="Lanczos on Hessian-vector products (memory and time grow with k), or the full "
        "Hessian by back-propagation (cost grows with the latent size)",
    )
    hvp: str = option(
        "backward",
        validator=one_of(["backward", "forward", "finite-difference"]),
        help="Hessian-vector products: double backprop (Eq. 7), forward-mode AD, or finite "
        "differences of the gradient (Eq. 8)",
    )
    lanczos_iters: int | None = option(
        None,
        validator=optional(integer(2)),
        help="Krylov dimension (default max(3k + 30, 40))",
    )
    fd_eps: float = option(
        1e-3, validator=floating(0.0, min_open=True), help="finite-difference step (latent units)"
    )
    seed: int = option(0, validator=integer(0), help="seed of the Lanczos start vectors")


class HessianMetric(Traversal):
    """Eigen-directions of the metric tensor ``H(z) = d^2/dz^2 1/2||phi(z) - phi(z0)||^2`` at
    ``z = z0`` (``= J^T J``), where ``phi`` is the generator or ``feature_map(generator)``.

    ``fit(generator, z, feature_map=None)`` computes the top-k eigenpairs of ``H`` at every
    code of ``z (N, d)`` (``local_eigenvalues (N, k)``, ``local_eigenvectors (N, d, k)``) and of
    the average metric over ``z`` (the "global" Hessian of seed 003, Sec. 4), whose
    eigenvectors are ``directions (d, k)``; ``traverse`` moves along them in straight lines.
    """

    Config = HessianMetricConfig
    source = "003 (Wang & Ponce, ICLR 2021), Sec. 3, Eq. 1-2, App. A.2 Eq. 7-8"

    def __init__(self, config: HessianMetricConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self._directions: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None
        self.local_eigenvalues: torch.Tensor | None = None
        self.local_eigenvectors: torch.Tensor | None = None

    def eigenpairs(self, phi: Map, z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` eigenpairs of ``H`` at each code of ``z (N, d)``: ``(N, k)`` descending and
        ``(N, d, k)``, by the configured method."""
        cfg = self.config
        with torch.enable_grad():
            if cfg.method == "exact":
                H = metric_by_backprop(phi, z).detach()
                values, vectors = torch.linalg.eigh(H)
                return values.flip(-1)[:, :k], vectors.flip(-1)[:, :, :k]
            mv = hvp_operator(phi, z, cfg.hvp, cfg.fd_eps)
            gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
            start = torch.randn(z.shape, generator=gen, dtype=z.dtype).to(z.device)
            values, vectors = lanczos_topk(lambda v: mv(v).detach(), start, k, cfg.lanczos_iters)
        return values.detach(), vectors.detach()

    def fit_context(self, ctx: FitContext) -> HessianMetric:
        """Fit on ``ctx.generator`` at the codes ``ctx.z``."""
        return self.fit(ctx.generator, ctx.z)

    def fit(self, generator: Map, z: torch.Tensor, feature_map: Map | None = None) -> HessianMetric:
        """Local and average-metric eigenpairs over the codes ``z (N, d)``."""
        z = check_latents(z).detach()
        phi = _compose(generator, feature_map)
        k = min(self.config.num_directions, z.shape[1])
        self.local_eigenvalues, self.local_eigenvectors = self.eigenpairs(phi, z, k)
        self.eigenvalues, self._directions = self._average_metric_eigenpairs(phi, z, k)
        return self

    def _average_metric_eigenpairs(
        self, phi: Map, z: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        with torch.enable_grad():
            if cfg.method == "exact":
                H = metric_by_backprop(phi, z).detach().mean(0)
                values, vectors = torch.linalg.eigh(H)
                return values.flip(-1)[:k], vectors.flip(-1)[:, :k]
            mv = hvp_operator(phi, z, cfg.hvp, cfg.fd_eps)
            n = z.shape[0]

            def mean_mv(v: torch.Tensor) -> torch.Tensor:
                return mv(v.expand(n, -1)).detach().mean(0, keepdim=True)

            gen = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)
            start = torch.randn(1, z.shape[1], generator=gen, dtype=z.dtype).to(z.device)
            values, vectors = lanczos_topk(mean_mv, start, k, cfg.lanczos_iters)
        return values[0], vectors[0]

    @property
    def directions(self) -> torch.Tensor:
        """``(d, k)`` eigenvectors of the average metric, by decreasing eigenvalue."""
        require_fitted(self._directions, "hessian-metric", "directions")
        return self._directions

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int = 10, step_size: float = 0.5
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` from ``z0`` along global eigen-direction ``k``."""
        directions = self.directions
        check_index(k, directions.shape[1], "hessian-metric")
        z = check_latents(z0, directions.shape[0])
        return linear_path(z, directions[:, k], steps, step_size)


def anisotropy(eigenvalues: torch.Tensor, fraction: float = 0.99) -> torch.Tensor:
    """How many of the largest eigenvalues ``(..., d)`` hold ``fraction`` of the trace."""
    values = eigenvalues.clamp_min(0).sort(dim=-1, descending=True).values
    total = values.sum(-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    share = values.cumsum(-1) / total
    return (share < fraction).sum(-1) + 1


@config
class HessianSpectrumConfig:
    """Options of ``hessian-spectrum`` (seed 003, Sec. 4, Eq. 5-6, Table 2)."""

    fraction: float = option(
        0.99,
        validator=floating(0.0, 1.0, min_open=True, max_open=True),
        help="share of the trace that defines the anisotropy count",
    )


class HessianSpectrum(Metric):
    """Spectrum summary of the metric tensor over codes ``z (N, d)``: ``anisotropy`` (mean
    number of eigenvalues holding ``fraction`` of the trace, and as a share of ``d``) and
    ``homogeneity`` (mean over ordered pairs ``i != j`` of the log-scale correlation of
    Eq. 6 between ``diag(U_i^T H_j U_i)`` and ``Lambda_j``). Uses the full Hessian by
    back-propagation. ``compute(generator, z, feature_map=None) -> dict``."""

    Config = HessianSpectrumConfig
    source = "003 (Wang & Ponce, ICLR 2021), Sec. 4, Eq. 5-6"

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """A small random generator ``R^3 -> R^6`` and 3 codes."""
        from .metrics import example_generator

        z = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
        return (example_generator(), z), {}

    def compute(
        self, generator: Map, z: torch.Tensor, feature_map: Map | None = None
    ) -> dict[str, Any]:
        z = check_latents(z).detach()
        with torch.enable_grad():
            H = metric_by_backprop(_compose(generator, feature_map), z).detach()
        values, vectors = torch.linalg.eigh(H)
        values, vectors = values.flip(-1), vectors.flip(-1)
        counts = anisotropy(values, self.config.fraction).to(torch.float64)
        n = z.shape[0]
        corr = [
            float(spectrum_consistency(vectors[i], H[j], values[j]))
            for i in range(n)
            for j in range(n)
            if i != j
        ]
        return {
            "anisotropy": float(counts.mean()),
            "anisotropy_share": float(counts.mean() / z.shape[1]),
            "homogeneity": float(sum(corr) / len(corr)) if corr else float("nan"),
            "mean_log10_eigenvalues": values.clamp_min(1e-300).log10().mean(0).tolist(),
        }
