"""Plugin family ``gans``: a small convolutional GAN trained by the engine's alternating
updates, and its experiments.

Registered components:

- model ``dcgan`` (:mod:`.model`): DCGAN-style generator and discriminator, hinge or
  non-saturating loss, optional mapping network;
- metric ``frechet-distance`` (:mod:`.frechet`): Fréchet distance between Gaussian fits of the
  features of a classifier trained locally on the dataset (not the Inception FID);
- pipeline ``gan-orth`` (:mod:`.orth`): the generator trained plain and with orthogonality
  constraints on its first layer (thesis 000, Sec. 4.3.3).
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
    """Registers the GAN model, its metric and its pipeline."""
    from .orth import GanOrth

    registry.add("model", DCGAN, name="dcgan")
    registry.add("metric", FrechetDistance, name="frechet-distance")
    registry.add("pipeline", GanOrth, name="gan-orth")
