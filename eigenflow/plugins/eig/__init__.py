"""Eigendecomposition solvers sharing one code path (thesis 000, Ch. 3.2-3.3)."""

from ...registry import hookimpl
from .svd import SVDSolver


@hookimpl
def eigenflow_register(registry):
    registry.add("solver", SVDSolver, name="svd")
