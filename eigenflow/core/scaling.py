"""Scale-safe normalisation of matrices: divide by the largest entry first.

Sums of squares, norms and products of a float32 matrix overflow for entries beyond about
``1e19`` and underflow below about ``1e-22``, although the matrix itself is representable.
Every scale, check and iteration that is invariant to a positive factor therefore works on
``A / max|A|`` (entries in ``[-1, 1]``, at least one of magnitude 1) and scales back.
"""

from __future__ import annotations

import torch

__all__ = ["divide_by_peak", "peak_magnitude"]


def peak_magnitude(A: torch.Tensor) -> torch.Tensor:
    """``max|A|`` per matrix of ``A (..., m, n)`` as ``(..., 1, 1)``, at least the smallest
    normal number of the dtype (so dividing by it is safe for the zero matrix).

    A NaN entry gives a NaN peak (and so a NaN quotient): non-finite input stays visible.
    """
    return A.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(A.dtype).tiny)


def divide_by_peak(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A / peak, peak)`` with ``peak = max|A|`` per matrix ``(..., 1, 1)`` (see
    :func:`peak_magnitude`); the zero matrix stays zero."""
    peak = peak_magnitude(A)
    return A / peak, peak
