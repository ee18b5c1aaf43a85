"""The ``eigenflow`` console script: list, info, run, bench."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .core.config import describe_config
from .core.errors import EigenflowError
from .registry.registry import get_registries

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    registries = get_registries()
    kinds = [args.kind] if args.kind else list(registries.kinds)
    for kind in kinds:
        registry = registries[kind]
        names = registry.names(args.pattern)
        print(f"{kind} ({len(names)}):")
        for name in names:
            entry = registry.entry(name)
            origin = "" if entry.distribution == "eigenflow" else f"  [{entry.distribution}]"
            summary = _first_line(entry.cls.__doc__)
            print(f"  {name:<24}{summary}{origin}")
    if registries.problems:
        print("skipped plugins:")
        for problem in registries.problems:
            print(f"  {problem}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    registries = get_registries()
    entry = registries[args.kind].entry(args.name)
    cls = entry.cls
    print(f"{args.kind} {args.name!r}")
    print(f"  class:        {cls.__module__}.{cls.__qualname__}")
    print(f"  distribution: {entry.distribution} (plugin {entry.plugin})")
    if cls.source:
        print(f"  source:       {cls.source}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        print()
        for line in doc.splitlines():
            print(f"  {line.strip()}")
    config_doc = _first_line(cls.Config.__doc__)
    rows = describe_config(cls.Config)
    print()
    print(f"options{' - ' + config_doc if config_doc else ''}:")
    if not rows:
        print("  (none)")
    for row in rows:
        print(f"  {row['name']} : {row['type']} = {row['default']!r}")
        if row["help"]:
            print(f"      {row['help']}")
    flags = [f for f in ("provides_eigh", "exact_gradient", "robust_gradient") if hasattr(cls, f)]
    if flags:
        print()
        print("properties: " + ", ".join(f"{f}={getattr(cls, f)}" for f in flags))
    return 0


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise EigenflowError(f"--set: expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    target = args.config
    overrides = dict(_parse_override(s) for s in args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    if Path(target).suffix.lower() in (".toml", ".json") or Path(target).is_file():
        pipeline = Pipeline.from_config(target, **overrides)
    else:
        pipeline = Pipeline.from_config({"pipeline": target, **overrides})
    summary = pipeline.run(out=args.out, device=args.device, quiet=args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main(args)


def _first_line(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``eigenflow`` command."""
    parser = argparse.ArgumentParser(
        prog="eigenflow", description="Differentiable spectral methods for deep learning."
    )
    parser.add_argument("--version", action="version", version=f"eigenflow {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("kind", nargs="?", help="one kind (solver, layer, ...)")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern of names, e.g. 'svd*'")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="describe a component: options, defaults, source")
    p.add_argument("kind")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("run", help="run a pipeline by name or from a TOML/JSON config")
    p.add_argument("config", help="pipeline name or path to a .toml/.json config")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--out", help="output folder")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an option (VALUE parsed as JSON when possible)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("bench", help="benchmark the registered solvers side by side")
    try:
        from . import bench

        bench.add_arguments(p)
    except ImportError:  # pragma: no cover - bench module is part of the package
        pass
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EigenflowError as exc:
        if args.debug:
            traceback.print_exc()
        message = str(exc)
        print(f"eigenflow: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("eigenflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
