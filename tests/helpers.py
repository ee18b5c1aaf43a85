"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code: str, *, pythonpath: list[Path] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a fresh interpreter with extra ``sys.path`` entries."""
    full_env = dict(os.environ)
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(p) for p in pythonpath] + [full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )


def load_benchmark_script(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (the scripts are not a package), imported under
    ``<name>_script``."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_script", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
