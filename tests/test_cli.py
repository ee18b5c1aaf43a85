"""The eigenflow console script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eigenflow import __version__
from eigenflow.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"eigenflow {__version__}"


def test_list_all_and_one_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("solver", "layer", "pipeline", "dataset", "metric"):
        assert f"{kind} (" in out
    assert main(["list", "solver", "sv*"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("solver (") and "  svd " in out and "layer (" not in out


def test_info_shows_fields_defaults_and_source(capsys):
    assert main(["info", "layer", "covariance-pooling"]) == 0
    out = capsys.readouterr().out
    assert "source:" in out and "Eq. 2.42-2.43" in out
    assert "post_norm : str = 'none'" in out and "solver :" in out


def test_errors_are_one_line_without_traceback(capsys):
    assert main(["info", "solver", "sdv"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "eigenflow: error: unknown solver 'sdv'; did you mean 'svd'? "
        f"(available: {', '.join(__import__('eigenflow').list('solver'))})"
    )
    assert "Traceback" not in err
    assert main(["list", "solvr"]) == 1
    assert "did you mean 'solver'?" in capsys.readouterr().err


def test_debug_shows_traceback(capsys):
    assert main(["--debug", "info", "solver", "sdv"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_run_by_name_with_overrides(tmp_path, capsys):
    code = main(
        [
            "run",
            "gcp",
            "--out",
            str(tmp_path),
            "--quiet",
            "--set",
            "steps=2",
            "--set",
            "baseline=false",
            "--set",
            'dataset={"name": "covariance-textures", "samples": 32}',
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stages"][0]["options"]["steps"] == 2
    assert (tmp_path / "summary.json").is_file()


def test_run_bad_spec_reports_all_errors(capsys):
    assert main(["run", "gcp", "--set", "steps=0", "--set", "solver=mpa-lyaa"]) == 1
    err = capsys.readouterr().err
    assert "steps: 0 is invalid" in err and "solver: unknown solver 'mpa-lyaa'" in err


def test_console_script_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "eigenflow", "list", "pipeline"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "gcp" in done.stdout


def test_bench_smoke_with_gradient_quality(tmp_path, capsys):
    code = main(
        [
            "bench",
            "--solvers",
            "svd",
            "--batch",
            "1",
            "--size",
            "3",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--no-plots",
            "--quiet",
            "--gradient-quality",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert (tmp_path / "results.csv").is_file()
    report = json.loads((tmp_path / "gradients" / "gradient_quality.json").read_text())
    rows = report["gradient_quality"]
    assert {r["solver"] for r in rows} >= {"svd", "svd-pade"}
