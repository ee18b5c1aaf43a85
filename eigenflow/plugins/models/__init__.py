"""Plugin family ``models``: the VAE family, the potential-flow VAEs and their pipelines.

Registered components:

- models ``vae``, ``beta-vae``, ``beta-vae-fullcov`` (:mod:`.vae`), ``pde-vae``, ``ffvae``
  (:mod:`.flows`), ``factor-vae`` (:mod:`.factor`), ``slow-vae`` (:mod:`.slow`);
- pipelines ``train`` and ``ffvae-digits`` (:mod:`.pipelines`).
"""

from ...registry import hookimpl
from .factor import FactorVAE
from .flows import FFVAE, PDEVAE
from .slow import SlowVAE
from .vae import VAE, BetaVAE, BetaVAEFullCov

__all__ = [
    "FFVAE",
    "PDEVAE",
    "VAE",
    "BetaVAE",
    "BetaVAEFullCov",
    "FactorVAE",
    "SlowVAE",
    "eigenflow_register",
]


@hookimpl
def eigenflow_register(registry):
    """Registers the models and the training pipelines."""
    from .pipelines import FFVAEDigitsPipeline, TrainPipeline

    registry.add("model", VAE, name="vae")
    registry.add("model", BetaVAE, name="beta-vae")
    registry.add("model", BetaVAEFullCov, name="beta-vae-fullcov")
    registry.add("model", PDEVAE, name="pde-vae")
    registry.add("model", FFVAE, name="ffvae")
    registry.add("model", FactorVAE, name="factor-vae")
    registry.add("model", SlowVAE, name="slow-vae")
    registry.add("pipeline", TrainPipeline, name="train")
    registry.add("pipeline", FFVAEDigitsPipeline, name="ffvae-digits")
