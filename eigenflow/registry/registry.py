"""Registries of components, one per kind, filled by plugins through pluggy."""

from __future__ import annotations

import fnmatch
import importlib.metadata as metadata
import os
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import pluggy

from ..core.component import KINDS, Component, kind_base
from ..core.config import ComponentRef, validate_options
from ..core.errors import (
    ConfigError,
    DuplicatePluginError,
    PluginLoadWarning,
    UnknownKindError,
    UnknownNameError,
    did_you_mean,
)
from . import hookspec

__all__ = [
    "AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PluginProblem",
    "Registries",
    "Registry",
    "get_registries",
    "register_plugin",
    "reset",
]

ENTRY_POINT_GROUP = "eigenflow"
#: Set to ``1`` to load only eigenflow's own plugins (debugging a broken environment).
AUTOLOAD_ENV = "EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DIST = "eigenflow"
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")


@attrs.frozen
class PluginProblem:
    """A plugin, or one registration, that was skipped, and why."""

    distribution: str
    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"{self.plugin} (from {self.distribution}): {self.reason}"


@attrs.frozen
class Entry:
    """One registered component class and where it came from."""

    cls: type
    distribution: str
    plugin: str


class Registry:
    """The components of one kind, by name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self, pattern: str | None = None, exclude: Sequence[str] = ()) -> list[str]:
        """Sorted names matching the fnmatch ``pattern`` and none of ``exclude``."""
        names = sorted(self._entries)
        if pattern is not None:
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        for ex in exclude:
            names = [n for n in names if not fnmatch.fnmatchcase(n, ex)]
        return names

    def entry(self, name: str) -> Entry:
        """The :class:`Entry` of ``name``; unknown names suggest the closest one."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def get(self, name: str) -> type:
        """The registered class of ``name``."""
        return self.entry(name).cls

    def unknown_message(self, name: object) -> str:
        """``unknown solver 'x'; did you mean 'y'? (available: ...)``."""
        available = ", ".join(sorted(self._entries)) or "(none registered)"
        hint = did_you_mean(str(name), self._entries)
        return f"unknown {self.kind} {name!r}{hint} (available: {available})"

    def create(self, name: str, /, **options: Any) -> Any:
        """Build the component ``name`` from keyword ``options`` (validated)."""
        cls = self.get(name)
        config = build_config(self.kind, name, cls.Config, options)
        return cls(config)

    def _add(self, name: str, entry: Entry) -> None:
        self._entries[name] = entry

    def _remove(self, name: str) -> None:
        self._entries.pop(name, None)


def build_config(kind: str, name: str, config_cls: type, options: dict[str, Any]) -> Any:
    """Validate ``options`` for the component ``kind name`` and return its config."""
    config, errors = validate_options(config_cls, options, resolve_component=resolve_reference)
    if errors:
        raise ConfigError(f"{kind} {name!r}: " + "; ".join(errors))
    return config


def resolve_reference(kind: str, ref: ComponentRef, path: str) -> list[str]:
    """Problems with a reference to a component (unknown name, bad options), with ``path``."""
    registry = get_registries()[kind]
    if ref.name not in registry:
        return [f"{path}: {registry.unknown_message(ref.name)}"]
    cls = registry.get(ref.name)
    _, errors = validate_options(
        cls.Config, dict(ref.options), resolve_component=resolve_reference, path=f"{path}."
    )
    return errors


class Registries:
    """The registry of every kind; the object passed to ``eigenflow_register`` hooks.

    ``registry.add(kind, cls)`` registers a component; ``registry[kind]`` is that kind's
    :class:`Registry`; ``problems`` lists the plugins and registrations that were skipped.
    """

    def __init__(self) -> None:
        self._by_kind = {kind: Registry(kind) for kind in KINDS}
        self.problems: list[PluginProblem] = []
        self.plugins: list[tuple[str, str]] = []  # (distribution, plugin) loaded
        self._owner = (BUILTIN_DIST, "(direct)")
        self._added: list[tuple[str, str]] = []

    def __getitem__(self, kind: str) -> Registry:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownKindError(
                f"unknown kind {kind!r}{did_you_mean(kind, KINDS)} (available: {', '.join(KINDS)})"
            ) from None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The component kinds, in their documented order."""
        return KINDS

    def add(self, kind: str, cls: type, *, name: str | None = None) -> type:
        """Register ``cls`` as a component of ``kind`` (under ``name`` or ``cls.name``).

        A name already taken is an error for eigenflow's own plugins; for a third-party
        plugin the new registration is skipped and reported.
        """
        registry = self[kind]
        base = kind_base(kind)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{kind} plugins must derive from {base.__module__}.{base.__name__}")
        name = name or cls.name
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"{kind} name {name!r} must be lowercase letters and digits joined by hyphens"
            )
        distribution, plugin = self._owner
        if name in registry:
            previous = registry.entry(name)
            message = (
                f"{kind} {name!r} is already registered by {previous.plugin} "
                f"(from {previous.distribution})"
            )
            if distribution == BUILTIN_DIST and previous.distribution == BUILTIN_DIST:
                raise DuplicatePluginError(message)
            self._report(distribution, plugin, f"skipped registration: {message}")
            return cls
        if cls.name != name or cls.kind != kind:
            cls.name = name  # type: ignore[misc]
            cls.kind = kind  # type: ignore[misc]
        registry._add(name, Entry(cls, distribution, plugin))
        self._added.append((kind, name))
        return cls

    @contextmanager
    def owned_by(self, distribution: str, plugin: str) -> Iterator[None]:
        """Attribute registrations made inside the block to ``plugin`` of ``distribution``;
        if the block raises, its registrations are rolled back and the failure re-raised."""
        previous, self._owner = self._owner, (distribution, plugin)
        start = len(self._added)
        try:
            yield
        except BaseException:
            for kind, name in self._added[start:]:
                self._by_kind[kind]._remove(name)
            del self._added[start:]
            raise
        finally:
            self._owner = previous

    def _report(self, distribution: str, plugin: str, reason: str) -> None:
        problem = PluginProblem(distribution, plugin, reason)
        self.problems.append(problem)
        warnings.warn(f"eigenflow plugin {problem}", PluginLoadWarning, stacklevel=3)


# --------------------------------------------------------------------------- discovery

_lock = threading.RLock()
_registries: Registries | None = None
_manager: pluggy.PluginManager | None = None
_extra_plugins: list[tuple[object, str]] = []


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspec.PROJECT_NAME)
    pm.add_hookspecs(hookspec)
    return pm


def _autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _entry_points() -> list[metadata.EntryPoint]:
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def dist_name(ep: metadata.EntryPoint) -> str:
        return ep.dist.name if ep.dist is not None else "(unknown)"

    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in eps:  # an editable install can list the same distribution twice
        key = (dist_name(ep), ep.name)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    # eigenflow's own plugins first, then third-party plugins in a stable order
    return sorted(unique, key=lambda ep: (dist_name(ep) != BUILTIN_DIST, dist_name(ep), ep.name))


def _load(registries: Registries) -> pluggy.PluginManager:
    pm = _new_manager()
    skip_third_party = _autoload_disabled()
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else "(unknown)"
        if dist != BUILTIN_DIST and skip_third_party:
            continue
        label = f"{dist}:{ep.name}"
        try:
            module = ep.load()
            pm.register(module, name=label)
        except Exception as exc:  # a broken third-party plugin must not break eigenflow
            if dist == BUILTIN_DIST:
                raise
            registries._report(dist, ep.name, f"failed to load: {type(exc).__name__}: {exc}")
            continue
        _register_one(registries, pm, label, dist, ep.name)
    for obj, name in _extra_plugins:
        pm.register(obj, name=name)
        _register_one(registries, pm, name, "(in-process)", name)
    return pm


def _register_one(
    registries: Registries, pm: pluggy.PluginManager, label: str, dist: str, plugin: str
) -> None:
    """Call one plugin's registration hook, attributing what it registers."""
    impls = [i for i in pm.hook.eigenflow_register.get_hookimpls() if i.plugin_name == label]
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=label)
        if dist == BUILTIN_DIST:
            raise
        registries._report(dist, plugin, f"invalid plugin: {exc}")
        return
    try:
        with registries.owned_by(dist, plugin):
            for impl in impls:
                impl.function(registry=registries)
    except DuplicatePluginError:
        raise
    except Exception as exc:
        if dist == BUILTIN_DIST:
            raise
        registries._report(dist, plugin, f"registration failed: {type(exc).__name__}: {exc}")
        return
    registries.plugins.append((dist, plugin))


def get_registries() -> Registries:
    """The process-wide registries, discovered on first use (once)."""
    global _registries, _manager
    if _registries is None:
        with _lock:
            if _registries is None:
                registries = Registries()
                _manager = _load(registries)
                _registries = registries
    return _registries


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register an in-process plugin object (a module or an object with hook implementations).

    Useful for plugins defined in a script or a test. Takes effect at once if the registries
    are already loaded, else at discovery.
    """
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    with _lock:
        _extra_plugins.append((plugin, name))
        if _registries is not None and _manager is not None:
            _manager.register(plugin, name=name)
            _register_one(_registries, _manager, name, "(in-process)", name)


def unregister_plugin(name: str) -> None:
    """Forget an in-process plugin registered with :func:`register_plugin` (re-discovers)."""
    with _lock:
        _extra_plugins[:] = [(p, n) for p, n in _extra_plugins if n != name]
        reset()


def reset() -> None:
    """Forget the discovered registries; the next use discovers again (for tests)."""
    global _registries, _manager
    with _lock:
        _registries = None
        _manager = None


def plugin_entry_points() -> list[tuple[str, str, str]]:
    """``(distribution, entry point name, target)`` of every entry point in the group."""
    return [
        (ep.dist.name if ep.dist is not None else "(unknown)", ep.name, ep.value)
        for ep in _entry_points()
    ]


def component_classes(kind: str) -> dict[str, type[Component]]:
    """Mapping name -> class for ``kind`` (discovering plugins if needed)."""
    registry = get_registries()[kind]
    return {name: registry.get(name) for name in registry.names()}
