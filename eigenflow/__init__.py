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
    CheckpointError,
    ConfigError,
    ConvergenceError,
    ConvergenceWarning,
    EigenflowError,
    EigenflowWarning,
    InputError,
    InvalidPluginError,
    NonFiniteLossError,
    NotSupportedError,
    PipelineSpecError,
    PluginLoadWarning,
    RunFolderError,
    UnknownKindError,
    UnknownNameError,
)
from .registry import hookimpl
from .runtime import Pipeline

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "EigenflowError",
    "EigenflowWarning",
    "InputError",
    "InvalidPluginError",
    "NonFiniteLossError",
    "NotSupportedError",
    "Pipeline",
    "PipelineSpecError",
    "PluginLoadWarning",
    "RunFolderError",
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
