"""Plugin family ``models``: the VAE family, the potential-flow VAEs and their pipelines.

Registered components:

- models ``vae``, ``beta-vae``, ``beta-vae-fullcov`` (:mod:`.vae`), ``pde-vae``, ``ffvae``
  (:mod:`.flows`);
- pipelines ``train`` and ``ffvae-digits`` (:mod:`.pipelines`).
"""

from ...registry import hookimpl
from .flows import FFVAE, PDEVAE
from .vae import VAE, BetaVAE, BetaVAEFullCov

__all__ = ["FFVAE", "PDEVAE", "VAE", "BetaVAE", "BetaVAEFullCov", "eigenflow_register"]


@hookimpl
def eigenflow_register(registry):
    """Registers the models and the training pipelines."""
    from .pipelines import FFVAEDigitsPipeline, TrainPipeline

    registry.add("model", VAE, name="vae")
    registry.add("model", BetaVAE, name="beta-vae")
    registry.add("model", BetaVAEFullCov, name="beta-vae-fullcov")
    registry.add("model", PDEVAE, name="pde-vae")
    registry.add("model", FFVAE, name="ffvae")
    registry.add("pipeline", TrainPipeline, name="train")
    registry.add("pipeline", FFVAEDigitsPipeline, name="ffvae-digits")
