"""Shared pieces of the traversal family: fitted-state checks and straight-line paths."""

from __future__ import annotations

import torch

from ...core.checks import check_tensor
from ...core.errors import InputError, NotSupportedError

__all__ = ["check_latents", "linear_path", "require_fitted"]


def require_fitted(value: object, name: str, what: str) -> None:
    """Raise a clear error when a traversal is used before ``fit``."""
    if value is None:
        raise NotSupportedError(f"traversal {name!r}: call fit(...) before {what}")


def check_latents(z0: torch.Tensor, d: int | None = None) -> torch.Tensor:
    """``z0`` as ``(B, d)``: a single code ``(d,)`` becomes a batch of one."""
    check_tensor(z0, "z0", min_dims=1)
    z = z0.unsqueeze(0) if z0.dim() == 1 else z0
    if z.dim() != 2:
        raise InputError(f"z0: expected shape (B, d) or (d,), got {tuple(z0.shape)}")
    if d is not None and z.shape[-1] != d:
        raise InputError(f"z0: expected latent size {d}, got {z.shape[-1]}")
    return z


def check_index(k: int, available: int, name: str) -> None:
    """``k`` must index one of ``available`` directions."""
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < available:
        raise InputError(f"k: expected an integer in [0, {available - 1}] for {name!r}, got {k!r}")


def linear_path(
    z0: torch.Tensor, direction: torch.Tensor, steps: int, step_size: float
) -> torch.Tensor:
    """``z0 + t * step_size * direction`` for ``t = 0..steps``: ``(steps+1, B, d)``."""
    t = torch.arange(steps + 1, dtype=z0.dtype, device=z0.device) * step_size
    return z0.unsqueeze(0) + t[:, None, None] * direction.to(z0)[None, None, :]
