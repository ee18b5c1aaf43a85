"""The DCGAN-style networks: a generator ``z -> images`` and a convolutional discriminator.

Both change the spatial size by stride-2 4x4 (transposed) convolutions, as in the DCGAN of
Radford, Metz and Chintala (2016): the generator maps ``z`` (or the mapping network's code
``w``) by one linear layer to a ``(width 2^(u-1), H / 2^u, W / 2^u)`` grid and doubles the
resolution ``u`` times; the discriminator halves it ``u`` times and ends in one linear logit.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["Discriminator", "Generator", "MappingNetwork"]


class MappingNetwork(nn.Module):
    """``(B, d) -> (B, width)``: ``layers`` linear layers, each followed by LeakyReLU(0.2) (a
    StyleGAN-style mapping from ``z`` to an intermediate code ``w``; Karras et al. 2019).
    ``net[0]`` is the linear layer from ``z``, weight ``(width, d)``."""

    def __init__(self, latent_dim: int, layers: int, width: int | None = None):
        super().__init__()
        width = width or latent_dim
        self.width = width
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(latent_dim if i == 0 else width, width), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Generator(nn.Module):
    """``generator(z) -> images``: ``(B, latent_dim) -> (B, C, H, W)`` in ``[0, 1]``.

    Parameters
    ----------
    image_shape
        ``(C, H, W)``; ``H`` and ``W`` divisible by ``2 ** upsamples``.
    latent_dim
        Size ``d`` of ``z``.
    width
        Channels at the last upsampling's input; the base grid has ``width * 2^(upsamples-1)``.
    upsamples
        Number of stride-2 transposed convolutions.
    mapping_layers
        Linear layers of the mapping network ``z -> w`` (0: none, ``w = z``).
    mapping_width
        Size of ``w`` (default: ``latent_dim``).
    norm
        ``"batch"`` (BatchNorm after the projection and every hidden convolution) or
        ``"none"``.

    Attributes
    ----------
    mapping
        The mapping network (``nn.Identity`` without one).
    project
        The linear layer from ``w`` (``z`` without a mapping network) to the base grid; the
        projector that SeFa, the Householder projector and the orthogonality constraints of
        thesis 000, Sec. 4.3-4.4 act on.
    first_linear
        The first linear layer applied to ``z``: ``project`` without a mapping network, the
        mapping network's first layer with one.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        width: int,
        upsamples: int,
        mapping_layers: int = 0,
        norm: str = "batch",
        mapping_width: int | None = None,
    ):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = (c, h, w)
        self.latent_dim = latent_dim
        scale = 2**upsamples
        channels = [width * 2 ** (upsamples - 1 - i) for i in range(upsamples)] + [c]
        self.grid = (channels[0], h // scale, w // scale)
        self.mapping = (
            MappingNetwork(latent_dim, mapping_layers, mapping_width) if mapping_layers else None
        )
        code = self.mapping.width if self.mapping is not None else latent_dim
        self.project = nn.Linear(code, math.prod(self.grid))
        self.project_act = nn.Sequential(_norm(norm, channels[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        for i in range(upsamples):
            blocks.append(nn.ConvTranspose2d(channels[i], channels[i + 1], 4, 2, 1))
            if i < upsamples - 1:
                blocks += [_norm(norm, channels[i + 1]), nn.ReLU()]
        self.synthesis = nn.Sequential(*blocks)

    @property
    def first_linear(self) -> nn.Linear:
        if self.mapping is not None:
            return self.mapping.net[0]
        return self.project

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z) if self.mapping is not None else z
        grid = self.project(w).view(-1, *self.grid)
        return torch.sigmoid(self.synthesis(self.project_act(grid)))


class Discriminator(nn.Module):
    """``discriminator(x) -> logits``: ``(B, C, H, W) -> (B,)``.

    ``downsamples`` stride-2 convolutions (``width``, ``2 width``, ... channels) with
    LeakyReLU(0.2), then one linear logit; with ``spectral_norm`` every layer's weight is
    divided by its largest singular value (Miyato et al. 2018, one power iteration per
    forward).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        width: int,
        downsamples: int,
        spectral: bool = True,
    ):
        super().__init__()
        c, h, w = image_shape
        wrap = spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = []
        channels = [c] + [width * 2**i for i in range(downsamples)]
        for i in range(downsamples):
            layers += [wrap(nn.Conv2d(channels[i], channels[i + 1], 4, 2, 1)), nn.LeakyReLU(0.2)]
        scale = 2**downsamples
        layers += [nn.Flatten(), wrap(nn.Linear(channels[-1] * (h // scale) * (w // scale), 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()
