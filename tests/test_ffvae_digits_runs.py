"""benchmarks/ffvae_digits_runs.py: the job commands and the merge of per-job metrics."""

from __future__ import annotations

import json

import pytest
from helpers import load_benchmark_script


@pytest.fixture(scope="module")
def runs():
    return load_benchmark_script("ffvae_digits_runs")


def test_job_command_puts_the_table_settings_before_the_users(runs, tmp_path):
    command = runs.job_command(2, "ffvae", tmp_path, ["steps=10"], "shapes3d-lite")
    sets = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert sets[:3] == ["data=shapes3d-lite", "seeds=[2]", 'models=["ffvae"]']
    assert "length=8" in sets
    assert sets.index("steps=300") < sets.index("steps=10")  # the later one wins
    assert command[-4:] == ["--out", str(tmp_path), "--quiet", "--overwrite"]


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


def test_tables_give_mean_and_sample_std_over_seeds_and_name_the_lowest(runs):
    digits = {
        "vae": [
            {"seed": 0, "equivariance_error": 10.0, "equivariance_error_zero": 9.0},
            {"seed": 1, "equivariance_error": 14.0, "equivariance_error_zero": 11.0},
        ],
        "ffvae": [
            {"seed": 0, "equivariance_error": 12.0, "log_likelihood": -5.0},
            {"seed": 1, "equivariance_error": 13.0, "log_likelihood": -7.0},
        ],
    }
    for rows in digits.values():
        for row in rows:
            for t in ("rotation", "scaling", "colouring"):
                row[f"equivariance_error[{t}]"] = row["equivariance_error"]
                row[f"equivariance_error_zero[{t}]"] = row.get("equivariance_error_zero", 0.0)
    text = runs.comparison_table("digits-sequences", digits)
    # vae: mean 12, sample std sqrt(8) = 2.83; ffvae: 12.5 +- 0.71, log p -6 +- 1.41
    assert "     - 12.0 ± 2.8" in text and "     - 12.5 ± 0.7" in text
    assert "     - -6.0 ± 1.4" in text and "     - --" in text
    assert text.index("``vae``") < text.index("``ffvae`` (supervised)")
    ranking = runs.ranking_text("digits-sequences", digits)
    assert "overall: ``vae`` (12.0)" in ranking
    assert "``ffvae`` (supervised) does not hold here: its mean error 12.5 ranks 2 of 2" in ranking
    assert "below it: ``vae`` (12.0)" in ranking
    digits["vae"][0]["equivariance_error"] = 20.0  # vae mean 17 > 12.5
    assert "``ffvae`` (supervised) holds here" in runs.ranking_text("digits-sequences", digits)
    pde = runs.pde_table(digits)
    assert "``vae`` (update set to 0)" in pde and "     - 10.0 ± 1.4" in pde
