"""Archive a GPU run of ``benchmarks/gpu_check.sh`` that cannot be re-measured here.

A GPU run is stored from another machine: it cannot be re-made on a CPU checkout, so it must
not pass for fresh when the code changes. This script writes ``provenance.json`` into the
run's folder with :func:`eigenflow.bench.provenance.archive_record` (marked ``archived``, the
fingerprint of the code it depends on taken at the commit that stored it, so that the
freshness test reports it as archived and says whether that code has changed since), and the
docs fragment ``docs/generated/<folder>.inc`` with the run's main numbers, read from its files,
headed by the commit they were measured at.

    python benchmarks/archive_gpu_run.py     # the H200 run of 2026-11-30 (the default)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from eigenflow.bench.provenance import archive_record, list_table, write_generated

SCRIPT = "benchmarks/archive_gpu_run.py"
#: what gpu_check.sh measured: the bench harness and the matfn solvers (issue 3), batched-ed
#: (issue 5), the Householder product (issue 6), and the core they share; packages, so that
#: the names resolve at the archived commit as well as now
DEPENDENCIES = (
    "benchmarks/gpu_check.sh",
    "benchmarks/batched_ed_bench.py",
    "benchmarks/constraints_bench.py",
    "eigenflow.bench",
    "eigenflow.core",
    "eigenflow.plugins.matfn",
    "eigenflow.plugins.batched_ed",
    "eigenflow.plugins.constraints",
)
H200 = {
    "folder": "benchmarks/results/h200-2026-11-30",
    "commit": "1678305ce71ed563bb61bd0fc3b5bee5a6ac0de1",
    "date": "2026-11-30",
    "device": "NVIDIA H200, torch 2.11.0+cu130, Triton 3.6.0",
    "command": "bash benchmarks/gpu_check.sh all",
}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _f(text: str, fmt: str = ".3g") -> str:
    return format(float(text), fmt) if text not in ("", None) else "--"


def rst(folder: Path, prov: dict) -> str:
    """The archived run's tables: sqrt forward+backward (issue 3), batched eigh ratios
    (issue 5), the Householder product (issue 6)."""
    lines = [
        f"Archived measurement: {prov['device']}, {prov['date']}, ``{H200['command']}`` at "
        f"commit ``{prov['commit'][:12]}``. It was not re-measured since and **may not "
        "reflect the current code**; ``tests/test_provenance.py`` reports it as archived and "
        "says whether the code it depends on has changed since that commit.",
        "",
    ]
    sqrt = [r for r in _rows(folder / "issue3-sqrt.csv") if r["status"] == "ok"]
    table = list_table(
        ["B x n", "solver", "mode", "fwd+bwd", "x eigh", "rel. error"],
        [
            [
                f"{r['batch']} x {r['n']}",
                r["solver"],
                r["mode"],
                _f(r["fwdbwd_ms"]),
                _f(r["ratio_vs_eigh"], ".3g"),
                _f(r["rel_err"], ".1e"),
            ]
            for r in sqrt
        ],
        title="sqrt forward+backward, float32, cond 1e3 (issue3-sqrt.csv), milliseconds",
    )
    lines.append(table)
    eig = _rows(folder / "issue5-batched-ed.csv")
    table = list_table(
        ["n", "batch", "batched-ed ms", "eigh ms", "ratio", "eig err", "orth err"],
        [
            [
                r["n"],
                r["batch"],
                _f(r["batched-ed [ms]"]),
                _f(r["torch.linalg.eigh [ms]"]),
                _f(r["ratio vs eigh"], ".2g"),
                _f(r["eig err"], ".1e"),
                _f(r["orth err"], ".1e"),
            ]
            for r in eig
        ],
        title="batched-ed eigh time over torch.linalg.eigh's, float32 (issue5-batched-ed.csv; "
        "below 1: batched-ed faster)",
    )
    lines.append(table)
    hh = json.loads((folder / "issue6-householder.json").read_text())["rows"]
    table = list_table(
        ["columns", "method", "forward", "forward + backward"],
        [
            [str(r["columns"]), r["method"], _f(r["forward_ms"]), _f(r["forward_backward_ms"])]
            for r in hh
            if r["part"] == "product"
        ],
        title="Householder product, d = 512, 512 reflectors, float32 (issue6-householder.json), "
        "milliseconds",
    )
    lines.append(table)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/h200_2026_11_30.inc"))
    args = parser.parse_args(argv)
    folder = Path(H200["folder"])
    files = sorted(p.name for p in folder.iterdir() if p.name != "provenance.json")
    prov = archive_record(
        "benchmarks/gpu_check.sh",
        commit=H200["commit"],
        date=H200["date"],
        device=H200["device"],
        files=files,
        config={"command": H200["command"], "archived_by": SCRIPT},
        dependencies=DEPENDENCIES,
        note="GPU run stored from a lent machine; cannot be re-measured on a CPU checkout. "
        "Re-measure with `bash benchmarks/gpu_check.sh` on a GPU and store a new folder.",
    )
    (folder / "provenance.json").write_text(json.dumps({"provenance": prov}, indent=1) + "\n")
    sources = [(folder / name).as_posix() for name in files if not name.endswith(".txt")]
    write_generated(args.docs, rst(folder, prov), script=SCRIPT, sources=sources)
    print(f"wrote {folder / 'provenance.json'} and {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
