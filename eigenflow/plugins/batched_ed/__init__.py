"""Batch-efficient eigendecomposition for small and medium matrices (thesis 000, Sec. 3.4).

Solver ``batched-ed``: a pure PyTorch implementation (:mod:`.torch_impl`, any device and size)
and a fused Triton kernel (:mod:`.triton_impl`, ``n <= 64``, imported only when used).
"""

from ...registry import hookimpl
from .solver import BatchedEDConfig, BatchedEDSolver, ConvergenceError, ConvergenceWarning

__all__ = ["BatchedEDConfig", "BatchedEDSolver", "ConvergenceError", "ConvergenceWarning"]


@hookimpl
def eigenflow_register(registry):
    registry.add("solver", BatchedEDSolver, name="batched-ed")
