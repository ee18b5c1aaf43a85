"""Closed-form log-densities and KL divergences used by the VAE family.

Gaussian posteriors come in two forms: diagonal, ``N(mu, diag(exp(logvar)))`` (thesis 000,
Eq. 4.21 first KL term), and full covariance, ``N(mu, L L^T)`` with ``L`` lower triangular
with a positive diagonal (seed 002, Sec. 3.2.7). The prior is ``N(0, I)``. Every function is
batched over leading dimensions and reduces only the last (latent) dimension.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "gaussian_log_density",
    "kl_categorical_uniform",
    "kl_diag_normal_std",
    "kl_fullcov_normal_std",
    "log_normal_diag",
    "log_normal_fullcov",
    "log_normal_std",
]

_LOG_2PI = math.log(2.0 * math.pi)


def kl_diag_normal_std(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL[N(mu, diag(exp(logvar))) || N(0, I)].

    Parameters
    ----------
    mu, logvar
        ``(..., d)`` posterior means and log-variances.

    Returns
    -------
    torch.Tensor
        ``(...)`` the divergence, ``0.5 * sum(exp(logvar) + mu^2 - 1 - logvar)``.
    """
    return 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).sum(-1)


def kl_fullcov_normal_std(mu: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """KL[N(mu, L L^T) || N(0, I)] for a Cholesky factor ``L`` (seed 002, Sec. 3.2.7).

    ``0.5 * (tr(L L^T) + mu^T mu - d - log det(L L^T))`` with ``tr(L L^T) = ||L||_F^2`` and
    ``log det(L L^T) = 2 sum log diag(L)``.

    Parameters
    ----------
    mu
        ``(..., d)`` means.
    scale_tril
        ``(..., d, d)`` lower-triangular factors with a positive diagonal.

    Returns
    -------
    torch.Tensor
        ``(...)`` the divergence.
    """
    d = mu.shape[-1]
    trace = scale_tril.square().sum((-2, -1))
    logdet = 2.0 * torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + mu.square().sum(-1) - d - logdet)


def log_normal_std(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension; ``z (..., d) -> (...)``."""
    return -0.5 * (z.square() + _LOG_2PI).sum(-1)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension -> ``(...)``."""
    return -0.5 * ((z - mu).square() * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def gaussian_log_density(z: torch.Tensor, variance: torch.Tensor | float) -> torch.Tensor:
    """``log N(z; 0, variance * I)`` summed over the last dimension (isotropic, zero mean)."""
    var = torch.as_tensor(variance, dtype=z.dtype, device=z.device)
    d = z.shape[-1]
    return -0.5 * (z.square().sum(-1) / var + d * (torch.log(var) + _LOG_2PI))


def log_normal_fullcov(z: torch.Tensor, mu: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, L L^T)`` for ``z, mu (..., d)`` and ``L (..., d, d)`` -> ``(...)``."""
    diff = (z - mu).unsqueeze(-1)
    white = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
    logdet = 2.0 * torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (white.square().sum(-1) + logdet + z.shape[-1] * _LOG_2PI)


def kl_categorical_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL[Cat(softmax(logits)) || uniform over K] = ``sum q log q + log K``; ``(..., K) -> (...)``.

    This is the extra term of the weakly supervised ELBO (thesis 000, Eq. 4.23) with the
    categorical prior ``p(k)`` uniform.
    """
    logq = torch.log_softmax(logits, dim=-1)
    return (logq.exp() * logq).sum(-1) + math.log(logits.shape[-1])
