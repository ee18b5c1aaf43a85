"""Plugin configuration: frozen ``attrs`` classes, validators with uniform messages, and the
machinery that turns a user's keyword options into a validated config.

A plugin's config is an ``attrs`` class made with :func:`config` (frozen, keyword-only). Its
fields are made with :func:`option`, which records help text for ``eigenflow info``. Validators
here raise :class:`~eigenflow.core.errors.ConfigError` naming the option, the value and what
is allowed; :func:`validate_options` collects every problem of an option dict at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .errors import ConfigError, did_you_mean

__all__ = [
    "ComponentRef",
    "all_of",
    "boolean",
    "component_list_option",
    "component_option",
    "config",
    "describe_config",
    "floating",
    "integer",
    "one_of",
    "option",
    "optional",
    "options_dict",
    "set_component_builder",
    "validate_options",
]

ComponentResolver = Callable[[str, "ComponentRef", str], list[str]]


def config(cls: type) -> type:
    """Class decorator: a frozen, keyword-only ``attrs`` class used as a plugin config."""
    return attrs.frozen(kw_only=True)(cls)


def option(
    default: Any = attrs.NOTHING,
    *,
    help: str,
    validator: Callable | list[Callable] | None = None,
    converter: Callable | None = None,
    factory: Callable | None = None,
) -> Any:
    """An ``attrs`` field with help text (shown by ``eigenflow info``)."""
    kwargs: dict[str, Any] = {"validator": validator, "metadata": {"help": help}}
    if converter is not None:
        kwargs["converter"] = converter
    if factory is not None:
        kwargs["factory"] = factory
    else:
        kwargs["default"] = default
    return attrs.field(**kwargs)


# --------------------------------------------------------------------------- validators


def _fail(attribute: attrs.Attribute, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"option {attribute.name!r} = {value!r} is invalid: expected {allowed}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable:
    """Validator: an ``int`` (not ``bool``) within ``[minimum, maximum]``."""
    bounds = _bounds_text(minimum, maximum)

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        if not ok:
            raise _fail(attribute, value, f"an integer{bounds}")

    return check


def floating(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_open: bool = False,
    max_open: bool = False,
) -> Callable:
    """Validator: a finite real number within the given bounds (``*_open`` excludes the end)."""
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    text = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if min_open else value >= minimum
        if ok and maximum is not None:
            ok = value < maximum if max_open else value <= maximum
        if not ok:
            raise _fail(attribute, value, text)

    return check


def boolean() -> Callable:
    """Validator: ``True`` or ``False``."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, bool):
            raise _fail(attribute, value, "true or false")

    return check


def one_of(choices: Iterable[Any]) -> Callable:
    """Validator: one of a fixed set of values (suggests the closest string)."""
    allowed = tuple(choices)

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            hint = did_you_mean(value, [str(c) for c in allowed]) if isinstance(value, str) else ""
            raise ConfigError(
                f"option {attribute.name!r} = {value!r} is invalid: expected one of "
                f"{', '.join(repr(c) for c in allowed)}{hint}"
            )

    return check


def optional(inner: Callable) -> Callable:
    """Validator: ``None`` or whatever ``inner`` accepts."""

    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            inner(inst, attribute, value)

    return check


def all_of(*validators: Callable) -> Callable:
    """Validator: every one of ``validators``."""

    def check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        for v in validators:
            v(inst, attribute, value)

    return check


def options_dict() -> Callable:
    """Validator: a mapping with string keys (options passed through to another component)."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _fail(attribute, value, "a table of options with string keys")

    return check


def _bounds_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


# --------------------------------------------------------------------------- component references


@attrs.frozen
class ComponentRef:
    """A reference to a registered component by name, with the options to build it.

    Written in a config as a bare name (``"mpa-lya"``) or a table
    (``{name = "mpa-lya", degree = 7}``).
    """

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    #: the kind it names (set by :func:`component_option`); not part of equality
    kind: str = attrs.field(default="", eq=False, repr=False)

    @classmethod
    def coerce(cls, value: Any, kind: str = "") -> ComponentRef:
        """Normalise a name, a table with a ``name`` key, or a ``ComponentRef``."""
        if isinstance(value, ComponentRef):
            return value if value.kind or not kind else attrs.evolve(value, kind=kind)
        if isinstance(value, str):
            return cls(value, {}, kind)
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            return cls(value["name"], {k: v for k, v in value.items() if k != "name"}, kind)
        raise ConfigError(f"expected a component name or a table with a 'name' key, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form ``{"name": ..., **options}``."""
        return {"name": self.name, **dict(self.options)}

    def build(self, kind: str | None = None, /, **defaults: Any) -> Any:
        """Instantiate the component through the registry.

        ``defaults`` are options the caller derives (e.g. a model's ``input_shape`` from the
        data); the reference's own options take precedence over them. ``kind`` defaults to
        the kind of the option the reference came from.
        """
        kind = kind or self.kind
        if not kind:
            raise ConfigError(f"component {self.name!r}: say which kind to build (e.g. 'solver')")
        if _BUILDER is None:  # pragma: no cover - eigenflow.registry installs it on import
            raise ConfigError("no component registry is loaded (import eigenflow first)")
        return _BUILDER(kind, self.name, {**defaults, **dict(self.options)})


#: ``builder(kind, name, options) -> component``; installed by :mod:`eigenflow.registry`, so
#: core does not import the layer above it.
_BUILDER: Callable[[str, str, dict[str, Any]], Any] | None = None


def set_component_builder(builder: Callable[[str, str, dict[str, Any]], Any]) -> None:
    """Install the function :meth:`ComponentRef.build` instantiates with (the registry's)."""
    global _BUILDER
    _BUILDER = builder


def _coerce_ref_or_keep(value: Any, kind: str = "") -> Any:
    try:
        return ComponentRef.coerce(value, kind)
    except ConfigError:
        return value  # the validator reports it with the option's name


def component_option(kind: str, default: str, *, help: str) -> Any:
    """A field naming a registered component of ``kind`` (validated against the registry)."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, ComponentRef):
            raise _fail(attribute, value, f"a {kind} name or a table with a 'name' key")

    return attrs.field(
        default=ComponentRef(default, {}, kind),
        converter=lambda value: _coerce_ref_or_keep(value, kind),
        validator=check,
        metadata={"help": help, "component": kind},
    )


def _coerce_refs_or_keep(value: Any, kind: str = "") -> Any:
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        return value
    items = list(value)
    refs = [_coerce_ref_or_keep(v, kind) for v in items]
    return tuple(refs) if all(isinstance(r, ComponentRef) for r in refs) else value


def component_list_option(kind: str, default: Iterable[str] = (), *, help: str) -> Any:
    """A field naming a list of registered components of ``kind`` (each validated)."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, tuple) or not all(isinstance(v, ComponentRef) for v in value):
            raise _fail(attribute, value, f"a list of {kind} names or tables with a 'name' key")

    return attrs.field(
        default=tuple(ComponentRef(name, {}, kind) for name in default),
        converter=lambda value: _coerce_refs_or_keep(value, kind),
        validator=check,
        metadata={"help": help, "component_list": kind},
    )


# --------------------------------------------------------------------------- validation


def validate_options(
    config_cls: type,
    options: Mapping[str, Any],
    *,
    resolve_component: ComponentResolver | None = None,
    path: str = "",
) -> tuple[Any, list[str]]:
    """Validate ``options`` against ``config_cls`` and build the config.

    Every problem is collected, each prefixed with its path (``path`` + option name), so a
    caller can report them all at once.

    Parameters
    ----------
    config_cls
        An ``attrs`` config class.
    options
        The user's keyword options.
    resolve_component
        Called as ``resolve_component(kind, ref, path)`` for fields made with
        :func:`component_option`; returns the problems with that reference.
    path
        Prefix for the messages, e.g. ``"stages[1]."``.

    Returns
    -------
    tuple
        ``(config or None, errors)``: the config when there is no error, else ``None`` and the list
        of messages.
    """
    fields = {f.name: f for f in attrs.fields(config_cls)}
    errors: list[str] = []
    for key in options:
        if key not in fields:
            allowed = ", ".join(sorted(fields)) or "(none)"
            errors.append(
                f"{path}{key}: unknown option{did_you_mean(key, fields)} (allowed: {allowed})"
            )
    converted: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in options:
            if field.default is attrs.NOTHING:
                errors.append(f"{path}{name}: required option is missing")
            continue
        value = options[name]
        try:
            if field.converter is not None:
                value = field.converter(value)
            if field.validator is not None:
                field.validator(None, field, value)
        except (ConfigError, TypeError, ValueError) as exc:
            errors.append(f"{path}{name}: {_strip_option_prefix(str(exc), name)}")
            continue
        kind = field.metadata.get("component")
        if kind and resolve_component is not None:
            errors.extend(resolve_component(kind, value, f"{path}{name}"))
        list_kind = field.metadata.get("component_list")
        if list_kind and resolve_component is not None:
            for i, ref in enumerate(value):
                errors.extend(resolve_component(list_kind, ref, f"{path}{name}[{i}]"))
        converted[name] = options[name]
    if errors:
        return None, errors
    try:
        return config_cls(**converted), []
    except (ConfigError, TypeError, ValueError) as exc:  # cross-field checks in __attrs_post_init__
        return None, [f"{path.rstrip('.') or 'options'}: {exc}"]


def _strip_option_prefix(message: str, name: str) -> str:
    prefix = f"option {name!r} = "
    return message[len(prefix) :] if message.startswith(prefix) else message


def describe_config(config_cls: type) -> list[dict[str, Any]]:
    """One row per field: ``name``, ``type``, ``default``, ``help`` (for ``eigenflow info``)."""
    rows = []
    for f in attrs.fields(config_cls):
        if f.default is attrs.NOTHING:
            default: Any = "(required)"
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            default = f.default.factory()
        else:
            default = f.default
        if isinstance(default, ComponentRef):
            default = default.name
        elif isinstance(default, tuple) and all(isinstance(d, ComponentRef) for d in default):
            default = [d.name for d in default]
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append(
            {
                "name": f.name,
                "type": type_name,
                "default": default,
                "help": f.metadata.get("help", ""),
            }
        )
    return rows
