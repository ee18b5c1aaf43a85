"""The covariance-conditioning experiment (thesis 000, Sec. 3.5, Fig. 3.11-3.13) over several
seeds: the ``orth-conditioning`` pipeline at its defaults, once per seed.

    python benchmarks/orth_conditioning.py          # seeds 0, 1, 2 (about 70 s each, 1 thread)

Writes the pipeline outputs to ``--runs`` (default ``bench-results/orth-conditioning``, not
stored), the result with its provenance to ``--json`` (default
``benchmarks/results/orth-conditioning-cpu.json``), the table of ``docs/constraints.rst`` to
``--docs`` (default ``docs/generated/orth_conditioning.inc``) and the first seed's plot to
``docs/_static/orth-conditioning.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

import torch

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated

SCRIPT = "benchmarks/orth_conditioning.py"
#: what the pipeline runs: the constraints and the experiment (constraints), the whitening
#: layer and its svd solver (layers, eig), the data (datasets), the engine (runtime)
DEPENDENCIES = (
    "eigenflow.plugins.constraints",
    "eigenflow.plugins.layers",
    "eigenflow.plugins.eig",
    "eigenflow.plugins.datasets",
    "eigenflow.runtime",
)
PLOT = Path("docs/_static/orth-conditioning.png")


def run_one(seed: int, out: Path, steps: int | None) -> dict:
    spec = {"pipeline": "orth-conditioning", "seed": seed}
    if steps is not None:
        spec["steps"] = steps
    # a re-run replaces the folders of the previous one (they are not stored)
    summary = ef.Pipeline.from_config(spec).run(out=out, quiet=True, overwrite=True)
    return summary["stages"][0]["result"]


def _g(value: float) -> str:
    return f"{value:.1e}" if value >= 100 else f"{value:.3g}"


def rst(results: dict[str, dict], seeds: list[int]) -> str:
    """Per variant: the median over seeds of the covariance and weight condition numbers (each
    seed's value is the median over the last fifth of training), their range over seeds, and
    the test accuracy (mean ± standard deviation over seeds)."""
    first = results[str(seeds[0])]["variants"]
    lines = [
        f".. list-table:: Seeds {', '.join(map(str, seeds))}: median over seeds [smallest, "
        "largest]; each seed's value is the median over the last fifth of training",
        "   :header-rows: 1",
        "",
        "   * - variant",
        "     - covariance condition number",
        "     - ``cond(W)``",
        "     - test accuracy",
    ]
    for variant in first:
        per_seed = [results[str(s)]["variants"][variant] for s in seeds]
        cov = [r["median_condition_last_fifth"] for r in per_seed]
        w = [r["median_weight_condition_last_fifth"] for r in per_seed]
        acc = [r["test_accuracy"] for r in per_seed]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        lines += [
            f"   * - ``{variant}``",
            f"     - {_g(statistics.median(cov))} [{_g(min(cov))}, {_g(max(cov))}]",
            f"     - {_g(statistics.median(w))} [{_g(min(w))}, {_g(max(w))}]",
            f"     - {statistics.mean(acc):.2f} ± {sd:.2f}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--runs", type=Path, default=Path("bench-results/orth-conditioning"))
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/orth-conditioning-cpu.json")
    )
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/orth_conditioning.inc"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {}
    for seed in seeds:
        results[str(seed)] = run_one(seed, args.runs / f"seed{seed}", args.steps)
        print(seed, json.dumps(results[str(seed)]["variants"]), flush=True)
    config = {"pipeline": "orth-conditioning", "steps": args.steps, "threads": args.threads}
    prov = record(
        SCRIPT, seeds=seeds, config=config, dependencies=imported_modules(DEPENDENCIES), argv=argv
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"provenance": prov, "results": results}, indent=1) + "\n")
    write_generated(args.docs, rst(results, seeds), script=SCRIPT, sources=[args.json.as_posix()])
    plot = results[str(seeds[0])].get("plot")
    if plot and Path(plot).is_file() and args.docs == parser.get_default("docs"):
        shutil.copyfile(plot, PLOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
