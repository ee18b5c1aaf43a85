"""Gradient-quality report of the eigendecomposition solvers (issue 4; thesis 000, Sec. 3.3).

For every registered solver with ``eigh`` (or the ``--solvers`` given, ``NAME[:KEY=VALUE]``),
over a sweep of condition numbers: the relative error of the gradient of
``sum(sqrt(A) * G)`` against the exact float64 gradient (Daleckii-Krein), the maximum gradient
magnitude, the fraction of finite gradients; and the forward and backward time of ``sqrt``
per solver (thesis Table 3.5). Writes ``gradient_quality.csv/.json/.png`` and ``timing.csv``
into ``--out``.

    python benchmarks/gradient_quality.py --out results/gradients
    python benchmarks/gradient_quality.py --dtype float32 --solvers svd,svd-pade,svd-pade:bound=1e12
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from eigenflow.bench.gradients import (
    DEFAULT_CONDS,
    gradient_quality,
    time_forward_backward,
    write_gradient_report,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/gradient_quality", help="output folder")
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
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def _fmt(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
    paths = write_gradient_report(rows, args.out, timing=timing, plot=not args.no_plot)
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
