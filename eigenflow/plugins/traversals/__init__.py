"""Latent traversals and generator geometry (thesis 000, Sec. 4.3-4.5; seeds 001, 003)."""

from ...registry import hookimpl
from .hessian_metric import HessianMetric, HessianSpectrum
from .jacobian_path import JacobianPath
from .sefa import SeFa

__all__ = ["HessianMetric", "HessianSpectrum", "JacobianPath", "SeFa"]


@hookimpl
def eigenflow_register(registry):
    registry.add("traversal", SeFa, name="sefa")
    registry.add("traversal", JacobianPath, name="jacobian-path")
    registry.add("traversal", HessianMetric, name="hessian-metric")
    registry.add("metric", HessianSpectrum, name="hessian-spectrum")
