"""Second-order statistics shared by the meta-layers."""

from __future__ import annotations

import torch

__all__ = ["centered_covariance", "upper_triangle"]


def centered_covariance(X: torch.Tensor) -> torch.Tensor:
    """Sample covariance ``P = X Ibar X^T`` of features ``X (..., d, N)`` (thesis 000, Eq. 2.42).

    ``Ibar = (I - 11^T/N)/N`` centres the ``N`` samples; the result is ``(..., d, d)``,
    symmetric positive semi-definite.
    """
    n = X.shape[-1]
    Xc = X - X.mean(dim=-1, keepdim=True)
    P = Xc @ Xc.mT / n
    return 0.5 * (P + P.mT)


def upper_triangle(P: torch.Tensor) -> torch.Tensor:
    """The upper triangle (diagonal included) of ``P (..., d, d)`` as ``(..., d(d+1)/2)``."""
    d = P.shape[-1]
    rows, cols = torch.triu_indices(d, d, device=P.device)
    return P[..., rows, cols]
