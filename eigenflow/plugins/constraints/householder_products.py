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

import torch

__all__ = [
    "compact_wy",
    "householder_columns",
    "householder_matrix",
    "householder_sequential",
    "householder_vectors",
    "reflector",
]


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    return vectors / norm.clamp_min(torch.finfo(vectors.dtype).tiny)


def reflector(h: torch.Tensor) -> torch.Tensor:
    """The Householder matrix ``I - 2 h h^T / ||h||^2`` of ``(..., d)`` vectors, ``(..., d, d)``."""
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
        ``(..., m, d)``: reflector vectors as rows (any non-zero norm).
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
        ``(..., m, d)`` reflector vectors as rows.

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

    Parameters
    ----------
    vectors
        ``(..., m, d)`` reflector vectors as rows.
    columns
        Number ``c`` of leading columns, ``1 <= c <= d``.
    signs
        Optional ``(..., d)`` column signs (only the first ``c`` are used).
    block
        Reflectors per WY block (``None``: one block of all ``m``).

    Returns
    -------
    torch.Tensor
        ``(..., d, c)`` with orthonormal columns.
    """
    m, d = vectors.shape[-2:]
    b = m if block is None else max(1, min(block, m))
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
    """``H(h_1) ... H(h_m) diag(signs)`` as a full ``(..., d, d)`` matrix by compact WY."""
    return householder_columns(vectors, vectors.shape[-1], signs, block)


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
