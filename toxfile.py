"""tox plugin (loaded by tox from this file): skip, with the reason, a test environment whose
torch cannot be installed on this machine without downloading a build nobody asked for.

The environments ``pyXY-torchAB`` test eigenflow against torch ``2.AB`` on Python ``X.Y``;
others (``docs``, ``slow``) pin torch in their ``deps``.
On a CPU-only machine, ``pip install torch==2.AB.*`` from the package index downloads a CUDA
build of several gigabytes, so an environment runs only when

- a CPU wheel of that torch for that Python lies in a ``--find-links`` folder of pip
  (``PIP_FIND_LINKS`` or ``pip config``'s ``find-links``), or
- ``EIGENFLOW_TOX_ANY_TORCH=1`` says that installing from the configured index is fine (a
  machine with CUDA, a CPU-only index in ``PIP_INDEX_URL``, macOS).

Anything else is reported as skipped (``tox`` with no arguments then runs what it can and
lists the rest as ``SKIP`` with the reason). A missing interpreter is skipped by tox itself
(``skip_missing_interpreters``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ANY_TORCH_ENV = "EIGENFLOW_TOX_ANY_TORCH"
_FACTOR = re.compile(r"(?:^|-)torch(\d)(\d+)(?:-|$)")
_PIN = re.compile(r"^\s*torch\s*==\s*(\d+)\.(\d+)\b")


def torch_factor(env_name: str) -> str | None:
    """``"2.13"`` for an environment named ``py311-torch213``; ``None`` without the factor."""
    match = _FACTOR.search(env_name)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def torch_version(env_name: str, deps: Sequence[str] = ()) -> str | None:
    """The torch ``major.minor`` an environment installs: its ``torch==X.Y...`` dependency,
    else its ``torchXY`` name factor; ``None`` when it pins no torch."""
    for line in deps:
        match = _PIN.match(line)
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return torch_factor(env_name)


def find_links() -> list[Path]:
    """The local folders pip searches for wheels (``PIP_FIND_LINKS``, ``pip config``)."""
    values = os.environ.get("PIP_FIND_LINKS", "").split()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            values += done.stdout.split()
    except (OSError, subprocess.SubprocessError):
        pass
    folders = []
    for value in values:
        path = Path(value.removeprefix("file://"))
        if path.is_dir() and path not in folders:
            folders.append(path)
    return folders


def local_cpu_wheel(version: str, python: tuple[int, int], folders: list[Path]) -> Path | None:
    """A CPU wheel of torch ``version`` (``"2.13"``) for ``python`` in ``folders``, if any."""
    tag = f"cp{python[0]}{python[1]}"
    pattern = re.compile(rf"^torch-{re.escape(version)}\.\d+\+cpu-{tag}-{tag}-.*\.whl$")
    for folder in folders:
        for path in sorted(folder.glob("torch-*.whl")):
            if pattern.match(path.name):
                return path
    return None


def skip_reason(
    env_name: str, python: tuple[int, int], folders: list[Path], deps: Sequence[str] = ()
) -> str | None:
    """Why the environment ``env_name`` (dependencies ``deps``) on ``python`` cannot run here,
    or ``None`` if it can."""
    version = torch_version(env_name, deps)
    if version is None or os.environ.get(ANY_TORCH_ENV, "") not in ("", "0"):
        return None
    if local_cpu_wheel(version, python, folders) is not None:
        return None
    where = ", ".join(str(f) for f in folders) or "no --find-links folder"
    return (
        f"no CPU wheel of torch {version} for Python {python[0]}.{python[1]} in {where}; "
        f"installing it from the package index could download a CUDA build. Set "
        f"{ANY_TORCH_ENV}=1 to install from your index anyway"
    )


try:  # the hook exists only when tox imports this file
    from tox.plugin import impl
    from tox.tox_env.errors import Skip
except ImportError:  # pragma: no cover - imported by the tests without tox
    pass
else:

    @impl
    def tox_on_install(tox_env: Any, arguments: Any, section: str, of_type: str) -> None:
        """Before an environment installs its dependencies, skip it when its torch cannot be
        installed here (see the module docstring)."""
        if of_type != "deps":
            return
        info = tox_env.base_python.version_info
        lines = arguments.lines() if hasattr(arguments, "lines") else []
        reason = skip_reason(tox_env.conf.name, (info.major, info.minor), find_links(), lines)
        if reason is not None:
            raise Skip(reason)
