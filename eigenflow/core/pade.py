"""Padé approximants and Taylor series of scalar power series, in exact rational arithmetic.

One routine, :func:`pade_coefficients`, solves the Padé equations (thesis 000, Eq. 2.9 and
Eq. 3.16 are the same linear equations) of any power series with :class:`fractions.Fraction`
arithmetic, for any degree; nothing is tabulated. It has two users, computed once when a
solver is configured (never inside a ``torch.compile`` trace):

- the matrix Taylor polynomial and matrix Padé approximant of ``(1 - z)^alpha`` of the
  ``matfn`` solvers (Sec. 2.3.1 and 2.4.1): :func:`binomial_series`,
  :func:`taylor_coefficients` and :func:`power_pade_coefficients`;
- the smoothed eigendecomposition gradients of the ``eig`` family and ``batched-ed``
  (Sec. 3.3; :mod:`eigenflow.core.gradient_rules`): the regularised Padé approximant of
  ``1/(1 - x)``, :func:`geometric_pade`, and the truncated geometric series,
  :func:`geometric_taylor`.

Power series of ``(1 - z)^alpha``
---------------------------------
Sign conventions follow the thesis:

- Eq. 2.4 / 2.24: ``(1 - z)^(1/2) = 1 - sum_k |binom(1/2, k)| z^k`` and
  ``(1 - z)^(-1/2) = 1 + sum_k |binom(-1/2, k)| z^k``; :func:`binomial_series` returns the
  signed coefficients ``c_k`` of ``(1 - z)^alpha = sum_k c_k z^k`` (``c_0 = 1``).
- Eq. 2.8: the ``[M, N]`` Padé approximant is ``(1 - sum_m p_m z^m) / (1 - sum_n q_n z^n)``;
  :func:`power_pade_coefficients` returns ``(p, q)`` in that convention.

The regularised Padé approximant of ``1/(1 - x)``
-------------------------------------------------
SVD-Taylor (Eq. 3.11-3.13) and SVD-Padé (Eq. 3.14-3.18) approximate ``1/(1 - x)``. Its Padé
equations (Eq. 3.16) of the geometric series ``a_k = 1`` are degenerate: ``1/(1-x)``
is itself the rational function ``[0/1]``, so the ``n`` equations fixing the denominator
coefficients ``q_1..q_n`` all read ``1 + q_1 + ... + q_n = 0`` (rank one), and every exact
solution has ``Q(1) = 0``: the pole at ``x = 1`` comes straight back. The approximants in the
thesis are finite at ``x = 1`` only because the singular system was solved in 20-digit
floating point (Table 3.2's ``6.00e36 = 1.33e21 / EPS`` is that rounding).

eigenflow makes that well defined with a Tikhonov-regularised (damped least-squares) solve of
the denominator equations, :func:`pade_coefficients` with ``damping = mu > 0``:

``q = argmin ||C q - b||^2 + mu ||q||^2``,  ``C_kl = a_(m+k-l)``, ``b_k = -a_(m+k)``,

followed by the numerator equations of Eq. 3.16 unchanged. For the geometric series with
``m >= n - 1`` this has a closed form (:func:`geometric_pade`): ``q_l = -t`` with
``t = n/(n^2 + mu)``, ``gamma = Q(1) = mu/(n^2 + mu) > 0``, and

``r(x) = P(x)/Q(x) = 1/(1-x) - gamma x^(m+1) / ((1-x) Q(x))``.

So ``r`` matches the series exactly up to order ``m`` and up to order ``m+n`` with residual
``gamma``; ``Q`` decreases from 1 to ``gamma`` on ``[0, 1]`` and ``P`` has positive coefficients,
hence ``r`` is positive, increasing and bounded on ``[0, 1]`` by ``r(1) = P(1)/gamma``. Near
``x = 1`` it behaves like ``1/(1 + delta - x)`` with ``delta ~ 1/r(1)``: the pole moves just
outside ``[0, 1]``. The damping is chosen from the wanted bound ``B = r(1)``.

Stable evaluation
-----------------
``gamma`` is tiny (``~ (n+1)/(2B)``), far below the rounding of the power-basis coefficients, so
``Q`` must not be evaluated as ``1 + sum q_l x^l`` near ``x = 1``. :class:`RationalApproximant`
keeps both polynomials in two bases, powers of ``x`` (used for ``x <= split``) and powers of
``y = 1 - x`` (used above), where the constant term ``Q(1) = gamma`` is stored exactly; the
caller passes ``y`` computed without cancellation (for eigenvalues, ``(l_j - l_i)/l_j``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import attrs
import torch

from .errors import ConfigError

__all__ = [
    "RationalApproximant",
    "binomial_series",
    "geometric_damping",
    "geometric_pade",
    "geometric_taylor",
    "pade_coefficients",
    "power_pade_coefficients",
    "shift_to_one",
    "taylor_coefficients",
]


def _frac(value: int | float | Fraction) -> Fraction:
    return value if isinstance(value, Fraction) else Fraction(value)


def _as_fraction(alpha: float | Fraction) -> Fraction:
    return alpha if isinstance(alpha, Fraction) else Fraction(alpha).limit_denominator(10**6)


def _check_degrees(m: int, n: int) -> None:
    if m < 0 or n < 0:
        raise ConfigError(f"Padé degrees [{m}, {n}] are invalid: expected integers >= 0")


def _solve_exact(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Solve ``matrix @ x = rhs`` exactly by Gaussian elimination; ``ValueError`` if singular."""
    size = len(rhs)
    rows = [[*row, b] for row, b in zip(matrix, rhs)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if rows[r][col] != 0), None)
        if pivot is None:
            raise ValueError("singular linear system")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        inv = 1 / rows[col][col]
        for r in range(col + 1, size):
            factor = rows[r][col] * inv
            if factor:
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    x = [Fraction(0)] * size
    for r in range(size - 1, -1, -1):
        acc = rows[r][size] - sum(rows[r][c] * x[c] for c in range(r + 1, size))
        x[r] = acc / rows[r][r]
    return x


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


def pade_coefficients(
    series: Sequence[int | float | Fraction], m: int, n: int, damping: int | float | Fraction = 0
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    """``[m/n]`` Padé coefficients of a power series by the linear equations of thesis 000,
    Eq. 2.9 (matrix functions) and Eq. 3.16 (eigendecomposition gradients), the same
    equations: ``Q(x) A(x) - P(x) = O(x^(m+n+1))``.

    The only Padé routine of eigenflow; solved in exact rational arithmetic, so the result
    does not depend on the elimination order.

    Parameters
    ----------
    series
        Coefficients ``a_0, a_1, ...`` of ``A(x) = sum a_k x^k``; at least ``m + n + 1`` of them.
    m, n
        Numerator and denominator degrees.
    damping
        ``0``: solve the ``n`` denominator equations exactly
        (:class:`~eigenflow.core.errors.ConfigError` when they are singular, as for the
        geometric series). ``mu > 0``: Tikhonov-regularised solve ``(C^T C + mu I) q = C^T b``
        (see the module docstring).

    Returns
    -------
    tuple
        ``(p, q)``, tuples of :class:`fractions.Fraction`: exact coefficients of ``P(x) = sum
        p_k x^k`` (``m + 1`` of them) and ``Q(x) = sum q_k x^k`` with ``q_0 = 1`` (``n + 1`` of
        them), Eq. 3.14.
    """
    _check_degrees(m, n)
    if len(series) < m + n + 1:
        raise ConfigError(
            f"series has {len(series)} coefficients; the [{m}/{n}] Padé approximant needs "
            f"at least {m + n + 1}"
        )
    a = [_frac(v) for v in series]

    def coef(k: int) -> Fraction:
        return a[k] if k >= 0 else Fraction(0)

    C = [[coef(m + k - l) for l in range(1, n + 1)] for k in range(1, n + 1)]
    b = [-coef(m + k) for k in range(1, n + 1)]
    mu = _frac(damping)
    if mu < 0:
        raise ConfigError(f"damping = {damping!r} is invalid: expected a number >= 0")
    if n == 0:
        tail: list[Fraction] = []
    elif mu == 0:
        try:
            tail = _solve_exact(C, b)
        except ValueError:
            raise ConfigError(
                f"the [{m}/{n}] Padé equations (Eq. 2.9, 3.16) of this series are singular; "
                "pass damping > 0 for the regularised solution"
            ) from None
    else:
        # Normal equations on integers (scaled by the common denominator D of the series):
        # (C'^T C' + mu D^2 I) q = C'^T b' with C' = D C, b' = D b.
        D = math.lcm(*(v.denominator for v in a[: m + n + 1]))
        Ci = [[int(v * D) for v in row] for row in C]
        bi = [int(v * D) for v in b]
        shift = mu * D * D
        CtC = [
            [
                sum(Ci[k][i] * Ci[k][j] for k in range(n)) + (shift if i == j else 0)
                for j in range(n)
            ]
            for i in range(n)
        ]
        Ctb = [sum(Ci[k][i] * bi[k] for k in range(n)) for i in range(n)]
        tail = _solve_exact(CtC, Ctb)
    q = (Fraction(1), *tail)
    p = tuple(sum(coef(k - l) * q[l] for l in range(min(k, n) + 1)) for k in range(m + 1))
    return p, q


@lru_cache(maxsize=64)
def _power_pade_exact(
    alpha: Fraction, m: int, n: int
) -> tuple[tuple[Fraction, ...], tuple[Fraction, ...]]:
    p, q = pade_coefficients(binomial_series(alpha, m + n), m, n)
    # Thesis convention (Eq. 2.8): numerator 1 - sum p_m z^m, denominator 1 - sum q_n z^n.
    return tuple(-x for x in p[1:]), tuple(-x for x in q[1:])


def power_pade_coefficients(
    m: int, n: int, alpha: float | Fraction = Fraction(1, 2), *, exact: bool = False
) -> tuple[tuple, tuple]:
    """Coefficients ``(p_1..p_M, q_1..q_N)`` of the ``[M, N]`` Padé approximant of
    ``(1 - z)^alpha`` in the convention of Eq. 2.8 of thesis 000::

        (1 - sum_m p_m z^m) / (1 - sum_n q_n z^n) = (1 - z)^alpha + O(z^(M+N+1))

    The Padé equations (Eq. 2.9) of :func:`binomial_series` solved by
    :func:`pade_coefficients`.

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
    _check_degrees(m, n)
    p, q = _power_pade_exact(_as_fraction(alpha), int(m), int(n))
    if exact:
        return p, q
    return tuple(float(x) for x in p), tuple(float(x) for x in q)


def shift_to_one(coeffs: Sequence[Fraction]) -> tuple[Fraction, ...]:
    """Coefficients in ``y = 1 - x`` of the polynomial ``sum c_k x^k`` (exact)."""
    deg = len(coeffs) - 1
    return tuple(
        (-1) ** k * sum(coeffs[j] * math.comb(j, k) for j in range(k, deg + 1))
        for k in range(deg + 1)
    )


def _eval_exact(coeffs: Sequence[Fraction], x: Fraction) -> Fraction:
    acc = Fraction(0)
    for c in reversed(coeffs):
        acc = acc * x + c
    return acc


@attrs.frozen
class RationalApproximant:
    """``r = P/Q`` on ``[0, 1]``, evaluated in powers of ``x`` for ``x <= split`` and in powers
    of ``y = 1 - x`` above (stable near the pole-free end ``x = 1``).

    Attributes hold the exact coefficients (``p``, ``q`` in ``x``); ``*_x``/``*_y`` are the
    float coefficients used for evaluation.
    """

    p: tuple[Fraction, ...]
    q: tuple[Fraction, ...]
    split: float
    p_x: tuple[float, ...]
    q_x: tuple[float, ...]
    p_y: tuple[float, ...]
    q_y: tuple[float, ...]
    _tables: dict = attrs.field(factory=dict, eq=False, repr=False, alias="_tables")

    @classmethod
    def from_exact(
        cls, p: Sequence[Fraction], q: Sequence[Fraction], split: float | None = None
    ) -> RationalApproximant:
        p, q = tuple(p), tuple(q)
        py, qy = shift_to_one(p), shift_to_one(q)
        if split is None:
            split = _choose_split(p, q, py, qy)
        return cls(
            p=p,
            q=q,
            split=split,
            p_x=tuple(float(c) for c in p),
            q_x=tuple(float(c) for c in q),
            p_y=tuple(float(c) for c in py),
            q_y=tuple(float(c) for c in qy),
        )

    def exact(self, x: Fraction | float) -> Fraction:
        """``r(x)`` in exact arithmetic (the reference for tests)."""
        xf = _frac(x)
        return _eval_exact(self.p, xf) / _eval_exact(self.q, xf)

    def coefficient_table(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``(4, d + 1)`` table of the coefficients of ``P_x, Q_x, P_y, Q_y`` (zero padded),
        cached per dtype and device."""
        if torch.compiler.is_compiling():
            # a constant of the traced graph (the cache would be a side effect, which the
            # autograd.Function backward calling this may not have)
            return torch.tensor(self._table_rows(), dtype=dtype, device=device)
        key = (dtype, device)
        cache = self._tables
        if key not in cache:
            cache[key] = torch.tensor(self._table_rows(), dtype=dtype, device=device)
        return cache[key]

    def _table_rows(self) -> list[list[float]]:
        polys = (self.p_x, self.q_x, self.p_y, self.q_y)
        width = max(len(c) for c in polys)
        return [list(c) + [0.0] * (width - len(c)) for c in polys]

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``r(x)`` for ``x`` in ``[0, 1]``; pass ``y = 1 - x`` when it is known more
        accurately than ``1 - x`` (it is, for eigenvalue ratios).

        The four polynomials are evaluated together by one Horner loop on a stacked
        ``(4, ...)`` tensor (one fused multiply-add per degree).
        """
        if y is None:
            y = 1.0 - x
        table = self.coefficient_table(x.dtype, x.device)
        z = torch.stack([x, x, y, y])
        shape = (4,) + (1,) * x.dim()
        acc = table[:, -1].reshape(shape).expand_as(z).clone()
        for k in range(table.shape[1] - 2, -1, -1):
            acc = torch.addcmul(table[:, k].reshape(shape), acc, z)
        return torch.where(x <= self.split, acc[0] / acc[1], acc[2] / acc[3])


def _running_bound(coeffs: Sequence[Fraction], value: Fraction, t: Fraction) -> float:
    """``sum |c_k| t^k / |value|``: the relative rounding amplification of Horner."""
    total = sum(abs(c) * t**k for k, c in enumerate(coeffs))
    return float(total / abs(value)) if value != 0 else math.inf


def _choose_split(
    p: tuple[Fraction, ...],
    q: tuple[Fraction, ...],
    py: tuple[Fraction, ...],
    qy: tuple[Fraction, ...],
) -> float:
    """The grid point of ``[0, 1]`` that minimises the worse of the two bases' rounding
    amplification on its side (each measured at the split, where it is largest)."""
    best, best_cost = 0.5, math.inf
    for i in range(1, 40):
        s = Fraction(i, 40)
        P, Q = _eval_exact(p, s), _eval_exact(q, s)
        cost_x = _running_bound(p, P, s) + _running_bound(q, Q, s)
        cost_y = _running_bound(py, P, 1 - s) + _running_bound(qy, Q, 1 - s)
        cost = max(cost_x, cost_y)
        if cost < best_cost:
            best, best_cost = float(s), cost
    return best


def _pade_degrees(degree: int) -> tuple[int, int]:
    """Diagonal split of a total degree ``m + n``: ``[d/d]`` or ``[d+1/d]`` (Eq. 3.18)."""
    n = degree // 2
    return degree - n, n


def geometric_damping(m: int, n: int, bound: float) -> Fraction:
    """Tikhonov damping ``mu`` for which the regularised ``[m/n]`` approximant of
    ``1/(1-x)`` has maximum ``r(1) = bound`` on ``[0, 1]`` (needs ``m >= n - 1``).

    From ``r(1) = P(1)/gamma`` with ``P(1) = (n+1)/2 + gamma((n-1)/2 + m + 1 - n)``:
    ``gamma = (n+1)/(2 bound - (2m - n + 1))`` and ``mu = n^2 gamma/(1 - gamma)``.
    """
    B = Fraction(bound)
    gamma = Fraction(n + 1) / (2 * B - (2 * m - n + 1))
    if not 0 < gamma < 1:
        raise ConfigError(
            f"bound must exceed m + 1 = {m + 1} (the Taylor maximum of [{m}/{n}]): "
            f"got bound = {bound!r}"
        )
    return n * n * gamma / (1 - gamma)


@lru_cache(maxsize=64)
def geometric_pade(degree: int, bound: float) -> RationalApproximant:
    """Regularised diagonal Padé approximant of total degree ``degree`` (``[m/n]`` with
    ``m + n = degree``, ``m - n`` in ``{0, 1}``) of ``1/(1 - x)``, bounded by ``bound`` on
    ``[0, 1]`` (attained at ``x = 1``). See the module docstring for the construction.
    """
    if degree < 1:
        raise ConfigError(f"degree = {degree!r} is invalid: expected an integer >= 1")
    m, n = _pade_degrees(degree)
    mu = geometric_damping(m, n, bound)
    p, q = pade_coefficients([1] * (m + n + 1), m, n, damping=mu)
    return RationalApproximant.from_exact(p, q)


def geometric_taylor(x: torch.Tensor, degree: int, y: torch.Tensor | None = None) -> torch.Tensor:
    """Truncated geometric series ``S(x) = sum_{k=0}^{degree} x^k`` (Eq. 3.12) for ``x`` in
    ``[0, 1]``.

    Evaluated as ``-expm1((degree + 1) log1p(-y)) / y`` with ``y = 1 - x`` (pass ``y`` when it
    is known more accurately), which equals ``(1 - x^(degree+1))/(1 - x)`` without its
    cancellation, and ``degree + 1`` at ``y = 0``: four elementwise operations instead of
    ``degree`` Horner steps.
    """
    if y is None:
        y = 1.0 - x
    safe = torch.where(y > 0, y, torch.ones_like(y))
    series = -torch.expm1((degree + 1) * torch.log1p(-safe)) / safe
    return torch.where(y > 0, series, torch.full_like(y, degree + 1.0))
