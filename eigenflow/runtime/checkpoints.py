"""The last ``K`` checkpoints of a run: written atomically, verified on load.

Files are ``checkpoint.pt`` (the newest), ``checkpoint.1.pt`` (the one before), ...,
``checkpoint.<K-1>.pt``. A save writes the new file under a temporary name in the same folder
(``.checkpoint.pt.<random>.tmp``) with ``fsync``, shifts the older files by one
(``os.replace``), renames the new file to ``checkpoint.pt`` and flushes the folder (``fsync``
of the directory), so a crash leaves whole files only. A writer killed mid-write (``SIGKILL``,
out of memory) leaves its temporary file behind: the next save and every load (``--resume``)
remove such stale files (:meth:`CheckpointStore.remove_stale`), and they are never loaded.

Every checkpoint carries a SHA-256 digest of its tensors and plain values (``"digest"``); a
load recomputes it. A newest checkpoint that cannot be read or whose digest does not match is
skipped with an :class:`~eigenflow.EigenflowWarning` for the one before it; when none is
usable, :class:`~eigenflow.CheckpointError` lists every file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError, EigenflowWarning
from ..core.io import current_umask, fsync_dir, load_weights

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointStore",
    "load_model_state",
    "load_model_weights",
    "state_digest",
]

CHECKPOINT_NAME = "checkpoint.pt"
#: Temporary files of a checkpoint being written (``mkstemp`` names contain no dot).
TEMP_PATTERN = f".{CHECKPOINT_NAME}.*.tmp"
#: What the earlier writer (staging through ``.checkpoint.pt.new``) could leave behind.
LEGACY_TEMP_PATTERNS = (f"..{CHECKPOINT_NAME}.new.*.tmp", f".{CHECKPOINT_NAME}.new")
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

    def stale_files(self) -> list[Path]:
        """Temporary files of checkpoint writes that never finished (a killed writer's)."""
        if not self.folder.is_dir():
            return []
        patterns = (TEMP_PATTERN, *LEGACY_TEMP_PATTERNS)
        return sorted({p for pattern in patterns for p in self.folder.glob(pattern)})

    def remove_stale(self) -> list[Path]:
        """Delete :meth:`stale_files` (one run writes a folder's checkpoints, so any temporary
        file there that is not being written now is a killed writer's); returns them."""
        stale = self.stale_files()
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def save(self, state: Mapping[str, Any]) -> Path:
        """Write ``state`` as the newest checkpoint (with its format tag and digest) and keep
        the ``keep - 1`` before it; stale temporary files of killed writers are removed."""
        record = {**state, "format": FORMAT}
        record["digest"] = state_digest(record)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.remove_stale()
        staged = self._write_staged(record)
        try:
            for i in range(self.keep - 1, 0, -1):
                older = self.path(i - 1)
                if older.exists():
                    os.replace(older, self.path(i))
            os.replace(staged, self.path(0))
        finally:
            staged.unlink(missing_ok=True)  # only left when a rename failed
        fsync_dir(self.folder)
        return self.path(0)

    def _write_staged(self, record: Mapping[str, Any]) -> Path:
        """``record`` written and flushed (``fsync``) to ``.checkpoint.pt.<random>.tmp`` in
        the folder, with the mode ``open(path, "w")`` would give it; removed on failure."""
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=f".{CHECKPOINT_NAME}.", suffix=".tmp")
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(staged, 0o666 & ~current_umask())
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return staged

    def load(self, map_location: Any = "cpu") -> tuple[dict[str, Any], Path]:
        """The newest checkpoint that reads and verifies, and its path; stale temporary files
        of killed writers are removed first (they are never loaded)."""
        self.remove_stale()
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


def load_model_state(model: nn.Module, saved: Mapping[str, Any], where: str | os.PathLike) -> None:
    """``model.load_state_dict(saved)``, refusing a state of another model first.

    Parameters
    ----------
    model
        The model to load into.
    saved
        Its state dict (tensors by parameter and buffer name).
    where
        The file ``saved`` came from, for the message.

    Raises
    ------
    CheckpointError
        Naming ``where`` and every parameter that is missing, unexpected or of another shape.
    """
    if not isinstance(saved, Mapping):
        raise CheckpointError(
            f"checkpoint {str(where)!r} does not fit the model: expected a state dict "
            f"(parameter names to tensors), got {type(saved).__name__}"
        )
    own = model.state_dict()
    problems = [
        _shape_problem(k, v, own[k]) for k, v in saved.items() if k in own and _differs(v, own[k])
    ]
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own), key=str)
    if missing:
        problems.append(f"missing in the checkpoint: {_some(missing)}")
    if unexpected:
        problems.append(f"not in the model: {_some(unexpected)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {str(where)!r} does not fit the model: {'; '.join(problems)}"
        )
    try:
        model.load_state_dict(saved)
    except RuntimeError as exc:  # what a module's own state loading refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {str(where)!r} does not fit the model: {first}"
        ) from None


def _differs(saved: Any, own: torch.Tensor) -> bool:
    """Whether ``saved`` is not a tensor of ``own``'s shape."""
    return not isinstance(saved, torch.Tensor) or saved.shape != own.shape


def _shape_problem(name: str, saved: Any, own: torch.Tensor) -> str:
    """``"w: checkpoint (4, 3), model (2, 3)"`` (or what the checkpoint holds instead)."""
    held = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
    return f"{name}: checkpoint {held}, model {tuple(own.shape)}"


def _some(names: list[Any], shown: int = 8) -> str:
    """The first ``shown`` of ``names``, and how many there are in all when more."""
    text = ", ".join(map(str, names[:shown]))
    return text if len(names) <= shown else f"{text}, ... ({len(names)} in all)"


def load_model_weights(
    model: nn.Module, path: str | os.PathLike, map_location: Any = "cpu"
) -> None:
    """Load the weights file ``path`` into ``model``: a plain state dict, or an engine
    checkpoint (its ``"model"`` entry); read with ``weights_only=True``.

    Parameters
    ----------
    model
        The model to load into.
    path
        A file written by ``torch.save(model.state_dict(), path)`` or by the
        :class:`~eigenflow.runtime.Trainer` (``checkpoint.pt``).
    map_location
        Where the tensors are loaded (``torch.load``'s ``map_location``).

    Raises
    ------
    CheckpointError
        Naming ``path``: unreadable, holding pickled objects, or weights of another model
        (every missing, unexpected or reshaped parameter).
    """
    state = load_weights(path, map_location=map_location)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    load_model_state(model, state, path)
