"""Solver ``svd-taylor``: exact ``eigh`` forward, backward with ``K`` from a Taylor polynomial."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.config import config, integer, option
from ...core.eigh_solver import EighSolver, eps_option
from ...core.gradient_rules import taylor_rule

__all__ = ["SVDTaylorConfig", "SVDTaylorSolver"]


@config
class SVDTaylorConfig:
    """Options of ``svd-taylor`` (thesis 000, Sec. 3.3.1, Eq. 3.11-3.13).

    ``degree`` 100 is the thesis's (Table 3.1 compares Taylor and Padé at degree 100; Table 3.2's
    maximum ``4.55e17 = (100 + 1)/EPS``).
    """

    degree: int = option(
        100, validator=integer(0, 10_000), help="degree K of the truncated geometric series"
    )
    eps: float | None = eps_option()


class SVDTaylorSolver(EighSolver):
    """Eigendecomposition with gradients from the truncated geometric series (SVD-Taylor).

    Backward: Eq. 3.6 with ``1/(lambda_j - lambda_i)`` replaced, for ``lambda_j >= lambda_i``,
    by ``(1/lambda_j) sum_{k=0}^{K} (lambda_i/lambda_j)^k`` (Eq. 3.13), the upper/lower
    triangle split keeping the ratio in ``[0, 1]``. Bounded by ``(K+1)/lambda_j``; the relative
    error is ``(lambda_i/lambda_j)^(K+1)``, large for close eigenvalues.
    """

    Config = SVDTaylorConfig
    source = "000 (Song 2023), Sec. 3.3.1, Eq. 3.11-3.13"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-4, torch.float64: 1e-11}

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        return taylor_rule(L, degree=self.config.degree, eps=self.config.eps)
