"""Test helpers for eigenflow and its plugin authors: the conformance suite per kind and
matrices with known spectra. Needs ``pytest`` (the ``test`` extra)."""

from .conformance import (
    ComponentConformance,
    ConstraintConformance,
    DatasetConformance,
    LayerConformance,
    MetricConformance,
    ModelConformance,
    PipelineConformance,
    SolverConformance,
    TraversalConformance,
)
from .matrices import random_orthogonal, random_spd, reference_sqrt_invsqrt, spd_from_eigenvalues

__all__ = [
    "ComponentConformance",
    "ConstraintConformance",
    "DatasetConformance",
    "LayerConformance",
    "MetricConformance",
    "ModelConformance",
    "PipelineConformance",
    "SolverConformance",
    "TraversalConformance",
    "random_orthogonal",
    "random_spd",
    "reference_sqrt_invsqrt",
    "spd_from_eigenvalues",
]
