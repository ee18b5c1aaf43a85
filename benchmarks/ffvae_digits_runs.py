"""Issue 7's result table: ``ffvae-digits`` over several seeds, one process per (seed, model).

    python benchmarks/ffvae_digits_runs.py --seeds 0,1,2 --workers 2 \
        --out runs/ffvae-digits --json benchmarks/results/ffvae-digits-cpu.json

Each job is ``eigenflow run ffvae-digits --set "seeds=[s]" --set 'models=["m"]'`` with one
torch thread, the table's settings (``architecture=conv``, ``steps=6000``,
``n_sequences=8000``) and then any further ``--set`` options (later ones win); ``--workers``
jobs run at once, the longest first. The per-run metrics are merged with the pipeline's own summary
(mean and standard deviation over seeds, the target ratios) into ``--json`` and printed as a
Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eigenflow.plugins.models.results import results_markdown, summarise_runs

# longest first, so that the pool ends together
MODELS = ("ffvae-weak", "ffvae", "vae")
# the result table's settings (the pipeline's defaults are a short demonstration)
TABLE_OPTIONS = ("architecture=conv", "steps=6000", "n_sequences=8000")


def job_command(seed: int, model: str, out: Path, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "eigenflow", "run", "ffvae-digits"]
    command += ["--set", f"seeds=[{seed}]", "--set", f'models=["{model}"]']
    for item in (*TABLE_OPTIONS, *extra):
        command += ["--set", item]
    return [*command, "--out", str(out), "--quiet"]


def run_job(seed: int, model: str, root: Path, extra: list[str]) -> Path:
    out = root / f"{model}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (root / f"{model}-seed{seed}.log").open("w") as log:
        command = job_command(seed, model, out, extra)
        subprocess.run(command, env=env, stdout=log, stderr=log, check=True)
    return out / "metrics.json"


def merge(paths: list[Path]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for path in paths:
        for name, rows in json.loads(path.read_text())["runs"].items():
            runs.setdefault(name, []).extend(rows)
    for rows in runs.values():
        rows.sort(key=lambda row: row["seed"])
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds")
    parser.add_argument("--models", default=",".join(MODELS), help="variants to train")
    parser.add_argument("--workers", type=int, default=2, help="jobs at once")
    parser.add_argument("--out", type=Path, default=Path("runs/ffvae-digits"))
    parser.add_argument("--json", type=Path, help="write the merged runs and summary here")
    parser.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE for every job (repeatable)"
    )
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = [m for m in MODELS if m in args.models.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, model) for model in models for seed in seeds]
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        paths = list(pool.map(lambda job: run_job(*job, args.out, args.set), jobs))
    runs = merge(paths)
    summary = summarise_runs(runs)
    print(results_markdown(summary))
    if args.json:
        record = {
            "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/ffvae_digits_runs.py " + " ".join(argv or sys.argv[1:]),
            "runs": runs,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
