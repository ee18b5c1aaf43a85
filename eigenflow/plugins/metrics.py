"""Plugin family module ``metrics`` (registered through the entry point group ``eigenflow``).

To add a metric: define its config and class here (or import it) and add one line to
``METRICS``; the single hook implementation registers every entry.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.checks import check_tensor
from ..core.component import Metric
from ..core.config import config, one_of, option
from ..core.errors import InputError
from ..core.polar import condition_number, orthogonality_error
from ..core.stats import centered_covariance
from ..registry import hookimpl

__all__ = [
    "METRICS",
    "ConditionNumber",
    "ConditionNumberConfig",
    "OrthogonalityError",
    "OrthogonalityErrorConfig",
]

_REDUCTIONS = ["mean", "max", "none"]


def _matrix_of(x: Any, name: str = "x") -> torch.Tensor:
    """A tensor as is, or the weight of a layer as ``(out, in * prod(kernel))``."""
    if isinstance(x, nn.Module):
        weight = getattr(x, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            raise InputError(
                f"{name}: expected a layer with a 2-D or conv weight, got {type(x).__name__}"
            )
        return weight.detach().reshape(weight.shape[0], -1)
    return check_tensor(x, name, min_dims=2).detach()


def _reduce(values: torch.Tensor, how: str) -> float | list[float]:
    if how == "none":
        return values.reshape(-1).tolist()
    return float(values.max() if how == "max" else values.mean())


@config
class ConditionNumberConfig:
    """Options of ``condition-number`` (thesis 000, Eq. 3.47)."""

    input: str = option(
        "matrix",
        validator=one_of(["matrix", "covariance", "features"]),
        help="'matrix': sigma_max/sigma_min of (..., m, n) matrices or a layer's weight; "
        "'covariance': lambda_max/lambda_min of symmetric PSD (..., d, d); 'features': "
        "(..., d, N) features whose centred covariance is measured",
    )
    reduce: str = option(
        "mean", validator=one_of(_REDUCTIONS), help="over a batch: mean, max or none (a list)"
    )


class ConditionNumber(Metric):
    """``kappa(A) = sigma_max(A) / sigma_min(A)`` (Eq. 3.47), computed in float64.

    Input: a tensor (see the ``input`` option) or a layer (its weight). Returns a float, or a
    list with ``reduce='none'``; a singular covariance gives ``inf``.
    """

    Config = ConditionNumberConfig
    source = "000 (Song 2023), Sec. 3.5.1, Eq. 3.47"

    @staticmethod
    def example_inputs() -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for a smoke call (used by the conformance suite)."""
        return (torch.randn(3, 4, 5, dtype=torch.float64),), {}

    def compute(self, x: Any) -> float | list[float]:
        cfg = self.config
        A = _matrix_of(x)
        if cfg.input == "features":
            A = centered_covariance(A.to(torch.float64))
        return _reduce(condition_number(A, symmetric=cfg.input != "matrix"), cfg.reduce)


@config
class OrthogonalityErrorConfig:
    """Options of ``orthogonality-error`` (thesis 000, Eq. 3.51)."""

    reduce: str = option(
        "mean", validator=one_of(_REDUCTIONS), help="over a batch: mean, max or none (a list)"
    )


class OrthogonalityError(Metric):
    """``||W W^T - I||_F`` (``||W^T W - I||_F`` for tall ``W``) of ``(..., m, n)`` matrices or
    of a layer's weight (Eq. 3.51 as a measurement)."""

    Config = OrthogonalityErrorConfig
    source = "000 (Song 2023), Sec. 3.5.4, Eq. 3.51"

    @staticmethod
    def example_inputs() -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments for a smoke call (used by the conformance suite)."""
        return (torch.randn(3, 4, 5, dtype=torch.float64),), {}

    def compute(self, x: Any) -> float | list[float]:
        W = _matrix_of(x)
        return _reduce(orthogonality_error(W.to(torch.float64)), self.config.reduce)


METRICS: dict[str, type[Metric]] = {
    "condition-number": ConditionNumber,
    "orthogonality-error": OrthogonalityError,
}


@hookimpl
def eigenflow_register(registry):
    """Registers this family's metrics (every entry of ``METRICS``)."""
    for name, cls in METRICS.items():
        registry.add("metric", cls, name=name)
