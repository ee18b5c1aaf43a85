"""Moved to :mod:`eigenflow.runtime.pipeline`; this name stays importable for existing code."""

from ..runtime.pipeline import Pipeline, Stage, load_spec

__all__ = ["Pipeline", "Stage", "load_spec"]
