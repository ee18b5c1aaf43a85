"""``slow-vae``: a VAE with a sparse (Laplace) prior on the transitions of the latent codes of
consecutive frames (Klindt et al. 2021), a weakly supervised baseline of seed 004,
Tables 1-2.

The generative model of a pair of consecutive frames is ``z_{t-1} ~ N(0, I)`` and
``z_t | z_{t-1} ~ prod_j Laplace(z_{t-1,j}, 1 / rate)``; the posterior is the encoder's
``q(z|x) = N(mu, diag(sigma^2))`` of each frame. The negative ELBO of a pair is

``-log p(x_{t-1}|z_{t-1}) - log p(x_t|z_t) + beta KL[q(z_{t-1}|x_{t-1}) || N(0, I)]
+ gamma KL[q(z_t|x_t) || p(z_t | z_{t-1})]``

with ``z_{t-1}`` one sample of its posterior. The transition KL has the closed form
``H(q_t, Laplace) - H(q_t)``: the entropy of a Gaussian, and its cross-entropy with a Laplace
density, ``-log(rate / 2) + rate E|z_t - z_{t-1}|``, where ``E|Y|`` of ``Y ~ N(m, s^2)`` is the
mean of the folded normal, ``s sqrt(2/pi) exp(-m^2 / 2 s^2) + m (1 - 2 Phi(-m / s))``.
On a sequence ``x (B, T+1, ...)`` every consecutive pair ``(t-1, t)``, ``t = 1..T``, is one
pair, as the paper trains on pairs drawn from sequences.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...core.config import config, floating, option
from ...core.errors import InputError
from .kl import kl_diag_normal_std
from .vae import VAEBase, VAEConfig, unpack_batch

__all__ = [
    "SlowVAE",
    "SlowVAEConfig",
    "folded_normal_mean",
    "gaussian_laplace_cross_entropy",
    "laplace_transition_kl",
]

_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


@config
class SlowVAEConfig(VAEConfig):
    """Options of ``slow-vae`` (Klindt et al. 2021, Sec. 4 and the authors' published
    configuration: ``beta = 1``, ``gamma = 10``, Laplace ``rate = 6``)."""

    beta: float = option(1.0, validator=floating(0.0), help="weight of the N(0, I) prior's KL")
    gamma: float = option(10.0, validator=floating(0.0), help="weight of the transition KL")
    rate: float = option(
        6.0,
        validator=floating(0.0, min_open=True),
        help="rate of the Laplace transition prior (scale 1 / rate)",
    )


def folded_normal_mean(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``E|Y|`` for ``Y ~ N(mean, std^2)``, elementwise."""
    ratio = mean / std
    gauss = std * math.sqrt(2.0 / math.pi) * torch.exp(-0.5 * ratio.square())
    return gauss + mean * torch.erf(ratio / math.sqrt(2.0))


def gaussian_laplace_cross_entropy(
    mean: torch.Tensor, logvar: torch.Tensor, rate: float
) -> torch.Tensor:
    """``E_{y ~ N(mean, exp(logvar))}[-log Laplace(y; 0, 1 / rate)]``, elementwise.

    ``1 - 2 Phi(-m/s) = erf(m / (s sqrt 2))`` gives the folded-normal mean used here.
    """
    std = torch.exp(0.5 * logvar)
    return -math.log(rate / 2.0) + rate * folded_normal_mean(mean, std)


def laplace_transition_kl(
    mu: torch.Tensor, logvar: torch.Tensor, z_prev: torch.Tensor, rate: float
) -> torch.Tensor:
    """``KL[N(mu, diag(exp(logvar))) || prod_j Laplace(z_prev_j, 1 / rate)]``.

    Parameters
    ----------
    mu, logvar
        ``(..., d)`` posterior of ``z_t``.
    z_prev
        ``(..., d)`` the previous code (the Laplace prior's location).
    rate
        The Laplace rate.

    Returns
    -------
    torch.Tensor
        ``(...)`` the divergence, summed over the latent dimension.
    """
    cross = gaussian_laplace_cross_entropy(mu - z_prev, logvar, rate)
    entropy = 0.5 * (logvar + _LOG_2PI_E)
    return (cross - entropy).sum(-1)


class SlowVAE(VAEBase):
    """SlowVAE: VAE with a Laplace prior on ``z_t - z_{t-1}`` of consecutive frames
    (Klindt et al. 2021; a weakly supervised baseline of seed 004, Tables 1-2).

    Needs sequences ``(B, T+1, *input_shape)`` with ``T >= 1``. ``loss`` terms (means over
    pairs): ``recon`` (both frames of a pair), ``kl_prior`` (first frame, ``N(0, I)``),
    ``kl_transition`` (second frame, Laplace around the first frame's sample), ``loss =
    recon + beta kl_prior + gamma kl_transition``.
    """

    Config = SlowVAEConfig
    source = "Klindt et al. 2021 (SlowVAE); seed 004 Tables 1-2 (baseline)"

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, _ = unpack_batch(batch)
        if not self.is_sequence(x) or x.shape[1] < 2:
            raise InputError(
                f"x: slow-vae trains on sequences (B, T+1, *{list(self.input_shape)}) with "
                f"T >= 1, got {list(x.shape)}"
            )
        b, frames = x.shape[0], x.shape[1]
        flat = self._frames(x)
        mu, logvar = self.encode(flat)
        z = self.reparameterize((mu, logvar))
        log_px = self.log_px_given_z(flat, z).view(b, frames)
        mu, logvar, z = (v.view(b, frames, -1) for v in (mu, logvar, z))
        recon = -(log_px[:, :-1] + log_px[:, 1:]).mean()
        kl_prior = kl_diag_normal_std(mu[:, :-1], logvar[:, :-1]).mean()
        kl_transition = laplace_transition_kl(
            mu[:, 1:], logvar[:, 1:], z[:, :-1], self.config.rate
        ).mean()
        cfg = self.config
        return {
            "loss": recon + cfg.beta * kl_prior + cfg.gamma * kl_transition,
            "recon": recon,
            "kl_prior": kl_prior,
            "kl_transition": kl_transition,
        }
