"""``dcgan``: a small convolutional GAN trained by the engine's alternating updates.

The model has two update phases (:class:`eigenflow.runtime.UpdatePhase`): ``"d"`` (the
discriminator, on real data and detached samples) then ``"g"`` (the generator, through the
discriminator), each with its own optimiser; the engine
(:class:`eigenflow.runtime.Trainer`) runs both per step, with its checkpoints, resume,
finite-loss stop, gradient clipping and DistributedDataParallel.

Losses (option ``loss``), with ``D`` the discriminator's logit and ``G`` the generator:

- ``"hinge"`` (Lim and Ye 2017; Miyato et al. 2018):
  ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]``, ``L_G = -E[D(G(z))]``;
- ``"non-saturating"`` (Goodfellow et al. 2014): ``L_D = E[softplus(-D(x))] +
  E[softplus(D(G(z)))]``, ``L_G = E[softplus(-D(G(z)))]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...core.component import Model
from ...core.config import boolean, config, floating, integer, one_of, option, optional
from ...core.errors import ConfigError, InputError
from ...runtime import UpdatePhase, unpack_batch
from .nets import Discriminator, Generator

__all__ = ["DCGAN", "DCGANConfig", "gan_losses"]

PHASES = ("d", "g")


def _to_shape(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _check_shape(_inst: Any, attribute: Any, value: Any) -> None:
    ok = (
        isinstance(value, tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected [channels, height, "
            "width] of positive integers, e.g. [1, 28, 28]"
        )


def _betas(value: Any) -> Any:
    return tuple(float(v) for v in value) if isinstance(value, list | tuple) else value


def _check_betas(_inst: Any, attribute: Any, value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and all(0 <= b < 1 for b in value)):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected two numbers in [0, 1)"
        )


@config
class DCGANConfig:
    """Options of ``dcgan``.

    The architecture is the DCGAN of Radford, Metz and Chintala (2016) scaled down for the
    local 28-64 pixel datasets (stride-2 4x4 convolutions, BatchNorm in the generator, Adam
    with ``beta1 = 0.5``); the thesis 000, Sec. 4.3.3 "vanilla GAN" is the same kind of
    plain convolutional GAN. The hinge loss with a spectrally normalised discriminator is
    SNGAN's (Miyato et al. 2018), the GAN thesis 000, Sec. 4.5 uses for its pre-trained
    experiments. Sizes are our choice for CPU training in minutes.
    """

    input_shape: tuple = option(
        (3, 28, 28),
        converter=_to_shape,
        validator=_check_shape,
        help="image shape [channels, height, width] (taken from the dataset by pipelines)",
    )
    latent_dim: int = option(16, validator=integer(1, 4096), help="size d of the latent z")
    width: int = option(
        32,
        validator=integer(1, 4096),
        help="channels of the generator's last hidden layer and the discriminator's first",
    )
    upsamples: int = option(
        2,
        validator=integer(1, 6),
        help="stride-2 layers of each network (height and width divisible by 2**upsamples)",
    )
    mapping_layers: int = option(
        0,
        validator=integer(0, 16),
        help="linear layers (each with LeakyReLU) of a mapping network z -> w (0: none)",
    )
    mapping_width: int | None = option(
        None,
        validator=optional(integer(1, 4096)),
        help="size of the mapping network's code w (none: latent_dim)",
    )
    norm: str = option(
        "batch", validator=one_of(["batch", "none"]), help="normalisation of the generator"
    )
    loss: str = option(
        "hinge",
        validator=one_of(["hinge", "non-saturating"]),
        help="adversarial loss: 'hinge' or 'non-saturating'",
    )
    d_spectral_norm: bool = option(
        True, validator=boolean(), help="spectral normalisation of the discriminator's layers"
    )
    d_lr_scale: float = option(
        1.0,
        validator=floating(0.0, 100.0, min_open=True),
        help="discriminator learning rate / the engine's lr (two time-scale updates)",
    )
    betas: tuple = option(
        (0.5, 0.999),
        converter=_betas,
        validator=_check_betas,
        help="Adam's (beta1, beta2) of both networks (DCGAN: 0.5, 0.999)",
    )

    def __attrs_post_init__(self) -> None:
        _c, h, w = self.input_shape
        scale = 2**self.upsamples
        if h % scale or w % scale:
            raise ConfigError(
                f"option 'input_shape' = {list(self.input_shape)!r} is invalid for upsamples = "
                f"{self.upsamples}: height and width must be divisible by {scale}"
            )


def gan_losses(
    kind: str, real_logits: torch.Tensor | None, fake_logits: torch.Tensor, phase: str
) -> torch.Tensor:
    """The ``phase`` (``"d"`` or ``"g"``) loss of ``kind`` (``"hinge"``, ``"non-saturating"``)
    from the discriminator's logits ``(B,)`` on real and generated images (means over ``B``)."""
    if phase == "g":
        return -fake_logits.mean() if kind == "hinge" else F.softplus(-fake_logits).mean()
    assert real_logits is not None
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


class DCGAN(Model):
    """A DCGAN-style generator and discriminator, trained by alternating updates.

    Interface:

    - ``generator(z) -> images``: ``(B, latent_dim) -> (B, C, H, W)`` in ``[0, 1]``; its
      ``project`` (and ``first_linear``) is the linear layer from the latent code;
    - ``discriminator(x) -> logits``: ``(B, C, H, W) -> (B,)``;
    - ``latent_dim``, ``input_shape``;
    - ``sample(n)`` -> ``(n, C, H, W)`` images of ``z ~ N(0, I)`` (no gradient), ``decode(z)``
      the generator with gradients, ``sample_latent(n)`` -> ``(n, d)``, ``encode(x)`` the
      latent codes of images by inverting the generator (optimisation, no encoder network);
    - ``update_phases()``: ``"d"`` then ``"g"``; ``loss(batch, phase=...)``: the phase's loss
      and its terms (``real_logit``, ``fake_logit``: mean discriminator outputs); without
      ``phase``, both losses (``loss`` is their sum; for evaluation).

    Batches are images ``(B, C, H, W)``, or sequences ``(B, T, C, H, W)`` of which one random
    frame per sequence is used, as a tensor, a tuple or a dict with ``"x"``.
    """

    Config = DCGANConfig
    source = "thesis 000, Sec. 4.3.3 (vanilla GAN); DCGAN (Radford et al. 2016)"

    def __init__(self, config: Any = None, **options: Any):
        nn.Module.__init__(self)
        self.config = self.make_config(config, options)
        cfg = self.config
        self.input_shape = tuple(cfg.input_shape)
        self.latent_dim = cfg.latent_dim
        self.generator = Generator(
            self.input_shape,
            cfg.latent_dim,
            cfg.width,
            cfg.upsamples,
            cfg.mapping_layers,
            cfg.norm,
            cfg.mapping_width,
        )
        self.discriminator = Discriminator(
            self.input_shape, cfg.width, cfg.upsamples, cfg.d_spectral_norm
        )

    # ----------------------------------------------------------------- generation
    def _param(self) -> torch.Tensor:
        return next(self.generator.parameters())

    def sample_latent(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latent codes ``z ~ N(0, I)``, ``(n, latent_dim)``, on the model's device."""
        p = self._param()
        if generator is not None:
            z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype)
            return z.to(p.device)
        return torch.randn(n, self.latent_dim, device=p.device, dtype=p.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's images ``(B, C, H, W)`` for ``z (B, latent_dim)``."""
        return self.generator(z)

    def encode(self, x: torch.Tensor, *, steps: int = 200, lr: float = 0.05) -> torch.Tensor:
        """Latent codes ``(B, latent_dim)`` whose images are closest to ``x (B, C, H, W)``.

        A GAN has no encoder: this inverts the generator by ``steps`` Adam steps on
        ``|G(z) - x|^2`` (summed over pixels) from ``z = 0``, the generator frozen and in
        its current train/eval mode.
        """
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != 4:
            raise InputError(f"x: expected (B, *{list(self.input_shape)}), got {list(x.shape)}")
        if steps < 1 or lr <= 0:
            raise InputError(f"encode: expected steps >= 1 and lr > 0, got {steps}, {lr}")
        target = x.detach().to(self._param().dtype)
        z = torch.zeros(x.shape[0], self.latent_dim, device=target.device, dtype=target.dtype)
        z.requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        params = [p for p in self.generator.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                for _ in range(steps):
                    opt.zero_grad(set_to_none=True)
                    err = (self.generator(z) - target).square().flatten(1).sum(1).sum()
                    err.backward()
                    opt.step()
        finally:
            for p in params:
                p.requires_grad_(True)
        return z.detach()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated images ``(n, C, H, W)`` (no gradient; the caller sets train/eval)."""
        return self.generator(self.sample_latent(n, generator=generator))

    # ----------------------------------------------------------------- training
    def update_phases(self) -> list[UpdatePhase]:
        """The discriminator's update, then the generator's (one each per engine step)."""
        cfg = self.config
        return [
            UpdatePhase("d", self.discriminator.parameters(), cfg.d_lr_scale, cfg.betas),
            UpdatePhase("g", self.generator.parameters(), 1.0, cfg.betas),
        ]

    def real_images(self, batch: Any) -> torch.Tensor:
        """The batch's images ``(B, C, H, W)`` (one random frame of each sequence)."""
        x, _ = unpack_batch(batch)
        if tuple(x.shape[-3:]) != self.input_shape or x.dim() not in (4, 5):
            raise InputError(
                f"x: expected (B, *{list(self.input_shape)}) or (B, T, "
                f"*{list(self.input_shape)}), got {list(x.shape)}"
            )
        if x.dim() == 5:
            t = torch.randint(x.shape[1], (x.shape[0],), device=x.device)
            x = x[torch.arange(x.shape[0], device=x.device), t]
        return x.to(self._param().dtype)

    def loss(self, batch: Any, phase: str | None = None) -> dict[str, torch.Tensor]:
        """The loss of ``phase`` (``"d"``, ``"g"``) on ``batch``, or both (``phase=None``)."""
        if phase is not None and phase not in PHASES:
            raise InputError(f"phase: expected one of {list(PHASES)} or None, got {phase!r}")
        real = self.real_images(batch)
        z = self.sample_latent(real.shape[0])
        out: dict[str, torch.Tensor] = {}
        if phase in (None, "d"):
            with torch.no_grad():
                fake = self.generator(z)
            real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
            out["d_loss"] = gan_losses(self.config.loss, real_logits, fake_logits, "d")
            out["real_logit"] = real_logits.detach().mean()
            out["fake_logit"] = fake_logits.detach().mean()
        if phase in (None, "g"):
            fake_logits = self.discriminator(self.generator(z))
            out["g_loss"] = gan_losses(self.config.loss, None, fake_logits, "g")
            if phase == "g":
                out["fake_logit"] = fake_logits.detach().mean()
        if phase is None:
            return {"loss": out["d_loss"] + out["g_loss"], **out}
        return {"loss": out.pop(f"{phase}_loss"), **out}
