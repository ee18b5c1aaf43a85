"""The example third-party plugin, installed for real, is discovered without touching
eigenflow: listed, created, used in a pipeline, shown by the CLI, and passing the
conformance suite the way a plugin author would run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT, run_python

EXAMPLE = ROOT / "examples" / "eigenflow-plugin-example"


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# Only the example among third-party plugins: a plugin the user installed (an author's copy of
# the example, with the same names) must not change what these tests see.
ISOLATED = {
    "EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD": "1",
    "EIGENFLOW_PLUGINS": "eigenflow-plugin-example",
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --target`` a copy of the example distribution into a private folder
    (building from a copy leaves no ``build/`` or ``.egg-info`` in the source tree)."""
    before = _tree(EXAMPLE)
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("site")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(target),
        str(source),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(target.glob("eigenflow_plugin_example-*.dist-info"))
    assert _tree(EXAMPLE) == before, "installing the example wrote into the source tree"
    return target


def test_discovered_created_and_accurate(installed):
    code = textwrap.dedent("""
        import torch, eigenflow as ef
        from eigenflow.testing import random_spd, reference_sqrt_invsqrt
        print("denman-beavers" in ef.list("solver"), "sqrt-residual" in ef.list("metric"))
        A = random_spd(6, 2, cond=100.0)
        S = ef.matrix_sqrt(A, method="denman-beavers", iters=25)
        ref, _ = reference_sqrt_invsqrt(A)
        print(float((S - ref).abs().max()) < 1e-10)
        print(ef.create("metric", "sqrt-residual")(S, A) < 1e-10)
    """)
    out = run_python(code, pythonpath=[installed], env=ISOLATED)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True"]


def test_used_in_a_pipeline_and_listed_by_cli(installed, tmp_path):
    code = textwrap.dedent(f"""
        import eigenflow as ef
        from eigenflow.cli import main
        summary = ef.Pipeline.from_config({{
            "pipeline": "gcp", "solver": {{"name": "denman-beavers", "iters": 15}},
            "steps": 5, "baseline": False,
        }}).run(out={str(tmp_path)!r}, quiet=True)
        print("SOLVER", summary["stages"][0]["result"]["solver"])
        main(["list", "solver"])
        main(["info", "solver", "denman-beavers"])
    """)
    out = run_python(code, pythonpath=[installed], env=ISOLATED)
    assert out.returncode == 0, out.stderr
    assert "SOLVER denman-beavers" in out.stdout
    assert "denman-beavers" in out.stdout and "[eigenflow-plugin-example]" in out.stdout
    assert "distribution: eigenflow-plugin-example" in out.stdout
    assert (tmp_path / "summary.json").is_file()


def test_plugin_author_runs_the_conformance_suite(installed, tmp_path):
    test_file = tmp_path / "test_my_plugin.py"
    test_file.write_text(
        textwrap.dedent("""
        from eigenflow.testing import MetricConformance, SolverConformance

        class TestDenmanBeavers(SolverConformance):
            names = ("denman-beavers",)

        class TestResidual(MetricConformance):
            names = ("sqrt-residual",)
    """)
    )
    env_path = f"{installed}"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, **ISOLATED, "PYTHONPATH": env_path},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
