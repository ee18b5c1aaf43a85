"""Gradient-quality report of the eigendecomposition solvers (issue 4; thesis 000, Sec. 3.3).

For every registered solver with ``eigh`` (or the ``--solvers`` given, ``NAME[:KEY=VALUE]``),
over a sweep of condition numbers: the relative error of the gradient of
``sum(sqrt(A) * G)`` against the exact float64 gradient (Daleckii-Krein), the maximum gradient
magnitude, the fraction of finite gradients; and the forward and backward time of ``sqrt``
per solver (thesis Table 3.5). Writes ``gradient_quality.csv/.json/.png`` (the JSON with the
provenance) and ``timing.csv`` into ``--out`` (default
``benchmarks/results/gradient-quality``) and, for the default solvers and dtype, the tables of
``docs/eig-robust.rst`` to ``--docs`` (default ``docs/generated/gradient_quality.inc``; the
plot to ``docs/_static/eig_gradient_quality.png``).

    python benchmarks/gradient_quality.py
    python benchmarks/gradient_quality.py --dtype float32 --solvers svd,svd-pade,svd-pade:bound=1e12
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path

import torch

from eigenflow.bench.gradients import (
    DEFAULT_CONDS,
    gradient_quality,
    time_forward_backward,
    write_gradient_report,
)
from eigenflow.bench.provenance import imported_modules, record, write_generated

DTYPES = {"float32": torch.float32, "float64": torch.float64}
SCRIPT = "benchmarks/gradient_quality.py"
#: the measured code: the solvers with eigh (the eig family and batched-ed) and the harness
#: that builds the inputs and the exact gradient
DEPENDENCIES = (
    "eigenflow.plugins.eig",
    "eigenflow.plugins.batched_ed",
    "eigenflow.bench.gradients",
    "eigenflow.bench.contenders",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/gradient-quality"), help="folder"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="the docs fragment (default with the default solvers and dtype: "
        "docs/generated/gradient_quality.inc)",
    )
    parser.add_argument(
        "--solvers",
        default=None,
        help="comma-separated solver specs (default: every solver with eigh)",
    )
    parser.add_argument(
        "--conds",
        default=",".join(f"{c:g}" for c in DEFAULT_CONDS),
        help="comma-separated condition numbers",
    )
    parser.add_argument("--n", type=int, default=32, help="matrix size")
    parser.add_argument("--batch", type=int, default=8, help="matrices per condition number")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-n", type=int, default=64, help="matrix size for timing")
    parser.add_argument("--timing-batch", type=int, default=64, help="batch size for timing")
    parser.add_argument("--timing-dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=10, help="timing repeats (0: no timing)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def _fmt(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def _list_table(title: str, header: list[str], body: list[list[str]]) -> str:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", "   :stub-columns: 1", ""]
    for row in [header, *body]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def _e(value: float) -> str:
    return f"{value:.1e}" if math.isfinite(value) else str(value)


def rst(rows: list[dict], timing: list[dict] | None, config: dict) -> str:
    """The docs tables: median relative gradient error and largest gradient entry per solver
    and condition number, and the backward time per solver."""
    conds = list(dict.fromkeys(r["cond"] for r in rows))
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    cell = {(r["solver"], r["cond"]): r for r in rows}
    header = ["solver", *(f"{c:.0e}".replace("e+0", "e").replace("e+", "e") for c in conds)]
    setting = (
        f"n = {config['n']}, {config['batch']} matrices per condition number, "
        f"{config['dtype']}, {config['device']}, seed {config['seed']}"
    )
    parts = [
        _list_table(
            f"Median relative gradient error over the batch ({setting}; ``inf``: non-finite)",
            header,
            [[f"``{s}``", *(_e(cell[s, c]["rel_error_median"]) for c in conds)] for s in solvers],
        ),
        _list_table(
            f"Largest gradient entry ({setting}; the last row is the exact gradient's)",
            header,
            [
                *([f"``{s}``", *(_e(cell[s, c]["max_abs_grad"]) for c in conds)] for s in solvers),
                ["exact", *(_e(cell[solvers[0], c]["exact_max_abs_grad"]) for c in conds)],
            ],
        ),
    ]
    if timing:
        t = config["timing"]
        parts.append(
            _list_table(
                f"``sqrt`` of {t['batch']} matrices of size {t['n']}, {t['dtype']}, "
                f"{config['device']}, {config['threads']} thread(s), median of "
                f"{t['repeats']} repeats, milliseconds",
                ["solver", "forward", "backward"],
                [
                    [f"``{r['solver']}``", f"{r['forward_ms']:.2f}", f"{r['backward_ms']:.2f}"]
                    for r in timing
                ],
            )
        )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.docs is None and args.solvers is None and args.dtype == "float64":
        args.docs = Path("docs/generated/gradient_quality.inc")
    solvers = args.solvers.split(",") if args.solvers else None
    conds = [float(c) for c in args.conds.split(",")]
    rows = gradient_quality(
        solvers,
        conds=conds,
        n=args.n,
        batch=args.batch,
        dtype=DTYPES[args.dtype],
        device=args.device,
        seed=args.seed,
    )
    timing = None
    if args.repeats > 0:
        timing = time_forward_backward(
            solvers,
            n=args.timing_n,
            batch=args.timing_batch,
            dtype=DTYPES[args.timing_dtype],
            device=args.device,
            repeats=args.repeats,
            seed=args.seed,
        )
    config = {
        "solvers": solvers or "every solver with eigh",
        "conds": conds,
        "n": args.n,
        "batch": args.batch,
        "dtype": args.dtype,
        "device": args.device,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "timing": None
        if timing is None
        else {
            "n": args.timing_n,
            "batch": args.timing_batch,
            "dtype": args.timing_dtype,
            "repeats": args.repeats,
        },
    }
    prov = record(
        SCRIPT,
        seeds=[args.seed],
        config=config,
        dependencies=imported_modules(DEPENDENCIES),
        argv=argv,
    )
    paths = write_gradient_report(
        rows, args.out, timing=timing, plot=not args.no_plot, provenance=prov
    )
    if args.docs is not None:
        source = (args.out / "gradient_quality.json").as_posix()
        write_generated(args.docs, rst(rows, timing, config), script=SCRIPT, sources=[source])
        png = args.out / "gradient_quality.png"
        if png.is_file():
            shutil.copyfile(png, Path("docs/_static/eig_gradient_quality.png"))
    print(
        f"{'solver':<24}{'cond':>8}{'rel.err med':>13}{'rel.err max':>13}"
        f"{'max|g|':>11}{'exact':>11}{'finite':>8}"
    )
    for r in rows:
        print(
            f"{r['solver']:<24}{r['cond']:>8.0e}{_fmt(r['rel_error_median']):>13}"
            f"{_fmt(r['rel_error_max']):>13}{_fmt(r['max_abs_grad']):>11}"
            f"{_fmt(r['exact_max_abs_grad']):>11}{r['finite_fraction']:>8.2f}"
        )
    for r in timing or []:
        print(
            f"{r['solver']:<24} forward {r['forward_ms']:8.2f} ms  backward "
            f"{r['backward_ms']:8.2f} ms  total {r['total_ms']:8.2f} ms"
        )
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
