"""The smooth-gradient baselines of thesis 000, Sec. 3.3.1 and Table 2.3: ``svd-pi``,
``svd-trunc``, ``svd-topn`` and ``svd-clip``. Each keeps the exact ``eigh`` forward and changes
only the backward (the ``K`` matrix of Eq. 3.6 and, for PI and TopN, which eigenpairs carry
gradient)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import attrs
import torch

from ...core.config import config, floating, integer, option
from ...core.eigh_solver import EighSolver, eps_option
from ...core.errors import ConfigError
from ...core.gradient_rules import clip_rule, power_iteration_rule, topn_rule, truncation_rule

__all__ = [
    "SVDClipConfig",
    "SVDClipSolver",
    "SVDPIConfig",
    "SVDPISolver",
    "SVDTopNConfig",
    "SVDTopNSolver",
    "SVDTruncConfig",
    "SVDTruncSolver",
]

_RTOL: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float64: 1e-11}


# --------------------------------------------------------------------------- SVD-PI


@config
class SVDPIConfig:
    """Options of ``svd-pi`` (thesis 000, Sec. 3.3.1, Eq. 3.10; Wang et al. [252]).

    The thesis gives no iteration count; 20 is the count of the public SVD-PI code that
    accompanies the thesis's experiments (Tables 2.3, 3.3).
    """

    iterations: int = option(
        20, validator=integer(0, 10_000), help="power iterations (terms of the Neumann series)"
    )
    eps: float | None = eps_option()


class SVDPISolver(EighSolver):
    """Power-iteration gradient (SVD-PI): only the dominant eigenpair carries gradient.

    Backward (Eq. 3.10): ``dl/dA`` from ``(lambda_1, u_1)`` alone, the coupling
    ``(lambda_1 I - A)^+`` approximated by ``iterations`` steps of power iteration, i.e.
    ``K_1j = (1/lambda_1) sum_{k<=iterations} (lambda_j/lambda_1)^k``. The gradients of the
    other eigenpairs are dropped, so matrix-function gradients are approximate even for well
    separated spectra; it assumes a dominant first eigenvalue (which the thesis finds is not
    the case in GCP training, Fig. 3.1).
    """

    Config = SVDPIConfig
    source = "000 (Song 2023), Sec. 3.3.1, Eq. 3.10"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = _RTOL

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        return power_iteration_rule(L, iterations=self.config.iterations, eps=self.config.eps)

    def gradient_mask(self, L: torch.Tensor) -> torch.Tensor:
        n = L.shape[-1]
        return (torch.arange(n, device=L.device) == n - 1).to(L.dtype).expand_as(L)


# --------------------------------------------------------------------------- SVD-Trunc


@config
class SVDTruncConfig:
    """Options of ``svd-trunc`` (thesis 000, Sec. 3.3.1, Eq. 3.9).

    ``threshold`` T = 1e10 is the thesis's (Table 3.2, maximal value of SVD-Trunc).
    """

    threshold: float = option(
        1e10,
        validator=floating(0.0, min_open=True),
        help="T: |K_ij| is truncated to T (absolute, in the units of 1/eigenvalue)",
    )
    eps: float | None = eps_option()


class SVDTruncSolver(EighSolver):
    """Gradient truncation (SVD-Trunc): ``K_ij = 1/(lambda_i - lambda_j)`` truncated to
    ``[-T, T]`` (Eq. 3.9). Exact wherever ``|lambda_i - lambda_j| >= 1/T``; the threshold is
    absolute, so its effect depends on the scale of the input."""

    Config = SVDTruncConfig
    source = "000 (Song 2023), Sec. 3.3.1, Eq. 3.9, Table 3.2"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = _RTOL

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        return truncation_rule(L, threshold=self.config.threshold)


# --------------------------------------------------------------------------- SVD-Clip


@config
class SVDClipConfig:
    """Options of ``svd-clip`` (thesis 000, Table 2.3: "ordinary SVD with clipping gradient").

    The thesis gives no clipping level. eigenflow clips ``|K_ij|`` at
    ``max_value / max|lambda|`` (relative, so the rule is scale invariant); the default 1e6
    treats eigenvalue gaps below ``1e-6 max|lambda|``, about float32's resolution of the
    eigenvalues of a unit-norm matrix, as that gap.
    """

    max_value: float = option(
        1e6,
        validator=floating(1.0),
        help="|K_ij| is clipped at max_value / max|lambda| (dimensionless)",
    )
    eps: float | None = eps_option()


class SVDClipSolver(EighSolver):
    """Gradient clipping (SVD-Clip): ``K_ij = 1/(lambda_i - lambda_j)`` with its magnitude
    clipped at ``max_value / max|lambda|``, i.e. eigenvalue gaps floored at
    ``max|lambda| / max_value``."""

    Config = SVDClipConfig
    source = "000 (Song 2023), Table 2.3 (SVD-Clip baseline)"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = _RTOL

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        return clip_rule(L, max_value=self.config.max_value)


# --------------------------------------------------------------------------- SVD-TopN


def _check_keep(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_frac = isinstance(value, float) and 0.0 < value <= 1.0
    if not ((is_int and value >= 1) or is_frac):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected an integer >= 1 "
            "(number of eigenvalues kept) or a fraction in (0, 1]"
        )


@config
class SVDTopNConfig:
    """Options of ``svd-topn`` (thesis 000, Sec. 3.3.1, Eq. 3.8).

    The thesis chooses N by cross-validation and does not report it. The default keeps the
    largest 80% of the eigenvalues, close to the public SVD-TopN code of the thesis's GCP
    experiments (which drops the 50 smallest of 256, keeping 80.5%).
    """

    keep: int | float = option(
        0.8,
        validator=_check_keep,
        help="N, the eigenvalues kept in the backward: an integer count, or a fraction of n "
        "(rounded half up, at least 1)",
    )
    eps: float | None = eps_option()


class SVDTopNSolver(EighSolver):
    """Top-N eigenvalues (SVD-TopN): the backward sees ``diag(lambda_1..lambda_N, 0, ...)``
    (Eq. 3.8): only the N largest eigenpairs carry gradient, ``K`` between a kept and a
    discarded eigenvalue is ``1/lambda_kept <= 1/lambda_N``, between discarded ones 0.

    The forward is the exact eigendecomposition (eigenflow's solvers share it); the thesis's
    reference code also truncated the forward, eigenflow truncates only the backward.
    """

    Config = SVDTopNConfig
    source = "000 (Song 2023), Sec. 3.3.1, Eq. 3.8, Table 3.2"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = _RTOL

    def kept(self, n: int) -> int:
        """N for matrices of size ``n``."""
        keep = self.config.keep
        # half up, not Python's round-half-to-even (0.5 of 5 keeps 3, as 0.5 of 3 keeps 2)
        count = keep if isinstance(keep, int) else math.floor(keep * n + 0.5)
        return max(1, min(n, count))

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        return topn_rule(L, keep=self.kept(L.shape[-1]), eps=self.config.eps)

    def gradient_mask(self, L: torch.Tensor) -> torch.Tensor:
        n = L.shape[-1]
        kept = torch.arange(n, device=L.device) >= n - self.kept(n)
        return kept.to(L.dtype).expand_as(L)
