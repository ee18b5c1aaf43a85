"""Run folders: one run per folder, refused, resumed or overwritten on purpose.

A folder holds a run when it has one of ``RUN_FILES``. :func:`prepare_run_folder` refuses
such a folder unless ``resume`` (continue it; the options that fix the run must not change) or
``overwrite`` (delete the folder's contents first) is given, and records the run's options in
``run.json``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, RunFolderError
from ..core.io import atomic_write_json
from .checkpoints import CHECKPOINT_NAME
from .trainer import RESUMABLE_OPTIONS

__all__ = ["RUN_FILES", "RUN_RECORD", "prepare_run_folder", "read_run_record", "run_files"]

RUN_RECORD = "run.json"
RUN_FILES = (RUN_RECORD, "summary.json", "result.json", "metrics.csv", CHECKPOINT_NAME)

#: Pipeline options that only change how much is trained, evaluated or shown.
RESUMABLE_PIPELINE_OPTIONS = RESUMABLE_OPTIONS | {
    "train_steps",
    "eval_items",
    "iw_samples",
    "num_paths",
    "path_steps",
    "spectrum_points",
}


def run_files(folder: Path) -> list[str]:
    """The files of ``RUN_FILES`` in ``folder`` (at its top level or one level down)."""
    if not folder.is_dir():
        return []
    found = [name for name in RUN_FILES if (folder / name).exists()]
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        found += [f"{child.name}/{n}" for n in RUN_FILES if (child / n).exists()]
    return found


def prepare_run_folder(
    folder: Path, record: Mapping[str, Any], *, resume: bool = False, overwrite: bool = False
) -> None:
    """Make ``folder`` ready for the run described by ``record`` (JSON data).

    Raises
    ------
    RunFolderError
        The folder holds a run and neither ``resume`` nor ``overwrite`` is given.
    RunFolderError
        ``resume`` and the folder's ``run.json`` cannot be read (see ``read_run_record``).
    ConfigError
        ``resume`` with options that fix the run changed since the recorded run.
    """
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other; give one")
    existing = run_files(folder)
    if existing and not (resume or overwrite):
        shown = ", ".join(existing[:6]) + (", ..." if len(existing) > 6 else "")
        raise RunFolderError(
            f"output folder {str(folder)!r} already holds a run ({shown}); continue it with "
            "--resume (resume=true), replace it with --overwrite (overwrite=true), or choose "
            "another folder"
        )
    if existing and overwrite:
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    if resume and (folder / RUN_RECORD).exists():
        _check_unchanged(read_run_record(folder), record, folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / RUN_RECORD, dict(record))


def read_run_record(folder: Path) -> dict[str, Any]:
    """The options recorded in ``folder/run.json``.

    Raises
    ------
    RunFolderError
        Naming the file and what to do when it cannot be read, is not JSON (damaged, e.g. by
        a crash of a writer that predates atomic writes, or edited by hand) or not a JSON
        object.
    """
    path = folder / RUN_RECORD
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RunFolderError(
            _damaged_record(folder, path, f"it cannot be read ({reason})")
        ) from None
    try:
        previous = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(
            _damaged_record(folder, path, f"it is not valid JSON ({exc})")
        ) from None
    stages = previous.get("stages", []) if isinstance(previous, dict) else None
    if not isinstance(stages, list) or not all(isinstance(s, Mapping) for s in stages):
        raise RunFolderError(
            _damaged_record(folder, path, "it is not a run record (a JSON object with 'stages')")
        )
    return previous


def _damaged_record(folder: Path, path: Path, problem: str) -> str:
    """The message for a ``run.json`` that ``read_run_record`` cannot use."""
    return (
        f"cannot resume the run in {str(folder)!r}: its run record {str(path)!r} is damaged: "
        f"{problem}; restore it, delete it to resume without checking the options against it "
        "(it is written again), or start afresh with --overwrite (overwrite=true)"
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def _check_unchanged(previous: Mapping[str, Any], now: Mapping[str, Any], folder: Path) -> None:
    before, after = (
        {
            f"stages[{i}].{k}": v
            for i, stage in enumerate(record.get("stages", []))
            for k, v in _flatten(stage).items()
        }
        for record in (previous, now)
    )
    changed = [
        f"{key} {before.get(key)!r} -> {after.get(key)!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
        and key.rsplit(".", 1)[-1] not in RESUMABLE_PIPELINE_OPTIONS
    ]
    if previous.get("seed") != now.get("seed"):
        changed.insert(0, f"seed {previous.get('seed')!r} -> {now.get('seed')!r}")
    if changed:
        raise ConfigError(
            f"cannot resume the run in {str(folder)!r}: options changed that fix the run "
            f"(model, data, shapes, seed, ...): {'; '.join(changed)}; only "
            f"{', '.join(sorted(RESUMABLE_PIPELINE_OPTIONS - {'resume', 'overwrite'}))} may "
            "change on resume"
        )
