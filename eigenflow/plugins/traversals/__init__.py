"""Latent traversals and generator geometry (thesis 000, Sec. 4.3-4.5; seeds 001, 003)."""

from ...registry import hookimpl
from .hessian_metric import HessianMetric, HessianSpectrum
from .householder import HouseholderDirections
from .jacobian_path import JacobianPath
from .metrics import AlignmentMap, VPScore
from .pipeline import TraversePipeline
from .potential_flow import LinearDirections, PotentialFlow
from .sefa import SeFa

__all__ = [
    "AlignmentMap",
    "HessianMetric",
    "HessianSpectrum",
    "HouseholderDirections",
    "JacobianPath",
    "LinearDirections",
    "PotentialFlow",
    "SeFa",
    "TraversePipeline",
    "VPScore",
]


@hookimpl
def eigenflow_register(registry):
    registry.add("traversal", SeFa, name="sefa")
    registry.add("traversal", HouseholderDirections, name="householder")
    registry.add("traversal", JacobianPath, name="jacobian-path")
    registry.add("traversal", HessianMetric, name="hessian-metric")
    registry.add("traversal", PotentialFlow, name="potential-flow")
    registry.add("traversal", LinearDirections, name="linear")
    registry.add("metric", HessianSpectrum, name="hessian-spectrum")
    registry.add("metric", VPScore, name="vp-score")
    registry.add("metric", AlignmentMap, name="alignment-map")
    registry.add("pipeline", TraversePipeline, name="traverse")
