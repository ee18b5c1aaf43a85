"""Thesis 000 Table 4.9 in direction: VP scores of potential flows vs the linear baseline and
SeFa on VAEs trained here, over several seeds, with the ``traverse`` pipeline.

    python benchmarks/vp_table.py --datasets dsprites,digits-sequences --seeds 0,1,2 \
        --out bench-results/vp

Writes ``runs/<dataset>-seed<k>/`` (the pipeline outputs), ``vp_table.json`` and
``vp_table.rst`` (mean and standard deviation over seeds, in %).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import eigenflow as ef

METHODS = ("potential-flow", "linear", "sefa")


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
    summary = ef.Pipeline.from_config(spec).run(out=out, quiet=True)
    return summary["stages"][0]["result"]["vp"]


def table(results: dict[str, dict[int, dict]], key: str) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for dataset, by_seed in results.items():
        out[dataset] = {m: [100 * by_seed[s][m][key] for s in sorted(by_seed)] for m in METHODS}
    return out


def rst(rows: dict[str, dict[str, list[float]]], key: str) -> str:
    lines = [".. list-table::", "   :header-rows: 1", "", f"   * - dataset ({key})"]
    lines += [f"     - {m}" for m in METHODS]
    for dataset, by_method in rows.items():
        lines.append(f"   * - {dataset}")
        for m in METHODS:
            vals = by_method[m]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            lines.append(f"     - {statistics.mean(vals):.2f} ± {sd:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="dsprites,digits-sequences")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--flow-steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench-results/vp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results: dict[str, dict[int, dict]] = {}
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            vp = run_one(dataset, seed, out / "runs" / f"{dataset}-seed{seed}", args)
            results.setdefault(dataset, {})[seed] = vp
            print(dataset, seed, json.dumps(vp), flush=True)
    payload = {
        "settings": vars(args),
        "results": results,
        "vp@10%": table(results, "vp@10%"),
        "vp@1%": table(results, "vp@1%"),
    }
    (out / "vp_table.json").write_text(json.dumps(payload, indent=2))
    text = "\n".join(rst(payload[k], k) for k in ("vp@10%", "vp@1%"))
    (out / "vp_table.rst").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
