"""Example eigenflow plugin: the Denman-Beavers square root and a residual metric."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from eigenflow.core import Metric, Solver, config, option
from eigenflow.core.config import integer
from eigenflow.registry import hookimpl


@config
class DenmanBeaversConfig:
    """Options of ``denman-beavers`` (Denman and Beavers, 1976)."""

    iters: int = option(20, validator=integer(1), help="number of coupled iterations")


class DenmanBeavers(Solver):
    """Denman-Beavers iteration ``Y <- (Y + Z^-1)/2, Z <- (Z + Y^-1)/2`` from ``Y = A/c, Z = I``.

    Converges quadratically to ``(A/c)^(1/2)`` and ``(A/c)^(-1/2)``; ``c = ||A||_F`` per matrix.
    The gradient is autograd's through the iteration (exact for the computed forward).
    """

    Config = DenmanBeaversConfig
    source = "Denman & Beavers (1976), Appl. Math. Comput. 2(1)"
    exact_gradient = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-5, torch.float64: 1e-12}

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.linalg.matrix_norm(A).clamp_min(torch.finfo(A.dtype).tiny)[:, None, None]
        Y = A / c
        Z = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device).expand_as(A)
        for _ in range(self.config.iters):
            # inv_ex: no host synchronisation for error checks
            Y, Z = 0.5 * (Y + torch.linalg.inv_ex(Z)[0]), 0.5 * (Z + torch.linalg.inv_ex(Y)[0])
        return Y * c.sqrt(), Z / c.sqrt()


@config
class SqrtResidualConfig:
    """Options of ``sqrt-residual`` (none)."""


class SqrtResidual(Metric):
    """Relative residual ``max over the batch of ||S S - A||_F / ||A||_F`` of a square root."""

    Config = SqrtResidualConfig
    source = "eigenflow-plugin-example"

    def compute(self, S: torch.Tensor, A: torch.Tensor) -> float:
        residual = torch.linalg.matrix_norm(S @ S - A) / torch.linalg.matrix_norm(A)
        return float(residual.max())

    @classmethod
    def example_inputs(cls) -> tuple[tuple[Any, ...], dict[str, Any]]:
        A = torch.eye(3, dtype=torch.float64) * 4.0
        return (2.0 * torch.eye(3, dtype=torch.float64), A), {}


@hookimpl
def eigenflow_register(registry):
    registry.add("solver", DenmanBeavers, name="denman-beavers")
    registry.add("metric", SqrtResidual, name="sqrt-residual")
