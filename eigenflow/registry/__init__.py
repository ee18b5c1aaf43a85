"""Registries, the pluggy hook specifications and plugin discovery."""

from .hookspec import hookimpl
from .registry import (
    AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginProblem,
    Registries,
    Registry,
    build_config,
    get_registries,
    plugin_entry_points,
    register_plugin,
    reset,
    unregister_plugin,
)

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PluginProblem",
    "Registries",
    "Registry",
    "build_config",
    "get_registries",
    "hookimpl",
    "plugin_entry_points",
    "register_plugin",
    "reset",
    "unregister_plugin",
]
