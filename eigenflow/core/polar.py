"""Nearest orthogonal matrices and orthogonality measures.

The nearest (semi-)orthogonal matrix to ``A`` in the Frobenius norm is the orthogonal factor of
its polar decomposition, ``U V^T`` where ``A = U S V^T`` is the reduced SVD (thesis 000,
Sec. 3.5.5, Eq. 3.53-3.56). It is computed here either exactly by the SVD or, without any
decomposition, by the Newton-Schulz polar iteration ``X <- X (3 I - X^T X) / 2``.

Everything works on ``(..., m, n)`` batches, float32 and float64, on any device, with no host
synchronisation.
"""

from __future__ import annotations

import torch

from .checks import check_tensor
from .errors import ConfigError
from .scaling import divide_by_peak

__all__ = [
    "POLAR_METHODS",
    "condition_number",
    "gram_minus_identity",
    "nearest_orthogonal",
    "newton_schulz_polar",
    "orthogonality_error",
    "svd_polar",
]

POLAR_METHODS = ("svd", "newton-schulz")


def svd_polar(A: torch.Tensor) -> torch.Tensor:
    """Orthogonal polar factor ``U V^T`` of ``A`` by the reduced SVD (Eq. 3.56).

    Parameters
    ----------
    A
        ``(..., m, n)`` real matrices.

    Returns
    -------
    torch.Tensor
        ``(..., m, n)``: orthonormal rows when ``m <= n`` (``R R^T = I``), orthonormal columns
        otherwise (``R^T R = I``). For rank-deficient ``A`` the factor is one of the minimisers.
    """
    U, _, Vh = torch.linalg.svd(A, full_matrices=False)
    return U @ Vh


def newton_schulz_polar(A: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """Orthogonal polar factor of ``A`` by the Newton-Schulz iteration.

    ``X_0 = A / ||A||_F`` (so every singular value is in ``(0, 1]``, inside the convergence
    region ``(0, sqrt(3))``), then ``X_{k+1} = X_k (3 I - X_k^T X_k) / 2``. Each singular value
    follows ``s <- s (3 - s^2) / 2``: it grows by about 1.5 per step while small and converges
    quadratically near 1, so about ``log(||A||_F / sigma_min) / log(1.5) + 5`` iterations are
    needed. Only matrix products: fast on GPUs, no host synchronisation.

    Parameters
    ----------
    A
        ``(..., m, n)`` real matrices (the iteration runs on the smaller Gram side).
    iters
        Number of iterations.

    Returns
    -------
    torch.Tensor
        ``(..., m, n)`` approximation of ``U V^T``.
    """
    transpose = A.shape[-2] > A.shape[-1]
    X = A.mT if transpose else A  # (..., p, q) with p <= q: the Gram X X^T is p x p
    # ||X||_F of X / max|X| (then the scale back): the sum of squares of X itself overflows
    # or underflows for float32 entries beyond about 1e19 or below 1e-22
    X = divide_by_peak(X)[0]
    X = X / torch.linalg.matrix_norm(X, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny)
    for _ in range(iters):
        X = 1.5 * X - 0.5 * (X @ X.mT) @ X
    return X.mT if transpose else X


def nearest_orthogonal(A: torch.Tensor, method: str = "svd", iters: int = 30) -> torch.Tensor:
    """Nearest (semi-)orthogonal matrix to ``A`` in the Frobenius norm (Eq. 3.53).

    Parameters
    ----------
    A
        ``(..., m, n)`` float32 or float64 matrices.
    method
        ``"svd"`` (exact, Eq. 3.56) or ``"newton-schulz"`` (:func:`newton_schulz_polar`).
    iters
        Iterations for ``"newton-schulz"``.
    """
    check_tensor(A, "A", min_dims=2)
    if method == "svd":
        return svd_polar(A)
    if method == "newton-schulz":
        return newton_schulz_polar(A, iters)
    raise ConfigError(f"method = {method!r} is invalid: expected one of {POLAR_METHODS}")


def gram_minus_identity(W: torch.Tensor) -> torch.Tensor:
    """``W W^T - I`` for wide or square ``W``, ``W^T W - I`` for tall ``W``; ``(..., p, p)``."""
    G = W @ W.mT if W.shape[-2] <= W.shape[-1] else W.mT @ W
    return G - torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)


def orthogonality_error(W: torch.Tensor) -> torch.Tensor:
    """``||W W^T - I||_F`` (``||W^T W - I||_F`` for tall ``W``), shape ``(...)`` (Eq. 3.51)."""
    return torch.linalg.matrix_norm(gram_minus_identity(W))


def condition_number(A: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    """Condition number ``sigma_max / sigma_min`` (Eq. 3.47) of ``(..., m, n)`` matrices.

    Parameters
    ----------
    A
        Matrices; with ``symmetric=True`` symmetric PSD matrices (covariances), whose
        eigenvalues are used (clamped at 0, so a singular covariance gives ``inf``).

    Returns
    -------
    torch.Tensor
        Shape ``(...)``, computed in float64 for accuracy of very large values.
    """
    A64 = A.detach().to(torch.float64)
    if symmetric:
        s = torch.linalg.eigvalsh(A64).clamp_min(0.0)
        return s[..., -1] / s[..., 0]
    s = torch.linalg.svdvals(A64)
    return s[..., 0] / s[..., -1]
