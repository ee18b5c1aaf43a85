"""The ``gan-orth`` table: 7 constraint variants x seeds on ``digits-sequences``.

Runs the ``gan-orth`` pipeline once per seed, stores ``benchmarks/results/gan-orth.json`` (with
provenance) and writes ``docs/generated/gan_orth.inc``: the mean +- std over seeds of the Fréchet
distance (local classifier features, not Inception FID), the first layer's condition number
and the generated features' covariance condition number, and the direction against thesis
000's claim (Sec. 4.3.3, Tables 4.2-4.3: NOG/OLR lower the generator's conditioning and do
not worsen the Fréchet distance).

Usage: ``python benchmarks/gan_orth.py [--steps N] [--seeds 0 1 2] [--threads T]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import eigenflow as ef
from eigenflow.bench.provenance import record, repository_root, write_generated

SCRIPT = "benchmarks/gan_orth.py"
RESULT = "benchmarks/results/gan-orth.json"
TABLE = "docs/generated/gan_orth.inc"
DEPENDENCIES = [
    "eigenflow.plugins.gans",
    "eigenflow.plugins.constraints",
    "eigenflow.plugins.metrics",
    "eigenflow.plugins.datasets",
    "eigenflow.plugins.eig",
    "eigenflow.runtime",
    "eigenflow.core",
]
COLUMNS = ("frechet_distance", "weight_condition", "covariance_condition")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per variant and column, the values over seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for variant, r in run["variants"].items():
            row = out.setdefault(variant, {c: [] for c in COLUMNS})
            for c in COLUMNS:
                row[c].append(float(r[c]))
    return out


def _verdict(table: dict[str, dict[str, list[float]]]) -> str:
    plain = {c: statistics.fmean(table["plain"][c]) for c in COLUMNS}
    lines = []
    for v in ("nog", "olr", "nog+olr"):
        if v not in table:
            continue
        fd = statistics.fmean(table[v]["frechet_distance"])
        cond = statistics.fmean(table[v]["weight_condition"])
        lower = "lower" if cond < plain["weight_condition"] else "not lower"
        worse = "worse" if fd > plain["frechet_distance"] else "not worse"
        lines.append(
            f"- ``{v}``: cond(W) {cond:.3g} vs plain {plain['weight_condition']:.3g} "
            f"({lower}); Fréchet distance {fd:.4g} vs plain {plain['frechet_distance']:.4g} "
            f"({worse})."
        )
    return "\n".join(lines)


def render(table: dict[str, dict[str, list[float]]], config: dict, seeds: list[int]) -> str:
    head = (
        f"Mean +- standard deviation over seeds {', '.join(map(str, seeds))}; "
        f"{config['steps']} steps of {config['batch_size']} images per variant.\n\n"
    )
    rows = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - variant",
        "     - Fréchet distance (local features)",
        "     - cond(W), first layer",
        "     - cond(covariance of generated features)",
    ]
    for variant, cols in table.items():
        cells = []
        for c in COLUMNS:
            m, s = _mean_std(cols[c])
            cells.append(f"{m:.4g} +- {s:.2g}")
        rows.append(f"   * - ``{variant}``")
        rows.extend(f"     - {cell}" for cell in cells)
    verdict = "\nAgainst the thesis's claim (means over seeds):\n\n" + _verdict(table)
    return head + "\n".join(rows) + "\n" + verdict + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = {
        "pipeline": "gan-orth",
        "steps": args.steps,
        "batch_size": 64,
        "eval_samples": args.eval_samples,
    }
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            out = ef.Pipeline.from_config({**config, "seed": seed}).run(Path(tmp) / str(seed))
            runs.append(json.loads((Path(tmp) / str(seed) / "result.json").read_text()))
            print(f"seed {seed} done: {out['out']}", flush=True)
    table = summarise(runs)
    root = repository_root()
    result = {
        "provenance": record(
            SCRIPT,
            seeds=args.seeds,
            config={**config, "threads": args.threads},
            dependencies=DEPENDENCIES,
        ),
        "device": "cpu",
        "runs": runs,
        "summary": table,
    }
    (root / RESULT).write_text(json.dumps(result, indent=1) + "\n")
    write_generated(
        root / TABLE, render(table, config, args.seeds), script=SCRIPT, sources=[RESULT]
    )


if __name__ == "__main__":
    main()
