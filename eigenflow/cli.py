"""The ``eigenflow`` console script: list, info, run, bench, doctor.

Results go to standard output, progress and errors to standard error; ``--json`` prints a
result as JSON for scripts, ``--debug`` (or ``EIGENFLOW_DEBUG=1``) adds tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._text import first_sentence, rst_to_text
from ._version import __version__
from .core.config import describe_config
from .core.errors import ConfigError, EigenflowError, did_you_mean
from .registry.registry import (
    AUTOLOAD_ENV,
    DEBUG_ENV,
    PLUGINS_ENV,
    PluginProblem,
    debug_enabled,
    get_registries,
)
from .runtime import RUN_DEVICES, resolve_device

__all__ = ["main"]


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or debug_enabled()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _problem_json(problem: PluginProblem) -> dict[str, Any]:
    return {
        "distribution": problem.distribution,
        "plugin": problem.plugin,
        "reason": problem.reason,
        "provides": [list(p) for p in problem.provides],
        "traceback": problem.traceback,
    }


def _print_problems(problems: Sequence[PluginProblem], debug: bool) -> None:
    print("skipped plugins:")
    for problem in problems:
        print(f"  {problem}")
        if problem.provides and not problem.reason.startswith("skipped registration"):
            names = ", ".join(f"{kind} {name!r}" for kind, name in problem.provides)
            print(f"      would have provided: {names}")
        if debug and problem.traceback:
            for line in problem.traceback.rstrip().splitlines():
                print(f"      {line}")
    if not debug and any(p.traceback for p in problems):
        print(f"  (run 'eigenflow --debug list' or set {DEBUG_ENV}=1 for the tracebacks)")


def _cmd_list(args: argparse.Namespace) -> int:
    registries = get_registries()
    kinds = [args.kind] if args.kind else list(registries.kinds)
    listing: dict[str, list[dict[str, str]]] = {}
    for kind in kinds:
        registry = registries[kind]
        listing[kind] = []
        for name in registry.names(args.pattern):
            entry = registry.entry(name)
            listing[kind].append(
                {
                    "name": name,
                    "summary": first_sentence(entry.cls.__doc__),
                    "distribution": entry.distribution,
                    "plugin": entry.plugin,
                }
            )
    if args.json:
        _print_json(
            {"components": listing, "skipped": [_problem_json(p) for p in registries.problems]}
        )
        return 0
    for kind, rows in listing.items():
        print(f"{kind} ({len(rows)}):")
        for row in rows:
            origin = "" if row["distribution"] == "eigenflow" else f"  [{row['distribution']}]"
            print(f"  {row['name']:<24}{row['summary']}{origin}")
    if registries.problems:
        _print_problems(registries.problems, _debug(args))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    registries = get_registries()
    records = [
        {
            "distribution": r.distribution,
            "version": r.version,
            "entry_point": r.plugin,
            "target": r.target,
            "status": r.status,
            "components": [f"{kind}:{name}" for kind, name in r.components],
            "problems": [p.reason for p in r.problems],
        }
        for r in registries.records
    ]
    environment = {
        "eigenflow": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        AUTOLOAD_ENV: _env_value(AUTOLOAD_ENV),
        PLUGINS_ENV: _env_value(PLUGINS_ENV),
        DEBUG_ENV: _env_value(DEBUG_ENV),
    }
    if args.json:
        _print_json(
            {
                "environment": environment,
                "plugins": records,
                "skipped": [_problem_json(p) for p in registries.problems],
            }
        )
        return 0
    for key, value in environment.items():
        print(f"{key + ':':<36}{value}")
    print()
    header = ("distribution", "version", "entry point", "status", "components")
    table = [header] + [
        (
            r["distribution"],
            r["version"] or "-",
            r["entry_point"],
            r["status"],
            str(len(r["components"])),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if registries.problems:
        print()
        _print_problems(registries.problems, _debug(args))
    return 1 if any(r["status"] == "failed" for r in records) else 0


def _env_value(name: str) -> str:
    return os.environ.get(name, "(unset)")


def _cmd_info(args: argparse.Namespace) -> int:
    registries = get_registries()
    entry = registries[args.kind].entry(args.name)
    cls = entry.cls
    rows = describe_config(cls.Config)
    flags = [f for f in ("provides_eigh", "exact_gradient", "robust_gradient") if hasattr(cls, f)]
    if args.json:
        _print_json(
            {
                "kind": args.kind,
                "name": args.name,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "distribution": entry.distribution,
                "plugin": entry.plugin,
                "source": cls.source,
                "summary": first_sentence(cls.__doc__),
                "options": [{**row, "default": repr(row["default"])} for row in rows],
                "properties": {f: getattr(cls, f) for f in flags},
            }
        )
        return 0
    print(f"{args.kind} {args.name!r}")
    print(f"  class:        {cls.__module__}.{cls.__qualname__}")
    print(f"  distribution: {entry.distribution} (plugin {entry.plugin})")
    if cls.source:
        print(f"  source:       {cls.source}")
    doc = (cls.__doc__ or "").strip()
    if doc:
        print()
        for line in doc.splitlines():
            print(f"  {rst_to_text(line.strip())}".rstrip())
    config_doc = first_sentence(cls.Config.__doc__)
    print()
    print(f"options{' - ' + config_doc if config_doc else ''}:")
    if not rows:
        print("  (none)")
    for row in rows:
        print(f"  {row['name']} : {row['type']} = {row['default']!r}")
        if row["help"]:
            print(f"      {rst_to_text(row['help'])}")
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


def _check_device(device: str | None, what: str) -> None:
    """Refuse a device the run cannot use, before anything is written: ``--device foo``,
    ``mps`` or ``meta`` would otherwise fail half-way through the run, after ``run.json``
    (the runtime's own check, :func:`eigenflow.runtime.resolve_device`).

    ``what`` names where ``device`` came from (``--device``, or the config's ``device``).
    """
    if device is not None:  # None: the default, cuda when available, else cpu
        resolve_device(device, what)


def _check_out_folder(out: str | os.PathLike, what: str) -> None:
    """Refuse an output folder that cannot be one, before anything is written: an existing
    file, or a path below a file (``f/sub``)."""
    text = os.fspath(out)
    if not text:
        raise ConfigError(f"{what}: expected a folder path, got {text!r}")
    path = Path(text)
    for folder in (path, *path.parents):
        if folder.is_dir():
            return
        if folder.exists() or folder.is_symlink():  # a file, or a link to nothing
            kind = "a link to nothing" if folder.is_symlink() and not folder.exists() else "a file"
            if folder == path:
                raise ConfigError(
                    f"{what}: {text!r} is {kind}, not a folder; give a folder path (a new "
                    "folder, or one that holds a run, with --resume or --overwrite)"
                )
            raise ConfigError(
                f"{what}: {text!r} cannot be created: {str(folder)!r} is {kind}, not a folder"
            )


def _check_tensorboard(pipeline: Any, what: str) -> None:
    """Refuse TensorBoard logging without the tensorboard package before the run starts
    (the trainer would find out only after ``run.json`` is written)."""
    wanted = pipeline.tensorboard or any(
        isinstance(getattr(stage.config, "trainer", None), Mapping)
        and stage.config.trainer.get("tensorboard")
        for stage in pipeline.stages
    )
    if not wanted:
        return
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 - what the trainer uses
    except ImportError:
        raise ConfigError(
            f"{what}: TensorBoard logging needs the tensorboard package, which is not "
            "installed: pip install tensorboard (or the extra: pip install "
            "'eigenflow[tensorboard]'), or run without it"
        ) from None


def _prepare_run(args: argparse.Namespace) -> tuple[Any, str | None, str | None]:
    """Everything ``eigenflow run`` checks before it writes anything: the device, the
    specification with the ``--set`` overrides, the output folder and TensorBoard.

    Returns the validated pipeline, the output folder and the device (``None``: the
    pipeline's own, else the runtime's default).
    """
    from .runtime import Pipeline

    _check_device(args.device, "--device")
    if args.out is not None:
        _check_out_folder(args.out, "--out")
    target = args.config
    overrides = dict(_parse_override(s) for s in args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    for flag in ("resume", "overwrite", "tensorboard"):
        if getattr(args, flag):
            overrides[flag] = True
    if Path(target).suffix.lower() in (".toml", ".json") or Path(target).is_file():
        pipeline = Pipeline.from_config(target, **overrides)
    else:
        pipeline = Pipeline.from_config({"pipeline": target}, **overrides)
    if args.device is None:
        _check_device(pipeline.device, "device")
    if args.out is None and pipeline.out is not None:
        _check_out_folder(pipeline.out, "out")
    _check_tensorboard(pipeline, "--tensorboard" if args.tensorboard else "tensorboard")
    return pipeline, args.out, args.device


def _cmd_run(args: argparse.Namespace) -> int:
    from .runtime import distributed_env

    pipeline, out, device = _prepare_run(args)
    summary = pipeline.run(out=out, device=device, quiet=args.quiet)
    if distributed_env()[0] != 0:  # under torchrun only rank 0 prints the results
        return 0
    if args.json:
        _print_json(summary)
    else:
        _print_run_summary(summary)
    return 0


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(round(value, 4))
    if isinstance(value, list | dict):
        text = json.dumps(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _print_run_summary(summary: dict[str, Any]) -> None:
    """The results of a run, one ``key: value`` line each (``--json`` prints them all)."""
    for stage in summary["stages"]:
        print(f"{stage['pipeline']} ({stage['seconds']:.1f} s on {summary['device']}):")
        result = stage["result"]
        if isinstance(result, dict):
            width = max((len(k) for k in result), default=0) + 1
            for key, value in result.items():
                print(f"  {key + ':':<{width}} {_format_value(value)}")
        else:
            print(f"  {_format_value(result)}")
    print(f"written to {summary['out']} (summary.json has every result)")


def _unknown_solver_hint(patterns: Sequence[str]) -> str | None:
    """The error of the first ``--solvers`` entry that names no registered solver and has a
    close one (``mpa-lyaa`` -> ``did you mean 'mpa-lya'?``); ``None`` otherwise (the bench
    harness reports the rest). Mirrors what
    :func:`eigenflow.bench.contenders.select_contenders` accepts."""
    import fnmatch

    from .bench.contenders import parse_solver_spec
    from .bench.spec import EIGH_PEER, SVD_PEER

    registered = get_registries()["solver"].names()
    peers = (EIGH_PEER, SVD_PEER)
    for pattern in patterns:
        try:
            name, options = parse_solver_spec(pattern)
        except EigenflowError:
            continue  # a malformed NAME:KEY=VALUE: the harness says what is wrong
        if options:
            if name in registered:
                continue
        elif name in peers or any(fnmatch.fnmatchcase(n, name) for n in registered):
            continue
        hint = did_you_mean(name.strip("*?[]"), [*registered, *peers])
        if hint:
            what = (
                f"unknown solver {name!r}" if options else f"{name!r} matches no registered solver"
            )
            return (
                f"solvers: {what}{hint} (registered: {', '.join(registered)}; "
                f"peers: {', '.join(peers)})"
            )
    return None


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import cli as bench_cli

    if not getattr(args, "from_json", None):
        problem = _unknown_solver_hint(args.solvers)
        if problem:  # in the harness's words and exit status (2: a bad option)
            print(f"eigenflow bench: error: {problem}", file=sys.stderr)
            return 2
    return bench_cli.main(args)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


#: the examples ``eigenflow run --help`` shows (each is checked by the tests)
RUN_EXAMPLES = (
    "eigenflow run gcp --set steps=50 --set solver=mpa-lya",
    """eigenflow run gcp --device cpu --out runs/gcp --set 'solver={"name": "svd", "eps": 0}'""",
    "eigenflow run train --set lr=1e-4 --set trainer.scheduler=cosine --out runs/train",
    "eigenflow run train --out runs/train --resume",
)


def build_parser(*, bench_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser of the ``eigenflow`` command.

    ``bench_options``: add the options of ``eigenflow bench``, which imports the benchmark
    harness (:mod:`eigenflow.bench`); :func:`main` does so only when the command is ``bench``.
    """
    parser = argparse.ArgumentParser(
        prog="eigenflow", description="Differentiable spectral methods for deep learning."
    )
    parser.add_argument("--version", action="version", version=f"eigenflow {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show tracebacks of errors and of skipped plugins (also: {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list registered components and skipped plugins")
    p.add_argument("kind", nargs="?", help="one kind (solver, layer, ...)")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern of names, e.g. 'svd*'")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="describe a component: options, defaults, source")
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "doctor",
        help="plugin distributions, entry points, versions and status (exit 1 if one failed)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser(
        "run",
        help="run a pipeline by name or from a TOML/JSON config",
        epilog="examples:\n" + "\n".join(f"  {line}" for line in RUN_EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="pipeline name or path to a .toml/.json config")
    p.add_argument(
        "--device",
        help=f"where to run: {RUN_DEVICES}; default: cuda when available, else cpu",
    )
    p.add_argument("--out", help="output folder")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override an option; a dotted KEY sets an entry of a table "
        "(e.g. trainer.scheduler=cosine for the train pipeline); VALUE parsed as JSON when "
        "possible",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.add_argument(
        "--json", action="store_true", help="print the whole summary as JSON on standard output"
    )
    again = p.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its newest usable checkpoint",
    )
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="delete what the output folder holds and start afresh",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log training to TensorBoard (pip install 'eigenflow[tensorboard]')",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("bench", help="benchmark the registered solvers side by side")
    if bench_options:
        from .bench import cli as bench_cli

        bench_cli.add_arguments(p)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(bench_options=_command(argv) == "bench")
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EigenflowError as exc:
        if _debug(args):
            traceback.print_exc()
        message = str(exc)
        print(f"eigenflow: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        print("eigenflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
