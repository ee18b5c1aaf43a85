"""Registries of components, one per kind, filled by plugins through pluggy."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import re
import threading
import traceback
import types
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import pluggy

from ..core.component import Component
from ..core.config import ComponentRef, set_component_builder, validate_options
from ..core.errors import (
    ConfigError,
    DuplicatePluginError,
    InvalidPluginError,
    PluginLoadWarning,
    UnknownKindError,
    UnknownNameError,
    did_you_mean,
)
from ..core.kinds import KINDS, kind_base
from . import hookspec

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
    "debug_enabled",
    "declared_registrations",
    "get_registries",
    "register_plugin",
    "reset",
]

ENTRY_POINT_GROUP = "eigenflow"
#: Set to ``1`` to load only eigenflow's own plugins (debugging a broken environment).
AUTOLOAD_ENV = "EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD"
#: The plugins to load even with autoload disabled, comma separated; each is a distribution
#: name (all its entry points), an entry point name or ``distribution:entry``.
PLUGINS_ENV = "EIGENFLOW_PLUGINS"
#: Set to ``1`` to put the full traceback of each skipped plugin in its warning.
DEBUG_ENV = "EIGENFLOW_DEBUG"
BUILTIN_DIST = "eigenflow"
#: The distribution of plugins registered with :func:`register_plugin`.
IN_PROCESS = "(in-process)"
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
#: Exceptions a plugin may not swallow: everything else a plugin raises while it is imported
#: or registers (``SystemExit`` included) is reported and the plugin skipped.
_NOT_A_PLUGIN_FAILURE = (KeyboardInterrupt,)


@attrs.frozen
class PluginProblem:
    """A plugin, or one registration, that was skipped, and why.

    Attributes
    ----------
    distribution
        The distribution that declares the plugin (``(in-process)`` for
        :func:`register_plugin`).
    plugin
        The entry point name (or the in-process plugin's name).
    reason
        One line: what went wrong and, for an exception, where it was raised.
    traceback
        The formatted traceback of the exception, empty when there was none.
    provides
        ``(kind, name)`` pairs the plugin would have registered, where that could be
        determined: the registrations rolled back after its hook raised, the one skipped for a
        name collision, or, for a module that failed to import, the literal
        ``registry.add("kind", Class, name="...")`` calls found in its source.
    """

    distribution: str
    plugin: str
    reason: str
    traceback: str = attrs.field(default="", repr=False)
    provides: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.plugin} (from {self.distribution}): {self.reason}"


@attrs.frozen
class PluginRecord:
    """One plugin (entry point or in-process object) and what became of it.

    ``status`` is ``loaded``, ``failed`` (import, validation or hook error: nothing it
    registered is kept), ``partial`` (loaded, but some registrations were skipped) or
    ``disabled`` (not loaded because :data:`AUTOLOAD_ENV` is set).
    """

    distribution: str
    version: str
    plugin: str
    target: str
    status: str
    components: tuple[tuple[str, str], ...] = ()
    problems: tuple[PluginProblem, ...] = ()


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
        #: The skipped plugins (shared with :class:`Registries`), named by unknown-name errors.
        self.problems: list[PluginProblem] = []

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
        """``unknown solver 'x'; did you mean 'y'? (available: ...)``, plus the skipped plugin
        that would have provided ``x`` or, when that cannot be told, every plugin that failed."""
        available = ", ".join(sorted(self._entries)) or "(none registered)"
        message = f"unknown {self.kind} {name!r}"
        providers = [p for p in self.problems if (self.kind, name) in p.provides]
        if providers:
            p = providers[0]
            return (
                f"{message}: provided by plugin {p.plugin!r} (from {p.distribution}), which "
                f"{_failure_phrase(p)} (available: {available})"
            )
        hint = did_you_mean(str(name), self._entries)
        message = f"{message}{hint} (available: {available})"
        failed = [p for p in self.problems if _whole_plugin_failed(p) and not p.provides]
        if failed:
            listed = "; ".join(str(p) for p in failed)
            message += f"; plugins that failed to load and may provide it: {listed}"
        return message

    def create(self, name: str, /, **options: Any) -> Any:
        """Build the component ``name`` from keyword ``options`` (validated)."""
        cls = self.get(name)
        config = build_config(self.kind, name, cls.Config, options)
        return cls(config)

    def _add(self, name: str, entry: Entry) -> None:
        self._entries[name] = entry

    def _remove(self, name: str) -> None:
        self._entries.pop(name, None)


def _named_class(cls: type, kind: str, name: str) -> type:
    """``cls`` with ``name`` and ``kind`` set on it, or, when ``cls`` already has a name of its
    own that differs (or is a kind's base class), a subclass carrying them.

    Parameters
    ----------
    cls
        The class being registered.
    kind, name
        What it is registered as.

    Returns
    -------
    type
        The class to store in the registry entry.
    """
    own_name = cls.__dict__.get("name") or ""
    is_base = any(cls is kind_base(k) for k in KINDS)
    if is_base or (own_name and (own_name != name or cls.kind != kind)):
        namespace = {
            "name": name,
            "kind": kind,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
        }
        return type(cls)(cls.__name__, (cls,), namespace)
    if cls.__dict__.get("name") != name or cls.kind != kind:
        cls.name = name  # type: ignore[attr-defined]
        cls.kind = kind  # type: ignore[attr-defined]
    return cls


def _whole_plugin_failed(problem: PluginProblem) -> bool:
    return not problem.reason.startswith("skipped registration")


def _failure_phrase(problem: PluginProblem) -> str:
    """``failed to load: <why>`` (or ``could not register it: <why>`` for a collision)."""
    for prefix, phrase in (
        ("failed to load: ", "failed to load"),
        ("skipped registration: ", "could not register it"),
    ):
        if problem.reason.startswith(prefix):
            return f"{phrase}: {problem.reason[len(prefix) :]}"
    return f"failed to load: {problem.reason}"


def build_config(kind: str, name: str, config_cls: type, options: dict[str, Any]) -> Any:
    """Validate ``options`` for the component ``kind name`` and return its config."""
    config, errors = validate_options(config_cls, options, resolve_component=resolve_reference)
    if errors:
        raise ConfigError(f"{kind} {name!r}: " + "; ".join(errors))
    return config


#: Kinds whose components are built while a configuration is validated, so the checks in
#: their constructors (not only in their configs) are reported with the other errors; models,
#: datasets and pipelines get options from the data or cost a run, and are built by the run.
BUILT_WHEN_VALIDATED = frozenset({"solver", "constraint", "traversal", "metric", "layer"})


def resolve_reference(kind: str, ref: ComponentRef, path: str) -> list[str]:
    """Problems with a reference to a component (unknown name, bad options, and for the kinds
    in :data:`BUILT_WHEN_VALIDATED` what its constructor refuses), with ``path``."""
    registry = get_registries()[kind]
    if ref.name not in registry:
        return [f"{path}: {registry.unknown_message(ref.name)}"]
    cls = registry.get(ref.name)
    _, errors = validate_options(
        cls.Config, dict(ref.options), resolve_component=resolve_reference, path=f"{path}."
    )
    if errors or kind not in BUILT_WHEN_VALIDATED:
        return errors
    try:
        ref.build(kind)
    except (ConfigError, TypeError, ValueError) as exc:
        return [f"{path}: {kind} {ref.name!r}: {exc}"]
    return []


def _build_component(kind: str, name: str, options: dict[str, Any]) -> Any:
    return get_registries()[kind].create(name, **options)


set_component_builder(_build_component)


class Registries:
    """The registry of every kind; the object passed to ``eigenflow_register`` hooks.

    ``registry.add(kind, cls)`` registers a component; ``registry[kind]`` is that kind's
    :class:`Registry`; ``problems`` lists the plugins and registrations that were skipped.
    """

    def __init__(self) -> None:
        self._by_kind = {kind: Registry(kind) for kind in KINDS}
        self.problems: list[PluginProblem] = []
        for registry in self._by_kind.values():
            registry.problems = self.problems
        self.plugins: list[tuple[str, str]] = []  # (distribution, plugin) loaded
        #: Every plugin seen at discovery, loaded or not (``eigenflow doctor`` prints them).
        self.records: list[PluginRecord] = []
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

        The registered class carries its registered ``name`` and ``kind``. A class that does
        not yet have a name of its own gets them set on it; a class that already has another
        one (registered elsewhere, or declaring ``name`` itself) is registered as a subclass
        made for the alias, so the class and its other registrations keep their name.

        Parameters
        ----------
        kind
            One of :data:`~eigenflow.core.kinds.KINDS`.
        cls
            A class deriving from that kind's base class.
        name
            The registered name; ``cls.name`` when omitted.

        Returns
        -------
        type
            ``cls`` itself (so ``add`` can be used in a decorator), not the alias subclass.
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
            self._report(
                distribution, plugin, f"skipped registration: {message}", provides=((kind, name),)
            )
            return cls
        registry._add(name, Entry(_named_class(cls, kind, name), distribution, plugin))
        self._added.append((kind, name))
        return cls

    @contextmanager
    def owned_by(self, distribution: str, plugin: str) -> Iterator[list[tuple[str, str]]]:
        """Attribute registrations made inside the block to ``plugin`` of ``distribution``;
        if the block raises, its registrations are rolled back and the failure re-raised with
        the rolled-back ``(kind, name)`` pairs in its ``eigenflow_rolled_back`` attribute.
        The block receives the list of ``(kind, name)`` pairs registered so far."""
        previous, self._owner = self._owner, (distribution, plugin)
        start = len(self._added)
        added: list[tuple[str, str]] = []
        try:
            yield added
        except BaseException as exc:
            rolled_back = list(self._added[start:])
            for kind, name in rolled_back:
                self._by_kind[kind]._remove(name)
            del self._added[start:]
            try:
                exc.eigenflow_rolled_back = rolled_back  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - exceptions with __slots__
                pass
            raise
        finally:
            added.extend(self._added[start:])
            self._owner = previous

    def _report(
        self,
        distribution: str,
        plugin: str,
        reason: str,
        *,
        exc: BaseException | None = None,
        provides: Sequence[tuple[str, str]] = (),
    ) -> PluginProblem:
        details = "".join(traceback.format_exception(exc)) if exc is not None else ""
        problem = PluginProblem(distribution, plugin, reason, details, tuple(provides))
        self.problems.append(problem)
        message = f"eigenflow plugin {problem}"
        if details and debug_enabled():
            message += "\n" + details.rstrip()
        elif details:
            message += f" (set {DEBUG_ENV}=1 or run 'eigenflow --debug list' for the traceback)"
        warnings.warn(message, PluginLoadWarning, stacklevel=3)
        return problem


# --------------------------------------------------------------------------- discovery

_lock = threading.RLock()
_registries: Registries | None = None
_manager: pluggy.PluginManager | None = None
_extra_plugins: list[tuple[object, str]] = []


class _PluginManager(pluggy.PluginManager):
    """A pluggy manager that, like pytest with its ``pytest_`` hooks, also accepts hook
    functions named ``eigenflow_*`` that lack the :data:`~eigenflow.registry.hookimpl` marker
    (a misspelt name is then reported by ``check_pending`` instead of ignored)."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None or not name.startswith(hookspec.PROJECT_NAME + "_"):
            return opts
        try:
            attr = inspect.getattr_static(plugin, name)
        except AttributeError:
            return None
        if isinstance(attr, staticmethod | classmethod):
            attr = attr.__func__
        if isinstance(attr, types.FunctionType):
            return {}
        return None


def _new_manager() -> pluggy.PluginManager:
    pm = _PluginManager(hookspec.PROJECT_NAME)
    pm.add_hookspecs(hookspec)
    return pm


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _autoload_disabled() -> bool:
    return _env_flag(AUTOLOAD_ENV)


def debug_enabled() -> bool:
    """Whether :data:`DEBUG_ENV` asks for full tracebacks of plugin failures."""
    return _env_flag(DEBUG_ENV)


def _requested_plugins() -> set[str]:
    return {p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()}


def _dist_name(ep: metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "(unknown)"


def _dist_version(ep: metadata.EntryPoint) -> str:
    try:
        return ep.dist.version if ep.dist is not None else ""
    except Exception:  # pragma: no cover - broken metadata
        return ""


def _entry_points() -> list[metadata.EntryPoint]:
    eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    seen: set[tuple[str, str]] = set()
    unique = []
    for ep in eps:  # an editable install can list the same distribution twice
        key = (_dist_name(ep), ep.name)
        if key not in seen:
            seen.add(key)
            unique.append(ep)
    # eigenflow's own plugins first, then third-party plugins in a stable order
    return sorted(unique, key=lambda ep: (_dist_name(ep) != BUILTIN_DIST, _dist_name(ep), ep.name))


def _where(exc: BaseException) -> str:
    """`` (file.py, line N)`` of the innermost frame of ``exc`` (empty without a traceback);
    a ``SyntaxError`` names the line that does not parse."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({os.path.basename(exc.filename)}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    return f" ({os.path.basename(frame.filename)}, line {frame.lineno})"


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py, line N)``; ``Type (file.py, line N)`` without a message."""
    message = str(exc)
    head = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{head}{_where(exc)}"


def declared_registrations(module: str) -> tuple[tuple[str, str], ...]:
    """``(kind, name)`` pairs a plugin module registers, read from its source without running
    it: calls ``<anything>.add("kind", Class, name="name")``, or ``add("kind", Class)`` with
    ``Class.name = "name"`` assigned in the same module. Empty when the source cannot be found
    or parsed (for example when the module's package itself fails to import)."""
    try:
        spec = importlib.util.find_spec(module)  # imports the parent packages
    except _NOT_A_PLUGIN_FAILURE:
        raise
    except BaseException:  # SystemExit from a parent package too
        return ()
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ()
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    class_names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                targets = (
                    stmt.targets
                    if isinstance(stmt, ast.Assign)
                    else [stmt.target]
                    if isinstance(stmt, ast.AnnAssign)
                    else []
                )
                value = getattr(stmt, "value", None)
                if (
                    any(isinstance(t, ast.Name) and t.id == "name" for t in targets)
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    class_names[node.name] = value.value
    found: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in KINDS
        ):
            continue
        name = next(
            (
                k.value.value
                for k in node.keywords
                if k.arg == "name" and isinstance(k.value, ast.Constant)
            ),
            None,
        )
        if name is None and isinstance(node.args[1], ast.Name):
            name = class_names.get(node.args[1].id)
        if isinstance(name, str):
            found.append((node.args[0].value, name))
    return tuple(found)


def _selected(dist: str, ep_name: str, requested: set[str]) -> bool:
    return bool({dist, ep_name, f"{dist}:{ep_name}"} & requested)


def _load(registries: Registries) -> pluggy.PluginManager:
    pm = _new_manager()
    skip_third_party = _autoload_disabled()
    requested = _requested_plugins()
    for ep in _entry_points():
        dist, version = _dist_name(ep), _dist_version(ep)
        if dist != BUILTIN_DIST and skip_third_party and not _selected(dist, ep.name, requested):
            registries.records.append(PluginRecord(dist, version, ep.name, ep.value, "disabled"))
            continue
        label = f"{dist}:{ep.name}"
        try:
            module = ep.load()
            _register_atomically(pm, module, label)
        except _NOT_A_PLUGIN_FAILURE:
            raise
        except BaseException as exc:  # a broken third-party plugin must not break eigenflow
            if dist == BUILTIN_DIST:
                raise
            problem = registries._report(
                dist,
                ep.name,
                f"failed to load: {_describe(exc)}",
                exc=exc,
                provides=declared_registrations(ep.module),
            )
            registries.records.append(
                PluginRecord(dist, version, ep.name, ep.value, "failed", problems=(problem,))
            )
            continue
        _register_one(registries, pm, label, dist, ep.name, version=version, target=ep.value)
    for obj, name in _extra_plugins:
        try:
            _register_atomically(pm, obj, name)
        except _NOT_A_PLUGIN_FAILURE:
            raise
        except BaseException as exc:  # e.g. its name was taken by an entry point installed since
            problem = registries._report(
                IN_PROCESS, name, f"invalid plugin: {_describe(exc)}", exc=exc
            )
            registries.records.append(
                PluginRecord(IN_PROCESS, "", name, name, "failed", problems=(problem,))
            )
            continue
        _register_one(registries, pm, name, IN_PROCESS, name)
    return pm


def _register_atomically(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """``pm.register(plugin, name=name)``, leaving ``pm`` as it was when that raises (pluggy
    keeps the name, and the hooks verified so far, of a plugin whose hook it then refuses)."""
    taken = pm.has_plugin(name)
    try:
        pm.register(plugin, name=name)
    except BaseException:
        if not taken and pm.get_plugin(name) is plugin:
            pm.unregister(plugin=plugin, name=name)
        raise


def _register_one(
    registries: Registries,
    pm: pluggy.PluginManager,
    label: str,
    dist: str,
    plugin: str,
    *,
    version: str = "",
    target: str = "",
) -> None:
    """Call one plugin's registration hook, attributing what it registers."""
    impls = [i for i in pm.hook.eigenflow_register.get_hookimpls() if i.plugin_name == label]
    before = len(registries.problems)

    def record(status: str, components: Sequence[tuple[str, str]] = ()) -> None:
        registries.records.append(
            PluginRecord(
                dist,
                version,
                plugin,
                target or label,
                status,
                tuple(components),
                tuple(registries.problems[before:]),
            )
        )

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=label)
        if dist == BUILTIN_DIST:
            raise
        registries._report(dist, plugin, f"invalid plugin: {exc}", exc=exc)
        record("failed")
        return
    if not impls:
        pm.unregister(name=label)
        if dist == BUILTIN_DIST:
            raise TypeError(f"eigenflow plugin {label} has no eigenflow_register hook")
        registries._report(
            dist,
            plugin,
            f"registers nothing: {target or label} defines no 'eigenflow_register' function "
            "(write 'def eigenflow_register(registry): registry.add(kind, cls)')",
        )
        record("failed")
        return
    try:
        with registries.owned_by(dist, plugin) as added:
            for impl in impls:
                impl.function(registry=registries)
    except (DuplicatePluginError, *_NOT_A_PLUGIN_FAILURE):
        raise
    except BaseException as exc:  # SystemExit too: a hook must not end discovery
        if dist == BUILTIN_DIST:
            raise
        registries._report(
            dist,
            plugin,
            f"registration failed: {_describe(exc)}",
            exc=exc,
            provides=getattr(exc, "eigenflow_rolled_back", ()),
        )
        record("failed")
        return
    registries.plugins.append((dist, plugin))
    record("partial" if len(registries.problems) > before else "loaded", added)


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
    are already loaded, else at discovery. All or nothing: a plugin that cannot be registered
    raises and leaves the registries, and every later discovery, as they were.

    Parameters
    ----------
    plugin
        The object whose ``eigenflow_*`` functions are its hooks.
    name
        The plugin's name (``plugin.__name__`` or its ``repr`` when omitted); names are unique
        among in-process plugins and entry points.

    Raises
    ------
    InvalidPluginError
        When ``name`` is taken, ``plugin`` is already registered, or one of its hooks takes
        arguments its specification does not provide.
    """
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    with _lock:
        _check_new_plugin(plugin, name)
        item = (plugin, name)
        _extra_plugins.append(item)
        if _registries is None or _manager is None:
            return
        marks = _marks(_registries)
        try:
            _register_atomically(_manager, plugin, name)
            _register_one(_registries, _manager, name, IN_PROCESS, name)
        except BaseException:  # KeyboardInterrupt, or a warning turned into an error
            _extra_plugins[:] = [x for x in _extra_plugins if x is not item]
            if _manager.get_plugin(name) is plugin:
                _manager.unregister(plugin=plugin, name=name)
            _truncate(_registries, marks)
            raise


#: The arguments each hook specification passes, by hook name.
_HOOK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    hook: tuple(inspect.signature(function).parameters)
    for hook, function in vars(hookspec).items()
    if hook.startswith(hookspec.PROJECT_NAME + "_") and callable(function)
}


def _check_new_plugin(plugin: object, name: object) -> None:
    """Raise :class:`InvalidPluginError` unless :func:`register_plugin` can add ``plugin``
    under ``name`` without touching the process-wide manager (checked on a scratch one)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidPluginError(f"register_plugin: name must be a non-empty string, got {name!r}")
    for other, other_name in _extra_plugins:
        if other_name == name:
            raise InvalidPluginError(
                f"register_plugin: name {name!r} is already taken by the in-process plugin "
                f"{other!r}; choose another name or call unregister_plugin({name!r}) first"
            )
        if other is plugin:
            raise InvalidPluginError(
                f"register_plugin: plugin {plugin!r} is already registered as {other_name!r}"
            )
    if name in {f"{_dist_name(ep)}:{ep.name}" for ep in _entry_points()}:
        raise InvalidPluginError(
            f"register_plugin: name {name!r} is the name of an installed entry point; "
            "choose another name"
        )
    if _manager is not None and _manager.is_registered(plugin):
        raise InvalidPluginError(
            f"register_plugin: plugin {plugin!r} is already registered as "
            f"{_manager.get_name(plugin)!r}"
        )
    try:
        _new_manager().register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        problem = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        allowed = ", ".join(f"{h}({', '.join(a)})" for h, a in _HOOK_ARGUMENTS.items())
        raise InvalidPluginError(
            f"register_plugin: plugin {name!r} has a hook eigenflow cannot call: {problem} "
            f"(the hooks and the arguments they may take: {allowed})"
        ) from exc
    except Exception as exc:
        raise InvalidPluginError(
            f"register_plugin: plugin {name!r} cannot be registered: {_describe(exc)}"
        ) from exc


def _marks(registries: Registries) -> tuple[int, int, int]:
    """The lengths of the lists of ``registries`` that a registration appends to."""
    return len(registries.problems), len(registries.records), len(registries.plugins)


def _truncate(registries: Registries, marks: tuple[int, int, int]) -> None:
    """Drop what was appended to ``registries`` since :func:`_marks` returned ``marks``."""
    problems, records, plugins = marks
    del registries.problems[problems:]
    del registries.records[records:]
    del registries.plugins[plugins:]


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
    return [(_dist_name(ep), ep.name, ep.value) for ep in _entry_points()]


def component_classes(kind: str) -> dict[str, type[Component]]:
    """Mapping name -> class for ``kind`` (discovering plugins if needed)."""
    registry = get_registries()[kind]
    return {name: registry.get(name) for name in registry.names()}
