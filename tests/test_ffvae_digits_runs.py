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
