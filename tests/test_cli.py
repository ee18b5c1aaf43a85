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
            "--json",
            "--set",
            "steps=2",
            "--set",
            "baseline=false",
            "--set",
            'dataset={"name": "covariance-textures", "samples": 32}',
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["stages"][0]["options"]["steps"] == 2
    assert (tmp_path / "summary.json").is_file()
    assert captured.err == ""  # --quiet: no progress


def test_run_prints_results_on_stdout_and_progress_on_stderr(tmp_path, capsys):
    code = main(
        [
            "run",
            "gcp",
            "--out",
            str(tmp_path),
            "--set",
            "steps=10",
            "--set",
            'dataset={"name": "covariance-textures", "samples": 32}',
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    # results, readable: one key per line, the chance level among them
    assert captured.out.startswith("gcp (")
    assert "  chance_accuracy:" in captured.out and " 0.25\n" in captured.out
    assert "  gcp_test_accuracy:" in captured.out and "  avgpool_test_accuracy:" in captured.out
    assert f"written to {tmp_path}" in captured.out
    assert "[gcp]" not in captured.out and "step" not in captured.out
    # progress of the runtime's trainer (every fifth of the run) and the chance level
    lines = captured.err.splitlines()
    assert any(r.startswith("[gcp: gcp] [") and " 2/10 loss " in r for r in lines)
    assert any(r.startswith("[gcp: avgpool] [") and " 10/10 loss " in r for r in lines)
    assert "(chance 0.250)" in captured.err


def test_list_summaries_are_whole_sentences_in_plain_text(capsys):
    import eigenflow as ef
    from eigenflow._text import ABBREVIATIONS

    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["components"]
    assert sum(len(rows) for rows in listing.values()) == sum(len(v) for v in ef.list().values())
    for kind, rows in listing.items():
        for row in rows:
            summary = row["summary"]
            assert summary, f"{kind} {row['name']}: empty summary"
            assert "`" not in summary and ":class:" not in summary, (kind, summary)
            last_word = summary.rstrip(".").split()[-1].lower()
            assert last_word not in ABBREVIATIONS, f"{kind} {row['name']} cut at {summary!r}"
    assert main(["list", "solver", "ns"]) == 0
    out = capsys.readouterr().out
    assert "(Eq. 2.3) with plain autograd backward: the iSQRT-COV baseline of thesis 000." in out
    assert main(["list", "solver", "svd"]) == 0
    assert "Exact eigendecomposition (torch.linalg.eigh) with the standard backward." in (
        capsys.readouterr().out
    )


def test_info_options_header_is_not_cut_at_an_abbreviation(capsys):
    assert main(["info", "solver", "svd-pade"]) == 0
    out = capsys.readouterr().out
    assert "options - Options of svd-pade (thesis 000, Sec. 3.3.2, Eq. 3.14-3.18).:" in out
    assert "``" not in out


def test_info_json(capsys):
    assert main(["info", "solver", "svd", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "svd" and info["distribution"] == "eigenflow"
    assert {o["name"] for o in info["options"]} >= {"eps"}


def test_unknown_name_suggests_the_completion(capsys):
    assert main(["info", "solver", "mpa"]) == 1
    assert "did you mean 'mpa-lya'?" in capsys.readouterr().err


def test_doctor_lists_entry_points_with_versions_and_status(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch:" in out and "EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD:" in out
    header = next(line for line in out.splitlines() if line.startswith("distribution"))
    assert header.split() == ["distribution", "version", "entry", "point", "status", "components"]
    assert any(
        line.split()[:4] == ["eigenflow", __version__, "eig", "loaded"] for line in out.splitlines()
    )
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    eig = next(r for r in report["plugins"] if r["entry_point"] == "eig")
    assert eig["status"] == "loaded" and "solver:svd" in eig["components"]


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


def test_only_the_bench_command_imports_the_benchmark_harness():
    # a fresh interpreter: eigenflow list must not import eigenflow.bench, eigenflow bench --help
    # must (its options come from eigenflow.bench.cli)
    script = (
        "import sys, contextlib, io\n"
        "from eigenflow.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['list', 'solver'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('eigenflow.bench')))\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['bench', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('--gradient-quality' in out.getvalue(), 'eigenflow.bench.cli' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.splitlines() == ["[]", "True True"]
