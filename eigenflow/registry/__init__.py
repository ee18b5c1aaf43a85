"""Registries, the pluggy hook specifications and plugin discovery."""

from .hookspec import hookimpl
from .registry import (
    AUTOLOAD_ENV,
    DEBUG_ENV,
    ENTRY_POINT_GROUP,
    PLUGINS_ENV,
    InvalidPluginError,
    PluginProblem,
    PluginRecord,
    Registries,
    Registry,
    build_config,
    debug_enabled,
    declared_registrations,
    get_registries,
    plugin_entry_points,
    register_plugin,
    reset,
    unregister_plugin,
)

__all__ = [
    "AUTOLOAD_ENV",
    "DEBUG_ENV",
    "ENTRY_POINT_GROUP",
    "PLUGINS_ENV",
    "InvalidPluginError",
    "PluginProblem",
    "PluginRecord",
    "Registries",
    "Registry",
    "build_config",
    "debug_enabled",
    "declared_registrations",
    "get_registries",
    "hookimpl",
    "plugin_entry_points",
    "register_plugin",
    "reset",
    "unregister_plugin",
]
