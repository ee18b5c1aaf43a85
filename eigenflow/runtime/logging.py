"""Scalar and image logs of a training run: ``metrics.csv`` always, TensorBoard when asked.

``metrics.csv`` has the columns ``step, name, value``. On resume it is rewritten with the rows
up to the checkpoint's step through a temporary file and a rename, so a run killed while
resuming keeps its history. TensorBoard event files go to
``<run folder>/tensorboard`` when the option ``tensorboard`` is true; that needs the
``tensorboard`` package (``pip install 'eigenflow[tensorboard]'``). Only rank 0 of a
distributed run writes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..core.errors import ConfigError
from ..core.io import atomic_write_bytes

__all__ = ["TENSORBOARD_MISSING", "ScalarLog", "open_tensorboard"]

TENSORBOARD_MISSING = (
    "option 'tensorboard' = True needs the tensorboard package, which is not installed: "
    "pip install tensorboard (or the extra: pip install 'eigenflow[tensorboard]')"
)


def open_tensorboard(log_dir: Path):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``; a clear
    :class:`~eigenflow.ConfigError` when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(TENSORBOARD_MISSING) from None
    return SummaryWriter(log_dir=str(log_dir))


class ScalarLog:
    """``metrics.csv`` (``step,name,value``) in ``folder`` and, with ``tensorboard``, event
    files in ``folder/tensorboard``.

    Parameters
    ----------
    folder
        The run folder, or ``None`` for no files at all.
    tensorboard
        Also write TensorBoard event files.
    active
        ``False`` on the processes that must not write (DDP ranks other than 0).
    resume_from
        When resuming at this step, rows of later steps (written after the checkpoint by the
        interrupted run) are dropped, so ``metrics.csv`` holds one history.
    """

    def __init__(
        self,
        folder: Path | None,
        tensorboard: bool = False,
        active: bool = True,
        resume_from: int | None = None,
    ):
        self.active = active and folder is not None
        self.writer = None
        self.csv_path = None if folder is None else folder / "metrics.csv"
        if not self.active:
            return
        if tensorboard:
            self.writer = open_tensorboard(folder / "tensorboard")
        folder.mkdir(parents=True, exist_ok=True)
        kept = _rows_up_to(self.csv_path, resume_from) if resume_from is not None else []
        _write_rows(self.csv_path, kept)

    @property
    def backend(self) -> str:
        """``"csv+tensorboard"`` or ``"csv"`` (``"none"`` when nothing is written)."""
        if not self.active:
            return "none"
        return "csv+tensorboard" if self.writer is not None else "csv"

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.active:
            return
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            for name, value in values.items():
                writer.writerow([step, name, f"{value:.8g}"])
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def images(self, step: int, name: str, images: torch.Tensor) -> None:
        """Log ``(N, C, H, W)`` images in ``[0, 1]`` (TensorBoard only)."""
        if self.active and self.writer is not None:
            self.writer.add_images(name, images.detach().float().clamp(0, 1).cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _write_rows(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """Replace ``path`` by the header and ``rows``, atomically (temporary file, ``fsync``,
    rename): a crash leaves the previous file or the new one, whole."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["step", "name", "value"])
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def _rows_up_to(path: Path, step: int) -> list[list[str]]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [r for r in rows if len(r) == 3 and r[0].isdigit() and int(r[0]) <= step]
