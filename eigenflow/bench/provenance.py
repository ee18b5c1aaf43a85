"""Provenance of stored results: which script produced a result, from which commit, seeds,
config and versions, and a fingerprint of the source it depends on, so that a stored result
whose code has changed since is found and named with the script that re-makes it.

Every script under ``benchmarks/`` that stores a result (a JSON file under
``benchmarks/results/``) puts :func:`record` under the key ``"provenance"`` of that file, and
every table it writes for the docs goes through :func:`write_generated`. The test-suite then
compares each stored fingerprint with the current source (:func:`stale_results`).
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import importlib.util
import json
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "PROVENANCE_KEY",
    "StaleResult",
    "archive_record",
    "check_result",
    "covered_files",
    "fingerprint",
    "fingerprint_at",
    "imported_modules",
    "list_table",
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


def _module_of(path: Path, root: Path) -> str:
    rel = path.resolve().relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports_of(path: Path, module: str) -> set[str]:
    """The dotted names ``path`` (the source of ``module``) imports, relative imports
    resolved; ``from pkg import name`` gives both ``pkg`` and ``pkg.name``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under ``root`` (a package: its ``__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(
    roots: Iterable[str], *, within: str = "eigenflow", root: Path | None = None
) -> list[str]:
    """``roots`` and every module of package ``within`` they import, transitively (read
    from the source, not by importing): the honest ``dependencies`` of a result measured
    with ``roots``, without the rest of the package.

    Parameters
    ----------
    roots
        Dotted module or package names (a package stands for all its files), e.g.
        ``["eigenflow.plugins.matfn"]``.
    within
        Only imports of this top-level package are followed.
    root
        The repository root (default :func:`repository_root`).

    Returns
    -------
    list of str
        Sorted dependency names for :func:`record`: the ``roots`` themselves and, for each
        imported module, its dotted name, or for an imported package (whose ``__init__`` is
        all that the import runs) the relative path of its ``__init__.py``.
    """
    root = root or repository_root()
    roots = list(roots)
    deps: set[str] = set(roots)
    todo = source_files(roots, root)
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports_of(path, _module_of(path, root)):
            if name != within and not name.startswith(within + "."):
                continue
            target = _module_file(name, root)
            if target is None or target in seen:
                continue
            covered = any(
                name == r or name.startswith(r + ".") for r in roots if _is_package(r, root)
            )
            if not covered:
                deps.add(_relative(target, root) if target.name == "__init__.py" else name)
            todo.append(target)
    return sorted(deps)


def _is_package(name: str, root: Path) -> bool:
    return "/" not in name and (root.joinpath(*name.split(".")) / "__init__.py").is_file()


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
    files = [_relative(p, root) for p in source_files(deps, root)]
    return {
        "script": script,
        "command": shlex.join(["python", script, *args]),
        "commit": _git(root, "rev-parse", "HEAD") or None,
        # whether a file the result depends on differs from that commit (edited or new)
        "dirty": bool(_git(root, "status", "--porcelain", "--", *files)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": [int(s) for s in seeds],
        "config": dict(config),
        "versions": _versions(),
        "fingerprint": fingerprint(deps, root),
    }


def _generated_header(script: str, sources: Sequence[str]) -> str:
    origin = ", ".join(sources)
    return f".. generated by {script} from {origin}; do not edit, re-run the script\n\n"


def list_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], title: str | None = None
) -> str:
    """A reST ``list-table`` (first row as header) of already formatted cells, for the docs
    fragments :func:`write_generated` writes.

    Parameters
    ----------
    header
        Column titles.
    rows
        One sequence of cell texts per row, each as long as ``header``.
    title
        Caption of the table, or ``None``.
    """
    lines = [".. list-table::" + (f" {title}" if title else ""), "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


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


def _files_at_commit(dependencies: Sequence[str], commit: str, root: Path) -> list[str]:
    """The repository-relative files behind ``dependencies`` as they were at ``commit``."""
    files: set[str] = set()
    for dep in dependencies:
        if dep.endswith(".py") or "/" in dep:
            files.add(dep)
            continue
        base = "/".join(dep.split("."))
        listed = _git(root, "ls-tree", "-r", "--name-only", commit, "--", base + "/")
        if listed:
            files.update(f for f in listed.splitlines() if f.endswith(".py"))
        else:
            files.add(base + ".py")
    return sorted(files)


def fingerprint_at(dependencies: Sequence[str], commit: str, root: Path | None = None) -> dict:
    """:func:`fingerprint` of ``dependencies`` as they were at git ``commit`` (read with
    ``git show``), to compare an archived measurement with the current source."""
    root = root or repository_root()
    digest = hashlib.sha256()
    files = _files_at_commit(dependencies, commit, root)
    for rel in files:
        done = subprocess.run(
            ["git", "show", f"{commit}:{rel}"], cwd=root, capture_output=True, timeout=30
        )
        if done.returncode:
            raise ValueError(f"provenance: {rel!r} does not exist at commit {commit}")
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(done.stdout.replace(b"\r\n", b"\n"))
        digest.update(b"\0")
    return {"dependencies": sorted(dependencies), "files": len(files), "sha256": digest.hexdigest()}


def archive_record(
    script: str,
    *,
    commit: str,
    date: str,
    device: str,
    files: Sequence[str],
    config: Mapping[str, Any],
    dependencies: Sequence[str],
    note: str,
) -> dict[str, Any]:
    """The provenance of a measurement that cannot be re-made here (a GPU run stored from
    another machine): marked ``"archived"``, with its fingerprint taken at ``commit`` (the
    commit that stored it), so that :func:`check_result` reports it as archived and says
    whether the code it depends on has changed since, instead of calling it fresh.

    Parameters
    ----------
    script
        The script that made the measurement (relative to the repository root).
    commit
        The git commit the measurement was stored at.
    date
        When it was measured (ISO date).
    device
        The machine, in words (e.g. ``"NVIDIA H200, torch 2.11.0+cu130"``).
    files
        The stored files (relative to the folder of the provenance file) this record covers.
    config, dependencies, note
        As in :func:`record`; ``note`` says what the measurement is and why it is archived.
    """
    root = repository_root()
    deps = sorted({*dependencies, script})
    return {
        "script": script,
        "archived": True,
        "commit": commit,
        "date": date,
        "device": device,
        "files": list(files),
        "config": dict(config),
        "note": note,
        "fingerprint": fingerprint_at(deps, commit, root),
    }


@attrs.frozen
class StaleResult:
    """A stored result whose provenance is missing or no longer matches the source, or an
    archived measurement (``archived``: reported, never re-made here)."""

    path: str
    script: str | None
    reason: str
    archived: bool = False
    command: str | None = None

    def __str__(self) -> str:
        if self.archived:
            return f"{self.path}: {self.reason}"
        if not self.script:
            return f"{self.path}: {self.reason}"
        command = self.command or f"python {self.script}"
        return f"{self.path}: {self.reason}; re-run `{command}` ({self.script})"


def check_result(path: Path, root: Path | None = None) -> StaleResult | None:
    """``None`` when ``path``'s recorded fingerprint matches the current source, else why not
    (an archived record is always returned, with ``archived`` set)."""
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
        if prov.get("archived"):
            return StaleResult(rel, script, f"archived at {prov.get('commit')}", archived=True)
        reason = f"its dependencies cannot be resolved ({exc})"
        return StaleResult(rel, script, reason, command=prov.get("command"))
    changed = now["sha256"] != recorded.get("sha256")
    if prov.get("archived"):
        since = "changed since" if changed else "unchanged since"
        reason = (
            f"archived measurement ({prov.get('device')}, {prov.get('date')}) at commit "
            f"{str(prov.get('commit'))[:12]}; the code it depends on has {since}"
        )
        return StaleResult(rel, script, reason, archived=True)
    if changed:
        deps = ", ".join(recorded["dependencies"])
        reason = f"the code it depends on changed ({deps})"
        return StaleResult(rel, script, reason, command=prov.get("command"))
    return None


def stale_results(
    paths: Iterable[Path] | None = None, *, archived: bool = False
) -> list[StaleResult]:
    """The stored results (default :func:`stored_results`) that are stale or unrecorded;
    with ``archived=True`` the archived measurements instead (see :func:`archive_record`)."""
    root = repository_root()
    owners = covered_files(root)
    found = []
    for path in stored_results(root) if paths is None else paths:
        owner = owners.get(path)
        if owner is not None and owner != path:
            continue  # a file of an archived run: its archive record is reported instead
        found.append(check_result(path, root))
    return [s for s in found if s is not None and s.archived == archived]


def covered_files(root: Path | None = None) -> dict[Path, Path | None]:
    """Every file stored under ``benchmarks/results/`` and the JSON file whose provenance
    covers it (``None``: none does). A JSON result covers itself and the files other than
    JSON of its folder that its script writes next to it (CSV, Markdown, PNG); an archive
    record (:func:`archive_record`) covers the files it lists, JSON included."""
    root = root or repository_root()
    results = root / "benchmarks" / "results"
    owners: dict[Path, Path | None] = {}
    records: dict[Path, dict] = {}
    for path in stored_results(root):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        prov = data.get(PROVENANCE_KEY) if isinstance(data, dict) else None
        if isinstance(prov, dict):
            records[path] = prov
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        owner = path if path in records else None
        for json_path, prov in records.items():
            if owner is not None:
                break
            if json_path.parent != path.parent:
                continue
            listed = prov.get("files")
            if listed is None and not prov.get("archived") and path.suffix != ".json":
                owner = json_path
            elif listed is not None and path.name in listed:
                owner = json_path
        owners[path] = owner
    return owners
