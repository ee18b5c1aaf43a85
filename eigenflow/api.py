"""The public functions: registry access and the functional solver API."""

from __future__ import annotations

import builtins
import types
from collections.abc import Sequence
from typing import Any

import torch

from .core.errors import NotSupportedError
from .registry.registry import get_registries

__all__ = ["create", "eigh", "get", "list", "matrix_invsqrt", "matrix_sqrt", "matrix_sqrt_invsqrt"]


def list(
    kind: str | None = None, pattern: str | None = None, exclude: Sequence[str] = ()
) -> builtins.list[str] | dict[str, builtins.list[str]]:
    """Registered component names.

    Parameters
    ----------
    kind
        One kind (``"solver"``, ``"layer"``, ...); ``None`` for every kind.
    pattern
        An fnmatch pattern the names must match, e.g. ``"svd*"``.
    exclude
        fnmatch patterns of names to leave out.

    Returns
    -------
    list of str or dict
        The sorted names of ``kind``, or ``{kind: names}`` for every kind.
    """
    registries = get_registries()
    if kind is None:
        return {k: registries[k].names(pattern, exclude) for k in registries.kinds}
    return registries[kind].names(pattern, exclude)


def get(kind: str, name: str) -> type:
    """The registered class of component ``name`` of ``kind``."""
    return get_registries()[kind].get(name)


def create(kind: str, name: str, /, **options: Any) -> Any:
    """Build component ``name`` of ``kind`` with validated keyword ``options``.

    Unknown options and bad values raise :class:`~eigenflow.ConfigError` naming the plugin,
    the option, the value and what is allowed.
    """
    return get_registries()[kind].create(name, **options)


_solver_cache: dict[tuple[str, tuple], Any] = {}
# The cached solvers again, as attributes of a module object named by _build_solver: a traced
# function reads each attribute when it needs it, so a solver built later in the same trace
# is found (a traced read of the dict would freeze its contents at the first look-up).
_solver_slots = types.ModuleType("eigenflow._solver_slots")


def _run_at_trace_time(fn: Any) -> Any:
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` (and
    with it Triton) when eigenflow is imported: the same marker, which dynamo reads when it
    meets the call (a test checks that torch still uses it)."""
    fn._dynamo_marked_constant = True
    return fn


@_run_at_trace_time
def _build_solver(method: str, key: tuple) -> str:
    """Build solver ``key`` into the cache (once) and return its slot's name.

    Under ``torch.compile`` this runs eagerly at trace time instead of being traced
    (registry discovery takes a lock and imports plugins; configs derive coefficients in
    exact arithmetic); the traced code then reads the slot without a lock.
    """
    if key not in _solver_cache:
        _solver_cache[key] = create("solver", method, **dict(key[1]))
        setattr(_solver_slots, f"s{len(_solver_cache)}", _solver_cache[key])
    slot = next(f"s{i + 1}" for i, k in enumerate(_solver_cache) if k == key)
    return slot


def _hashable(value: Any) -> Any:
    """Lists (``degree=[6, 6]``, as the docs write them) as tuples, recursively, so the
    option set can key the cache; the configs convert lists and tuples alike."""
    if isinstance(value, builtins.list | tuple):  # this module defines its own list()
        return tuple(_hashable(v) for v in value)
    return value


def _solver(method: str, options: dict[str, Any]) -> Any:
    try:
        key = (method, tuple(sorted((k, _hashable(v)) for k, v in options.items())))
        hash(key)
    except TypeError:  # unhashable option values: build afresh (not cached, not traceable)
        return create("solver", method, **options)
    return getattr(_solver_slots, _build_solver(method, key))


def matrix_sqrt(
    A: torch.Tensor, method: str = "mpa-lya", *, check: bool = True, **options: Any
) -> torch.Tensor:
    """Differentiable matrix square root of symmetric PSD ``A (..., n, n)`` by solver ``method``."""
    return _solver(method, options).sqrt(A, check=check)


def matrix_invsqrt(
    A: torch.Tensor, method: str = "mpa-lya", *, check: bool = True, **options: Any
) -> torch.Tensor:
    """Differentiable inverse square root of symmetric PD ``A (..., n, n)`` by ``method``."""
    return _solver(method, options).invsqrt(A, check=check)


def matrix_sqrt_invsqrt(
    A: torch.Tensor, method: str = "mpa-lya", *, check: bool = True, **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both ``A^(1/2)`` and ``A^(-1/2)`` from one call of solver ``method``."""
    return _solver(method, options).sqrt_invsqrt(A, check=check)


def eigh(
    A: torch.Tensor, method: str = "svd", *, check: bool = True, **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable eigendecomposition (ascending eigenvalues, eigenvector columns)."""
    solver = _solver(method, options)
    if not solver.provides_eigh:
        registries = get_registries()
        able = [
            n for n in registries["solver"].names() if registries["solver"].get(n).provides_eigh
        ]
        raise NotSupportedError(
            f"solver {method!r} has no eigh; solvers with eigh: {', '.join(able)}"
        )
    return solver.eigh(A, check=check)
