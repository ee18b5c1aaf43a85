"""The kinds of component and the base class each kind's plugins derive from.

Kept apart from :mod:`eigenflow.core.component` so that the component bases and the
:class:`~eigenflow.core.solver.Solver` interface (which derives from
:class:`~eigenflow.core.component.Component`) do not import each other.
"""

from __future__ import annotations

from .component import Constraint, Dataset, Layer, Metric, Model, PipelineBase, Traversal
from .solver import Solver

__all__ = ["KINDS", "kind_base"]

_BASES: dict[str, type] = {
    "solver": Solver,
    "constraint": Constraint,
    "traversal": Traversal,
    "model": Model,
    "layer": Layer,
    "metric": Metric,
    "dataset": Dataset,
    "pipeline": PipelineBase,
}

KINDS: tuple[str, ...] = tuple(_BASES)
"""The kinds of component, in the order listings show them."""


def kind_base(kind: str) -> type:
    """The base class every plugin of ``kind`` (one of :data:`KINDS`) must derive from."""
    return _BASES[kind]
