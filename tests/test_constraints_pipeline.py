"""The ``orth-conditioning`` pipeline (thesis 000, Sec. 3.5, Fig. 3.11-3.13) at smoke size."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import eigenflow as ef
from eigenflow.core.component import RunContext


def test_orth_conditioning_runs_and_records_every_step(tmp_path):
    pipeline = ef.create(
        "pipeline",
        "orth-conditioning",
        steps=4,
        samples=64,
        batch_size=32,
        variants=["svd", "svd+nog+orth-weight+olr"],
        dataset_options={"n_sequences": 80},
    )
    ctx = RunContext(out_dir=tmp_path, device=torch.device("cpu"), quiet=True)
    summary = pipeline.run(ctx)
    assert set(summary["variants"]) == {"svd", "svd+nog+orth-weight+olr"}
    for row in summary["variants"].values():
        assert 1.0 <= row["median_condition_last_fifth"] < math.inf
        assert 0.0 <= row["test_accuracy"] <= 1.0
    with open(tmp_path / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert all(float(r["condition_number"]) >= 1.0 for r in rows)
    if "plot" in summary:
        assert (tmp_path / "conditioning.png").stat().st_size > 0


def test_orth_conditioning_rejects_bad_variants():
    with pytest.raises(ef.ConfigError, match="variants"):
        ef.create("pipeline", "orth-conditioning", variants=["nog"])
    with pytest.raises(ef.ConfigError, match="did you mean 'nog'"):
        ef.create("pipeline", "orth-conditioning", variants=["svd+nogg"])
