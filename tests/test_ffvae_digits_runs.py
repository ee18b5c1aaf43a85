"""benchmarks/ffvae_digits_runs.py: the job commands and the merge of per-job metrics."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ffvae_digits_runs.py"


@pytest.fixture(scope="module")
def runs():
    spec = importlib.util.spec_from_file_location("ffvae_digits_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_command_puts_the_table_settings_before_the_users(runs, tmp_path):
    command = runs.job_command(2, "ffvae", tmp_path, ["steps=10"])
    sets = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert sets[:2] == ["seeds=[2]", 'models=["ffvae"]']
    assert sets.index("steps=6000") < sets.index("steps=10")  # the later one wins
    assert command[-3:] == ["--out", str(tmp_path), "--quiet"]


def test_merge_joins_the_jobs_by_model_in_seed_order(runs, tmp_path):
    paths = []
    for seed, name in [(1, "vae"), (0, "vae"), (0, "ffvae")]:
        path = tmp_path / f"{name}-{seed}.json"
        row = {"seed": seed, "equivariance_error": 10.0 + seed}
        path.write_text(json.dumps({"runs": {name: [row]}}))
        paths.append(path)
    merged = runs.merge(paths)
    assert [r["seed"] for r in merged["vae"]] == [0, 1]
    assert [r["seed"] for r in merged["ffvae"]] == [0]


def test_summarise_runs_gives_mean_std_and_target_ratios():
    from eigenflow.plugins.models.results import results_markdown, summarise_runs

    runs = {
        "vae": [
            {"seed": 0, "equivariance_error": 2.0, "log_likelihood": -10.0},
            {"seed": 1, "equivariance_error": 4.0, "log_likelihood": -12.0},
        ],
        "ffvae": [
            {"seed": 0, "equivariance_error": 1.0, "log_likelihood": -9.0},
            {"seed": 1, "equivariance_error": 2.0, "log_likelihood": -9.0},
        ],
    }
    table = summarise_runs(runs)
    assert table["vae"]["equivariance_error"] == {"mean": 3.0, "std": 1.0}
    assert table["ffvae"]["equivariance_error"] == {"mean": 1.5, "std": 0.5}
    assert table["targets"] == {"ffvae_over_vae_equivariance": 0.5, "ffvae_ll_minus_vae_ll": 2.0}
    text = results_markdown(table)
    assert "| vae | 3.00 +- 1.00 | -11.00 +- 1.00 | - | - |" in text
    assert "ffvae_over_vae_equivariance: 0.500" in text
