"""Matrix polynomials evaluated on batches ``(B, n, n)``: the matrix Taylor polynomial (MTP)
and the numerator and denominator of the matrix Padé approximant (MPA) of thesis 000
(Sec. 2.3.1 and 2.4.1). The coefficients come from :mod:`eigenflow.core.pade`.

Everything is computed in the working dtype of the input (float64 input stays float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["matrix_horner", "matrix_polynomials"]


def matrix_polynomials(
    Z: torch.Tensor,
    polynomials: Sequence[Sequence[float]],
    Z2: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Evaluate several matrix polynomials of ``Z (B, n, n)`` sharing its powers.

    Each polynomial is given by ascending coefficients ``c_0, c_1, ..., c_K`` and evaluates to
    ``c_0 I + c_1 Z + ... + c_K Z^K``. The powers ``Z^2..Z^Kmax`` are computed once
    (``Kmax - 1`` matrix products), as in the MPA of Eq. 2.10; ``Z2``: ``Z^2`` when the caller
    already has it (one product fewer).

    Returns
    -------
    list of torch.Tensor
        One ``(B, n, n)`` tensor per polynomial.
    """
    degree = max([len(c) - 1 for c in polynomials] + [0])
    powers = [Z]
    for k in range(1, degree):
        powers.append(Z2 if k == 1 and Z2 is not None else powers[-1] @ Z)
    # Each polynomial accumulated in place with fused multiply-adds (one pass per term).
    results = []
    for coeffs in polynomials:
        acc = torch.zeros_like(Z) if len(coeffs) == 1 else coeffs[1] * powers[0]
        for c, power in zip(coeffs[2:], powers[1:]):
            if c != 0:
                acc.add_(power, alpha=c)
        acc.diagonal(dim1=-2, dim2=-1).add_(coeffs[0])
        results.append(acc)
    return results


def matrix_horner(Z: torch.Tensor, coeffs: Sequence[float]) -> torch.Tensor:
    """``c_0 I + c_1 Z + ... + c_K Z^K`` by Horner's rule (``K - 1`` matrix products).

    Used for the matrix Taylor polynomial (Eq. 2.7 and 2.26 of thesis 000).
    """
    eye = torch.eye(Z.shape[-1], dtype=Z.dtype, device=Z.device)
    K = len(coeffs) - 1
    if K == 0:
        return coeffs[0] * eye.expand_as(Z).clone()
    acc = coeffs[K] * Z
    for c in reversed(coeffs[1:K]):
        acc = (acc + c * eye) @ Z
    return acc + coeffs[0] * eye
