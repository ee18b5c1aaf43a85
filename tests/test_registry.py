"""Registry, discovery and error messages."""

from __future__ import annotations

import textwrap
import warnings

import pytest
import torch
from helpers import run_python

import eigenflow as ef
import eigenflow.registry as reg
from eigenflow.core import Solver, config, option
from eigenflow.core.config import integer


@config
class _DemoConfig:
    """Demo options."""

    steps: int = option(3, validator=integer(1, 10), help="number of steps")


def _demo_solver(name: str) -> type:
    class Demo(Solver):
        """A demo solver (eigh-based) used to test registration."""

        Config = _DemoConfig

        def _sqrt_invsqrt(self, A):
            L, V = torch.linalg.eigh(A)
            return (V * L.sqrt()[..., None, :]) @ V.mT, (V * L.rsqrt()[..., None, :]) @ V.mT

    Demo.__name__ = name
    return Demo


def test_list_all_kinds_and_patterns():
    listing = ef.list()
    assert set(listing) == {
        "solver",
        "constraint",
        "traversal",
        "model",
        "layer",
        "metric",
        "dataset",
        "pipeline",
    }
    assert "svd" in ef.list("solver")
    assert all(n.startswith("svd") for n in ef.list("solver", "svd*"))
    assert "svd" not in ef.list("solver", "*", exclude=["svd"])
    assert ef.list("solver", "no-such-*") == []


def test_get_and_create():
    cls = ef.get("solver", "svd")
    solver = ef.create("solver", "svd", eps=0.0)
    assert isinstance(solver, cls) and solver.config.eps == 0.0


def test_unknown_kind_message():
    with pytest.raises(ef.UnknownKindError) as info:
        ef.list("solvr")
    msg = str(info.value)
    assert "unknown kind 'solvr'" in msg and "did you mean 'solver'?" in msg and "layer" in msg


def test_unknown_name_message_suggests_closest():
    with pytest.raises(ef.UnknownNameError) as info:
        ef.create("solver", "sdv")
    msg = str(info.value)
    assert msg.startswith("unknown solver 'sdv'") and "did you mean 'svd'?" in msg
    assert "available:" in msg and "svd" in msg
    assert isinstance(info.value, ef.EigenflowError)


def test_unknown_option_and_bad_value_messages():
    with pytest.raises(ef.ConfigError) as info:
        ef.create("solver", "svd", epss=0.1)
    msg = str(info.value)
    assert "solver 'svd'" in msg and "epss" in msg and "did you mean 'eps'?" in msg
    with pytest.raises(ef.ConfigError) as info:
        ef.create("solver", "svd", eps=-1.0)
    msg = str(info.value)
    assert "solver 'svd'" in msg and "eps" in msg and "-1.0" in msg and ">= 0.0" in msg
    with pytest.raises(ef.ConfigError) as info:
        ef.create("layer", "covariance-pooling", post_norm="trac")
    msg = str(info.value)
    assert "'trac'" in msg and "did you mean 'trace'?" in msg and "'frobenius'" in msg


def test_component_option_validated_against_registry():
    with pytest.raises(ef.ConfigError) as info:
        ef.create("layer", "covariance-pooling", solver="svdd")
    assert "solver: unknown solver 'svdd'; did you mean 'svd'?" in str(info.value)
    with pytest.raises(ef.ConfigError) as info:
        ef.create("layer", "covariance-pooling", solver={"name": "svd", "eps": "x"})
    assert "solver.eps" in str(info.value)


def test_discovery_happens_once():
    assert reg.get_registries() is reg.get_registries()


def test_in_process_plugin_and_third_party_duplicate(fresh_registry):
    class Plugin:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("solver", _demo_solver("DemoA"), name="demo-a")
            registry.add("solver", _demo_solver("DemoSvd"), name="svd")  # taken

    with pytest.warns(ef.PluginLoadWarning, match="'svd' is already registered"):
        reg.register_plugin(Plugin(), name="demo-plugin")
        ef.list()
    assert "demo-a" in ef.list("solver")
    assert ef.get("solver", "svd").__module__ == "eigenflow.plugins.eig.svd"  # not replaced
    problems = [str(p) for p in reg.get_registries().problems]
    assert any("demo-plugin" in p and "svd" in p for p in problems)
    A = torch.eye(3, dtype=torch.float64) * 4
    torch.testing.assert_close(ef.matrix_sqrt(A, method="demo-a"), 2 * torch.eye(3).double())


def test_failing_registration_is_rolled_back(fresh_registry):
    class Broken:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("solver", _demo_solver("DemoB"), name="demo-b")
            raise RuntimeError("boom")

    with pytest.warns(ef.PluginLoadWarning, match="registration failed: RuntimeError: boom"):
        reg.register_plugin(Broken(), name="broken-plugin")
        ef.list()
    assert "demo-b" not in ef.list("solver")
    assert "svd" in ef.list("solver")


def test_builtin_duplicate_is_an_error():
    registries = reg.Registries()
    registries.add("solver", _demo_solver("X1"), name="dup-x")
    with pytest.raises(ef.errors.DuplicatePluginError, match="'dup-x' is already registered"):
        registries.add("solver", _demo_solver("X2"), name="dup-x")


def test_registration_checks_base_class_and_name():
    registries = reg.Registries()
    with pytest.raises(TypeError, match="must derive from"):
        registries.add("solver", object, name="obj")
    with pytest.raises(ValueError, match="lowercase"):
        registries.add("solver", _demo_solver("Y"), name="Bad_Name")


def test_importing_eigenflow_does_not_import_plugins():
    out = run_python(
        textwrap.dedent("""
        import sys
        import eigenflow as ef
        before = any(m.startswith("eigenflow.plugins.") for m in sys.modules)
        ef.list()
        after = "eigenflow.plugins.eig" in sys.modules
        print(before, after)
    """)
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def _fake_distribution(root, dist: str, entry_points: dict[str, str], modules: dict[str, str]):
    """A minimal installed distribution: a dist-info folder with entry points, plus modules."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[eigenflow]\n{lines}\n")
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))


@pytest.fixture
def broken_distributions(tmp_path):
    _fake_distribution(
        tmp_path,
        "eigenflow-broken-import",
        {"broken": "broken_import_mod"},
        {"broken_import_mod": "raise ImportError('missing dependency foo')\n"},
    )
    _fake_distribution(
        tmp_path,
        "eigenflow-dup",
        {"dup": "dup_mod"},
        {
            "dup_mod": """
        import torch
        from eigenflow.core import Solver
        from eigenflow.registry import hookimpl

        class Dup(Solver):
            '''Duplicate of svd.'''

        @hookimpl
        def eigenflow_register(registry):
            registry.add("solver", Dup, name="svd")
    """
        },
    )
    return tmp_path


def test_broken_third_party_plugins_are_skipped_and_reported(broken_distributions):
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("always")
        import eigenflow as ef
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = ef.list("solver")
        print("svd" in names)
        for w in caught:
            print("WARN", w.message)
        from eigenflow.cli import main
        main(["list", "solver"])
    """)
    out = run_python(code, pythonpath=[broken_distributions])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.splitlines()[0] == "True"
    assert (
        "broken (from eigenflow-broken-import): failed to load: ImportError: missing dependency foo"
        in text
    )
    assert (
        "dup (from eigenflow-dup): skipped registration: solver 'svd' is already registered" in text
    )
    assert "skipped plugins:" in text


def test_autoload_can_be_disabled(broken_distributions):
    code = (
        "import eigenflow as ef, eigenflow.registry as r; ef.list(); "
        "print(len(r.get_registries().problems))"
    )
    out = run_python(
        code, pythonpath=[broken_distributions], env={"EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_warning_filter_does_not_break(recwarn):
    warnings.simplefilter("always")
    assert ef.list("solver")


def test_register_plugin_after_discovery_takes_effect_at_once(fresh_registry):
    ef.list()

    class Late:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("solver", _demo_solver("DemoLate"), name="demo-late")

    reg.register_plugin(Late(), name="late-plugin")
    assert "demo-late" in ef.list("solver")
    reg.unregister_plugin("late-plugin")
    assert "demo-late" not in ef.list("solver")
