"""The ``gan-orth`` pipeline: a tiny run end to end and its configuration errors."""

from __future__ import annotations

import json

import pytest

import eigenflow as ef
from eigenflow.core.errors import PipelineSpecError

_TINY = {
    "pipeline": "gan-orth",
    "dataset": {"name": "digits-sequences", "n_sequences": 40, "cache": False},
    "model": {"latent_dim": 4, "mapping_layers": 1, "width": 4},
    "variants": ["plain", "orth-weight", "nog+olr"],
    "steps": 2,
    "batch_size": 8,
    "eval_samples": 64,
    "record_every": 1,
    "frechet": {"train_steps": 2, "feature_dim": 6, "width": 4, "real_items": 64},
}


def test_tiny_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("EIGENFLOW_CACHE", str(tmp_path / "cache"))
    out = ef.Pipeline.from_config(_TINY).run(tmp_path / "run", quiet=True)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert set(result["variants"]) == {"plain", "orth-weight", "nog+olr"}
    for r in result["variants"].values():
        assert r["frechet_distance"] > 0 and r["weight_condition"] >= 1
        assert r["covariance_condition"] >= 1 and r["final_terms"]["step"] == 2
    # exp(A - A^T) makes the square first layer orthogonal: condition number 1
    ow = result["variants"]["orth-weight"]
    assert ow["weight_condition"] == pytest.approx(1.0, abs=1e-4)
    assert ow["orthogonality_error"] < 1e-4
    assert result["variants"]["plain"]["weight_condition"] > 1.5
    assert (tmp_path / "run" / "samples-plain.png").exists()
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert rows[0] == "variant,step,weight_condition" and len(rows) == 1 + 3 * 2
    assert out["stages"]


def test_fewer_eval_samples_than_the_mosaic(tmp_path, monkeypatch):
    """``eval_samples`` below 64 (the 8x8 mosaic) still writes a mosaic: two rows of 8 for 10."""
    monkeypatch.setenv("EIGENFLOW_CACHE", str(tmp_path / "cache"))
    config = {**_TINY, "variants": ["plain"], "eval_samples": 10}
    ef.Pipeline.from_config(config).run(tmp_path / "run", quiet=True)
    png = tmp_path / "run" / "samples-plain.png"
    Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) is absent")
    width, height = Image.open(png).size
    assert width > 3 * height  # 8 columns, 2 rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ["plain", "nogg"]}, "not 'plain' or a registered constraint"),
        ({"variants": []}, "non-empty list"),
        ({"model": {"input_shape": [1, 28, 28]}}, "taken from the dataset"),
        ({"frechet": {"dataset": "dsprites"}}, "pipeline's own dataset"),
        ({"steps": 0}, "steps"),
    ],
)
def test_config_errors_name_the_option(change, message):
    with pytest.raises(PipelineSpecError, match=message):
        ef.Pipeline.from_config({"pipeline": "gan-orth", **change})
