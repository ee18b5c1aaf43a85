"""Image files without extra dependencies: PNG writing and image mosaics."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .io import atomic_write_bytes

__all__ = ["image_grid", "images_in_rows", "write_png"]


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` or ``(H, W)`` uint8 array as a PNG (stdlib only), atomically."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    return atomic_write_bytes(path, png)


def image_grid(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """``(rows, cols, C, H, W)`` in ``[0, 1]`` -> an ``(H', W', 3)`` uint8 mosaic.

    Three channels are shown as RGB; any other number as grey (their mean).
    """
    rows, cols, c, h, w = images.shape
    imgs = images.detach().float().clamp(0, 1).cpu()
    if c != 3:
        imgs = imgs.mean(dim=2, keepdim=True).expand(rows, cols, 3, h, w)
    canvas = torch.ones(3, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for r in range(rows):
        for col in range(cols):
            y, x0 = pad + r * (h + pad), pad + col * (w + pad)
            canvas[:, y : y + h, x0 : x0 + w] = imgs[r, col]
    return (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def images_in_rows(images: torch.Tensor, cols: int = 8) -> torch.Tensor:
    """Lay ``(N, C, H, W)`` images out row by row for :func:`image_grid`.

    Returns ``(ceil(N / cols), min(N, cols), C, H, W)``; the cells after the last image are
    white (ones), so any ``N >= 1`` gives a full mosaic.
    """
    n = images.shape[0]
    if n < 1 or cols < 1:
        raise InputError(
            f"images_in_rows needs images with N >= 1 and cols >= 1; got N = {n}, cols = {cols}"
        )
    width = min(n, cols)
    rows = -(-n // width)
    blank = images.new_ones((rows * width - n, *images.shape[1:]))
    return torch.cat([images, blank]).reshape(rows, width, *images.shape[1:])
