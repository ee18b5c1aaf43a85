"""Taylor and Padé coefficients of ``(1 - z)^alpha`` and their matrix evaluation.

The coefficients of the matrix Taylor polynomial (MTP) and the matrix Padé approximant (MPA)
of thesis 000 (Sec. 2.3.1 and 2.4.1) are derived here from the binomial series, in exact
rational arithmetic (:class:`fractions.Fraction`), for any degree; nothing is tabulated.

Sign conventions follow the thesis:

- Eq. 2.4 / 2.24: ``(1 - z)^(1/2) = 1 - sum_k |binom(1/2, k)| z^k`` and
  ``(1 - z)^(-1/2) = 1 + sum_k |binom(-1/2, k)| z^k``; :func:`binomial_series` returns the
  signed coefficients ``c_k`` of ``(1 - z)^alpha = sum_k c_k z^k`` (``c_0 = 1``).
- Eq. 2.8: the ``[M, N]`` Padé approximant is ``(1 - sum_m p_m z^m) / (1 - sum_n q_n z^n)``;
  :func:`pade_coefficients` returns ``(p, q)`` in that convention.

The matrix polynomials are evaluated in the working dtype of the input (float64 input stays
float64), batched over ``(B, n, n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import torch

from .errors import ConfigError

__all__ = [
    "binomial_series",
    "matrix_horner",
    "matrix_polynomials",
    "pade_coefficients",
    "taylor_coefficients",
]


def _as_fraction(alpha: float | Fraction) -> Fraction:
    return alpha if isinstance(alpha, Fraction) else Fraction(alpha).limit_denominator(10**6)


@lru_cache(maxsize=64)
def _binomial_series_exact(alpha: Fraction, degree: int) -> tuple[Fraction, ...]:
    # c_k = binom(alpha, k) (-1)^k, built by c_k = c_{k-1} * (k - 1 - alpha) / k.
    coeffs = [Fraction(1)]
    for k in range(1, degree + 1):
        coeffs.append(coeffs[-1] * (k - 1 - alpha) / k)
    return tuple(coeffs)


def binomial_series(alpha: float | Fraction, degree: int) -> tuple[Fraction, ...]:
    """Exact coefficients ``c_0..c_degree`` of ``(1 - z)^alpha = sum_k c_k z^k``.

    ``c_k = (-1)^k binom(alpha, k)``; for ``alpha = 1/2`` this is Eq. 2.4 of thesis 000
    (``c_k = -|binom(1/2, k)|`` for ``k >= 1``), for ``alpha = -1/2`` Eq. 2.24.
    """
    if degree < 0:
        raise ConfigError(f"degree = {degree!r} is invalid: expected an integer >= 0")
    return _binomial_series_exact(_as_fraction(alpha), int(degree))


def taylor_coefficients(alpha: float | Fraction, degree: int) -> tuple[float, ...]:
    """Float coefficients ``c_0..c_degree`` of the degree-``degree`` Taylor polynomial of
    ``(1 - z)^alpha`` (the MTP of Eq. 2.7 for ``alpha = 1/2``, Eq. 2.26 for ``-1/2``)."""
    return tuple(float(c) for c in binomial_series(alpha, degree))


def _solve_rational(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Gaussian elimination with exact fractions (small systems only)."""
    n = len(rhs)
    aug = [[*row, b] for row, b in zip(matrix, rhs)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if aug[r][col] != 0), None)
        if pivot is None:
            raise ConfigError("the Padé system is singular (degenerate Padé table entry)")
        aug[col], aug[pivot] = aug[pivot], aug[col]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                factor = aug[r][col] / aug[col][col]
                aug[r] = [a - factor * b for a, b in zip(aug[r], aug[col])]
    return [aug[i][n] / aug[i][i] for i in range(n)]


@lru_cache(maxsize=64)
def _pade_exact(
    alpha: Fraction, m: int, n: int
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    c = binomial_series(alpha, m + n)
    coef = lambda k: c[k] if k >= 0 else Fraction(0)  # noqa: E731 - local shorthand
    # Denominator b_0 = 1, b_1..b_N: sum_{j=0}^{N} b_j c_{k-j} = 0 for k = M+1..M+N, i.e. the
    # series of numerator/denominator matches c up to degree M+N (Eq. 2.8-2.9).
    system = [[coef(k - j) for j in range(1, n + 1)] for k in range(m + 1, m + n + 1)]
    rhs = [-coef(k) for k in range(m + 1, m + n + 1)]
    b = [Fraction(1), *(_solve_rational(system, rhs) if n else [])]
    # Numerator a_k = sum_{j=0}^{min(k, N)} b_j c_{k-j}, k = 0..M.
    a = [sum((b[j] * coef(k - j) for j in range(min(k, n) + 1)), Fraction(0)) for k in range(m + 1)]
    # Thesis convention: numerator 1 - sum p_m z^m, denominator 1 - sum q_n z^n.
    return tuple(-x for x in a[1:]), tuple(-x for x in b[1:])


def pade_coefficients(
    m: int, n: int, alpha: float | Fraction = Fraction(1, 2), *, exact: bool = False
) -> tuple[tuple, tuple]:
    """Coefficients ``(p_1..p_M, q_1..q_N)`` of the ``[M, N]`` Padé approximant of
    ``(1 - z)^alpha`` in the convention of Eq. 2.8 of thesis 000::

        (1 - sum_m p_m z^m) / (1 - sum_n q_n z^n) = (1 - z)^alpha + O(z^(M+N+1))

    Solved from the linear system of Eq. 2.9 in exact rational arithmetic.

    Parameters
    ----------
    m, n
        Numerator and denominator degrees (``>= 0``).
    alpha
        The exponent (``1/2`` for the square root).
    exact
        Return :class:`~fractions.Fraction` values instead of floats.

    Returns
    -------
    tuple
        ``(p, q)``: tuples of length ``m`` and ``n``.
    """
    if m < 0 or n < 0:
        raise ConfigError(f"Padé degrees [{m}, {n}] are invalid: expected integers >= 0")
    p, q = _pade_exact(_as_fraction(alpha), int(m), int(n))
    if exact:
        return p, q
    return tuple(float(x) for x in p), tuple(float(x) for x in q)


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
