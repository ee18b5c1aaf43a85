"""The ``orth-conditioning`` pipeline (thesis 000, Sec. 3.5, Fig. 3.11-3.13) at small size."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import eigenflow as ef
from eigenflow.core.component import RunContext

# A square 27 x 27 Pre-SVD weight (3 x 3 kernel on RGB, 27 channels): the smallest size with the
# default's structure (square W, Eq. 3.52 and 3.57).
_SMALL = dict(
    kernel_size=3,
    channels=27,
    head_channels=8,
    samples=300,
    batch_size=32,
    dataset_options={"n_sequences": 300},
)


def _run(tmp_path, seed=0, **options):
    pipeline = ef.create("pipeline", "orth-conditioning", **{**_SMALL, **options})
    ctx = RunContext(out_dir=tmp_path, device=torch.device("cpu"), seed=seed, quiet=True)
    return pipeline.run(ctx)


def _history(tmp_path):
    with open(tmp_path / "history.csv") as fh:
        return list(csv.DictReader(fh))


def test_orth_conditioning_runs_and_records_every_step(tmp_path):
    variants = ["svd", "svd+nog", "svd+olr", "svd+nog+orth-weight+olr"]
    summary = _run(tmp_path, steps=4, variants=variants)
    assert list(summary["variants"]) == variants
    for row in summary["variants"].values():
        assert 1.0 <= row["median_condition_last_fifth"] < math.inf
        assert 1.0 <= row["median_weight_condition_last_fifth"] < math.inf
        assert math.isfinite(row["final_loss"])
        assert 0.0 <= row["test_accuracy"] <= 1.0
    rows = _history(tmp_path)
    assert len(rows) == 4 * len(variants)
    assert [r["variant"] for r in rows[::4]] == variants
    assert [int(r["step"]) for r in rows[:4]] == [0, 1, 2, 3]
    for r in rows:
        assert 1.0 <= float(r["condition_number"]) < math.inf
        assert 1.0 <= float(r["weight_condition_number"]) < math.inf
    if "plot" in summary:
        assert (tmp_path / "conditioning.png").stat().st_size > 0


def test_orth_conditioning_variants_share_network_data_and_init(tmp_path):
    # Same initial weights and first batch: the covariance of the first forward pass (recorded
    # at step 0) is the same with and without a gradient treatment.
    _run(tmp_path, steps=2, variants=["svd", "svd+nog", "svd+olr"])
    first = [float(r["condition_number"]) for r in _history(tmp_path) if r["step"] == "0"]
    assert first[0] == first[1] == first[2]


def test_orth_conditioning_constraints_lower_the_condition_number(tmp_path):
    # Fig. 3.12-3.13: with NOG + orthogonal weight + OLR the whitened covariance is far better
    # conditioned than with the SVD alone (the square random W has cond(W)^2 of about 10^3).
    summary = _run(tmp_path, steps=30, variants=["svd", "svd+nog+orth-weight+olr"])
    plain = summary["variants"]["svd"]
    full = summary["variants"]["svd+nog+orth-weight+olr"]
    assert full["median_condition_last_fifth"] < plain["median_condition_last_fifth"] / 10
    assert full["median_weight_condition_last_fifth"] == pytest.approx(1.0, abs=1e-3)
    assert plain["median_weight_condition_last_fifth"] > 10


def test_orth_conditioning_rejects_bad_options():
    with pytest.raises(ef.ConfigError, match="variants"):
        ef.create("pipeline", "orth-conditioning", variants=["nog"])
    with pytest.raises(ef.ConfigError, match="did you mean 'nog'"):
        ef.create("pipeline", "orth-conditioning", variants=["svd+nogg"])
    with pytest.raises(ef.ConfigError, match="kernel_size"):
        ef.create("pipeline", "orth-conditioning", kernel_size=4)
