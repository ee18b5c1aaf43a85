"""PNG writing and image grids, decoded by an independent reader (Pillow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eigenflow.core.errors import InputError
from eigenflow.core.images import image_grid, images_in_rows, write_png

Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) is not installed")


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(4, 6), dtype=np.uint8)
    write_png(tmp_path / "rgb.png", rgb)
    write_png(tmp_path / "gray.png", gray)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb)
    decoded = np.asarray(Image.open(tmp_path / "gray.png"))
    np.testing.assert_array_equal(decoded, np.repeat(gray[..., None], 3, axis=-1))


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_image_grid_layout(channels):
    images = torch.rand(2, 3, channels, 4, 5)
    grid = image_grid(images, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3) and grid.dtype == np.uint8
    tile = grid[1 + 5 : 1 + 5 + 4, 1 + 2 * 6 : 1 + 2 * 6 + 5]  # row 1, column 2
    expected = images[1, 2] if channels == 3 else images[1, 2].mean(0, keepdim=True).expand(3, 4, 5)
    np.testing.assert_array_equal(tile, (expected.permute(1, 2, 0).numpy() * 255).round())
    assert (grid[0] == 255).all()  # padding is white


@pytest.mark.parametrize(("n", "cols", "shape"), [(1, 8, (1, 1)), (10, 8, (2, 8)), (64, 8, (8, 8))])
def test_images_in_rows_fills_the_last_row_with_white(n, cols, shape):
    images = torch.rand(n, 1, 2, 3)
    rows = images_in_rows(images, cols=cols)
    assert rows.shape == (*shape, 1, 2, 3)
    flat = rows.reshape(-1, 1, 2, 3)
    torch.testing.assert_close(flat[:n], images, rtol=0, atol=0)
    assert (flat[n:] == 1).all()


def test_images_in_rows_refuses_no_images():
    with pytest.raises(InputError, match="N = 0"):
        images_in_rows(torch.rand(0, 1, 2, 3))
