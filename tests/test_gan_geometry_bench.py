"""benchmarks/gan_geometry.py: the summary over seeds, the verdict sentences, and the docs
fragment against the stored result it was generated from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_benchmark_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("gan_geometry")


def fake_seed(pl_sefa: float, pl_house: float, higgins_plain: float, higgins_aligned: float):
    def pl(value):
        return {
            "path_length": value,
            "random_path_length": 1e-3,
            "relative": 2.0,
            "path_ratio": 1.2,
        }

    def run(score):
        return {
            "higgins": {"higgins_score": score, "chance": 0.25},
            "alignment_map": {"diagonal": 0.1, "axis_alignment": 0.2},
            "reconstruction": 0.03,
            "frechet_distance": 5.0,
        }

    hessian = {
        "latent_dim": 16,
        "anisotropy": {"0.99": 10.0, "0.999": 13.0, "0.9999": 15.0},
        "homogeneity": 0.9,
        "log10_eigenvalue_span": 3.0,
        "eigenvalue_log10_std": 1.0,
        "random_speed": {"std_log10": 0.2},
    }
    return {
        "householder-gan": {
            "path_length": {"sefa": pl(pl_sefa), "householder": pl(pl_house)},
            "householder_better": pl_house < pl_sefa,
            "frechet_distance": {"sefa": 4.0, "householder": 5.0},
        },
        "alignment-gan": {
            "runs": {"plain": run(higgins_plain), "aligned": run(higgins_aligned)},
            "alignment_raises_score": higgins_aligned > higgins_plain,
        },
        "hessian-analysis": hessian,
    }


def test_summary_means_and_verdicts(bench):
    runs = {0: fake_seed(2e-3, 1e-3, 0.5, 0.6), 1: fake_seed(4e-3, 3e-3, 0.7, 0.8)}
    summary = bench.summarize(runs)
    assert summary["householder-gan"]["sefa"]["path_length"]["mean"] == pytest.approx(3e-3)
    assert summary["householder-gan"]["householder_better_seeds"] == 2
    assert summary["alignment-gan"]["aligned"]["higgins_score"]["mean"] == pytest.approx(0.7)
    text = bench.docs_text(summary, [0, 1])
    assert text.count("**reproduces**") == 2
    mixed = bench.summarize(
        {0: fake_seed(2e-3, 1e-3, 0.5, 0.4), 1: fake_seed(1e-3, 2e-3, 0.5, 0.4)}
    )
    text = bench.docs_text(mixed, [0, 1])
    assert "**is mixed**" in text and "**does not reproduce**" in text


def test_docs_fragment_is_generated_from_the_stored_result(bench):
    """The tables in the docs are exactly what the stored summary gives."""
    stored = json.loads((ROOT / bench.RESULT).read_text())
    fragment = (ROOT / bench.DOCS).read_text()
    seeds = stored["provenance"]["seeds"]
    assert (
        fragment.split("\n", 2)[2] == bench.docs_text(stored["summary"], seeds).rstrip("\n") + "\n"
    )
    assert stored["provenance"]["config"]["quick"] is False
    assert seeds == [0, 1, 2]
