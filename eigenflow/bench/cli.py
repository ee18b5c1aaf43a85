"""The command line of ``eigenflow bench`` (and ``benchmarks/run_solvers.py``): its options,
the :class:`~eigenflow.bench.spec.BenchSpec` they describe, and :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..core.errors import EigenflowError
from .contenders import select_contenders
from .plots import _matplotlib, plot_results
from .reporting import format_summary, load_results, write_results
from .runner import BenchInterrupted, run_benchmark
from .spec import _DEFAULT_OUT, _DTYPES, EIGH_PEER, FULL_GRID, OPS, QUICK_GRID, SVD_PEER, BenchSpec

__all__ = ["add_arguments", "main", "spec_from_args"]


def _csv_list(convert: Callable[[str], Any], allowed: Sequence[str] | None = None) -> Callable:
    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        if allowed is not None:
            bad = [t for t in items if t not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"{', '.join(map(repr, bad))} not allowed (choose from {', '.join(allowed)})"
                )
        try:
            return tuple(convert(t) for t in items)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _solver_list(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected solver names or patterns")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``eigenflow bench`` to ``parser`` (a subparser)."""
    grid = parser.add_argument_group("grid (defaults: the --quick grid)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="the default grid: sqrt, batch 1,64, size 16,64, float32 "
        "(about a minute on a 2-core CPU)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="the issues' grid: sqrt,invsqrt,eigh x batch 1..4096 x size 4..256 x "
        "float32,float64 (hours on a CPU)",
    )
    grid.add_argument(
        "--solvers",
        type=_solver_list,
        default=("*",),
        metavar="LIST",
        help="comma-separated fnmatch patterns of registered solvers, or "
        "NAME:KEY=VALUE[:KEY=VALUE] for a configured variant (a/b is a tuple; default: all); "
        f"{EIGH_PEER}, {SVD_PEER} and ns always run as peers",
    )
    grid.add_argument(
        "--ops",
        type=_csv_list(str, OPS),
        metavar="LIST",
        help="comma-separated ops: sqrt, invsqrt, eigh (eigh: solvers with eigh)",
    )
    grid.add_argument(
        "--batch",
        type=_csv_list(int),
        metavar="LIST",
        help="comma-separated batch sizes, e.g. 1,64,1024",
    )
    grid.add_argument(
        "--size",
        type=_csv_list(int),
        metavar="LIST",
        help="comma-separated matrix sizes n, e.g. 4,16,64",
    )
    grid.add_argument(
        "--dtype",
        type=_csv_list(str, tuple(_DTYPES)),
        metavar="LIST",
        help="comma-separated dtypes: float32, float64",
    )
    grid.add_argument(
        "--device",
        type=_csv_list(str),
        metavar="LIST",
        help="comma-separated devices: cpu, cuda, cuda:1 (default: cpu, and cuda when available)",
    )
    grid.add_argument(
        "--cond",
        type=_csv_list(float),
        metavar="LIST",
        help="comma-separated condition numbers of the random SPD inputs (default: 1e3)",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repeats per measurement; the median is reported (default 5)",
    )
    timing.add_argument(
        "--warmup", type=int, default=2, help="untimed warm-up calls per measurement (default 2)"
    )
    timing.add_argument(
        "--max-time",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time budget of one measurement; repeats are reduced to fit (default 10)",
    )
    timing.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads during the run (default: torch's default)",
    )
    timing.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    timing.add_argument(
        "--cuda-graph",
        action="store_true",
        help="also capture each solver's forward+backward in a CUDA graph and "
        "time its replay (CUDA devices; solvers that cannot be captured are "
        "skipped with a note)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        metavar="DIR",
        help="directory for results.csv, results.json and the plots (default ./eigenflow-bench)",
    )
    output.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    output.add_argument(
        "--gradient-quality",
        action="store_true",
        help="also write the gradient-quality report of the eigh-based solvers (relative "
        "error against the exact float64 gradient and largest gradient entry over a "
        "conditioning sweep) to OUT/gradients",
    )
    output.add_argument(
        "--from-json",
        metavar="FILE",
        default=None,
        help="measure nothing: summarise and plot the rows of a saved "
        "results.json (into --out, default: next to FILE)",
    )
    output.add_argument(
        "--quiet", action="store_true", help="no progress lines and no summary table"
    )


def spec_from_args(args: argparse.Namespace) -> BenchSpec:
    """The :class:`BenchSpec` of parsed command-line ``args`` (grid options override the
    ``--quick``/``--full`` preset)."""
    preset = FULL_GRID if getattr(args, "full", False) else QUICK_GRID
    fields: dict[str, Any] = {
        "solvers": args.solvers,
        "ops": args.ops or preset["ops"],
        "batches": args.batch or preset["batches"],
        "sizes": args.size or preset["sizes"],
        "dtypes": args.dtype or preset["dtypes"],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_time": args.max_time,
        "seed": args.seed,
        "cuda_graph": args.cuda_graph,
        "threads": getattr(args, "threads", None),
    }
    if args.device:
        fields["devices"] = args.device
    if args.cond:
        fields["conds"] = args.cond
    return BenchSpec(**fields)


def _from_json(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    source = Path(args.from_json)
    out = source.parent if args.out == _DEFAULT_OUT else Path(args.out)
    try:
        rows = load_results(source)
        written = [] if args.no_plots else plot_results(rows, out)
    except (OSError, ValueError, EigenflowError) as exc:
        print(f"eigenflow bench: error: {exc}", file=stderr)
        return 2
    if not args.quiet:
        print(format_summary(rows), file=stdout)
        if written:
            print("\nwrote " + ", ".join(str(p) for p in written), file=stdout)
    return 0


def _gradient_report(args: argparse.Namespace, progress: Any) -> list[Path]:
    """Gradient quality of every solver with ``eigh`` (thesis 000, Tables 3.1-3.2 in spirit)."""
    from .gradients import gradient_quality, write_gradient_report

    if not args.quiet:
        progress("eigenflow bench: gradient quality over the conditioning sweep")
    rows = gradient_quality()
    return write_gradient_report(rows, Path(args.out) / "gradients", plot=not args.no_plots)


#: the script that runs ``eigenflow bench`` from a checkout; its results record provenance
BENCH_SCRIPT = "benchmarks/run_solvers.py"
#: the harness modules a benchmark row depends on besides the solvers' own plugins
HARNESS_MODULES = (
    "eigenflow.bench.runner",
    "eigenflow.bench.contenders",
    "eigenflow.bench.timing",
    "eigenflow.bench.accuracy",
    "eigenflow.bench.inputs",
)


def run_provenance(spec: BenchSpec, contenders: list[Any]) -> dict[str, Any] | None:
    """The provenance of a run (:func:`eigenflow.bench.provenance.record`): the harness and
    the plugin packages of the registered solvers measured, with the import closure of both.
    ``None`` outside a source checkout (no ``benchmarks/run_solvers.py`` to name)."""
    from ..api import get
    from .provenance import imported_modules, record, repository_root

    if not (repository_root() / BENCH_SCRIPT).is_file():
        return None
    packages = set()
    for c in contenders:
        if c.is_peer:
            continue
        module = get("solver", c.base).__module__
        if module.startswith("eigenflow.plugins."):
            packages.add(".".join(module.split(".")[:3]))
    argv = sys.argv[1:]
    if Path(sys.argv[0]).name != Path(BENCH_SCRIPT).name and argv[:1] == ["bench"]:
        argv = argv[1:]  # `eigenflow bench ...`: the same options as the script
    config = attrs.asdict(spec)
    return record(
        BENCH_SCRIPT,
        seeds=[spec.seed],
        config={**config, "contenders": [c.label for c in contenders]},
        dependencies=imported_modules([*HARNESS_MODULES, *sorted(packages)]),
        argv=argv,
    )


def main(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``eigenflow bench`` with parsed ``args``; returns the exit status (0 on success,
    even when some solvers produced error rows; 2 on a bad option; 130 when interrupted with
    Ctrl-C, after writing the rows measured so far)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if getattr(args, "from_json", None):
        return _from_json(args, stdout, stderr)
    try:
        spec = spec_from_args(args)
        if not args.no_plots:
            _matplotlib()  # fail before a long run, not after it
        contenders = select_contenders(spec.solvers)
    except EigenflowError as exc:
        print(f"eigenflow bench: error: {exc}", file=stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=stderr, flush=True)

    if not args.quiet:
        names = ", ".join(c.label for c in contenders)
        progress(f"eigenflow bench: {names}")
    status = 0
    try:
        rows = run_benchmark(spec, progress=None if args.quiet else progress, contenders=contenders)
    except BenchInterrupted as stop:
        rows, status = stop.rows, 130
        print(f"interrupted: writing the {len(rows)} rows measured so far", file=stderr)
    paths = write_results(rows, args.out, spec=spec, provenance=run_provenance(spec, contenders))
    written = [paths["csv"], paths["json"]]
    if not args.no_plots:
        written += plot_results(rows, args.out)
    if not args.quiet:
        print(format_summary(rows), file=stdout)
        print("\nwrote " + ", ".join(str(p) for p in written), file=stdout)
    if getattr(args, "gradient_quality", False) and status == 0:
        written += _gradient_report(args, progress)
        if not args.quiet:
            print(
                "wrote the gradient-quality report to " + str(Path(args.out) / "gradients"),
                file=stdout,
            )
    errors = sum(r["status"] == "error" for r in rows)
    if errors and not args.quiet:
        print(f"{errors} measurement(s) failed; see the status and message columns", file=stdout)
    return status
