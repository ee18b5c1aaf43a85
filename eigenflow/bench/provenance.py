"""Provenance of stored results: which script produced a result, from which commit, seeds,
config and versions, and a fingerprint of the source it depends on, so that a stored result
whose code has changed since is found and named with the script that re-makes it.

Every script under ``benchmarks/`` that stores a result (a JSON file under
``benchmarks/results/``) puts :func:`record` under the key ``"provenance"`` of that file, and
every table it writes for the docs goes through :func:`write_generated`. The test-suite then
compares each stored fingerprint with the current source (:func:`stale_results`).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "PROVENANCE_KEY",
    "StaleResult",
    "fingerprint",
    "record",
    "repository_root",
    "source_files",
    "stale_results",
    "stored_results",
    "write_generated",
]

#: the key of a stored result's JSON object that holds :func:`record`'s dictionary
PROVENANCE_KEY = "provenance"


def repository_root() -> Path:
    """The checkout eigenflow is imported from (the folder holding ``eigenflow/``)."""
    return Path(__file__).resolve().parents[2]


def _files_of_module(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ValueError(f"provenance: module {name!r} cannot be found")
    if spec.submodule_search_locations:
        files: list[Path] = []
        for folder in spec.submodule_search_locations:
            files.extend(p for p in Path(folder).rglob("*.py") if "__pycache__" not in p.parts)
        return sorted(files)
    return [Path(spec.origin)]


def source_files(dependencies: Iterable[str], root: Path | None = None) -> list[Path]:
    """The source files behind ``dependencies``, sorted and without repeats.

    Parameters
    ----------
    dependencies
        Dotted module names (a package stands for every ``.py`` file under it, e.g.
        ``"eigenflow.plugins.matfn"``) or file paths relative to the repository root (e.g.
        ``"benchmarks/vp_table.py"``).
    root
        The repository root (default :func:`repository_root`).
    """
    root = root or repository_root()
    files: set[Path] = set()
    for dep in dependencies:
        if dep.endswith(".py") or "/" in dep:
            path = (root / dep).resolve()
            if not path.is_file():
                raise ValueError(f"provenance: file {dep!r} does not exist under {root}")
            files.add(path)
        else:
            files.update(p.resolve() for p in _files_of_module(dep))
    return sorted(files)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def fingerprint(dependencies: Sequence[str], root: Path | None = None) -> dict[str, Any]:
    """A SHA-256 digest over the relative path and bytes of every file of ``dependencies``
    (see :func:`source_files`); it changes whenever one of those files changes."""
    root = root or repository_root()
    digest = hashlib.sha256()
    files = source_files(dependencies, root)
    for path in files:
        digest.update(_relative(path, root).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    return {"dependencies": sorted(dependencies), "files": len(files), "sha256": digest.hexdigest()}


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _versions() -> dict[str, str]:
    import numpy
    import torch

    from .._version import __version__

    return {
        "eigenflow": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def record(
    script: str,
    *,
    seeds: Sequence[int],
    config: Mapping[str, Any],
    dependencies: Sequence[str],
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The provenance of a result about to be stored.

    Parameters
    ----------
    script
        The producing script, relative to the repository root (``"benchmarks/vp_table.py"``);
        it is added to ``dependencies``.
    seeds
        The random seeds the result covers.
    config
        Everything else that decides the numbers (sizes, steps, options), JSON-serialisable.
    dependencies
        The modules (packages stand for all their files) and files the result depends on:
        the plugins, runtime and core modules its pipeline imports.
    argv
        The script's arguments (default ``sys.argv[1:]``), recorded as the command to re-run.
    """
    root = repository_root()
    deps = sorted({*dependencies, script})
    args = list(sys.argv[1:] if argv is None else argv)
    return {
        "script": script,
        "command": " ".join(["python", script, *args]),
        "commit": _git(root, "rev-parse", "HEAD") or None,
        "dirty": bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": [int(s) for s in seeds],
        "config": dict(config),
        "versions": _versions(),
        "fingerprint": fingerprint(deps, root),
    }


def _generated_header(script: str, sources: Sequence[str]) -> str:
    origin = ", ".join(sources)
    return f".. generated by {script} from {origin}; do not edit, re-run the script\n\n"


def write_generated(path: str | Path, text: str, *, script: str, sources: Sequence[str]) -> Path:
    """Write a docs fragment (reST, included with ``.. include::``) generated from stored
    results, headed by a comment naming the script and the result files it comes from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_generated_header(script, sources) + text.rstrip("\n") + "\n")
    return path


def stored_results(root: Path | None = None) -> list[Path]:
    """Every stored result: the JSON files under ``benchmarks/results/``."""
    root = root or repository_root()
    return sorted((root / "benchmarks" / "results").rglob("*.json"))


@attrs.frozen
class StaleResult:
    """A stored result whose provenance is missing or no longer matches the source."""

    path: str
    script: str | None
    reason: str

    def __str__(self) -> str:
        rerun = f"; re-run `python {self.script}`" if self.script else ""
        return f"{self.path}: {self.reason}{rerun}"


def check_result(path: Path, root: Path | None = None) -> StaleResult | None:
    """``None`` when ``path``'s recorded fingerprint matches the current source, else why not."""
    root = root or repository_root()
    rel = _relative(path.resolve(), root)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return StaleResult(rel, None, f"cannot be read as JSON ({exc})")
    prov = data.get(PROVENANCE_KEY) if isinstance(data, dict) else None
    if not isinstance(prov, dict) or "fingerprint" not in prov:
        return StaleResult(rel, None, f"has no {PROVENANCE_KEY!r} record")
    script = prov.get("script")
    recorded = prov["fingerprint"]
    try:
        now = fingerprint(recorded["dependencies"], root)
    except (KeyError, ValueError) as exc:
        return StaleResult(rel, script, f"its dependencies cannot be resolved ({exc})")
    if now["sha256"] != recorded.get("sha256"):
        deps = ", ".join(recorded["dependencies"])
        return StaleResult(rel, script, f"the code it depends on changed ({deps})")
    return None


def stale_results(paths: Iterable[Path] | None = None) -> list[StaleResult]:
    """The stored results (default :func:`stored_results`) that are stale or unrecorded."""
    root = repository_root()
    found = (check_result(p, root) for p in (stored_results(root) if paths is None else paths))
    return [s for s in found if s is not None]
