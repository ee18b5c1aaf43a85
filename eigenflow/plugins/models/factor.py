"""``factor-vae``: a VAE with a total-correlation penalty estimated by a discriminator
(Kim and Mnih 2018), one of the baselines of seed 004, Tables 1-2 and 5-6.

The objective of the VAE part is the per-frame negative ELBO plus ``gamma * TC(z)``, with the
total correlation ``TC = KL[q(z) || prod_j q(z_j)]`` estimated by the density-ratio trick:
a discriminator ``D`` tells samples of ``q(z)`` (label 0) from samples of ``prod_j q(z_j)``
(label 1), obtained by permuting every latent coordinate independently across the batch; with
two logits ``D(z) = (a_0, a_1)``, ``log(D_0 / D_1) = a_0 - a_1`` estimates ``log q(z) -
log prod_j q(z_j)`` and its mean over ``z ~ q(z)`` estimates the TC.

**One engine, two players.** The paper trains ``D`` with its own optimiser. eigenflow's engine
(:class:`eigenflow.runtime.Trainer`) runs one optimiser over ``model.parameters()`` and one
backward of ``loss``; this model makes that one step act as the two updates by routing the
gradients, so no engine change is needed:

- the TC term the VAE minimises is evaluated with *gradient-stopped copies* of the
  discriminator's parameters (:func:`torch.func.functional_call` with detached tensors), so it
  moves the encoder only and never pushes ``D`` towards a smaller TC estimate;
- the discriminator's cross-entropy is evaluated on *detached* codes, so it moves ``D`` only.

Every parameter therefore receives the gradient of exactly one player's objective, and since
Adam's update is per parameter, one Adam over both groups equals two Adams with the same
hyper-parameters (the paper gives ``D`` other betas, 0.5 and 0.9; the engine's Adam uses the
default betas for both). The engine's optional ``grad_clip`` clips the joint norm. ``loss``
returns ``"loss" = neg_elbo + gamma * tc + disc_loss`` (the sum whose gradient realises both
updates) and the terms separately; ``neg_elbo + gamma * tc`` is the VAE's objective.

The permuted batch is a permutation of the same batch's (detached) codes; the paper draws it
from a second batch. Both give samples of the product of the marginals.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.config import config, floating, integer, option
from ...core.errors import InputError
from .vae import VAEBase, VAEConfig, unpack_batch

__all__ = ["FactorVAE", "FactorVAEConfig", "discriminator_tc", "permute_dims"]


@config
class FactorVAEConfig(VAEConfig):
    """Options of ``factor-vae`` (Kim and Mnih 2018, Sec. 3 and App. A).

    ``gamma = 10`` is the smallest weight of the paper's sweep (10 to 100); its discriminator
    is an MLP of 6 layers of 1000 units with leaky ReLU (``disc_layers`` and ``disc_hidden``;
    smaller ones train faster and are what eigenflow's benchmarks use).
    """

    gamma: float = option(10.0, validator=floating(0.0), help="weight of the TC penalty")
    disc_hidden: int = option(1000, validator=integer(1), help="width of the discriminator")
    disc_layers: int = option(
        6, validator=integer(1), help="hidden layers of the discriminator (leaky ReLU, slope 0.2)"
    )


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples of ``prod_j q(z_j)`` from samples ``z (B, d)`` of ``q(z)``: every column
    permuted by its own random permutation of the batch (Kim and Mnih 2018, Alg. 1)."""
    if z.dim() != 2 or z.shape[0] < 2:
        raise InputError(f"z: expected (B, d) codes with B >= 2, got {list(z.shape)}")
    b, d = z.shape
    keys = torch.rand(b, d, generator=generator, device=z.device)
    order = keys.argsort(dim=0)
    return torch.gather(z, 0, order)


def discriminator_tc(logits: torch.Tensor) -> torch.Tensor:
    """Total-correlation estimate ``mean(a_0 - a_1)`` from the discriminator's logits
    ``(B, 2)`` on samples of ``q(z)`` (density-ratio trick; class 0 = ``q(z)``)."""
    return (logits[:, 0] - logits[:, 1]).mean()


def _discriminator(d: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = d
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    modules.append(nn.Linear(width, 2))
    return nn.Sequential(*modules)


class FactorVAE(VAEBase):
    """FactorVAE: the ELBO plus ``gamma`` times a discriminator's total-correlation estimate
    (Kim and Mnih 2018; a baseline of seed 004, Tables 1-2, 5-6).

    Trains on every frame of a sequence like ``vae``. ``loss`` terms: ``recon``, ``kl``
    (per-frame means), ``tc`` (the estimate on this batch), ``neg_elbo``, ``disc_loss`` (the
    discriminator's cross-entropy), ``disc_accuracy`` and ``loss`` (see the module docstring
    for how one backward of ``loss`` updates both players).
    """

    Config = FactorVAEConfig
    source = "Kim and Mnih 2018 (FactorVAE); seed 004 Tables 1-2, 5-6 (baseline)"

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        cfg = self.config
        self.discriminator = _discriminator(cfg.latent_dim, cfg.disc_hidden, cfg.disc_layers)

    def frozen_discriminator(self, z: torch.Tensor) -> torch.Tensor:
        """Discriminator logits ``(B, 2)`` with gradient-stopped parameters: differentiable in
        ``z`` only."""
        params = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (z,))

    def discriminator_loss(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of ``D`` on ``z`` (class 0) and ``permute_dims(z)`` (class 1), both
        detached, and its accuracy; ``(loss, accuracy)``."""
        z = z.detach()
        both = torch.cat([z, permute_dims(z)])
        labels = torch.cat(
            [z.new_zeros(len(z), dtype=torch.long), z.new_ones(len(z), dtype=torch.long)]
        )
        logits = self.discriminator(both)
        loss = nn.functional.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).to(z.dtype).mean()
        return loss, accuracy.detach()

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, _ = unpack_batch(batch)
        self.is_sequence(x)
        frames = self._frames(x)
        if frames.shape[0] < 2:
            raise InputError(
                f"x: factor-vae needs at least 2 items per batch to permute codes, got "
                f"{list(x.shape)}"
            )
        params = self.encode(frames)
        z = self.reparameterize(params)
        recon = -self.log_px_given_z(frames, z).mean()
        kl = self.kl(params).mean()
        tc = discriminator_tc(self.frozen_discriminator(z))
        disc_loss, accuracy = self.discriminator_loss(z)
        neg_elbo = recon + kl
        return {
            "loss": neg_elbo + self.config.gamma * tc + disc_loss,
            "neg_elbo": neg_elbo,
            "recon": recon,
            "kl": kl,
            "tc": tc,
            "disc_loss": disc_loss,
            "disc_accuracy": accuracy,
        }
