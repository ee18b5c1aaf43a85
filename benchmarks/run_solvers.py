#!/usr/bin/env python
"""Benchmark every registered eigenflow solver side by side (same options as ``eigenflow bench``).

``results.json`` (in ``--out``) carries the provenance of the run; ``--docs FILE`` also writes
a docs table from it (``--docs-layout ratios``: speed-up over ``torch.linalg.eigh`` per batch
and size, one column per solver; ``details``: one row per measurement).

Examples
--------
    python benchmarks/run_solvers.py --quick --out benchmarks/results/cpu-quick
    python benchmarks/run_solvers.py --full --device cuda --cuda-graph --out results/h100
    python benchmarks/run_solvers.py --ops eigh --solvers 'batched-ed,svd' \\
        --batch 1,16,64,256,1024,4096 --size 4,8,16,24,32,48,64,96,128

The stored CPU runs of ``docs/benchmarks.rst`` (one thread each)::

    python benchmarks/run_solvers.py --quick --threads 1 --no-plots \\
        --out benchmarks/results/bench-cpu-quick --docs docs/generated/bench_cpu_quick.inc
    python benchmarks/run_solvers.py --solvers 'mpa-lya,mpa-lya:scaling=spectral,svd' \\
        --batch 64 --size 64 --cond 10,1000 --repeats 25 --threads 1 --no-plots \\
        --out benchmarks/results/bench-cpu-64x64 --docs docs/generated/bench_cpu_64x64.inc \\
        --docs-layout details
    python benchmarks/run_solvers.py --solvers '*-lya,mpa-lya:lya_iters=4,mpa-lya:backward=exact' \\
        --ops sqrt,invsqrt --batch 64 --size 64 --cond 100 --repeats 15 --threads 1 --no-plots \\
        --out benchmarks/results/bench-cpu-lya --docs docs/generated/bench_cpu_lya.inc \\
        --docs-layout details
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eigenflow import bench
from eigenflow.bench.provenance import write_generated

SCRIPT = "benchmarks/run_solvers.py"
PEERS = ("torch.linalg.eigh", "torch.linalg.svd")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (the options of :func:`eigenflow.bench.add_arguments`, plus
    ``--docs`` and ``--docs-layout``)."""
    parser = argparse.ArgumentParser(
        prog="run_solvers.py",
        description=__doc__.split("\n\n")[0],
    )
    bench.add_arguments(parser)
    parser.add_argument("--docs", type=Path, default=None, help="write a docs table here")
    parser.add_argument("--docs-layout", choices=("ratios", "details"), default="ratios")
    return parser


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "--" if value is None else format(value, fmt)


def _list_table(header: list[str], body: list[list[str]], stub: int = 0) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1"]
    if stub:
        lines.append(f"   :stub-columns: {stub}")
    lines.append("")
    for row in [header, *body]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines


def ratios_table(rows: list[dict]) -> list[str]:
    """Per (op, dtype, cond, B, n): eigh's forward+backward time and each solver's speed-up
    over it (above 1: faster than eigh)."""
    solvers = list(dict.fromkeys(r["solver"] for r in rows if r["solver"] not in PEERS))
    keys = list(dict.fromkeys((r["op"], r["dtype"], r["cond"], r["batch"], r["n"]) for r in rows))
    body = []
    for key in keys:
        group = {
            r["solver"]: r
            for r in rows
            if (r["op"], r["dtype"], r["cond"], r["batch"], r["n"]) == key
        }
        eigh = group.get("torch.linalg.eigh", {})
        cells = [_num(group.get(s, {}).get("ratio_vs_eigh"), ".2f") for s in solvers]
        op, _dtype, cond, B, n = key
        body.append([op, f"{cond:g}", str(B), str(n), _num(eigh.get("fwdbwd_ms")), *cells])
    return _list_table(["op", "cond", "B", "n", "eigh ms", *solvers], body, stub=4)


def details_table(rows: list[dict]) -> list[str]:
    """One row per measurement: times, accuracy and the speed-up over eigh."""
    header = [
        "op",
        "cond",
        "B x n",
        "solver",
        "fwd ms",
        "bwd ms",
        "fwd+bwd ms",
        "rel. error",
        "x eigh",
    ]
    body = [
        [
            r["op"],
            f"{r['cond']:g}",
            f"{r['batch']} x {r['n']}",
            r["solver"],
            _num(r["fwd_ms"]),
            _num(r["bwd_ms"]),
            _num(r["fwdbwd_ms"]),
            _num(r["rel_err"], ".1e"),
            _num(r["ratio_vs_eigh"], ".2f"),
        ]
        for r in rows
        if r["status"] == "ok"
    ]
    return _list_table(header, body)


def docs_text(payload: dict, layout: str) -> str:
    env = payload["environment"]
    prov = payload["provenance"]
    spec = payload["spec"]
    setting = (
        f"``{prov['command']}``: {', '.join(spec['dtypes'])}, {', '.join(spec['devices'])}, "
        f"{spec['threads'] or env.get('torch_threads')} thread(s), torch {env.get('torch')}; "
        f"median of {spec['repeats']} interleaved repeats."
    )
    failed = [r for r in payload["rows"] if r["status"] != "ok"]
    table = ratios_table(payload["rows"]) if layout == "ratios" else details_table(payload["rows"])
    lines = [setting, "", *table]
    if failed:
        lines += ["", f"{len(failed)} measurement(s) not made (status error or skipped):"]
        lines += [f"``{r['solver']}`` ({r['status']}: {r['message']})" for r in failed]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = bench.main(args)
    if args.docs is not None and status == 0:
        results = Path(args.out) / "results.json"
        payload = json.loads(results.read_text())
        if payload.get("provenance") is None:
            raise SystemExit("run_solvers.py: --docs needs a run from a source checkout")
        text = docs_text(payload, args.docs_layout)
        write_generated(args.docs, text, script=SCRIPT, sources=[results.as_posix()])
    return status


if __name__ == "__main__":
    sys.exit(main())
