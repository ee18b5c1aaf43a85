"""Datasets generated locally (nothing is downloaded): ``digits-sequences``, ``dsprites``,
``shapes3d-lite``, ``synthetic-linear``, ``synthetic-nonlinear``.

Generated arrays are cached as ``.npz`` files keyed by a hash of the config, under
``$EIGENFLOW_CACHE/datasets`` or ``~/.cache/eigenflow/datasets``.
"""

from ...registry import hookimpl
from ._base import CACHE_ENV, GeneratedDataset, GeneratedDatasetConfig, cache_root
from .digits import DigitsSequences, DigitsSequencesConfig, render_digits
from .dsprites import DSprites, DSpritesConfig, render_sprites
from .shapes3d import Shapes3DLite, Shapes3DLiteConfig, render_scenes
from .synthetic import (
    SyntheticLinear,
    SyntheticLinearConfig,
    SyntheticNonlinear,
    SyntheticNonlinearConfig,
)

__all__ = [
    "CACHE_ENV",
    "DSprites",
    "DSpritesConfig",
    "DigitsSequences",
    "DigitsSequencesConfig",
    "GeneratedDataset",
    "GeneratedDatasetConfig",
    "Shapes3DLite",
    "Shapes3DLiteConfig",
    "SyntheticLinear",
    "SyntheticLinearConfig",
    "SyntheticNonlinear",
    "SyntheticNonlinearConfig",
    "cache_root",
    "render_digits",
    "render_scenes",
    "render_sprites",
]


@hookimpl
def eigenflow_register(registry):
    """Registers the generated datasets."""
    registry.add("dataset", DigitsSequences, name="digits-sequences")
    registry.add("dataset", DSprites, name="dsprites")
    registry.add("dataset", Shapes3DLite, name="shapes3d-lite")
    registry.add("dataset", SyntheticLinear, name="synthetic-linear")
    registry.add("dataset", SyntheticNonlinear, name="synthetic-nonlinear")
