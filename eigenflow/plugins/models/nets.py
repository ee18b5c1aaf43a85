"""Encoder and decoder networks shared by the VAE family: an MLP and a small ConvNet.

The convolutional pair halves the spatial size twice (stride-2 4x4 convolutions, as in the
MNIST VAEs of thesis 000, Sec. 4.5-4.6), so the image height and width must be divisible by 4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...core.errors import ConfigError

__all__ = ["build_decoder", "build_encoder"]


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class MLPEncoder(nn.Module):
    """``(B, *input_shape) -> (B, hidden)`` features by two ReLU layers."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_numel(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPDecoder(nn.Module):
    """``(B, d) -> (B, *input_shape)`` pre-activations by two ReLU layers and a linear map."""

    def __init__(self, input_shape: tuple[int, ...], latent_dim: int, hidden: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, _numel(input_shape)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.input_shape)


class ConvEncoder(nn.Module):
    """``(B, C, H, W) -> (B, hidden)``: two stride-2 convolutions (``width``, ``2 width``
    channels), a linear."""

    def __init__(self, input_shape: tuple[int, ...], hidden: int, width: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), hidden),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``(B, d) -> (B, C, H, W)``: linear layers, then two stride-2 transposed convolutions
    (``2 width``, ``width`` channels)."""

    def __init__(self, input_shape: tuple[int, ...], latent_dim: int, hidden: int, width: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.grid = (2 * width, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, _numel(self.grid)),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, *self.grid))


def _check_conv_shape(input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3 or input_shape[1] % 4 or input_shape[2] % 4:
        raise ConfigError(
            f"option 'input_shape' = {list(input_shape)!r} is invalid for architecture 'conv': "
            "expected [channels, height, width] with height and width divisible by 4"
        )


def build_encoder(
    architecture: str, input_shape: tuple[int, ...], hidden: int, conv_width: int = 32
) -> nn.Module:
    """The feature extractor ``(B, *input_shape) -> (B, hidden)`` named by ``architecture``
    (``conv_width``: channels of the first convolution of ``'conv'``)."""
    if architecture == "conv":
        _check_conv_shape(input_shape)
        return ConvEncoder(input_shape, hidden, conv_width)
    return MLPEncoder(input_shape, hidden)


def build_decoder(
    architecture: str,
    input_shape: tuple[int, ...],
    latent_dim: int,
    hidden: int,
    conv_width: int = 32,
) -> nn.Module:
    """The generator ``(B, d) -> (B, *input_shape)`` (pre-activations) of ``architecture``
    (``conv_width``: channels of the last transposed convolution's input of ``'conv'``)."""
    if architecture == "conv":
        _check_conv_shape(input_shape)
        return ConvDecoder(input_shape, latent_dim, hidden, conv_width)
    return MLPDecoder(input_shape, latent_dim, hidden)
