"""File writing that never leaves a half-written file behind (write a temp file, then rename)."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

__all__ = [
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "cache_folder",
    "current_umask",
    "fsync_dir",
    "load_weights",
]


#: Environment variable naming the root of eigenflow's caches (generated data, trained
#: feature networks); default ``~/.cache/eigenflow``.
CACHE_ENV = "EIGENFLOW_CACHE"


def cache_folder(name: str) -> Path:
    """The cache folder ``name`` under ``$EIGENFLOW_CACHE`` (default ``~/.cache/eigenflow``),
    outside any repository; not created here."""
    base = os.environ.get(CACHE_ENV)
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "eigenflow"
    return root / name


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it where possible)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - platforms without /proc
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _default_mode() -> int:
    """``0o666`` less the umask: the mode ``open(path, "w")`` would give a new file
    (``tempfile.mkstemp`` creates files ``0o600``, whatever the umask)."""
    return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename;
    the file gets the mode a plain ``open(path, "w")`` would give it (``0o666`` less the
    umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk; a no-op where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically: the file is written to a temporary name, flushed
    to disk (``fsync``), renamed, and the folder is flushed too, so a crash at any point
    leaves either the previous file or the new one, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_weights(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``).

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong: missing, a folder, empty, truncated or not a
        torch file, or holding objects other than tensors and plain data.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {str(path)!r}: no such file")
    if path.is_dir():
        raise CheckpointError(f"weights file {str(path)!r}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file {str(path)!r}: is empty (0 bytes)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).rsplit("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0]
        if "Unsupported global" in reason:
            raise CheckpointError(
                f"weights file {str(path)!r}: holds objects that are not tensors or plain data "
                f"({reason}); eigenflow never unpickles arbitrary objects"
            ) from None
        raise CheckpointError(
            f"weights file {str(path)!r}: cannot be read, corrupt or not a torch file ({reason})"
        ) from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"weights file {str(path)!r}: cannot be read, truncated or not a torch file ({first})"
        ) from None
