"""eigenflow: differentiable spectral methods for deep learning, as plugins.

>>> import eigenflow as ef
>>> ef.list("solver")              # doctest: +SKIP
>>> ef.matrix_sqrt(A, method="svd")  # doctest: +SKIP
"""

from . import core, registry
from ._version import __version__
from .api import create, eigh, get, list, matrix_invsqrt, matrix_sqrt, matrix_sqrt_invsqrt
from .core import errors
from .core.errors import (
    ConfigError,
    ConvergenceError,
    ConvergenceWarning,
    EigenflowError,
    EigenflowWarning,
    InputError,
    NonFiniteLossError,
    NotSupportedError,
    PipelineSpecError,
    PluginLoadWarning,
    UnknownKindError,
    UnknownNameError,
)
from .pipeline import Pipeline
from .registry import hookimpl

__all__ = [
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "EigenflowError",
    "EigenflowWarning",
    "InputError",
    "NonFiniteLossError",
    "NotSupportedError",
    "Pipeline",
    "PipelineSpecError",
    "PluginLoadWarning",
    "UnknownKindError",
    "UnknownNameError",
    "__version__",
    "core",
    "create",
    "eigh",
    "errors",
    "get",
    "hookimpl",
    "list",
    "matrix_invsqrt",
    "matrix_sqrt",
    "matrix_sqrt_invsqrt",
    "registry",
]
