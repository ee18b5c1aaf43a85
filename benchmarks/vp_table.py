"""Thesis 000 Table 4.9 in direction: VP scores of potential flows vs the linear baseline and
SeFa on VAEs trained here, over several seeds, with the ``traverse`` pipeline.

    python benchmarks/vp_table.py            # dsprites and digits-sequences, seeds 0-4

Writes the pipeline outputs to ``--runs`` (default ``bench-results/vp/runs``, not stored),
the result with its provenance to ``--json`` (default
``benchmarks/results/vp_table-cpu.json``) and the docs table, with the claim the numbers
support (which method has the highest mean, by how much, in how many seeds), to ``--docs``
(default ``docs/generated/vp_table.inc``, included by ``docs/traversals.rst``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated

SCRIPT = "benchmarks/vp_table.py"
METHODS = ("potential-flow", "linear", "sefa")
SPLITS = (("vp@10%", "10% train"), ("vp@1%", "1% train"))
#: what the ``traverse`` pipeline runs: the VAE (models), the data, the traversals and the
#: VP score (traversals), the engine (runtime)
DEPENDENCIES = (
    "eigenflow.plugins.traversals",
    "eigenflow.plugins.models",
    "eigenflow.plugins.datasets",
    "eigenflow.runtime",
)


def run_one(dataset: str, seed: int, out: Path, args: argparse.Namespace) -> dict:
    spec = {
        "pipeline": "traverse",
        "seed": seed,
        "dataset": dataset,
        "train_steps": args.train_steps,
        "traversal": {"name": "potential-flow", "train_steps": args.flow_steps},
        "compare": [{"name": "linear", "train_steps": args.flow_steps}, "sefa"],
        "vp": {"num_pairs": args.pairs, "epochs": args.epochs},
    }
    # a re-run replaces the folders of the previous one (they are not stored)
    summary = ef.Pipeline.from_config(spec).run(out=out, quiet=True, overwrite=True)
    return summary["stages"][0]["result"]["vp"]


def table(results: dict[str, dict[str, dict]], key: str) -> dict[str, dict[str, list[float]]]:
    """``{dataset: {method: [score in % per seed]}}`` for the VP split ``key``."""
    out: dict[str, dict[str, list[float]]] = {}
    for dataset, by_seed in results.items():
        seeds = sorted(by_seed, key=int)
        out[dataset] = {m: [100 * by_seed[s][m][key] for s in seeds] for m in METHODS}
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def claim(by_method: dict[str, list[float]]) -> str:
    """Which method has the highest mean, its margin over the runner-up, in how many seeds
    it is ahead of it, and whether the margin exceeds one standard deviation."""
    ranked = sorted(METHODS, key=lambda m: -statistics.mean(by_method[m]))
    best, second = ranked[:2]
    (mb, sb), (ms, ss) = mean_sd(by_method[best]), mean_sd(by_method[second])
    ahead = sum(b > s for b, s in zip(by_method[best], by_method[second]))
    n = len(by_method[best])
    margin = mb - ms
    within = " (within one standard deviation)" if margin <= max(sb, ss) else ""
    return (
        f"``{best}`` highest, {margin:.1f} points above ``{second}``{within}, "
        f"ahead of it in {ahead} of {n} seeds"
    )


def rst(payload: dict) -> str:
    """The docs fragment: the table (mean ± standard deviation over seeds, in %) and, per
    split and dataset, the claim the numbers support."""
    seeds = payload["provenance"]["seeds"]
    cfg = payload["provenance"]["config"]
    lines = [
        f".. list-table:: VP score (%) of traversals on VAEs trained here, mean ± standard "
        f"deviation over seeds {', '.join(map(str, seeds))} (chance 12.5%)",
        "   :header-rows: 1",
        "",
        "   * - split",
        "     - dataset",
        *(f"     - {m}" for m in METHODS),
    ]
    claims = []
    for key, split in SPLITS:
        for dataset, by_method in payload[key].items():
            lines += [f"   * - {split}", f"     - {dataset}"]
            for m in METHODS:
                mean, sd = mean_sd(by_method[m])
                lines.append(f"     - {mean:.1f} ± {sd:.1f}")
            claims.append(f"- {split}, ``{dataset}``: {claim(by_method)}.")
    best = {
        sorted(METHODS, key=lambda m: -statistics.mean(bm[m]))[0]
        for key, _ in SPLITS
        for bm in payload[key].values()
    }
    if len(best) == 1:
        summary = f"``{best.pop()}`` has the highest mean VP score in every split and dataset:"
    else:
        summary = "No method has the highest mean VP score in every split and dataset:"
    setting = (
        f"``vae`` trained {cfg['train_steps']} steps, traversals fitted {cfg['flow_steps']} "
        f"steps, {cfg['pairs']} pairs, classifier {cfg['epochs']} epochs; CPU, "
        f"{cfg['threads']} thread(s)"
    )
    return "\n".join([*lines, "", f"Setting: {setting}.", "", summary, "", *claims]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="dsprites,digits-sequences")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--flow-steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("bench-results/vp/runs"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/vp_table-cpu.json"))
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/vp_table.inc"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, dict[str, dict]] = {}
    for dataset in args.datasets.split(","):
        for seed in seeds:
            vp = run_one(dataset, seed, args.runs / f"{dataset}-seed{seed}", args)
            results.setdefault(dataset, {})[str(seed)] = vp
            print(dataset, seed, json.dumps(vp), flush=True)
    config = {
        k: getattr(args, k)
        for k in ("datasets", "train_steps", "flow_steps", "pairs", "epochs", "threads")
    }
    payload = {
        "provenance": record(
            SCRIPT,
            seeds=seeds,
            config=config,
            dependencies=imported_modules(DEPENDENCIES),
            argv=argv,
        ),
        "results": results,
        **{key: table(results, key) for key, _ in SPLITS},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    text = rst(payload)
    write_generated(args.docs, text, script=SCRIPT, sources=[args.json.as_posix()])
    print(text)


if __name__ == "__main__":
    main()
