"""The eigenflow exception hierarchy.

Every error eigenflow raises on purpose derives from :class:`EigenflowError`, so a caller can
catch them all at once. Messages say what was given, what is allowed and, for names, the
closest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "DuplicatePluginError",
    "EigenflowError",
    "EigenflowWarning",
    "InputError",
    "NonFiniteLossError",
    "NotSupportedError",
    "PipelineSpecError",
    "PluginLoadWarning",
    "UnknownKindError",
    "UnknownNameError",
    "closest",
    "did_you_mean",
]


class EigenflowError(Exception):
    """Root of every error raised by eigenflow."""


class EigenflowWarning(UserWarning):
    """Root of every warning issued by eigenflow."""


class PluginLoadWarning(EigenflowWarning):
    """A plugin could not be loaded or registered and was skipped."""


class UnknownKindError(EigenflowError, KeyError):
    """A component kind that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownNameError(EigenflowError, KeyError):
    """A plugin name that is not registered for its kind."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicatePluginError(EigenflowError):
    """Two plugins registered the same name for the same kind."""


class ConfigError(EigenflowError, ValueError):
    """An unknown option or a bad option value for a plugin."""


class InputError(EigenflowError, ValueError):
    """A tensor argument that a function cannot accept (shape, dtype, symmetry, finiteness)."""


class NotSupportedError(EigenflowError):
    """An operation the chosen plugin does not provide (e.g. ``eigh`` of a polynomial solver)."""


class PipelineSpecError(EigenflowError, ValueError):
    """A pipeline specification with one or more errors; ``errors`` lists them all."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid pipeline specification ({len(self.errors)} error(s)):\n{lines}")


class ConvergenceError(EigenflowError, RuntimeError):
    """An iterative algorithm did not converge within its cap for some inputs."""


class ConvergenceWarning(EigenflowWarning):
    """An iterative algorithm did not converge within its cap for some inputs."""


class NonFiniteLossError(EigenflowError, FloatingPointError):
    """Training stopped because a loss term became NaN or infinite."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate most similar to ``name``, or ``None`` when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Format the ``did you mean`` suffix of an unknown-name message (empty when no match)."""
    match = closest(name, candidates)
    return f"; did you mean {match!r}?" if match else ""
