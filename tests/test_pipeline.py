"""Pipeline specifications: validation with paths, file formats, running."""

from __future__ import annotations

import csv
import json
import struct
import sys

import pytest

import eigenflow as ef

FAST = {"steps": 3, "baseline": False, "dataset": {"name": "covariance-textures", "samples": 64}}


def test_run_single_stage_writes_summary(tmp_path):
    pipeline = ef.Pipeline.from_config({"pipeline": "gcp", **FAST})
    summary = pipeline.run(out=tmp_path, quiet=True)
    assert summary["stages"][0]["pipeline"] == "gcp"
    result = summary["stages"][0]["result"]
    assert 0.0 <= result["gcp_test_accuracy"] <= 1.0
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert (tmp_path / "history.csv").is_file() and (tmp_path / "gcp-model.pt").is_file()


def test_stages_run_in_order_in_their_own_folders(tmp_path):
    spec = {
        "seed": 3,
        "stages": [
            {"pipeline": "gcp", **FAST},
            {"pipeline": "gcp", **FAST, "solver": {"name": "svd", "eps": 0.0}},
        ],
    }
    summary = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)
    assert [s["pipeline"] for s in summary["stages"]] == ["gcp", "gcp"]
    assert summary["seed"] == 3
    assert (tmp_path / "00-gcp" / "history.csv").is_file()
    assert (tmp_path / "01-gcp" / "history.csv").is_file()
    assert summary["stages"][1]["options"]["solver"] == {"name": "svd", "eps": 0.0}


def test_every_error_reported_at_once_with_paths():
    spec = {
        "seed": -1,
        "device": "gpu7",
        "stages": [
            {"pipeline": "gcp", "steps": 0},
            {"pipeline": "gcp", "solver": "mpa-lyaa", "stepz": 3},
            {"pipeline": "gpc"},
            {"pipeline": "gcp", "solver": {"name": "svd", "eps": 5.0}},
        ],
    }
    with pytest.raises(ef.PipelineSpecError) as info:
        ef.Pipeline.from_config(spec)
    errors = info.value.errors
    text = "\n".join(errors)
    assert "stages[0].steps: 0 is invalid: expected an integer >= 1" in text
    assert "stages[1].solver: unknown solver 'mpa-lyaa'" in text
    assert "stages[1].stepz: unknown option; did you mean 'steps'?" in text
    assert "stages[2].pipeline: unknown pipeline 'gpc'; did you mean 'gcp'?" in text
    assert "stages[3].solver.eps: 5.0 is invalid" in text
    assert "seed: expected a non-negative integer, got -1" in text
    assert "device: 'gpu7' is not a torch device" in text
    assert len(errors) == 7


def test_single_form_paths_and_structure_errors():
    with pytest.raises(ef.PipelineSpecError) as info:
        ef.Pipeline.from_config({"pipeline": "gcp", "solver": 3})
    assert info.value.errors == [
        "solver: 3 is invalid: expected a solver name or a table with a 'name' key"
    ]
    for spec, fragment in [
        ({}, "pipeline: missing"),
        ({"pipeline": "gcp", "stages": []}, "not both"),
        ({"stages": "gcp"}, "stages: expected a non-empty list"),
        ({"stages": [{"pipeline": "gcp"}], "extra": 1}, "extra: unknown top-level key"),
    ]:
        with pytest.raises(ef.PipelineSpecError, match=fragment):
            ef.Pipeline.from_config(spec)


def test_toml_and_json_files(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(
        'pipeline = "gcp"\nsteps = 2\nbaseline = false\n'
        '[dataset]\nname = "covariance-textures"\nsamples = 32\n'
    )
    pipe = ef.Pipeline.from_config(toml)
    assert pipe.stages[0].config.steps == 2
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"stages": [{"pipeline": "gcp", "steps": 4}]}))
    assert ef.Pipeline.from_config(js).stages[0].config.steps == 4


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ef.ConfigError, match="no such file"):
        ef.Pipeline.from_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("pipeline = \n")
    with pytest.raises(ef.ConfigError, match="cannot parse"):
        ef.Pipeline.from_config(bad)
    other = tmp_path / "spec.yaml"
    other.write_text("pipeline: gcp\n")
    with pytest.raises(ef.ConfigError, match=r"expected a \.toml or \.json file"):
        ef.Pipeline.from_config(other)


def test_gcp_beats_average_pooling_on_second_order_data(tmp_path):
    summary = ef.Pipeline.from_config({"pipeline": "gcp", "steps": 120}).run(
        out=tmp_path, quiet=True
    )
    result = summary["stages"][0]["result"]
    chance = 1.0 / result["num_classes"]
    assert result["gcp_test_accuracy"] > 0.9
    assert result["avgpool_test_accuracy"] < chance + 0.15


def test_gcp_history_plot_and_chance_level(tmp_path):
    options = {**FAST, "steps": 50, "baseline": True}
    summary = ef.Pipeline.from_config({"pipeline": "gcp", **options}).run(out=tmp_path, quiet=True)
    result = summary["stages"][0]["result"]
    assert result["num_classes"] == 4 and result["chance_accuracy"] == 0.25
    assert result["plot"] == "history.png"
    with open(tmp_path / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "model", "loss", "batch_accuracy", "test_accuracy"]
    for model in ("gcp", "avgpool"):
        mine = [r for r in rows if r["model"] == model]
        assert [int(r["step"]) for r in mine] == list(range(50))
        assert all(0.0 <= float(r["batch_accuracy"]) <= 1.0 for r in mine)
        tested = [r for r in mine if r["test_accuracy"]]
        assert [int(r["step"]) for r in tested] == list(range(1, 50, 2))  # every 50 // 25 steps
        # the last measured test accuracy is the one reported
        assert float(tested[-1]["test_accuracy"]) == pytest.approx(
            result[f"{model}_test_accuracy"], abs=1e-6
        )
    png = (tmp_path / "history.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 400)


def test_gcp_without_matplotlib_says_how_to_get_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    summary = ef.Pipeline.from_config({"pipeline": "gcp", **FAST}).run(out=tmp_path)
    assert summary["stages"][0]["result"]["plot"] is None
    assert not (tmp_path / "history.png").exists() and (tmp_path / "history.csv").is_file()
    err = capsys.readouterr().err
    assert "history.png not written: the plot needs matplotlib" in err
    assert "pip install matplotlib" in err
