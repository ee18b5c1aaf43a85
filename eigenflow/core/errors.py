"""The eigenflow exception hierarchy.

Every error eigenflow raises on purpose derives from :class:`EigenflowError`, so a caller can
catch them all at once. Messages say what was given, what is allowed and, for names, the
closest valid one.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "DuplicatePluginError",
    "EigenflowError",
    "EigenflowWarning",
    "InputError",
    "InvalidPluginError",
    "NonFiniteLossError",
    "NotSupportedError",
    "PipelineSpecError",
    "PluginLoadWarning",
    "RunFolderError",
    "UnknownKindError",
    "UnknownNameError",
    "closest",
    "did_you_mean",
    "edit_distance",
    "warn_at_caller",
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


class InvalidPluginError(EigenflowError, ValueError):
    """:func:`~eigenflow.registry.registry.register_plugin` was given a plugin it cannot
    register (a hook whose arguments its specification does not provide, or a plugin name or
    object already registered)."""


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


class CheckpointError(EigenflowError, OSError):
    """A checkpoint or weights file cannot be read, is corrupt, or does not fit the model."""


class RunFolderError(EigenflowError):
    """An output folder already holds a run (and neither resume nor overwrite was asked)."""


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    two neighbouring characters each cost 1 (``edit_distance("sdv", "svd") == 1``)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate most similar to ``name``, or ``None`` when nothing is close.

    Completions, candidates that start with ``name`` (``mpa`` -> ``mpa-lya``), come first;
    then the smallest :func:`edit_distance` (``svd_pade`` -> ``svd-pade``), then the longest
    common prefix (``fvae`` -> ``ffvae`` rather than ``vae``), then the shortest, then
    alphabetical order. Any other candidate is close when at most 40% of the
    longer name's characters (at least one) differ (``alfa`` -> ``alpha``). Case is ignored.
    """
    query = str(name).lower()
    best: tuple[tuple[int, int, int, int, str], str] | None = None
    for candidate in candidates:
        text = str(candidate).lower()
        completion = len(query) >= 2 and text.startswith(query)
        distance = edit_distance(query, text)
        if not completion and distance > max(1, round(0.4 * max(len(query), len(text)))):
            continue
        shared = next((i for i, (a, b) in enumerate(zip(query, text)) if a != b), None)
        shared = min(len(query), len(text)) if shared is None else shared
        key = (0 if completion else distance, distance, -shared, len(text), text)
        if best is None or key < best[0]:
            best = (key, str(candidate))
    return None if best is None else best[1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Format the ``did you mean`` suffix of an unknown-name message (empty when no match)."""
    match = closest(name, candidates)
    return f"; did you mean {match!r}?" if match else ""


def _internal_dirs() -> tuple[str, ...]:
    """eigenflow's package directory and, when imported, PyTorch's."""
    dirs = [str(Path(__file__).resolve().parent.parent)]
    torch = sys.modules.get("torch")
    if torch is not None and torch.__file__:
        dirs.append(str(Path(torch.__file__).resolve().parent))
    return tuple(dirs)


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the user's line: the first frame outside eigenflow and
    PyTorch. (A fixed ``stacklevel`` lands in ``torch/autograd/function.py`` when the warning
    comes from a forward that autograd calls, and the once-per-location filter then hides it
    from every other caller.)"""
    internal = _internal_dirs()
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called us
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(internal):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
