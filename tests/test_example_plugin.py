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
            distribution = "eigenflow-plugin-example"

        class TestResidual(MetricConformance):
            distribution = "eigenflow-plugin-example"
            names = ("sqrt-residual",)
    """)
    )
    env_path = f"{installed}"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(test_file)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, **ISOLATED, "PYTHONPATH": env_path},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
    assert "test_registered_under_its_own_name[denman-beavers] PASSED" in done.stdout
    assert "test_computes_finite_numbers_on_example_inputs[sqrt-residual] PASSED" in done.stdout


BROKEN_PLUGIN = '''
import torch
from eigenflow.core import Metric, Solver
from eigenflow.registry import hookimpl


class NoInputs(Metric):
    """A metric without example inputs."""

    def compute(self, x):
        return float(x.sum())


class AlwaysRaises(Metric):
    """A metric that always raises."""

    def compute(self, x):
        raise RuntimeError("always")

    @classmethod
    def example_inputs(cls):
        return (torch.ones(2),), {}


class ReturnsTensor(Metric):
    """A metric that returns a tensor instead of a float."""

    def compute(self, x):
        return x.sum()

    @classmethod
    def example_inputs(cls):
        return (torch.ones(2),), {}


class Svd(Solver):
    """Claims the built-in name svd."""

    def _sqrt_invsqrt(self, A):
        L, V = torch.linalg.eigh(A)
        return (V * L.sqrt()[..., None, :]) @ V.mT, (V * L.rsqrt()[..., None, :]) @ V.mT


@hookimpl
def eigenflow_register(registry):
    registry.add("metric", NoInputs, name="eftest-no-inputs")
    registry.add("metric", AlwaysRaises, name="eftest-always-raises")
    registry.add("metric", ReturnsTensor, name="eftest-returns-tensor")
    registry.add("solver", Svd, name="svd")
'''

BROKEN_TESTS = """
from eigenflow.testing import LayerConformance, MetricConformance, SolverConformance

class TestMetrics(MetricConformance):
    distribution = "eftest-broken"

class TestSolver(SolverConformance):
    distribution = "eftest-broken"
    names = ("svd",)

class TestNoLayers(LayerConformance):
    distribution = "eftest-broken"

class TestAnySvd(SolverConformance):  # whoever registered it: two plugins claim the name
    names = ("svd",)

class TestEigenflowSvd(SolverConformance):  # as eigenflow's own suite: svd is eigenflow's
    distribution = "eigenflow"
    names = ("svd",)
"""

BROKEN_IMPORT = """
import eftest_not_installed_xyz
from eigenflow.core import Solver

def eigenflow_register(registry):
    registry.add("solver", Solver, name="svd")
"""


def test_a_broken_plugin_fails_its_conformance_run(tmp_path):
    """A metric without example inputs, one that raises, one that returns a tensor, a name
    taken by a built-in and a suite with nothing to test all fail, saying why."""
    site = tmp_path / "site"
    info = site / "eftest_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eftest-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[eigenflow]\nbroken = eftest_broken_mod\nbroken-import = eftest_broken_import_mod\n"
    )
    (site / "eftest_broken_mod.py").write_text(BROKEN_PLUGIN)
    (site / "eftest_broken_import_mod.py").write_text(BROKEN_IMPORT)
    (tmp_path / "test_broken.py").write_text(BROKEN_TESTS)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-rfEp", "-p", "no:cacheprovider", "-W"),
            *("ignore", "-k", "registered or example_inputs or module_and_forward"),
            "test_broken.py",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    failed = {  # a failure of the test, or of its set-up (nothing to test)
        line.split(" - ")[0].split("::", 1)[1]
        for line in out.splitlines()
        if line.startswith(("FAILED ", "ERROR "))
    }
    assert failed == {
        "TestMetrics::test_example_inputs_provided[eftest-no-inputs]",
        "TestMetrics::test_computes_finite_numbers_on_example_inputs[eftest-no-inputs]",
        "TestMetrics::test_computes_finite_numbers_on_example_inputs[eftest-always-raises]",
        "TestMetrics::test_computes_finite_numbers_on_example_inputs[eftest-returns-tensor]",
        "TestSolver::test_registered_under_its_own_name[svd]",
        "TestAnySvd::test_registered_under_its_own_name[svd]",
        "TestNoLayers::test_registered_under_its_own_name[nothing-to-test]",
        "TestNoLayers::test_registered_class[nothing-to-test]",
        "TestNoLayers::test_module_and_forward[nothing-to-test]",
    }, out
    # the messages say what is wrong and how to fix it
    assert "metric 'eftest-no-inputs' has no example inputs: add a classmethod" in out
    assert "RuntimeError: always" in out
    assert "metric 'eftest-returns-tensor' returned a non-number: Tensor" in out
    assert "solver 'svd' is registered by eig (from eigenflow), not by eftest-broken" in out
    assert "TestNoLayers: no layer is registered by distribution 'eftest-broken'" in out
    assert (
        "solver 'svd' is claimed by more than one plugin: registered by eig (from eigenflow)" in out
    )
    assert "broken-import (from eftest-broken): failed to load: ModuleNotFoundError" in out
    # the built-in keeps its name: eigenflow's own suite is not failed by the losers
    assert "PASSED test_broken.py::TestEigenflowSvd::test_registered_under_its_own_name[svd]" in out
