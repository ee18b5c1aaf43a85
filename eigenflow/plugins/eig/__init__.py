"""Eigendecomposition solvers sharing one code path (thesis 000, Ch. 3.2-3.3): an exact
``eigh`` forward and a pluggable backward (``svd`` exact; ``svd-pade``, ``svd-taylor``,
``svd-pi``, ``svd-trunc``, ``svd-topn``, ``svd-clip`` smoothed)."""

from ...registry import hookimpl
from .baselines import SVDClipSolver, SVDPISolver, SVDTopNSolver, SVDTruncSolver
from .pade import SVDPadeSolver
from .svd import SVDSolver
from .taylor import SVDTaylorSolver


@hookimpl
def eigenflow_register(registry):
    registry.add("solver", SVDSolver, name="svd")
    registry.add("solver", SVDPadeSolver, name="svd-pade")
    registry.add("solver", SVDTaylorSolver, name="svd-taylor")
    registry.add("solver", SVDPISolver, name="svd-pi")
    registry.add("solver", SVDTruncSolver, name="svd-trunc")
    registry.add("solver", SVDTopNSolver, name="svd-topn")
    registry.add("solver", SVDClipSolver, name="svd-clip")
