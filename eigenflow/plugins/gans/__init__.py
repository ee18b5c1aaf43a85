"""Plugin family ``gans``: a small convolutional GAN trained by the engine's alternating
updates, and its experiments.

Registered components:

- model ``dcgan`` (:mod:`.model`): DCGAN-style generator and discriminator, hinge or
  non-saturating loss, optional mapping network;
- metric ``frechet-distance`` (:mod:`.frechet`): Fréchet distance between Gaussian fits of the
  features of a classifier trained locally on the dataset (not the Inception FID).
"""

from ...registry import hookimpl
from .frechet import FrechetDistance, FrechetDistanceConfig, frechet_distance
from .model import DCGAN, DCGANConfig
from .nets import Discriminator, Generator, MappingNetwork

__all__ = [
    "DCGAN",
    "DCGANConfig",
    "Discriminator",
    "FrechetDistance",
    "FrechetDistanceConfig",
    "Generator",
    "MappingNetwork",
    "eigenflow_register",
    "frechet_distance",
]


@hookimpl
def eigenflow_register(registry):
    """Registers the GAN model and its metric."""
    registry.add("model", DCGAN, name="dcgan")
    registry.add("metric", FrechetDistance, name="frechet-distance")
