"""Interfaces and shared math. Imports nothing from :mod:`eigenflow.plugins`."""

from .checks import check_square, check_symmetric, check_tensor
from .component import (
    Component,
    Constraint,
    Dataset,
    Layer,
    Metric,
    Model,
    PipelineBase,
    RunContext,
    Traversal,
)
from .config import ComponentRef, component_option, config, describe_config, option
from .errors import (
    ConfigError,
    DuplicatePluginError,
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
from .kinds import KINDS, kind_base
from .solver import Solver

__all__ = [
    "KINDS",
    "Component",
    "ComponentRef",
    "ConfigError",
    "Constraint",
    "Dataset",
    "DuplicatePluginError",
    "EigenflowError",
    "EigenflowWarning",
    "InputError",
    "Layer",
    "Metric",
    "Model",
    "NonFiniteLossError",
    "NotSupportedError",
    "PipelineBase",
    "PipelineSpecError",
    "PluginLoadWarning",
    "RunContext",
    "Solver",
    "Traversal",
    "UnknownKindError",
    "UnknownNameError",
    "check_square",
    "check_symmetric",
    "check_tensor",
    "component_option",
    "config",
    "describe_config",
    "kind_base",
    "option",
]
