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
            registry.add("solver", _demo_solver("DemoA"), name="eftest-demo-a")
            registry.add("solver", _demo_solver("DemoSvd"), name="svd")  # taken

    with pytest.warns(ef.PluginLoadWarning, match="'svd' is already registered"):
        reg.register_plugin(Plugin(), name="eftest-demo-plugin")
        ef.list()
    assert "eftest-demo-a" in ef.list("solver")
    assert ef.get("solver", "svd").__module__ == "eigenflow.plugins.eig.svd"  # not replaced
    problems = [str(p) for p in reg.get_registries().problems]
    assert any("eftest-demo-plugin" in p and "svd" in p for p in problems)
    A = torch.eye(3, dtype=torch.float64) * 4
    torch.testing.assert_close(ef.matrix_sqrt(A, method="eftest-demo-a"), 2 * torch.eye(3).double())


def test_failing_registration_is_rolled_back(fresh_registry):
    class Broken:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("solver", _demo_solver("DemoB"), name="eftest-demo-b")
            raise RuntimeError("boom")

    with pytest.warns(ef.PluginLoadWarning, match="registration failed: RuntimeError: boom"):
        reg.register_plugin(Broken(), name="eftest-broken-plugin")
        ef.list()
    assert "eftest-demo-b" not in ef.list("solver")
    assert "svd" in ef.list("solver")


def test_builtin_duplicate_is_an_error():
    registries = reg.Registries()
    registries.add("solver", _demo_solver("X1"), name="eftest-dup-x")
    with pytest.raises(
        ef.errors.DuplicatePluginError, match="'eftest-dup-x' is already registered"
    ):
        registries.add("solver", _demo_solver("X2"), name="eftest-dup-x")


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
        {
            "broken_import_mod": """
        raise ImportError('missing dependency foo')

        def eigenflow_register(registry):
            registry.add("solver", Never, name="eftest-never-registered")
    """
        },
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
            registry.add("solver", _demo_solver("DemoLate"), name="eftest-demo-late")

    reg.register_plugin(Late(), name="eftest-late-plugin")
    assert "eftest-demo-late" in ef.list("solver")
    reg.unregister_plugin("eftest-late-plugin")
    assert "eftest-demo-late" not in ef.list("solver")


@pytest.fixture
def more_distributions(tmp_path):
    """Plugins an author gets wrong in the ways issue 18 lists, one distribution each."""
    _fake_distribution(
        tmp_path,
        "eftest-needs-dep",
        {"needsdep": "eftest_needs_dep_mod"},
        {
            "eftest_needs_dep_mod": """
        import eftest_not_installed_xyz  # a missing dependency
        from eigenflow.core import Solver
        from eigenflow.registry import hookimpl

        class Named(Solver):
            \'\'\'Class attribute name.\'\'\'
            name = "eftest-by-attribute"

        @hookimpl
        def eigenflow_register(registry):
            registry.add("solver", Named)
            registry.add("metric", Named, name="eftest-by-keyword")
    """
        },
    )
    _fake_distribution(
        tmp_path,
        "eftest-hook-raises",
        {"raises": "eftest_hook_raises_mod"},
        {
            "eftest_hook_raises_mod": """
        import torch
        from eigenflow.core import Solver
        from eigenflow.registry import hookimpl

        class S(Solver):
            \'\'\'Registered, then rolled back.\'\'\'

        def helper():
            raise RuntimeError("hook bug")

        @hookimpl
        def eigenflow_register(registry):
            registry.add("solver", S, name="eftest-rolled-back")
            helper()
    """
        },
    )
    _fake_distribution(
        tmp_path,
        "eftest-unmarked",
        {"unmarked": "eftest_unmarked_mod"},
        {
            "eftest_unmarked_mod": """
        import torch
        from eigenflow.core import Solver

        class S(Solver):
            \'\'\'An eigh-based solver registered by a hook without the marker.\'\'\'

            def _sqrt_invsqrt(self, A):
                L, V = torch.linalg.eigh(A)
                return (V * L.sqrt()[..., None, :]) @ V.mT, (V * L.rsqrt()[..., None, :]) @ V.mT

        def eigenflow_register(registry):  # no @hookimpl: accepted, like pytest_* hooks
            registry.add("solver", S, name="eftest-unmarked")
    """
        },
    )
    _fake_distribution(
        tmp_path,
        "eftest-misspelt",
        {"misspelt": "eftest_misspelt_mod"},
        {"eftest_misspelt_mod": "def eigenflow_regster(registry):\n    pass\n"},
    )
    _fake_distribution(
        tmp_path,
        "eftest-no-hook",
        {"nohook": "eftest_no_hook_mod"},
        {"eftest_no_hook_mod": "def register(registry):\n    pass\n"},
    )
    return tmp_path


_REPORT = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("ignore")
    import eigenflow as ef
    import eigenflow.registry as r
    out = {"problems": [], "records": [], "errors": {}}
    for p in r.get_registries().problems:
        if not p.distribution.startswith("eftest-"):
            continue  # a plugin installed in this environment, not one of the test's
        out["problems"].append(
            {"plugin": p.plugin, "reason": p.reason, "provides": [list(x) for x in p.provides],
             "traceback": p.traceback}
        )
    for rec in r.get_registries().records:
        if rec.distribution.startswith("eftest-"):
            out["records"].append([rec.distribution, rec.version, rec.plugin, rec.status])
    for kind, name in [("solver", "eftest-by-attribute"), ("metric", "eftest-by-keyword"),
                       ("solver", "eftest-rolled-back"), ("solver", "eftest-nowhere")]:
        try:
            ef.get(kind, name)
        except ef.UnknownNameError as exc:
            out["errors"][name] = str(exc)
    out["unmarked"] = "eftest-unmarked" in ef.list("solver")
    print(json.dumps(out))
""")


def test_failures_are_explained(more_distributions):
    import json

    out = run_python(_REPORT, pythonpath=[more_distributions])
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    problems = {p["plugin"]: p for p in report["problems"]}
    assert set(problems) == {"needsdep", "raises", "misspelt", "nohook"}

    # an import failure: reason with file and line, traceback, the names read from its source
    needsdep = problems["needsdep"]
    assert needsdep["reason"] == (
        "failed to load: ModuleNotFoundError: No module named 'eftest_not_installed_xyz' "
        "(eftest_needs_dep_mod.py, line 2)"
    )
    assert needsdep["traceback"].startswith("Traceback (most recent call last):")
    assert "import eftest_not_installed_xyz" in needsdep["traceback"]
    assert needsdep["provides"] == [
        ["solver", "eftest-by-attribute"],
        ["metric", "eftest-by-keyword"],
    ]
    assert report["errors"]["eftest-by-attribute"].startswith(
        "unknown solver 'eftest-by-attribute': provided by plugin 'needsdep' "
        "(from eftest-needs-dep), which failed to load: ModuleNotFoundError: "
    )
    assert "provided by plugin 'needsdep'" in report["errors"]["eftest-by-keyword"]

    # a hook that raises: the line that raised, and the rolled-back names
    raises = problems["raises"]
    assert raises["reason"].startswith("registration failed: RuntimeError: hook bug (")
    assert raises["reason"].endswith(", line 10)")
    assert raises["provides"] == [["solver", "eftest-rolled-back"]]
    assert (
        "provided by plugin 'raises' (from eftest-hook-raises), which failed to load"
        in (report["errors"]["eftest-rolled-back"])
    )

    # an unknown name nobody provides lists the failures whose names are unknown
    nowhere = report["errors"]["eftest-nowhere"]
    assert nowhere.startswith("unknown solver 'eftest-nowhere' (available: ")
    assert "plugins that failed to load and may provide it: " in nowhere
    assert "misspelt (from eftest-misspelt)" in nowhere and "needsdep" not in nowhere

    # a hook without the marker is accepted; a misspelt one and a missing one are reported
    assert report["unmarked"] is True
    assert "unknown hook 'eigenflow_regster'" in problems["misspelt"]["reason"]
    assert problems["nohook"]["reason"].startswith(
        "registers nothing: eftest_no_hook_mod defines no 'eigenflow_register' function"
    )
    records = {r[2]: r for r in report["records"]}
    assert records["unmarked"] == ["eftest-unmarked", "0.1", "unmarked", "loaded"]
    for plugin in ("needsdep", "raises", "misspelt", "nohook"):
        assert records[plugin][3] == "failed", records[plugin]


def test_cli_debug_prints_the_traceback_and_doctor_the_status(more_distributions):
    code = textwrap.dedent("""
        import os, warnings
        warnings.simplefilter("ignore")
        from eigenflow.cli import main
        print("=== list"); main(["list", "solver"])
        print("=== debug"); main(["--debug", "list", "solver"])
        os.environ["EIGENFLOW_DEBUG"] = "1"
        print("=== env"); main(["list", "solver"])
        del os.environ["EIGENFLOW_DEBUG"]
        print("=== doctor"); print("=== rc", main(["doctor"]))
    """)
    out = run_python(code, pythonpath=[more_distributions])
    assert out.returncode == 0, out.stderr
    parts = dict(part.split("\n", 1) for part in out.stdout.split("=== ")[1:])
    plain = parts["list"]
    assert "skipped plugins:" in plain and "Traceback" not in plain
    assert "would have provided: solver 'eftest-by-attribute', metric 'eftest-by-keyword'" in plain
    assert "run 'eigenflow --debug list' or set EIGENFLOW_DEBUG=1 for the tracebacks" in plain
    for debug in (parts["debug"], parts["env"]):
        assert "      Traceback (most recent call last):" in debug
        assert "import eftest_not_installed_xyz" in debug
    assert parts["rc 1"] == ""  # a plugin failed: doctor exits 1
    rows = [line.split() for line in parts["doctor"].splitlines()]
    assert ["eftest-unmarked", "0.1", "unmarked", "loaded", "1"] in rows
    assert ["eftest-needs-dep", "0.1", "needsdep", "failed", "0"] in rows


def test_debug_env_puts_the_traceback_in_the_warning(broken_distributions):
    code = textwrap.dedent("""
        import warnings
        import eigenflow as ef
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ef.list()
        print("\\n=====\\n".join(str(w.message) for w in caught))
    """)
    plain = run_python(code, pythonpath=[broken_distributions])
    assert plain.returncode == 0, plain.stderr
    assert "(broken_import_mod.py, line 2)" in plain.stdout
    assert "set EIGENFLOW_DEBUG=1 or run 'eigenflow --debug list' for the traceback" in plain.stdout
    assert "Traceback" not in plain.stdout
    debug = run_python(code, pythonpath=[broken_distributions], env={"EIGENFLOW_DEBUG": "1"})
    assert debug.returncode == 0, debug.stderr
    assert "Traceback (most recent call last):" in debug.stdout
    assert "raise ImportError('missing dependency foo')" in debug.stdout


def test_plugins_env_selects_plugins_when_autoload_is_disabled(more_distributions):
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("ignore")
        import eigenflow as ef, eigenflow.registry as r
        print("eftest-unmarked" in ef.list("solver"), len(r.get_registries().problems))
        records = r.get_registries().records
        print(sorted(x.status for x in records if x.distribution.startswith("eftest-")))
    """)
    out = run_python(
        code,
        pythonpath=[more_distributions],
        env={"EIGENFLOW_DISABLE_PLUGIN_AUTOLOAD": "1", "EIGENFLOW_PLUGINS": "eftest-unmarked"},
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "True 0"
    assert second == "['disabled', 'disabled', 'disabled', 'disabled', 'loaded']"


def test_declared_registrations_reads_the_source_without_running_it(tmp_path, monkeypatch):
    (tmp_path / "eftest_declared_mod.py").write_text(
        textwrap.dedent("""
        raise SystemExit("never run")

        class A:
            name = "eftest-a"

        def eigenflow_register(registry):
            registry.add("solver", A)
            registry.add("metric", A, name="eftest-b")
            registry.add("not-a-kind", A, name="eftest-c")
            registry.add("solver", unknown_class)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert reg.declared_registrations("eftest_declared_mod") == (
        ("solver", "eftest-a"),
        ("metric", "eftest-b"),
    )
    assert reg.declared_registrations("eftest_no_such_module_xyz") == ()
