"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
