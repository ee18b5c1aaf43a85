"""The solver benchmark behind ``eigenflow bench`` and ``benchmarks/run_solvers.py``.

Every registered solver (third-party ones included) is timed side by side in one run with two
peers implemented here, independently of eigenflow's solvers:

``torch.linalg.eigh``
    the matrix function through ``torch.linalg.eigh`` with plain autograd
    (``V diag(f(lambda)) V^T``), and ``torch.linalg.eigh`` itself for the ``eigh`` op;
``torch.linalg.svd``
    ``torch.linalg.svd`` as an eigendecomposition (``eigh`` op only, issue 5's grid);

and the ``ns`` solver (Newton-Schulz with autograd) when it is registered. For each solver,
op (``sqrt``, ``invsqrt``, ``eigh``), device, dtype, batch size ``B`` and matrix size ``n`` it
measures the median over repeats of the forward, the backward (after an untimed forward) and
the forward+backward, plus the relative Frobenius error against a float64 ``torch.linalg.eigh``
reference on the same input. Inputs are random SPD matrices of a chosen condition number made
deterministically from a seed (:func:`make_spd`).

Results are rows (dicts with ``COLUMNS``), written as CSV and JSON, plotted (time vs batch,
time vs size, error vs time as in thesis 000, Fig. 2.3) and summarised with the speed ratios
against ``torch.linalg.eigh`` and ``ns``. A solver that raises gives an error row; the run goes on.

The package is split by concern, each module importing only those before it:
``spec`` (the grid), ``inputs``,
``accuracy``, ``contenders``,
``timing``, ``reporting``,
``plots``, ``runner`` and
``cli`` (the options and :func:`main`); ``gradients``
is the gradient-quality report of ``--gradient-quality``; ``provenance`` records what produced
a stored result (script, commit, seeds, config, versions, a fingerprint of the source it
depends on) for every script under ``benchmarks/``. The console script imports this package
only for ``eigenflow bench``.
"""

from .accuracy import FLAG_ERROR, accuracy, add_flags, reference
from .cli import add_arguments, main, spec_from_args
from .contenders import Contender, parse_solver_spec, select_contenders
from .inputs import make_spd
from .plots import plot_results
from .reporting import add_ratios, environment, format_summary, load_results, write_results
from .runner import BenchInterrupted, run_benchmark
from .spec import (
    COLUMNS,
    EIGH_PEER,
    FULL_GRID,
    NS_SOLVER,
    OPS,
    QUICK_GRID,
    SVD_PEER,
    BenchSpec,
)

__all__ = [
    "COLUMNS",
    "EIGH_PEER",
    "FLAG_ERROR",
    "FULL_GRID",
    "NS_SOLVER",
    "OPS",
    "QUICK_GRID",
    "SVD_PEER",
    "BenchInterrupted",
    "BenchSpec",
    "Contender",
    "accuracy",
    "add_arguments",
    "add_flags",
    "add_ratios",
    "environment",
    "format_summary",
    "load_results",
    "main",
    "make_spd",
    "parse_solver_spec",
    "plot_results",
    "reference",
    "run_benchmark",
    "select_contenders",
    "spec_from_args",
    "write_results",
]
