"""Registered pipelines."""

from ..registry import hookimpl


@hookimpl
def eigenflow_register(registry):
    """Registers the built-in pipelines."""
