"""Time ``batched-ed`` eigh against ``torch.linalg.eigh`` and ``torch.linalg.svd`` (issue 5,
thesis 000 Fig. 3.3 and 3.7), side by side in one run.

For each matrix size ``n`` and batch size it times the forward eigendecomposition of random
symmetric matrices (median of ``--repeats`` after ``--warmup``), checks the batched-ed result
against float64 ``torch.linalg.eigh`` (relative eigenvalue error, orthogonality), and writes
``results.csv``, ``results.json``, a ratio table ``ratios.md`` and, when matplotlib is
installed, ``fig3_7.png`` (time against batch size per matrix size, log-log).

A measurement slower than ``--max-seconds`` skips the larger batches of that size for that
method (recorded as skipped), so the full grid stays feasible on a CPU.

Examples::

    python benchmarks/batched_ed_bench.py      # CPU, one thread, process CPU time: the stored run
    python benchmarks/batched_ed_bench.py --device cuda --backend triton --out results/h100

On the CPU the defaults are the stored run's (``n`` up to 64: a call at ``n = 96, 128`` takes
minutes there; one thread, ``--clock process``), writing ``benchmarks/results/batched-ed-cpu``
(``results.json`` carries the provenance) and the ratio table of ``docs/batched-ed.rst``
(``docs/generated/batched_ed_ratios.inc``); elsewhere give ``--out`` (and ``--docs``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated

SCRIPT = "benchmarks/batched_ed_bench.py"
#: the measured code: the batched-ed solver (its torch and Triton paths)
DEPENDENCIES = ("eigenflow.plugins.batched_ed",)
SIZES = (4, 8, 16, 24, 32, 48, 64, 96, 128)
CPU_SIZES = (4, 8, 16, 24, 32, 48, 64)
BATCHES = (1, 16, 64, 256, 1024, 4096)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn, device: str, repeats: int, warmup: int, clock=time.perf_counter) -> float:
    """Median time in seconds of ``fn()`` by ``clock`` (wall time by default)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        _sync(device)
        times.append(clock() - start)
    return statistics.median(times)


def random_symmetric(n: int, batch: int, dtype: torch.dtype, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, n, n, dtype=torch.float64, generator=gen)
    return (X @ X.mT / n).to(dtype=dtype, device=device)


def accuracy(A: torch.Tensor, L: torch.Tensor, V: torch.Tensor) -> tuple[float, float]:
    """Largest eigenvalue error relative to ``||A||_2`` and ``||V^T V - I||_2``."""
    A64 = A.double().cpu()
    L, V = L.double().cpu(), V.double().cpu()
    ref = torch.linalg.eigvalsh(A64)
    norm = torch.linalg.matrix_norm(A64, ord=2).clamp_min(1e-300)
    value = float(((L - ref).abs().amax(-1) / norm).max())
    eye = torch.eye(A.shape[-1], dtype=torch.float64)
    orth = float(torch.linalg.matrix_norm(V.mT @ V - eye, ord=2).max())
    return value, orth


def run(args: argparse.Namespace) -> list[dict]:
    dtype = getattr(torch, args.dtype)
    solver = ef.create("solver", "batched-ed", backend=args.backend, on_failure="flag")
    methods = {
        "batched-ed": lambda A: solver.eigh(A, check=False),
        "torch.linalg.eigh": torch.linalg.eigh,
        "torch.linalg.svd": torch.linalg.svd,
    }
    # process CPU time: robust to other processes on a shared CPU (use with --threads 1)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    rows: list[dict] = []
    too_slow: set[tuple[str, int]] = set()
    for n in args.sizes:
        for batch in args.batches:
            A = random_symmetric(n, batch, dtype, args.device, seed=n * 7919 + batch)
            row: dict = {"device": args.device, "dtype": args.dtype, "n": n, "batch": batch}
            row["clock"] = args.clock
            for name, fn in methods.items():
                if (name, n) in too_slow:
                    row[f"{name} [ms]"] = None
                    continue
                with torch.no_grad():
                    call = lambda fn=fn, A=A: fn(A)  # noqa: E731
                    seconds = time_call(call, args.device, args.repeats, args.warmup, clock)
                row[f"{name} [ms]"] = 1e3 * seconds
                if seconds > args.max_seconds:
                    too_slow.add((name, n))
            with torch.no_grad():
                L, V = solver.eigh(A, check=False)
            row["eig err"], row["orth err"] = accuracy(A, L, V)
            row["converged"] = bool(solver.last_converged.all())
            row["qr steps"] = int(solver.last_qr_steps)  # a device tensor after the kernel
            for peer in ("torch.linalg.eigh", "torch.linalg.svd"):
                ours, theirs = row["batched-ed [ms]"], row[f"{peer} [ms]"]
                row[f"ratio vs {peer.split('.')[-1]}"] = (
                    ours / theirs if ours is not None and theirs else None
                )
            rows.append(row)
            if not args.quiet:
                print(_format_row(row), flush=True)
    return rows


def _fmt(value) -> str:
    if value is None:
        return "skipped"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _format_row(row: dict) -> str:
    return " | ".join(f"{k}={_fmt(v)}" for k, v in row.items())


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if value >= 100 else f"{value:.2g}"


def rst(rows: list[dict], provenance: dict) -> str:
    """The docs table: batched-ed time over ``torch.linalg.eigh``'s per size and batch, and
    the time of one and of the largest batch of 16 x 16 matrices."""
    cfg = provenance["config"]
    sizes = sorted({r["n"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    lines = [
        f"{cfg['device']}, {cfg['dtype']}, {cfg['threads']} thread(s), clock "
        f"``{cfg['clock']}``, torch {provenance['versions']['torch']}; median of "
        f"{cfg['repeats']} repeats. Time of ``batched-ed`` divided by ``torch.linalg.eigh``'s "
        "(above 1: slower than eigh):",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - n \\\\ batch",
        *(f"     - {b}" for b in batches),
    ]
    for n in sizes:
        lines.append(f"   * - {n}")
        for b in batches:
            match = [r for r in rows if r["n"] == n and r["batch"] == b]
            ratio = match[0]["ratio vs eigh"] if match else None
            lines.append(f"     - {_ratio(ratio)}")
    at16 = {r["batch"]: r for r in rows if r["n"] == 16}
    if at16:
        lo, hi = min(at16), max(at16)
        ms = [at16[b]["batched-ed [ms]"] for b in (lo, hi)]
        if None not in ms:
            lines += [
                "",
                f"``batched-ed`` takes {ms[0]:.3g} ms for {lo} matrix of size 16 and "
                f"{ms[1]:.3g} ms for {hi} of them.",
            ]
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], out: Path, provenance: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    payload = {"provenance": provenance, "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    sizes = sorted({r["n"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    lines = [
        "batched-ed time / torch.linalg.eigh time (< 1: batched-ed faster)",
        "",
        "| n \\ batch | " + " | ".join(str(b) for b in batches) + " |",
        "|---" * (len(batches) + 1) + "|",
    ]
    for n in sizes:
        cells = []
        for b in batches:
            match = [r for r in rows if r["n"] == n and r["batch"] == b]
            cells.append(_fmt(match[0]["ratio vs eigh"]) if match else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    (out / "ratios.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "fig3_7.png")


def plot(rows: list[dict], path: Path) -> None:
    """Fig. 3.7 style: time against batch size, one panel per matrix size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    sizes = sorted({r["n"] for r in rows})
    cols = min(3, len(sizes))
    nrows = (len(sizes) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, n in zip(axes.flat, sizes):
        part = sorted((r for r in rows if r["n"] == n), key=lambda r: r["batch"])
        for name in ("batched-ed", "torch.linalg.eigh", "torch.linalg.svd"):
            pts = [(r["batch"], r[f"{name} [ms]"]) for r in part if r[f"{name} [ms]"]]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set(xscale="log", yscale="log", title=f"n = {n}", xlabel="batch", ylabel="ms")
    for ax in list(axes.flat)[len(sizes) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=_ints, default=None, help="default: 4..128, CPU 4..64")
    parser.add_argument("--batches", type=_ints, default=BATCHES)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--clock",
        default=None,
        choices=("wall", "process"),
        help="'process': this process's CPU time (CPU only, for a shared machine; the CPU "
        "default), 'wall': wall time (the default elsewhere)",
    )
    parser.add_argument("--out", type=Path, default=None, help="CPU default: the stored run")
    parser.add_argument("--docs", type=Path, default=None, help="the generated ratio table")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = args.device == "cpu"
    args.sizes = args.sizes or (CPU_SIZES if cpu else SIZES)
    args.clock = args.clock or ("process" if cpu else "wall")
    if args.out is None:
        if not cpu:
            parser.error("--out is required off the CPU")
        args.out = Path("benchmarks/results/batched-ed-cpu")
        args.docs = args.docs or Path("docs/generated/batched_ed_ratios.inc")
    rows = run(args)
    config = {
        k: getattr(args, k)
        for k in ("device", "dtype", "backend", "repeats", "warmup", "max_seconds", "clock")
    }
    config.update(sizes=list(args.sizes), batches=list(args.batches))
    config["threads"] = torch.get_num_threads()
    provenance = record(
        SCRIPT,
        seeds=[n * 7919 + b for n in args.sizes for b in args.batches],
        config=config,
        dependencies=imported_modules(DEPENDENCIES),
        argv=argv,
    )
    write_outputs(rows, args.out, provenance)
    if args.docs:
        text = rst(rows, provenance)
        write_generated(
            args.docs, text, script=SCRIPT, sources=[(args.out / "results.json").as_posix()]
        )
    print(f"wrote {args.out}/results.csv, results.json, ratios.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
