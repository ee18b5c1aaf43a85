"""Forward error envelope of every registered solver (issue 17): the largest relative
Frobenius error of ``sqrt`` and ``invsqrt`` against float64 ``torch.linalg.eigh``, per dtype
and condition-number bucket, over sizes 8..128, at the default config, next to the bound the
solver states in its ``error_envelope``.

Test matrices (all built in float64 from fixed seeds, then cast):

- ``log-spaced``: ``A = U diag(lambda) U^T``, Haar-random ``U``, eigenvalues log-spaced in
  ``[1/cond, 1]`` for every ``cond`` of :data:`eigenflow.core.solver.ENVELOPE_CONDS`;
- ``wishart``: covariances ``X X^T / m`` of Gaussian ``n x m`` samples with ``m = 2n``
  (condition about 30) and ``m = n`` (condition 1e3..1e6 and beyond), each put in the bucket
  of its own condition number (measured with float64 ``eigvalsh``; above 1e6: not used);
- ``one small`` and ``one large``: the two-cluster extremes, ``n - 1`` eigenvalues at 1 and
  one at ``1/cond``, or ``n - 1`` at ``1/cond`` and one at 1, Haar-random ``U``, for every
  ``cond``. The first maximises the normalising scales' slack (``||A||_F`` and the Schatten
  norm are largest against ``lambda_max`` when most eigenvalues equal it), the second puts
  most of the spectrum at the small end.

Writes ``results.json`` / ``results.csv`` (rows, and the provenance: commit, seeds, grid,
versions, source fingerprint) to ``--out`` (default ``benchmarks/results/matfn-envelope``) and
the tables of ``docs/matfn.rst`` to ``--docs`` (default
``docs/generated/matfn_envelope.inc``). Exit status 1 when a
measured error is above a stated bound (``--suggest`` prints the envelopes the measurement
supports: twice the measured maximum, rounded up to 1-2-5, at least 100 eps, non-decreasing).

Run: ``python benchmarks/matfn_envelope.py [--quick] [--suggest]`` (about 2 minutes on one
CPU core; ``--quick``: sizes 8 and 32, no files written unless ``--out``/``--docs`` given).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated
from eigenflow.core.solver import ENVELOPE_CONDS, ENVELOPE_MAX_N
from eigenflow.testing.matrices import spd_from_eigenvalues

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matfn_accuracy import spd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/matfn_envelope.py"
#: the measured code: every built-in solver family, the stated envelopes (core.solver) and
#: the test matrices borrowed from matfn_accuracy.py
DEPENDENCIES = (
    "eigenflow.plugins.matfn",
    "eigenflow.plugins.eig",
    "eigenflow.plugins.batched_ed",
    "eigenflow.core.solver",
    "eigenflow.testing.matrices",
    "benchmarks/matfn_accuracy.py",
)
SIZES = (8, 16, 32, 64, 128)
BATCH = 4
SEED = 17
DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPS = ("sqrt", "invsqrt")


def log_spaced(n: int, cond: float, seed: int) -> torch.Tensor:
    """``BATCH`` matrices ``U diag(logspace(0, -log10 cond)) U^T``, Haar ``U`` (the accuracy
    table's construction, :func:`matfn_accuracy.spd`)."""
    return spd(BATCH, n, cond, seed)


def wishart(n: int, m: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(BATCH, n, m, generator=gen, dtype=torch.float64)
    A = X @ X.mT / m
    return 0.5 * (A + A.mT)


def two_clusters(n: int, cond: float, small: int, seed: int) -> torch.Tensor:
    """``BATCH`` matrices ``U diag(lambda) U^T``, Haar ``U``, with ``small`` eigenvalues at
    ``1/cond`` and the other ``n - small`` at 1."""
    lam = torch.ones(BATCH, n, dtype=torch.float64)
    lam[:, :small] = 1.0 / cond
    return spd_from_eigenvalues(lam, generator=torch.Generator().manual_seed(seed))


def bucket(cond: float) -> float | None:
    """The smallest condition number of :data:`ENVELOPE_CONDS` at or above ``cond``."""
    return next((c for c in ENVELOPE_CONDS if cond <= c * (1.0 + 1e-9)), None)


def test_matrices(sizes: tuple[int, ...]) -> list[tuple[str, int, float, torch.Tensor]]:
    """``(kind, n, bucket, A (1, n, n))`` for every matrix of the grid."""
    out = []
    for n in sizes:
        for i, cond in enumerate(ENVELOPE_CONDS):
            A = log_spaced(n, cond, SEED + 100 * n + i)
            out += [("log-spaced", n, cond, a[None]) for a in A]
            for kind, small, offset in (("one small", 1, 20), ("one large", n - 1, 30)):
                A = two_clusters(n, cond, small, SEED + 100 * n + offset + i)
                out += [(kind, n, cond, a[None]) for a in A]
        for m, offset in ((2 * n, 50), (n, 60)):
            A = wishart(n, m, SEED + 100 * n + offset)
            lam = torch.linalg.eigvalsh(A)
            conds = (lam[:, -1] / lam[:, 0].clamp_min(1e-300)).tolist()
            for a, c in zip(A, conds):
                b = bucket(c)
                if b is not None:
                    out.append((f"wishart m={'2n' if m == 2 * n else 'n'}", n, b, a[None]))
    return out


def reference(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    L, V = torch.linalg.eigh(A)
    return (V * L.sqrt().unsqueeze(-2)) @ V.mT, (V * L.rsqrt().unsqueeze(-2)) @ V.mT


def rel_err(X: torch.Tensor, R: torch.Tensor) -> float:
    X = X.to(torch.float64)
    return float((torch.linalg.matrix_norm(X - R) / torch.linalg.matrix_norm(R)).max())


def measure(solvers: list[str], sizes: tuple[int, ...], progress) -> list[dict]:
    """One row per (solver, op, dtype, bucket): the largest error over sizes and kinds."""
    mats = test_matrices(sizes)
    refs = [reference(A) for *_, A in mats]
    worst: dict[tuple, dict] = {}
    for name in solvers:
        solver = ef.create("solver", name)
        for dtype_name, dtype in DTYPES.items():
            for (kind, n, b, A), (ref_root, ref_inv) in zip(mats, refs):
                with torch.no_grad():
                    root, inv = solver.sqrt_invsqrt(A.to(dtype), check=False)
                for op, X, R in (("sqrt", root, ref_root), ("invsqrt", inv, ref_inv)):
                    err = rel_err(X, R)
                    key = (name, op, dtype_name, b)
                    row = worst.get(key)
                    if row is None or not err <= row["max_rel_err"]:  # NaN wins
                        worst[key] = {
                            "solver": name,
                            "op": op,
                            "dtype": dtype_name,
                            "cond": b,
                            "max_rel_err": err,
                            "worst_kind": kind,
                            "worst_n": n,
                        }
        progress(f"measured {name}")
    rows = []
    for row in worst.values():
        bound = ef.get("solver", row["solver"]).stated_error(
            row["op"], DTYPES[row["dtype"]], row["cond"]
        )
        row["stated"] = bound
        row["within"] = bound is None or row["max_rel_err"] <= bound
        rows.append(row)
    rows.sort(key=lambda r: (solvers.index(r["solver"]), r["op"], r["dtype"], r["cond"]))
    return rows


def round_up_125(x: float) -> float:
    exponent = math.floor(math.log10(x))
    for mantissa in (1.0, 2.0, 5.0, 10.0):
        value = float(f"{mantissa}e{exponent}")
        if value >= x * (1 - 1e-12):
            return value
    return float(f"1e{exponent + 1}")  # pragma: no cover - 10.0 above always matches


def suggest(rows: list[dict]) -> dict[str, dict[tuple[str, str], tuple[float, ...]]]:
    out: dict[str, dict[tuple[str, str], tuple[float, ...]]] = {}
    for r in rows:
        floor = 100 * torch.finfo(DTYPES[r["dtype"]]).eps
        bounds = out.setdefault(r["solver"], {}).setdefault((r["op"], r["dtype"]), {})
        err = r["max_rel_err"] if math.isfinite(r["max_rel_err"]) else float("inf")
        bounds[r["cond"]] = round_up_125(max(2 * err, floor)) if math.isfinite(err) else err
    result: dict[str, dict[tuple[str, str], tuple[float, ...]]] = {}
    for name, per_key in out.items():
        for key, bounds in per_key.items():
            values = [bounds.get(c, float("nan")) for c in ENVELOPE_CONDS]
            result.setdefault(name, {})[key] = tuple(np.fmax.accumulate(values).tolist())
    return result


def _e(x: float | None) -> str:
    if x is None:
        return "--"
    return "nan" if not math.isfinite(x) else f"{x:.0e}" if x >= 1 else f"{x:.1e}"


def rst_tables(rows: list[dict], sizes: tuple[int, ...]) -> str:
    """One table per (op, dtype): a row per solver, a cell per condition-number bucket with
    the measured maximum and, below it in brackets, the stated bound (``!`` when above it;
    ``*`` when above 1e-2, where ``eigenflow bench`` flags a row whatever the envelope)."""
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    parts = [
        f"Sizes {', '.join(map(str, sizes))}; {BATCH} matrices per size and spectrum; "
        "measured maximum, then the stated bound in brackets (``--``: none stated); ``!`` "
        "marks a measurement above the stated bound, ``*`` one above 1e-2.\n",
    ]
    for dtype in DTYPES:
        for op in OPS:
            header = ["solver", *(f"cond {c:.0e}" for c in ENVELOPE_CONDS)]
            body = []
            for name in solvers:
                cells = []
                for c in ENVELOPE_CONDS:
                    match = [
                        r
                        for r in rows
                        if (r["solver"], r["op"], r["dtype"], r["cond"]) == (name, op, dtype, c)
                    ]
                    if not match:
                        cells.append("")
                        continue
                    r = match[0]
                    mark = ("" if r["within"] else "!") + (
                        "*" if not r["max_rel_err"] <= 1e-2 else ""
                    )
                    cells.append(f"{_e(r['max_rel_err'])}{mark} ({_e(r['stated'])})")
                body.append([name, *cells])
            widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
            rule = "  ".join("=" * w for w in widths)

            def fmt(cells: list[str], widths: list[int] = widths) -> str:
                return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

            title = f"{op}, {dtype}"
            table = "\n".join([rule, fmt(header), rule, *(fmt(b) for b in body), rule])
            parts.append(f"**{title}**\n\n{table}\n")
    return "\n".join(parts)


def provenance(sizes: tuple[int, ...], solvers: list[str], argv: list[str] | None) -> dict:
    config = {
        "sizes": list(sizes),
        "batch": BATCH,
        "conds": list(ENVELOPE_CONDS),
        "max_n_covered": ENVELOPE_MAX_N,
        "kinds": ["log-spaced", "one small", "one large", "wishart m=2n", "wishart m=n"],
        "solvers": solvers,
        "options": "defaults",
        "threads": torch.get_num_threads(),
    }
    deps = imported_modules(d for d in DEPENDENCIES if "/" not in d)
    return record(
        SCRIPT, seeds=[SEED], config=config, dependencies=[*deps, *DEPENDENCIES], argv=argv
    )


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 8 and 32 (smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="folder of results.json/csv")
    parser.add_argument("--docs", type=Path, default=None, help="the generated rst tables")
    parser.add_argument("--solvers", default="*", help="comma-separated names (default: all)")
    parser.add_argument("--suggest", action="store_true", help="print supported envelopes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = (8, 32) if args.quick else SIZES
    if not args.quick:
        args.out = args.out or ROOT / "benchmarks" / "results" / "matfn-envelope"
        args.docs = args.docs or ROOT / "docs" / "generated" / "matfn_envelope.inc"
    registered = ef.list("solver")
    solvers = registered if args.solvers == "*" else args.solvers.split(",")
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    rows = measure(solvers, sizes, progress)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        prov = provenance(sizes, solvers, argv)
        payload = {"format": "eigenflow-envelope/1", "provenance": prov, "rows": rows}
        (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
        with open(args.out / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        progress(f"wrote {args.out}")
    if args.docs is not None:
        sources = [_shown(args.out / "results.json")] if args.out else []
        write_generated(args.docs, rst_tables(rows, sizes), script=SCRIPT, sources=sources)
        progress(f"wrote {args.docs}")
    if args.suggest:
        for name, per_key in suggest(rows).items():
            print(f"{name}:")
            for (op, dtype), bounds in per_key.items():
                print(f"    ({op!r}, torch.{dtype}): {bounds},")
    above = [r for r in rows if not r["within"]]
    for r in above:
        print(
            f"above the stated envelope: {r['solver']} {r['op']} {r['dtype']} cond<={r['cond']:.0e}"
            f": {r['max_rel_err']:.2e} > {r['stated']:.1e} ({r['worst_kind']}, n={r['worst_n']})",
            file=sys.stderr,
        )
    return 1 if above else 0


if __name__ == "__main__":
    raise SystemExit(main())
