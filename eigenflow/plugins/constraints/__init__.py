"""Plugin family ``constraints``: orthogonality constraints on weights, gradients and learning
rates (thesis 000, Sec. 3.5, 4.3, 4.4) and the Jacobian alignment regulariser (seed 001).

Registered (kind ``constraint``): ``nog``, ``olr``, ``spectral-norm``, ``orth-loss``,
``orth-weight``, ``householder``, ``jacobian-alignment``; and the pipeline
``orth-conditioning`` (the covariance-conditioning experiment of Sec. 3.5).
"""

from ...registry import hookimpl
from .experiment import OrthConditioning
from .gradient import NearestOrthogonalGradient, OptimalLearningRate, optimal_learning_rate
from .householder import Householder, HouseholderProjector
from .jacobian import JacobianAlignment
from .training import ConstraintSet, MetricRecorder
from .weight import OrthLoss, OrthWeight, SpectralNorm

__all__ = [
    "CONSTRAINTS",
    "ConstraintSet",
    "Householder",
    "HouseholderProjector",
    "JacobianAlignment",
    "MetricRecorder",
    "NearestOrthogonalGradient",
    "OptimalLearningRate",
    "OrthConditioning",
    "OrthLoss",
    "OrthWeight",
    "SpectralNorm",
    "optimal_learning_rate",
]

CONSTRAINTS = {
    "nog": NearestOrthogonalGradient,
    "olr": OptimalLearningRate,
    "spectral-norm": SpectralNorm,
    "orth-loss": OrthLoss,
    "orth-weight": OrthWeight,
    "householder": Householder,
    "jacobian-alignment": JacobianAlignment,
}


@hookimpl
def eigenflow_register(registry):
    """Registers this family's constraints."""
    for name, cls in CONSTRAINTS.items():
        registry.add("constraint", cls, name=name)
    registry.add("pipeline", OrthConditioning, name="orth-conditioning")
