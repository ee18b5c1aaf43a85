"""The last ``K`` checkpoints of a run: written atomically, verified on load.

Files are ``checkpoint.pt`` (the newest), ``checkpoint.1.pt`` (the one before), ...,
``checkpoint.<K-1>.pt``. A save writes the new file under a temporary name with ``fsync``, shifts
the older files by one (``os.replace``), renames the new file to ``checkpoint.pt`` and flushes
the folder (``fsync`` of the directory), so a crash leaves whole files only.

Every checkpoint carries a SHA-256 digest of its tensors and plain values (``"digest"``); a
load recomputes it. A newest checkpoint that cannot be read or whose digest does not match is
skipped with an :class:`~eigenflow.EigenflowWarning` for the one before it; when none is
usable, :class:`~eigenflow.CheckpointError` lists every file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..core.errors import CheckpointError, EigenflowWarning
from ..core.io import atomic_torch_save, fsync_dir, load_weights

__all__ = ["CHECKPOINT_NAME", "CheckpointStore", "state_digest"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "eigenflow-checkpoint/2"
REQUIRED_KEYS = ("format", "digest", "step", "model", "optimizer", "rng")


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 over every entry of ``state`` but ``"digest"``: keys, plain values and the raw
    bytes, dtype and shape of every tensor (in a fixed order)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


class CheckpointStore:
    """The checkpoints of one run folder.

    Parameters
    ----------
    folder
        The run folder.
    keep
        How many checkpoints to keep (the newest first); at least 1.
    """

    def __init__(self, folder: str | os.PathLike, keep: int = 2):
        self.folder = Path(folder)
        self.keep = keep

    def path(self, index: int = 0) -> Path:
        """``checkpoint.pt`` for ``index`` 0, ``checkpoint.<index>.pt`` for older ones."""
        return self.folder / (CHECKPOINT_NAME if index == 0 else f"checkpoint.{index}.pt")

    def paths(self) -> list[Path]:
        """The checkpoint files that exist, the newest first."""
        return [p for p in (self.path(i) for i in range(self.keep)) if p.exists()]

    def exists(self) -> bool:
        return bool(self.paths())

    def save(self, state: Mapping[str, Any]) -> Path:
        """Write ``state`` as the newest checkpoint (with its format tag and digest) and keep
        the ``keep - 1`` before it."""
        record = {**state, "format": FORMAT}
        record["digest"] = state_digest(record)
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = atomic_torch_save(record, self.folder / f".{CHECKPOINT_NAME}.new")
        for i in range(self.keep - 1, 0, -1):
            older = self.path(i - 1)
            if older.exists():
                os.replace(older, self.path(i))
        os.replace(staged, self.path(0))
        fsync_dir(self.folder)
        return self.path(0)

    def load(self, map_location: Any = "cpu") -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that reads and verifies, and its path."""
        problems: list[str] = []
        for path in self.paths():
            try:
                state = read_checkpoint(path, map_location)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            if problems:
                warnings.warn(
                    f"{'; '.join(problems)}; using the previous checkpoint {str(path)!r} "
                    f"(step {state['step']})",
                    EigenflowWarning,
                    stacklevel=2,
                )
            return state, path
        if not problems:
            raise CheckpointError(f"run folder {str(self.folder)!r}: no checkpoint to resume from")
        raise CheckpointError("no usable checkpoint: " + "; ".join(problems))


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and verify one checkpoint file (structure and digest)."""
    path = Path(path)
    state = load_weights(path, map_location=map_location)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: expected a dict of training state, got "
            f"{type(state).__name__}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: not an eigenflow training checkpoint (missing "
            f"{', '.join(missing)})"
        )
    if state["digest"] != state_digest(state):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: corrupt (its SHA-256 digest does not match its contents)"
        )
    return state
