"""Products of Householder reflectors: sequential, compact WY, and the reverse direction
(the reflectors of a given orthogonal matrix).

A reflector is ``H(h) = I - 2 h h^T / ||h||^2`` (thesis 000, Theorem 5). The product of ``m``
reflectors ``H(h_1) ... H(h_m)`` has the compact WY form ``I - Y T Y^T`` (Theorem 6, after
Schreiber and Van Loan) where ``Y = [y_1 ... y_m]`` holds the unit vectors ``y_i = h_i/||h_i||``
and ``T`` is ``m x m`` upper triangular with ``T^{-1} = triu(Y^T Y, 1) + I / 2`` (the
"UT transform" of Joffrain et al.). With it the product costs a few large matrix products
instead of ``m`` sequential rank-1 updates, and its backward is plain autograd through
matmuls and one triangular solve.

Conventions: reflector vectors are the **rows** of a ``(..., m, d)`` tensor; an optional
``signs`` vector ``(..., d)`` multiplies the columns of the product on the right
(``Q = H_1 ... H_m diag(signs)``), which lets any orthogonal matrix, of either determinant, be
represented with exactly ``d`` reflectors (see :func:`householder_vectors`).
"""

from __future__ import annotations

from typing import Any

import torch

from ...core.checks import FLOAT_DTYPES
from ...core.errors import InputError

__all__ = [
    "compact_wy",
    "householder_columns",
    "householder_matrix",
    "householder_sequential",
    "householder_vectors",
    "reflector",
]


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    """``h / ||h||`` for every row ``h`` of ``(..., m, d)`` vectors; a zero row stays zero.

    ``H(c h) = H(h)`` for every ``c != 0``, so each row is first divided by its largest
    magnitude ``s = max_i |h_i|``: the scaled row has entries in ``[-1, 1]`` and a norm in
    ``[1, sqrt(d)]``, and no sum of squares under- or overflows, whatever the row's scale
    (down to subnormal numbers, up to the dtype's largest). ``s`` is detached: ``y(h) =
    y(h / s)`` holds for any constant ``s``, so the gradient through ``h / s`` is exact. No
    host synchronisation and no branch on values (``torch.where``), so it traces whole.
    """
    if vectors.shape[-1] == 0:
        return vectors
    scale = vectors.detach().abs().amax(dim=-1, keepdim=True)
    scaled = vectors / torch.where(scale > 0, scale, torch.ones_like(scale))
    norm = torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)  # 0, or in [1, sqrt(d)]
    return scaled / torch.where(norm > 0, norm, torch.ones_like(norm))


def reflector(h: torch.Tensor) -> torch.Tensor:
    """The Householder matrix ``I - 2 h h^T / ||h||^2`` of ``(..., d)`` vectors, ``(..., d, d)``.

    Exact for vectors of any non-zero scale (``H(c h) = H(h)``; see :func:`householder_columns`
    for how). A zero vector, which defines no reflection, gives the identity.
    """
    y = _unit_rows(h)
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    return eye - 2.0 * y[..., :, None] * y[..., None, :]


def householder_sequential(
    vectors: torch.Tensor, signs: torch.Tensor | None = None
) -> torch.Tensor:
    """``H(h_1) H(h_2) ... H(h_m) diag(signs)`` by ``m`` sequential rank-1 updates (reference).

    Parameters
    ----------
    vectors
        ``(..., m, d)``: reflector vectors as rows, of any scale; a zero row is the identity
        factor.
    signs
        Optional ``(..., d)`` column signs.

    Returns
    -------
    torch.Tensor
        ``(..., d, d)`` orthogonal matrix.
    """
    Y = _unit_rows(vectors)
    d = vectors.shape[-1]
    Q = torch.eye(d, dtype=vectors.dtype, device=vectors.device).expand(*vectors.shape[:-2], d, d)
    for i in range(vectors.shape[-2]):
        y = Y[..., i, :]
        Q = Q - 2.0 * (Q @ y[..., :, None]) * y[..., None, :]  # Q <- Q H(y)
    return Q if signs is None else Q * signs[..., None, :]


def compact_wy(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact WY factors of ``H(h_1) ... H(h_m) = I - Y T Y^T`` (Theorem 6).

    Parameters
    ----------
    vectors
        ``(..., m, d)`` reflector vectors as rows, of any scale (a zero row gives a zero column
        of ``Y``, i.e. the identity factor).

    Returns
    -------
    tuple
        ``(Y, T_inv)``: ``Y`` ``(..., d, m)`` unit vectors as columns and the upper-triangular
        ``(..., m, m)`` matrix ``T^{-1} = triu(Y^T Y, 1) + I/2``; ``T`` itself is applied by a
        triangular solve.
    """
    Y = _unit_rows(vectors).mT
    m = Y.shape[-1]
    eye = torch.eye(m, dtype=Y.dtype, device=Y.device)
    T_inv = torch.triu(Y.mT @ Y, diagonal=1) + 0.5 * eye
    return Y, T_inv


def _check_columns_args(vectors: Any, columns: Any, signs: Any, block: Any) -> tuple[int, int]:
    """Validate the arguments of :func:`householder_columns` on the host; ``(m, d)``."""
    if not isinstance(vectors, torch.Tensor):
        raise InputError(f"vectors: expected a torch.Tensor, got {type(vectors).__name__}")
    if vectors.dtype not in FLOAT_DTYPES:
        raise InputError(
            f"vectors: expected dtype float32 or float64, got "
            f"{str(vectors.dtype).replace('torch.', '')}"
        )
    if vectors.dim() < 2:
        raise InputError(
            f"vectors: expected reflector vectors as the rows of a (..., m, d) tensor, at least "
            f"2 dimensions, got shape {tuple(vectors.shape)}"
        )
    m, d = vectors.shape[-2:]
    if d < 1:
        raise InputError(
            f"vectors: expected reflectors of size d >= 1, got shape {tuple(vectors.shape)}"
        )
    if not _is_int(columns) or not 1 <= columns <= d:
        raise InputError(
            f"columns: expected an integer with 1 <= columns <= d = {d} (the reflectors' size), "
            f"got {columns!r}"
        )
    if block is not None and (not _is_int(block) or block < 1):
        raise InputError(f"block: expected None (one block) or an integer >= 1, got {block!r}")
    if signs is not None:
        if not isinstance(signs, torch.Tensor) or signs.dim() < 1 or signs.shape[-1] != d:
            got = tuple(signs.shape) if isinstance(signs, torch.Tensor) else type(signs).__name__
            raise InputError(f"signs: expected None or a (..., d = {d}) tensor, got {got}")
        if signs.dtype != vectors.dtype:
            raise InputError(
                f"signs: expected the dtype of vectors, {vectors.dtype}, got {signs.dtype}"
            )
    return m, d


def _is_int(value: Any) -> bool:
    return isinstance(value, int | torch.SymInt) and not isinstance(value, bool)


def householder_columns(
    vectors: torch.Tensor,
    columns: int,
    signs: torch.Tensor | None = None,
    block: int | None = 64,
) -> torch.Tensor:
    """The first ``columns`` columns of ``H(h_1) ... H(h_m) diag(signs)`` by compact WY.

    ``Q E = E - Y T (Y^T E)`` with ``E = I[:, :c]`` (Theorem 6). With ``block = b < m`` the
    reflectors are grouped in ``ceil(m / b)`` consecutive blocks, each in compact WY form, and
    the blocks are applied to ``E`` from the last to the first:
    ``Q E = (I - Y_1 T_1 Y_1^T) (... ((I - Y_k T_k Y_k^T) E))``. This costs ``O(m d (b + c))``
    instead of ``O(d m^2 + m^2 c + d m c)`` for one block, with ``ceil(m / b)`` sequential
    steps; the backward is plain autograd through matrix products and triangular solves.

    Each reflector vector is normalised after division by its largest magnitude, so vectors
    of any scale give the same reflector (``H(c h) = H(h)``, from subnormal to near-overflow
    norms); a zero vector gives the identity factor. The arguments are checked on the host
    (shapes, dtypes, integers), which ``torch.compile`` folds away.

    Parameters
    ----------
    vectors
        ``(..., m, d)`` reflector vectors as rows, float32 or float64, ``d >= 1``; ``m = 0``
        (no reflector) gives the leading columns of the identity, batched like ``vectors``.
    columns
        Number ``c`` of leading columns, an integer with ``1 <= c <= d``.
    signs
        Optional ``(..., d)`` column signs of the dtype of ``vectors`` (only the first ``c``
        are used).
    block
        Reflectors per WY block, an integer ``>= 1`` (``None``: one block of all ``m``).

    Returns
    -------
    torch.Tensor
        ``(..., d, c)`` with orthonormal columns.

    Raises
    ------
    InputError
        On a non-tensor, a non-float32/64 dtype or fewer than 2 dimensions of ``vectors``,
        ``d = 0``, ``columns`` outside ``[1, d]``, ``block < 1``, or ``signs`` of another size
        or dtype.
    """
    m, d = _check_columns_args(vectors, columns, signs, block)
    if m == 0:  # no reflector: the identity's leading columns, with the batch dimensions
        eye = torch.eye(d, columns, dtype=vectors.dtype, device=vectors.device)
        Q = eye.expand(*vectors.shape[:-2], d, columns).clone()
        return Q if signs is None else Q * signs[..., None, :columns]
    b = m if block is None else min(block, m)
    Q = torch.eye(d, columns, dtype=vectors.dtype, device=vectors.device)
    for start in range(((m - 1) // b) * b, -1, -b):
        Y, T_inv = compact_wy(vectors[..., start : start + b, :])
        if start == ((m - 1) // b) * b:  # first application: Y^T E is a slice of Y
            YtQ = Y[..., :columns, :].mT
        else:
            YtQ = Y.mT @ Q
        Q = Q - Y @ torch.linalg.solve_triangular(T_inv, YtQ, upper=True)
    return Q if signs is None else Q * signs[..., None, :columns]


def householder_matrix(
    vectors: torch.Tensor, signs: torch.Tensor | None = None, block: int | None = 64
) -> torch.Tensor:
    """``H(h_1) ... H(h_m) diag(signs)`` as a full ``(..., d, d)`` matrix by compact WY.

    The arguments are those of :func:`householder_columns` (with ``columns = d``), checked the
    same way.
    """
    d = vectors.shape[-1] if isinstance(vectors, torch.Tensor) and vectors.dim() >= 1 else 1
    return householder_columns(vectors, d, signs, block)


def householder_vectors(Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reflectors of an orthogonal matrix: ``Q = H(h_1) ... H(h_d) diag(signs)``.

    From the Householder QR ``Q = H_1 ... H_d R`` (``torch.geqrf``): ``R = H_d ... H_1 Q`` is
    orthogonal and upper triangular, hence ``diag(+-1)``. LAPACK writes ``H_i = I`` (``tau = 0``)
    when column ``i`` is already reduced (always for the last one); such a factor is replaced by
    the reflector ``H(e_i) = diag(1, .., -1, .., 1)`` and the sign ``i`` flipped back. This is
    exact because the later reflectors ``h_j`` (``j > i``) are zero at coordinate ``i`` and
    commute with ``diag(signs)``.

    Parameters
    ----------
    Q
        ``(..., d, d)`` orthogonal matrices.

    Returns
    -------
    tuple
        ``(vectors, signs)``: ``(..., d, d)`` reflector vectors as rows (LAPACK form: zero before
        position ``i``, 1 at it) and ``(..., d)`` signs in ``{-1, +1}``.
    """
    a, tau = torch.geqrf(Q)
    d = Q.shape[-1]
    eye = torch.eye(d, dtype=Q.dtype, device=Q.device)
    V = torch.tril(a, diagonal=-1) + eye  # columns v_i = (0, .., 0, 1, a[i+1:, i])
    identity_factor = tau == 0
    V = torch.where(identity_factor[..., None, :], eye, V)
    r = torch.sign(torch.diagonal(a, dim1=-2, dim2=-1))
    signs = torch.where(identity_factor, -r, r)
    return V.mT.contiguous(), signs
