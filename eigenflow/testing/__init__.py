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
from .sync import SYNCING_OPERATORS, record_host_syncs

__all__ = [
    "SYNCING_OPERATORS",
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
    "record_host_syncs",
    "reference_sqrt_invsqrt",
    "spd_from_eigenvalues",
]
