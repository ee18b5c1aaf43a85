"""Plugin family ``gans``: a small convolutional GAN trained by the engine's alternating
updates, and its experiments.

Registered components:

- model ``dcgan`` (:mod:`.model`): DCGAN-style generator and discriminator, hinge or
  non-saturating loss, optional mapping network.
"""

from ...registry import hookimpl
from .model import DCGAN, DCGANConfig
from .nets import Discriminator, Generator, MappingNetwork

__all__ = [
    "DCGAN",
    "DCGANConfig",
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "eigenflow_register",
]


@hookimpl
def eigenflow_register(registry):
    """Registers the GAN model."""
    registry.add("model", DCGAN, name="dcgan")
