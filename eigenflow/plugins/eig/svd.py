"""Solver ``svd``: eigendecomposition forward with the standard analytic backward."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.config import config, floating, option, optional
from ...core.eigh_solver import EighSolver

__all__ = ["SVDConfig", "SVDSolver"]


@config
class SVDConfig:
    """Options of ``svd`` (thesis 000, Sec. 3.2, Eq. 3.1-3.7).

    The thesis has no eigenvalue floor; ``eps`` is eigenflow's guard that keeps the square
    root of singular PSD input finite (0 disables it).
    """

    eps: float | None = option(
        None,
        validator=optional(floating(0.0, 1.0)),
        help="relative eigenvalue floor eps * lambda_max for sqrt/invsqrt "
        "(None: the dtype's machine epsilon; 0: no floor)",
    )


class SVDSolver(EighSolver):
    """Exact eigendecomposition (``torch.linalg.eigh``) with the standard backward.

    Forward ``A = U diag(lambda) U^T`` (Eq. 3.2); square root and inverse square root from the
    eigenpairs (Eq. 3.3); backward by Eq. 3.4-3.7 with ``K_ij = 1/(lambda_i - lambda_j)``.
    The gradient is exact but unbounded when two eigenvalues meet: on the identity or on
    matrices with repeated eigenvalues it is non-finite. Use ``svd-pade`` there.
    """

    Config = SVDConfig
    source = "000 (Song 2023), Sec. 3.2, Eq. 3.1-3.7"
    exact_gradient: ClassVar[bool] = True
    robust_gradient: ClassVar[bool] = False
    # Double backward through the exact rule: the exact second derivative on distinct
    # eigenvalues (gradgradcheck), non-finite on ties like the first derivative.
    second_order: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-4, torch.float64: 1e-11}
