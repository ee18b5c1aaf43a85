"""Input checks at the public boundary, with uniform messages.

Each check costs at most one host-device synchronisation; hot paths pass ``check=False``.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputError

__all__ = ["FLOAT_DTYPES", "check_square", "check_symmetric", "check_tensor", "symmetry_tolerance"]

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(
    value: Any, name: str, *, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES, min_dims: int = 0
) -> torch.Tensor:
    """Check that ``value`` is a tensor of an allowed dtype with at least ``min_dims`` dims."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in dtypes:
        allowed = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise InputError(
            f"{name}: expected dtype {allowed}, got {str(value.dtype).replace('torch.', '')}"
        )
    if value.dim() < min_dims:
        raise InputError(
            f"{name}: expected at least {min_dims} dimensions, got {value.dim()} "
            f"(shape {tuple(value.shape)})"
        )
    return value


def check_square(value: Any, name: str) -> torch.Tensor:
    """Check for a floating tensor of shape ``(..., n, n)`` with ``n >= 1``."""
    A = check_tensor(value, name, min_dims=2)
    if A.shape[-1] != A.shape[-2]:
        raise InputError(
            f"{name}: expected square matrices of shape (..., n, n), got shape {tuple(A.shape)}"
        )
    if A.shape[-1] == 0:
        raise InputError(f"{name}: expected matrices of size n >= 1, got shape {tuple(A.shape)}")
    return A


def symmetry_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance on ``max|A - A^T| / max|A|`` accepted as symmetric."""
    return 1000.0 * torch.finfo(dtype).eps


def check_symmetric(value: Any, name: str = "A") -> torch.Tensor:
    """Check for finite symmetric matrices ``(..., n, n)`` of dtype float32 or float64.

    Symmetry is accepted within :func:`symmetry_tolerance` relative to the largest entry of
    each matrix. One host synchronisation (finiteness and symmetry are read together).
    """
    A = check_square(value, name)
    if A.numel() == 0:
        return A
    finite = torch.isfinite(A).all()
    scale = A.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(A.dtype).tiny)
    asym = ((A - A.mT).abs().amax(dim=(-2, -1)) / scale).nan_to_num(nan=0.0).amax()
    is_finite, asym_value = torch.stack([finite.to(A.dtype), asym]).tolist()
    if not is_finite:
        raise InputError(f"{name}: contains NaN or infinite entries")
    tol = symmetry_tolerance(A.dtype)
    if asym_value > tol:
        raise InputError(
            f"{name}: expected symmetric matrices, got max|A - A^T|/max|A| = {asym_value:.3g} "
            f"(tolerance {tol:.1g}); symmetrise with (A + A.mT) / 2 or pass check=False"
        )
    return A
