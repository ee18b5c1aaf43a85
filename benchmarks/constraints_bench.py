"""Benchmark of the orthogonality constraints (thesis 000, Sec. 3.5 and 4.4).

Two parts, one run, one device:

1. **Per-step overhead** of each constraint: a chain of ``L`` ``Linear(d, d)`` layers (batch
   64, SGD) is timed for one training step (forward, backward, ``optimizer.step()``) with no
   constraint and with each constraint attached to every layer; the overhead is the difference
   of the medians. Run for one 512 x 512 layer and for 50 layers.
2. **Householder product** ``H_1 ... H_m`` of ``m`` reflectors of size ``d`` (float32): the
   compact WY form of eigenflow (Theorem 6) against a sequential product of reflectors and
   against ``torch.linalg.householder_product`` (LAPACK/cuSOLVER ``orgqr``, what torch's own
   orthogonal parametrization uses), forward and forward+backward, full (``d`` columns) and
   low rank (the first ``c`` columns, as the ``householder`` projector of rank ``c`` needs);
   with ``--blocks`` the compact WY product once per WY block size (``householder_columns``'s
   ``block``: the library's 64, or e.g. 128 and one block of all ``d``, which trade more
   flops for fewer, larger products and fewer sequential steps).

Usage::

    python benchmarks/constraints_bench.py            # CPU, one thread: the stored result
    python benchmarks/constraints_bench.py --device cuda --skip-steps --blocks 64,128,512 \
        --out issue6.json

On the CPU the defaults write ``benchmarks/results/constraints-cpu-1thread.json`` (with its
provenance) and the tables of ``docs/constraints.rst`` (``docs/generated/constraints_bench.inc``);
on another device give ``--out`` (and ``--docs`` for a table).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated
from eigenflow.plugins.constraints.householder_products import householder_columns

SCRIPT = "benchmarks/constraints_bench.py"
#: the measured code: every constraint plugin and its Householder products
DEPENDENCIES = ("eigenflow.plugins.constraints",)
#: the WY block size ``householder_columns`` uses unless told otherwise
DEFAULT_BLOCK = inspect.signature(householder_columns).parameters["block"].default

CONSTRAINTS: list[tuple[str, dict[str, Any]]] = [
    ("nog", {"method": "svd"}),
    ("nog", {"method": "newton-schulz", "iters": 30}),
    ("olr", {}),
    ("spectral-norm", {"method": "power"}),
    ("spectral-norm", {"method": "exact"}),
    ("orth-loss", {}),
    ("orth-weight", {}),
    ("householder", {"rank": 10}),
    ("householder", {"rank": None}),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


# --------------------------------------------------------------------------- part 1


def _label(name: str, options: dict[str, Any]) -> str:
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{name}({opts})" if opts else name


def step_overhead(layers: int, d: int, device: torch.device, repeats: int) -> list[dict]:
    """Time one SGD training step with each constraint on every layer of a linear chain."""
    rows = []
    x = torch.randn(64, d, device=device)
    for name, options in [("none", {}), *CONSTRAINTS]:
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Linear(d, d) for _ in range(layers)]).to(device)
        targets = list(model)
        constraint = None
        if name != "none":
            constraint = ef.create("constraint", name, **options)
            if name not in ("nog", "olr"):
                constraint.attach(targets)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        if name in ("nog", "olr"):
            constraint.attach(targets, optimizer=opt)

        def step(model=model, opt=opt, constraint=constraint):
            opt.zero_grad(set_to_none=True)
            loss = model(x).square().mean()
            if constraint is not None and constraint.penalty() is not None:
                loss = loss + 1e-3 * constraint.penalty()
            loss.backward()
            opt.step()

        ms = median_time(step, device, repeats, warmup=2)
        rows.append(
            {
                "part": "step",
                "layers": layers,
                "d": d,
                "constraint": _label(name, options),
                "step_ms": ms,
            }
        )
    base = rows[0]["step_ms"]
    for row in rows:
        row["overhead_ms"] = row["step_ms"] - base
    return rows


# --------------------------------------------------------------------------- part 2


def sequential_columns(vectors: torch.Tensor, columns: int) -> torch.Tensor:
    """Naive peer: ``H_1 (H_2 (... (H_m E)))`` one reflector at a time, ``E = I[:, :c]``."""
    d = vectors.shape[-1]
    Q = torch.eye(d, columns, dtype=vectors.dtype, device=vectors.device)
    for i in range(vectors.shape[0] - 1, -1, -1):
        y = vectors[i] / torch.linalg.vector_norm(vectors[i])
        Q = Q - 2.0 * y[:, None] * (y[None, :] @ Q)
    return Q


def lapack_inputs(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``householder_product`` inputs of the same size: ``v_i`` with unit entry ``i``."""
    m, d = vectors.shape
    V = torch.tril(vectors.mT, -1) + torch.eye(d, m, dtype=vectors.dtype, device=vectors.device)
    tau = 2.0 / (V * V).sum(0)
    return V, tau


def _wy_label(block: int, m: int, blocks: tuple[int, ...]) -> str:
    """``compact-wy (eigenflow)`` for the one default block size, else the block named."""
    if blocks == (DEFAULT_BLOCK,):
        return "compact-wy (eigenflow)"
    return f"compact-wy (eigenflow, {'one block' if block >= m else f'blocks of {block}'})"


def product_timings(
    d: int,
    m: int,
    columns: int,
    device: torch.device,
    repeats: int,
    blocks: tuple[int, ...] = (DEFAULT_BLOCK,),
) -> list[dict]:
    """Forward and forward+backward of the three products (float32); the compact WY product
    once per WY block size in ``blocks``."""
    torch.manual_seed(0)
    vectors = torch.randn(m, d, device=device)
    probe = torch.randn(d, columns, device=device)
    V_lapack, tau = lapack_inputs(vectors)

    def run(fn, *leaves, backward):
        leaves = [t.detach().requires_grad_(backward) for t in leaves]

        def call():
            Q = fn(*leaves)
            if backward:
                (Q[:, :columns] * probe).sum().backward()

        return call

    peers = {
        _wy_label(b, m, blocks): (
            lambda h, b=b: householder_columns(h, columns, block=b),
            (vectors,),
        )
        for b in blocks
    }
    peers |= {
        "sequential": (lambda h: sequential_columns(h, columns), (vectors,)),
        "torch.linalg.householder_product": (
            lambda A, t: torch.linalg.householder_product(A, t),
            (V_lapack, tau),
        ),
    }
    rows = []
    for label, (fn, leaves) in peers.items():
        fwd = median_time(run(fn, *leaves, backward=False), device, repeats, warmup=2)
        both = median_time(run(fn, *leaves, backward=True), device, repeats, warmup=2)
        rows.append(
            {
                "part": "product",
                "d": d,
                "reflectors": m,
                "columns": columns,
                "method": label,
                "forward_ms": fwd,
                "forward_backward_ms": both,
            }
        )
    return rows


def _print_table(rows: list[dict], keys: list[str]) -> None:
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
        print("| " + " | ".join(cells) + " |")


def _ms(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def rst(result: dict) -> str:
    """The docs tables: the Householder products, then the per-step overheads."""
    meta = result["meta"]
    cfg = result["provenance"]["config"]
    products = [r for r in result["rows"] if r["part"] == "product"]
    lines = [
        f"{meta['device']}, {meta['threads']} thread(s), float32, torch {meta['torch']}; "
        f"median of {cfg['repeats']} repeats (load average when the run started: "
        f"{', '.join(f'{x:.1f}' for x in meta['load_average'] or [])}).",
        "",
        f".. list-table:: Householder product, d = {cfg['d']}, {cfg['d']} reflectors, milliseconds",
        "   :header-rows: 1",
        "",
        "   * - columns",
        "     - method",
        "     - forward",
        "     - forward + backward",
    ]
    for r in products:
        lines += [
            f"   * - {r['columns']}",
            f"     - {r['method']}",
            f"     - {_ms(r['forward_ms'])}",
            f"     - {_ms(r['forward_backward_ms'])}",
        ]
    steps = [r for r in result["rows"] if r["part"] == "step"]
    if steps:
        layer_counts = sorted({r["layers"] for r in steps})
        lines += [
            "",
            f".. list-table:: One SGD step (batch 64) of a chain of d x d layers, d = "
            f"{cfg['d']}: step time without constraint, and the overhead of each constraint "
            "on every layer, milliseconds",
            "   :header-rows: 1",
            "",
            "   * - constraint",
            *(f"     - {n} layer{'s' if n > 1 else ''}" for n in layer_counts),
        ]
        for label in dict.fromkeys(r["constraint"] for r in steps):
            cells = []
            for n in layer_counts:
                row = next(r for r in steps if r["constraint"] == label and r["layers"] == n)
                value = row["step_ms"] if label == "none" else row["overhead_ms"]
                cells.append(f"     - {_ms(value)}")
            name = "none (step time)" if label == "none" else f"``{label}``"
            lines += [f"   * - {name}", *cells]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--d", type=int, default=512, help="layer / reflector size")
    parser.add_argument("--many", type=int, default=50, help="layer count of the second case")
    parser.add_argument("--rank", type=int, default=10, help="low-rank column count")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--skip-steps", action="store_true", help="only the product part")
    parser.add_argument(
        "--blocks",
        type=lambda text: tuple(int(v) for v in text.split(",") if v),
        default=(DEFAULT_BLOCK,),
        help="WY block sizes of the compact WY product, one row each (default: the library's "
        f"{DEFAULT_BLOCK}; a size >= d is one block: fewer, larger products, which a GPU may "
        "prefer)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the rows as JSON here (CPU default: "
        "benchmarks/results/constraints-cpu-1thread.json)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="write the docs tables here (CPU default: docs/generated/constraints_bench.inc)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.out is None:
        args.out = Path("benchmarks/results/constraints-cpu-1thread.json")
        args.docs = args.docs or Path("docs/generated/constraints_bench.inc")
    meta = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps(meta))
    rows: list[dict] = []
    for columns in (args.d, args.rank):
        part = product_timings(args.d, args.d, columns, device, args.repeats, args.blocks)
        _print_table(
            part, ["d", "reflectors", "columns", "method", "forward_ms", "forward_backward_ms"]
        )
        rows += part
    if not args.skip_steps:
        for layers in (1, args.many):
            part = step_overhead(layers, args.d, device, max(3, args.repeats // 2))
            _print_table(part, ["layers", "d", "constraint", "step_ms", "overhead_ms"])
            rows += part
    config = {k: getattr(args, k) for k in ("device", "d", "many", "rank", "repeats", "skip_steps")}
    config["blocks"] = list(args.blocks)
    config["threads"] = torch.get_num_threads()
    provenance = record(
        SCRIPT, seeds=[0], config=config, dependencies=imported_modules(DEPENDENCIES), argv=argv
    )
    result = {"provenance": provenance, "meta": meta, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.docs:
        sources = [args.out.as_posix()] if args.out else []
        write_generated(args.docs, rst(result), script=SCRIPT, sources=sources)
    return result


if __name__ == "__main__":
    main()
