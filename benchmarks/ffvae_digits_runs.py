"""The FFVAE comparison tables (seed 004, Tables 1-2, 5-6 in direction) and the ``pde-vae``
table (thesis 000, Tables 4.10-4.11 in direction): ``ffvae-digits`` over several seeds, one
process per (dataset, seed, model), at a size two shared CPU cores afford.

    python benchmarks/ffvae_digits_runs.py --seeds 0,1,2 --workers 2

Each job is ``eigenflow run ffvae-digits --set data=<dataset> --set "seeds=[s]" --set
'models=["m"]'`` with one torch thread, the table's settings (:data:`TABLE_OPTIONS`, the
dataset's sequence length) and then any further ``--set`` options (later ones win);
``--workers`` jobs run at once, the longest first. The per-run metrics are merged with the
pipeline's own summary (mean and standard deviation over seeds) and stored with their
provenance in ``benchmarks/results/ffvae-compare-<dataset>-cpu.json``; the docs tables
(``docs/generated/ffvae_compare_<dataset>.inc`` and ``docs/generated/pde_vae_table.inc``)
are generated from those files. ``--tables-only`` regenerates the tables from the stored
files without training.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eigenflow.bench.provenance import record, repository_root, write_generated
from eigenflow.plugins.models.results import results_markdown, summarise_runs

SCRIPT = "benchmarks/ffvae_digits_runs.py"
ROOT = repository_root()

#: longest first, so that the pool ends together
MODELS = (
    "pde-vae",
    "ffvae-weak",
    "ffvae",
    "factor-vae",
    "slow-vae",
    "beta-vae",
    "vae",
)
#: the tables' settings (small MLP models, a few hundred steps: about 7 minutes of one core
#: per seed and dataset)
TABLE_OPTIONS = (
    "architecture=mlp",
    "latent_dim=8",
    "steps=300",
    "batch_size=32",
    "n_sequences=1000",
    "eval_items=100",
    "iw_samples=20",
    "vp_pairs=1000",
    "vp_epochs=30",
    "figures=false",
    'model_options={"factor-vae": {"disc_hidden": 128, "disc_layers": 2}}',
)
#: per dataset: frames per sequence, the models compared, the stored result and docs table
DATASETS = {
    "digits-sequences": {
        "short": "digits",
        "length": 10,
        "models": MODELS,
        "transforms": ("rotation", "scaling", "colouring"),
    },
    "shapes3d-lite": {
        "short": "shapes3d",
        "length": 8,
        "models": tuple(m for m in MODELS if m != "pde-vae"),
        "transforms": ("floor_hue", "wall_hue", "object_hue", "scale"),
    },
}
#: the modules the pipeline imports (the stored results go stale when one changes)
DEPENDENCIES = [
    "eigenflow.plugins.models",
    "eigenflow.plugins.gen_metrics",
    "eigenflow.plugins.traversals.metrics",
    "eigenflow.plugins.datasets",
    "eigenflow.runtime.trainer",
    "eigenflow.runtime.build",
    "eigenflow.core.potentials",
]
#: display names and the seed 004 (slides) row each model stands for
ROW_NAMES = {
    "vae": "``vae``",
    "beta-vae": "``beta-vae``",
    "factor-vae": "``factor-vae``",
    "slow-vae": "``slow-vae``",
    "pde-vae": "``pde-vae`` (PoFlow)",
    "ffvae": "``ffvae`` (supervised)",
    "ffvae-weak": "``ffvae`` (weak)",
}
TABLE_ORDER = ("vae", "beta-vae", "factor-vae", "slow-vae", "pde-vae", "ffvae", "ffvae-weak")


def result_path(data: str) -> Path:
    return ROOT / "benchmarks" / "results" / f"ffvae-compare-{DATASETS[data]['short']}-cpu.json"


def table_path(data: str) -> Path:
    return ROOT / "docs" / "generated" / f"ffvae_compare_{DATASETS[data]['short']}.inc"


def job_command(
    seed: int, model: str, out: Path, extra: list[str], data: str = "digits-sequences"
) -> list[str]:
    command = [sys.executable, "-m", "eigenflow", "run", "ffvae-digits"]
    command += ["--set", f"data={data}", "--set", f"seeds=[{seed}]"]
    command += ["--set", f'models=["{model}"]']
    options = (*TABLE_OPTIONS, f"length={DATASETS[data]['length']}", *extra)
    for item in options:
        command += ["--set", item]
    # --overwrite: a re-run replaces the folders of the previous one (they are not stored)
    return [*command, "--out", str(out), "--quiet", "--overwrite"]


def run_job(data: str, seed: int, model: str, root: Path, extra: list[str]) -> Path:
    name = f"{DATASETS[data]['short']}-{model}-seed{seed}"
    out = root / name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with (root / f"{name}.log").open("w") as log:
        command = job_command(seed, model, out, extra, data)
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


# --------------------------------------------------------------------------- tables


def mean_std(rows: list[dict], key: str) -> tuple[float, float] | None:
    """Mean and sample standard deviation over seeds of ``key`` (``None`` if absent)."""
    values = [row[key] for row in rows if key in row]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(rows: list[dict], key: str, digits: int = 1) -> str:
    found = mean_std(rows, key)
    return "--" if found is None else f"{found[0]:.{digits}f} ± {found[1]:.{digits}f}"


def comparison_table(data: str, runs: dict[str, list[dict]]) -> str:
    """The reST list-table of one dataset: equivariance error overall and per transformation,
    log-likelihood per frame and per sequence, VP scores; mean ± std over seeds."""
    transforms = DATASETS[data]["transforms"]
    header = [
        "model",
        "equivariance error",
        *transforms,
        "``log p(x_t)``",
        "``log p(x_0..T)``",
        "VP 10 % (%)",
        "VP 1 % (%)",
    ]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines.append(f"   * - {header[0]}")
    lines += [f"     - {h}" for h in header[1:]]
    for name in TABLE_ORDER:
        rows = runs.get(name)
        if not rows:
            continue
        lines.append(f"   * - {ROW_NAMES[name]}")
        keys = ["equivariance_error", *(f"equivariance_error[{t}]" for t in transforms)]
        lines += [f"     - {cell(rows, k)}" for k in keys]
        lines.append(f"     - {cell(rows, 'log_likelihood')}")
        lines.append(f"     - {cell(rows, 'log_likelihood_sequence')}")
        lines.append(f"     - {cell(rows, 'vp[vp@10%]')}")
        lines.append(f"     - {cell(rows, 'vp[vp@1%]')}")
    return "\n".join(lines) + "\n"


def ranking_text(data: str, runs: dict[str, list[dict]]) -> str:
    """Which model has the lowest mean equivariance error, overall and per transformation,
    and whether the slides' claim (seed 004, Tables 1-2: the ffvae's error is the lowest of
    all models) holds in these runs, for the supervised and the weakly supervised ffvae."""
    present = [n for n in TABLE_ORDER if runs.get(n)]
    transforms = DATASETS[data]["transforms"]
    keys = ["equivariance_error", *(f"equivariance_error[{t}]" for t in transforms)]
    parts = []
    for key in keys:
        means = {n: mean_std(runs[n], key)[0] for n in present}
        best = min(means, key=means.get)
        label = "overall" if key == "equivariance_error" else key.split("[")[1].rstrip("]")
        parts.append(f"{label}: ``{best}`` ({means[best]:.1f})")
    lines = ["Lowest mean equivariance error, " + "; ".join(parts) + "."]
    overall = {n: mean_std(runs[n], "equivariance_error")[0] for n in present}
    order = sorted(overall, key=overall.get)
    for name in ("ffvae", "ffvae-weak"):
        if name not in overall:
            continue
        others = [n for n in order if n not in ("ffvae", "ffvae-weak")]
        below = [n for n in others if overall[n] < overall[name]]
        verdict = "holds" if not below else "does not hold"
        lines.append(
            f"The slides' claim for {ROW_NAMES[name]} {verdict} here: its mean error "
            f"{overall[name]:.1f} ranks {order.index(name) + 1} of {len(order)}"
            + (
                f"; below it: {', '.join(f'``{n}`` ({overall[n]:.1f})' for n in below)}."
                if below
                else "."
            )
        )
    return "\n\n".join(lines) + "\n"


def pde_table(runs: dict[str, list[dict]]) -> str:
    """``pde-vae`` against ``vae`` on digits (thesis 000, Tables 4.10 and 4.11): per-frame
    log-likelihood and the equivariance error per transformation, the VAE's with its update
    set to 0 as in Table 4.11."""
    transforms = DATASETS["digits-sequences"]["transforms"]
    lines = [".. list-table::", "   :header-rows: 1", ""]
    lines += ["   * - model", "     - ``log p(x)`` per frame (Table 4.10)"]
    lines += [f"     - {t} (Table 4.11)" for t in transforms]
    rows_of = {
        "``vae`` (update set to 0)": (runs.get("vae"), "equivariance_error_zero"),
        "``pde-vae``": (runs.get("pde-vae"), "equivariance_error"),
    }
    for label, (rows, key) in rows_of.items():
        if not rows:
            continue
        lines.append(f"   * - {label}")
        lines.append(f"     - {cell(rows, 'log_likelihood')}")
        lines += [f"     - {cell(rows, key + f'[{t}]')}" for t in transforms]
    return "\n".join(lines) + "\n"


def write_tables() -> list[Path]:
    """Regenerate the docs fragments from the stored results."""
    written = []
    for data in DATASETS:
        path = result_path(data)
        if not path.is_file():
            continue
        stored = json.loads(path.read_text())
        source = path.relative_to(ROOT).as_posix()
        text = comparison_table(data, stored["runs"]) + "\n" + ranking_text(data, stored["runs"])
        written.append(write_generated(table_path(data), text, script=SCRIPT, sources=[source]))
        if data == "digits-sequences":
            written.append(
                write_generated(
                    ROOT / "docs" / "generated" / "pde_vae_table.inc",
                    pde_table(stored["runs"]),
                    script=SCRIPT,
                    sources=[source],
                )
            )
    return written


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds")
    parser.add_argument("--data", default=",".join(DATASETS), help="datasets to run")
    parser.add_argument("--models", default=",".join(MODELS), help="variants to train")
    parser.add_argument("--workers", type=int, default=2, help="jobs at once")
    parser.add_argument("--out", type=Path, default=Path("runs/ffvae-compare"))
    parser.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE for every job (repeatable)"
    )
    parser.add_argument(
        "--tables-only", action="store_true", help="only regenerate the docs tables"
    )
    args = parser.parse_args(argv)
    if not args.tables_only:
        seeds = [int(s) for s in args.seeds.split(",")]
        chosen = args.models.split(",")
        datasets = args.data.split(",")
        args.out.mkdir(parents=True, exist_ok=True)
        jobs = [
            (data, seed, model)
            for model in MODELS
            for data in datasets
            for seed in seeds
            if model in chosen and model in DATASETS[data]["models"]
        ]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            paths = list(pool.map(lambda job: run_job(*job, args.out, args.set), jobs))
        for data in datasets:
            runs = merge([p for (d, _, _), p in zip(jobs, paths) if d == data])
            summary = summarise_runs(runs)
            print(f"{data}\n{results_markdown(summary)}")
            options = [*TABLE_OPTIONS, f"length={DATASETS[data]['length']}", *args.set]
            stored = {
                "provenance": record(
                    SCRIPT,
                    seeds=seeds,
                    config={"data": data, "options": options, "models": sorted(runs)},
                    dependencies=DEPENDENCIES,
                    argv=argv,
                ),
                "runs": runs,
                "summary": summary,
            }
            path = result_path(data)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=2) + "\n")
    for path in write_tables():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
