"""Moved to :mod:`eigenflow.runtime.trainer`; this name stays importable for existing code."""

from .runtime import trainer as _trainer
from .runtime.trainer import *  # noqa: F403 - the alias re-exports the module's public names

__all__ = list(_trainer.__all__)
