"""What every generated dataset shares: a seeded config, an on-disk cache of the generated
arrays (``.npz`` keyed by a hash of the config, outside the repository) and batched indexing.

The cache folder is ``$EIGENFLOW_CACHE/datasets`` when the environment variable is set, else
``~/.cache/eigenflow/datasets``; a dataset's ``cache_dir`` option overrides both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from ...core.component import Dataset
from ...core.config import boolean, config, integer, one_of, option, optional
from ...core.errors import ConfigError, EigenflowWarning
from ...core.io import CACHE_ENV, atomic_write_bytes, cache_folder

__all__ = [
    "CACHE_ENV",
    "GeneratedDataset",
    "GeneratedDatasetConfig",
    "cache_root",
    "hsv_to_rgb",
    "split_rng",
]


_SPLITS = ("train", "val", "test")


def _valid_cache_dir(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a folder path or None"
        )


@config
class GeneratedDatasetConfig:
    """Options every generated dataset has (seed, split and cache location)."""

    seed: int = option(
        0,
        help="Seed of the generator; the same seed gives identical data.",
        validator=integer(minimum=0),
    )
    split: str = option(
        "train", help="Which part to generate: 'train', 'val' or 'test'.", validator=one_of(_SPLITS)
    )
    cache: bool = option(
        True, help="Keep the generated arrays on disk (.npz) and reuse them.", validator=boolean()
    )
    cache_dir: str | None = option(
        None,
        help=f"Folder for the cached .npz files (default ${CACHE_ENV}/datasets or "
        "~/.cache/eigenflow/datasets).",
        validator=optional(_valid_cache_dir),
    )


def cache_root() -> Path:
    """The folder cached datasets go to: ``$EIGENFLOW_CACHE/datasets`` or
    ``~/.cache/eigenflow/datasets``."""
    return cache_folder("datasets")


def split_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """A NumPy generator for ``(seed, split, stream)``; different splits never share draws."""
    return np.random.default_rng([seed, _SPLITS.index(split), stream])


def hsv_to_rgb(
    hue: torch.Tensor, saturation: torch.Tensor | float = 1.0, value: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Convert HSV colours to RGB in ``[0, 1]``.

    Parameters
    ----------
    hue
        ``(...)`` hues in ``[0, 1)`` (taken modulo 1).
    saturation, value
        Tensors broadcastable with ``hue`` or floats in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(..., 3)`` RGB values.
    """
    hue = torch.as_tensor(hue)
    s = torch.as_tensor(saturation, dtype=hue.dtype)
    v = torch.as_tensor(value, dtype=hue.dtype)
    # Standard piecewise-linear hue ramps: channel n uses k = (n + 6 h) mod 6.
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=hue.dtype)
    k = torch.remainder(offsets + 6.0 * hue.unsqueeze(-1), 6.0)
    ramp = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * ramp


class GeneratedDataset(Dataset):
    """Base of eigenflow's generated datasets.

    Subclasses implement :meth:`generate` (NumPy arrays keyed by name, first dimension the
    item index) and name in ``item_keys`` the arrays an item carries besides its images (or
    override :meth:`item`).
    ``arrays`` holds the generated data as tensors (images as ``uint8``).
    """

    #: Bumped when the generator changes, so stale cache files are not reused.
    format_version: ClassVar[int] = 1
    Config: ClassVar[type] = GeneratedDatasetConfig

    def __init__(self, config: Any = None, **options: Any):
        super().__init__()
        self.config = self.make_config(config, options)
        self.cache_path: Path | None = self._cache_file() if self.config.cache else None
        arrays = self._load_cached() if self.cache_path is not None else None
        if arrays is None:
            arrays = self.generate()
            if self.cache_path is not None:
                self._save(arrays)
        self.arrays: dict[str, torch.Tensor] = {
            key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()
        }
        self._length = int(next(iter(self.arrays.values())).shape[0])

    # ------------------------------------------------------------------ subclass interface

    def generate(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """Generate the arrays from the config (deterministic in ``config.seed``)."""
        raise NotImplementedError

    #: Arrays returned by :meth:`item` next to the images ``x`` (those present are returned).
    item_keys: ClassVar[tuple[str, ...]] = ()

    def item(self, index: Any) -> dict[str, torch.Tensor]:
        """The item(s) at ``index`` (an int, a slice or a 1-d index tensor): the ``uint8``
        images ``x`` as floats in ``[0, 1]`` and the arrays named by ``item_keys``."""
        a = self.arrays
        out = {"x": as_float_images(a["x"][index])}
        out.update({key: a[key][index] for key in self.item_keys if key in a})
        return out

    # ------------------------------------------------------------------ dataset protocol

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self.name} of length {self._length}")
        return self.item(index)

    def batch(self, index: Any = None) -> dict[str, torch.Tensor]:
        """A batch in one indexing operation: ``index`` is a slice, an index tensor or
        ``None`` (everything). Same keys as an item, with a leading batch dimension."""
        return self.item(slice(None) if index is None else index)

    # ------------------------------------------------------------------ cache

    def cache_key(self) -> str:
        """Hash of the dataset name, format version and every option that changes the data."""
        options = attrs.asdict(self.config)
        options.pop("cache", None)
        options.pop("cache_dir", None)
        payload = {
            "dataset": self.name or type(self).__name__,
            "version": self.format_version,
            "options": options,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def _cache_file(self) -> Path:
        folder = Path(self.config.cache_dir).expanduser() if self.config.cache_dir else cache_root()
        return folder / f"{self.name or type(self).__name__}-{self.cache_key()}.npz"

    def _load_cached(self) -> dict[str, np.ndarray] | None:
        path = self.cache_path
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(
                f"{self.name}: ignoring unreadable cache file {path} ({exc}); generating again",
                EigenflowWarning,
                stacklevel=3,
            )
            return None

    def _save(self, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        try:
            atomic_write_bytes(self.cache_path, buffer.getvalue())
        except OSError as exc:  # a read-only cache must not stop the run
            warnings.warn(
                f"{self.name}: could not write cache file {self.cache_path} ({exc})",
                EigenflowWarning,
                stacklevel=3,
            )


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images in ``[0, 255]`` as ``float32`` in ``[0, 1]``."""
    return images.to(torch.float32) / 255.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``float`` images in ``[0, 1]`` as rounded ``uint8`` NumPy arrays."""
    return (images.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def pixel_centres(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates ``(j + 0.5) / size`` in ``(0, 1)``, shape ``(size,)``."""
    return (torch.arange(size, dtype=dtype) + 0.5) / size
