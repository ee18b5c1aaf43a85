"""Composition of registered components into runnable pipelines."""

from .pipeline import Pipeline, Stage, load_spec

__all__ = ["Pipeline", "Stage", "load_spec"]
