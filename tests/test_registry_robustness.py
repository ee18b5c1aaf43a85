"""The registry survives plugins that misbehave: ``SystemExit`` on import or in a hook, aliases
of registered classes, and in-process plugins that cannot be registered."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import run_python

import eigenflow as ef
import eigenflow.registry as reg
from eigenflow.core import Solver

# --------------------------------------------------------------------------- helpers


def _fake_distribution(root: Path, dist: str, entry_points: dict[str, str], files: dict[str, str]):
    """A minimal installed distribution under ``root``: a dist-info folder declaring
    ``entry_points`` in the ``eigenflow`` group, and ``files`` (relative path -> source)."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[eigenflow]\n{lines}\n")
    for relative, code in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))


class _EighSolver(Solver):
    """An eigh-based solver for registration tests."""

    def _sqrt_invsqrt(self, A):
        L, V = torch.linalg.eigh(A)
        return (V * L.sqrt()[..., None, :]) @ V.mT, (V * L.rsqrt()[..., None, :]) @ V.mT


def _solver(name: str = "", qualname: str = "Demo") -> type:
    """A fresh solver class, with a ``name`` of its own when ``name`` is given."""
    namespace = {"__doc__": "A demo solver.", "__qualname__": qualname}
    if name:
        namespace["name"] = name
    return type(qualname, (_EighSolver,), namespace)


def _plugin(register) -> object:
    """An in-process plugin object whose ``eigenflow_register`` hook is ``register``."""

    class Plugin:
        eigenflow_register = staticmethod(ef.hookimpl(register))

    return Plugin()


def _registry_works() -> None:
    """The registries answer, and keep answering after :func:`reset`."""
    assert "svd" in ef.list("solver")
    reg.reset()
    assert "svd" in ef.list("solver")
    assert ef.create("solver", "svd").name == "svd"


def _extra_names() -> list[str]:
    return [name for _, name in reg.registry._extra_plugins]


# --------------------------------------------------------------------------- 1. BaseException


@pytest.fixture
def exiting_distributions(tmp_path):
    """Plugins that raise ``SystemExit`` or another ``BaseException`` while imported, next to
    one that works."""
    _fake_distribution(
        tmp_path,
        "eftest-exits",
        {"exits": "eftest_exits_mod"},
        {"eftest_exits_mod.py": 'raise SystemExit("plugin says bye")\n'},
    )
    _fake_distribution(
        tmp_path,
        "eftest-exits-pkg",
        {"exitspkg": "eftest_exits_pkg.plugin"},
        {
            "eftest_exits_pkg/__init__.py": "raise SystemExit(3)\n",
            "eftest_exits_pkg/plugin.py": "def eigenflow_register(registry):\n    pass\n",
        },
    )
    _fake_distribution(
        tmp_path,
        "eftest-aborts",
        {"aborts": "eftest_aborts_mod"},
        {
            "eftest_aborts_mod.py": """
        class PluginAbort(BaseException):
            pass

        raise PluginAbort("not today")
    """
        },
    )
    _fake_distribution(
        tmp_path,
        "eftest-fine",
        {"fine": "eftest_fine_mod"},
        {
            "eftest_fine_mod.py": """
        import torch
        from eigenflow.core import Solver
        from eigenflow.registry import hookimpl

        class Fine(Solver):
            '''An eigh-based solver from a plugin that loads.'''

            def _sqrt_invsqrt(self, A):
                L, V = torch.linalg.eigh(A)
                return (V * L.sqrt()[..., None, :]) @ V.mT, (V * L.rsqrt()[..., None, :]) @ V.mT

        @hookimpl
        def eigenflow_register(registry):
            registry.add("solver", Fine, name="eftest-fine")
    """
        },
    )
    return tmp_path


_EXITS_REPORT = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("ignore")
    import eigenflow as ef
    import eigenflow.registry as r
    from eigenflow.cli import main
    names = ef.list("solver")
    registries = r.get_registries()
    out = {
        "svd": "svd" in names,
        "fine": "eftest-fine" in names,
        "problems": {p.plugin: p.reason for p in registries.problems
                     if p.distribution.startswith("eftest-")},
        "records": {x.plugin: x.status for x in registries.records
                    if x.distribution.startswith("eftest-")},
    }
    print(json.dumps(out))
    print("=== cli")
    print("rc", main(["list", "solver"]))
""")


def test_plugin_raising_system_exit_on_import_is_skipped_and_reported(exiting_distributions):
    out = run_python(_EXITS_REPORT, pythonpath=[exiting_distributions])
    assert out.returncode == 0, out.stderr
    report_text, cli = out.stdout.split("=== cli\n")
    report = json.loads(report_text)
    assert report["svd"] is True and report["fine"] is True
    assert report["problems"] == {
        "exits": "failed to load: SystemExit: plugin says bye (eftest_exits_mod.py, line 1)",
        "exitspkg": "failed to load: SystemExit: 3 (__init__.py, line 1)",
        "aborts": "failed to load: PluginAbort: not today (eftest_aborts_mod.py, line 5)",
    }
    assert report["records"] == {
        "exits": "failed",
        "exitspkg": "failed",
        "aborts": "failed",
        "fine": "loaded",
    }
    assert "  eftest-fine " in cli and cli.rstrip().endswith("rc 0")
    assert "exits (from eftest-exits): failed to load: SystemExit: plugin says bye" in cli


def test_keyboard_interrupt_on_import_still_propagates(tmp_path):
    _fake_distribution(
        tmp_path,
        "eftest-interrupts",
        {"interrupts": "eftest_interrupts_mod"},
        {"eftest_interrupts_mod.py": "raise KeyboardInterrupt\n"},
    )
    code = textwrap.dedent("""
        import eigenflow as ef
        try:
            ef.list()
        except KeyboardInterrupt:
            print("interrupted")
        else:
            print("swallowed")
    """)
    out = run_python(code, pythonpath=[tmp_path])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interrupted"


def test_hook_raising_system_exit_is_skipped_and_reported(fresh_registry):
    def register(registry):
        registry.add("solver", _solver(), name="eftest-exit-rolled-back")
        raise SystemExit("hook says bye")

    reg.register_plugin(_plugin(register), name="eftest-exit-hook")
    with pytest.warns(ef.PluginLoadWarning, match="registration failed: SystemExit: hook says bye"):
        names = ef.list("solver")
    assert "svd" in names and "eftest-exit-rolled-back" not in names
    (record,) = [r for r in reg.get_registries().records if r.plugin == "eftest-exit-hook"]
    assert record.status == "failed"
    assert record.problems[0].provides == (("solver", "eftest-exit-rolled-back"),)
    with pytest.warns(ef.PluginLoadWarning, match="SystemExit: hook says bye"):
        _registry_works()


def test_hook_raising_keyboard_interrupt_propagates_and_leaves_no_trace(fresh_registry):
    ef.list()
    calls = []

    def register(registry):
        calls.append(1)
        registry.add("solver", _solver(), name="eftest-interrupted")
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reg.register_plugin(_plugin(register), name="eftest-interrupting")
    assert "eftest-interrupted" not in ef.list("solver")
    assert "eftest-interrupting" not in _extra_names()
    _registry_works()
    assert "eftest-interrupted" not in ef.list("solver")  # not re-run by the next discovery
    assert len(calls) == 1


# --------------------------------------------------------------------------- 2. aliases


def test_alias_of_a_builtin_does_not_rename_it(fresh_registry, monkeypatch):
    svd = ef.get("solver", "svd")
    monkeypatch.setattr(svd, "name", svd.name)  # undone after the test, whatever happens

    def register(registry):
        assert registry.add("solver", svd, name="eftest-svd-alias") is svd

    reg.register_plugin(_plugin(register), name="eftest-alias-plugin")
    assert "eftest-svd-alias" in ef.list("solver")
    assert svd.name == "svd" and svd.kind == "solver"
    assert ef.get("solver", "svd") is svd and ef.get("solver", "svd").name == "svd"
    assert ef.create("solver", "svd").name == "svd"
    alias = ef.get("solver", "eftest-svd-alias")
    assert alias.name == "eftest-svd-alias" and issubclass(alias, svd)
    solver = ef.create("solver", "eftest-svd-alias")
    assert solver.name == "eftest-svd-alias" and isinstance(solver, svd)
    A = torch.eye(3, dtype=torch.float64) * 4
    torch.testing.assert_close(
        ef.matrix_sqrt(A, method="eftest-svd-alias"), 2 * torch.eye(3).double()
    )


def test_rolled_back_alias_does_not_rename_the_builtin(fresh_registry, monkeypatch):
    svd = ef.get("solver", "svd")
    monkeypatch.setattr(svd, "name", svd.name)

    def register(registry):
        registry.add("solver", svd, name="eftest-svd-gone")
        raise RuntimeError("after the alias")

    with pytest.warns(ef.PluginLoadWarning, match="RuntimeError: after the alias"):
        reg.register_plugin(_plugin(register), name="eftest-alias-rolled-back")
    assert "eftest-svd-gone" not in ef.list("solver")
    assert svd.name == "svd" and ef.create("solver", "svd").name == "svd"


def test_alias_first_then_declared_name_registers_both():
    registries = reg.Registries()
    cls = _solver("eftest-declared", "Declared")
    registries.add("solver", cls, name="eftest-declared-alias")
    registries.add("solver", cls)  # under its own name, not the alias
    assert registries["solver"].names() == ["eftest-declared", "eftest-declared-alias"]
    assert cls.name == "eftest-declared"
    assert registries["solver"].get("eftest-declared") is cls
    assert registries["solver"].get("eftest-declared-alias").name == "eftest-declared-alias"


def test_class_without_a_name_is_named_in_place():
    registries = reg.Registries()
    cls = _solver()
    assert registries.add("solver", cls, name="eftest-unnamed") is cls
    assert registries["solver"].get("eftest-unnamed") is cls
    assert cls.name == "eftest-unnamed" and cls.kind == "solver"
    assert registries["solver"].create("eftest-unnamed").name == "eftest-unnamed"


def test_registering_a_kind_base_class_does_not_name_every_subclass(monkeypatch):
    monkeypatch.setattr(Solver, "name", Solver.name)  # undone after the test, whatever happens
    registries = reg.Registries()
    registries.add("solver", Solver, name="eftest-base")
    assert Solver.name == "" and _solver().name == ""
    assert registries["solver"].get("eftest-base").name == "eftest-base"


# --------------------------------------------------------------------------- 3. register_plugin


def _register_fails(plugin: object, name: str) -> BaseException:
    """The exception :func:`register_plugin` raises for ``plugin``."""
    with pytest.raises(Exception) as info:
        reg.register_plugin(plugin, name=name)
    return info.value


def _bad_signature_plugin() -> object:
    def eigenflow_register(reg_):  # the specification passes ``registry``
        reg_.add("solver", _solver(), name="eftest-never")

    return _plugin(eigenflow_register)


@pytest.mark.parametrize("discovered", [True, False], ids=["after-discovery", "before-discovery"])
def test_bad_hook_signature_is_refused_and_changes_nothing(fresh_registry, discovered):
    if discovered:
        ef.list()
    exc = _register_fails(_bad_signature_plugin(), "eftest-bad-signature")
    assert "eftest-bad-signature" not in _extra_names()
    _registry_works()
    assert "eftest-never" not in ef.list("solver")
    assert isinstance(exc, reg.InvalidPluginError) and isinstance(exc, ef.EigenflowError)
    message = str(exc)
    assert "plugin 'eftest-bad-signature'" in message and "'eigenflow_register'" in message
    assert "reg_" in message and "eigenflow_register(registry)" in message
    # the name is free again
    reg.register_plugin(_plugin(lambda registry: None), name="eftest-bad-signature")


@pytest.mark.parametrize("discovered", [True, False], ids=["after-discovery", "before-discovery"])
def test_reused_plugin_name_is_refused_and_changes_nothing(fresh_registry, discovered):
    if discovered:
        ef.list()

    def first(registry):
        registry.add("solver", _solver(), name="eftest-first")

    def second(registry):
        registry.add("solver", _solver(), name="eftest-second")

    reg.register_plugin(_plugin(first), name="eftest-reused")
    exc = _register_fails(_plugin(second), "eftest-reused")
    assert _extra_names() == ["eftest-reused"]
    _registry_works()
    names = ef.list("solver")
    assert "eftest-first" in names and "eftest-second" not in names
    assert isinstance(exc, reg.InvalidPluginError)
    assert "name 'eftest-reused' is already taken" in str(exc)
    assert "unregister_plugin('eftest-reused')" in str(exc)


def test_plugin_object_registered_twice_is_refused(fresh_registry):
    plugin = _plugin(lambda registry: None)
    reg.register_plugin(plugin, name="eftest-once")
    exc = _register_fails(plugin, "eftest-twice")
    assert _extra_names() == ["eftest-once"]
    _registry_works()
    assert isinstance(exc, reg.InvalidPluginError)
    assert "already registered as 'eftest-once'" in str(exc)


def test_entry_point_name_is_refused(fresh_registry):
    exc = _register_fails(_plugin(lambda registry: None), "eigenflow:eig")
    assert _extra_names() == []
    _registry_works()
    assert isinstance(exc, reg.InvalidPluginError)
    assert "'eigenflow:eig' is the name of an installed entry point" in str(exc)
