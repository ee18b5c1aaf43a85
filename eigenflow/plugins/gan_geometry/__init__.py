"""Plugin family ``gan_geometry``: measuring the latent geometry of generators.

Registered: the metrics ``higgins-score`` (seed 001, Alg. 4; Higgins et al. 2017) and
``path-length`` (thesis 000, Sec. 4.4.3's PIPL in pixel or feature space); the pipelines
``householder-gan`` (thesis 000, Sec. 4.4), ``alignment-gan`` (seed 001, Sec. 6) and
``hessian-analysis`` (seed 003, Sec. 3-4). :func:`hessian_geometry` is seed 003's
metric-tensor analysis, built on the traversal ``hessian-metric`` and the metric
``hessian-spectrum``.
"""

from ...registry import hookimpl
from .hessian_analysis import hessian_geometry, random_direction_speeds
from .higgins import HigginsScore, HigginsScoreConfig, InstanceSampler, factor_groups
from .path_length import PathLength, PathLengthConfig, direction_path_lengths, unit_directions
from .pipelines import AlignmentGAN, HessianAnalysis, HouseholderGAN

__all__ = [
    "AlignmentGAN",
    "HessianAnalysis",
    "HigginsScore",
    "HigginsScoreConfig",
    "HouseholderGAN",
    "InstanceSampler",
    "PathLength",
    "PathLengthConfig",
    "direction_path_lengths",
    "factor_groups",
    "hessian_geometry",
    "random_direction_speeds",
    "unit_directions",
]


@hookimpl
def eigenflow_register(registry):
    """Registers the generator-geometry metrics."""
    registry.add("metric", HigginsScore, name="higgins-score")
    registry.add("metric", PathLength, name="path-length")
    registry.add("pipeline", HouseholderGAN, name="householder-gan")
    registry.add("pipeline", AlignmentGAN, name="alignment-gan")
    registry.add("pipeline", HessianAnalysis, name="hessian-analysis")
