"""``dsprites``: procedurally rendered 2-d shapes (square, ellipse, heart) with known
scale, orientation and position factors, after the dSprites dataset used in thesis 000
(Sec. 4.5.2, Table 4.9-4.10) and seed 002 (Table 3.3)."""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import numpy as np
import torch

from ...core.config import config, integer, option, optional
from ._base import GeneratedDataset, GeneratedDatasetConfig
from ._factors import SequenceFactorsMixin, check_sequence_factors, sample_factor_values

__all__ = ["DSprites", "DSpritesConfig", "dsprites_factor_values", "render_sprites"]

SHAPES = ("square", "ellipse", "heart")
FACTORS = ("shape", "scale", "orientation", "x", "y")
#: Radius (fraction of the image side) of the disc every shape fits in at scale 1.
SHAPE_RADIUS = 0.18
ELLIPSE_MINOR = 0.5


@config
class DSpritesConfig(GeneratedDatasetConfig):
    """Options of ``dsprites``.

    The factor grid follows dSprites (3 shapes, 6 scales in [0.5, 1], 40 orientations in
    [0, 2 pi), 32 x and 32 y positions in [0, 1]); images are 64x64 binary by default.
    """

    n_samples: int = option(
        10000, help="Number of images (or sequences).", validator=integer(minimum=1)
    )
    image_size: int = option(
        64, help="Side of the square images in pixels.", validator=integer(minimum=16, maximum=256)
    )
    n_scales: int = option(
        6, help="Number of scale values in [0.5, 1].", validator=integer(minimum=1)
    )
    n_orientations: int = option(
        40, help="Number of orientations in [0, 2 pi).", validator=integer(minimum=1)
    )
    n_positions: int = option(
        32, help="Number of x (and y) positions in [0, 1].", validator=integer(minimum=1)
    )
    sequence_length: int | None = option(
        None,
        help="None for single images, else frames per sequence along one factor.",
        validator=optional(integer(minimum=2)),
    )
    sequence_factors: tuple = option(
        ("scale", "orientation", "x", "y"),
        help="Factors sequences move along (k indexes this list); from shape, scale, "
        "orientation, x, y.",
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )

    def __attrs_post_init__(self) -> None:
        sizes = (
            len(SHAPES),
            self.n_scales,
            self.n_orientations,
            self.n_positions,
            self.n_positions,
        )
        check_sequence_factors(
            FACTORS, sizes, _CIRCULAR, self.sequence_factors, self.sequence_length
        )


_CIRCULAR = (False, False, True, False, False)


def dsprites_factor_values(cfg: DSpritesConfig) -> list[np.ndarray]:
    """The value of each class of each factor (shape index, scale, angle in radians, x, y)."""
    return [
        np.arange(len(SHAPES), dtype=np.float64),
        np.linspace(0.5, 1.0, cfg.n_scales) if cfg.n_scales > 1 else np.array([1.0]),
        np.arange(cfg.n_orientations) * (2 * math.pi / cfg.n_orientations),
        np.linspace(0.0, 1.0, cfg.n_positions) if cfg.n_positions > 1 else np.array([0.5]),
        np.linspace(0.0, 1.0, cfg.n_positions) if cfg.n_positions > 1 else np.array([0.5]),
    ]


def _heart(x: torch.Tensor, y_up: torch.Tensor) -> torch.Tensor:
    """Inside test of the heart curve ``(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0``."""
    return (x.square() + y_up.square() - 1.0).pow(3) - x.square() * y_up.pow(3) <= 0


@functools.lru_cache(maxsize=1)
def _heart_frame() -> tuple[float, float, float]:
    """``(centroid x, centroid y_up, radius)`` of the heart's area, measured on a fine grid,
    so the rendered heart is centred on its centroid and fits in the unit disc."""
    t = torch.linspace(-1.5, 1.5, 1201, dtype=torch.float64)
    y, x = torch.meshgrid(t, t, indexing="ij")
    inside = _heart(x, y)
    cx, cy = x[inside].mean(), y[inside].mean()
    radius = torch.sqrt((x[inside] - cx).square() + (y[inside] - cy).square()).max()
    return float(cx), float(cy), float(radius)


def _inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inside test of one shape in its unit frame (``u`` right, ``v`` down; every shape fits
    in the unit disc and has its area centroid at the origin)."""
    if shape == 0:
        half = 1.0 / math.sqrt(2.0)
        return (u.abs() <= half) & (v.abs() <= half)
    if shape == 1:
        return u.square() + (v / ELLIPSE_MINOR).square() <= 1.0
    cx, cy, radius = _heart_frame()
    return _heart(u * radius + cx, -v * radius + cy)


def render_sprites(
    shape: torch.Tensor,
    scale: torch.Tensor,
    angle: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Render binary sprites.

    The shape's centroid sits at pixel coordinates ``m + pos (size - 2 m)`` with margin
    ``m = SHAPE_RADIUS size`` (x along columns, y along rows, pixel ``j`` covering
    ``[j, j + 1)``), so every shape stays inside the image. ``angle`` turns the shape
    counter-clockwise on screen. Generation-time code (CPU, float32).

    Parameters
    ----------
    shape
        ``(M,)`` integer shape index (0 square, 1 ellipse, 2 heart).
    scale, angle, x, y
        ``(M,)`` scale in (0, 1], angle in radians, positions in [0, 1].
    size
        Image side in pixels.

    Returns
    -------
    torch.Tensor
        ``(M, size, size)`` bool masks.
    """
    margin = SHAPE_RADIUS * size
    dtype = torch.float32
    centre_x = (margin + x.to(dtype) * (size - 2 * margin))[:, None, None]
    centre_y = (margin + y.to(dtype) * (size - 2 * margin))[:, None, None]
    coords = torch.arange(size, dtype=dtype) + 0.5
    dx = coords[None, None, :] - centre_x
    dy = coords[None, :, None] - centre_y
    angle = angle.to(dtype)
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    radius = (SHAPE_RADIUS * size * scale.to(dtype))[:, None, None]
    # Undo the on-screen counter-clockwise turn R(theta) = [[c, s], [-s, c]] (y down).
    u = (c * dx - s * dy) / radius
    v = (s * dx + c * dy) / radius
    masks = torch.zeros(len(shape), size, size, dtype=torch.bool)
    for index in range(len(SHAPES)):  # one inside test per shape, on its own items
        rows = torch.nonzero(shape == index).squeeze(1)
        if len(rows):
            masks[rows] = _inside(index, u[rows], v[rows])
    return masks


class DSprites(SequenceFactorsMixin, GeneratedDataset):
    """Procedural dSprites: binary images of a square, an ellipse or a heart.

    Items are dicts with ``x`` ``(1, H, W)`` float32 in ``{0, 1}``, ``factors`` ``(5,)``
    float32 ``[shape, scale, orientation (rad), x, y]`` and ``classes`` ``(5,)`` int64 (the
    index of each factor's value). With ``sequence_length = T`` each item is a sequence
    along one factor instead: ``x`` ``(T, 1, H, W)``, ``factors`` ``(T, 5)``, ``classes``
    ``(T, 5)`` and ``k`` (the moving factor's index in ``sequence_factors``).

    The x/y position is that of the shape's area centroid (the heart is re-centred on its
    centroid), and every shape fits in a disc of radius ``0.18 * image_size * scale``.
    """

    Config: ClassVar[type] = DSpritesConfig
    source = "dSprites (thesis 000 Sec. 4.5.2; seed 002 Sec. 3.3.1), procedural"
    item_keys = ("factors", "classes", "k")
    factor_names: ClassVar[tuple[str, ...]] = FACTORS

    def generate(self) -> dict[str, np.ndarray]:
        cfg = self.config
        classes, k, factors = sample_factor_values(
            cfg, FACTORS, dsprites_factor_values(cfg), _CIRCULAR
        )
        f = torch.from_numpy(factors)
        masks = (
            torch.cat(
                [
                    render_sprites(
                        chunk[:, 0].long(),
                        chunk[:, 1],
                        chunk[:, 2],
                        chunk[:, 3],
                        chunk[:, 4],
                        cfg.image_size,
                    )
                    for chunk in f.split(2048)
                ]
            )
            if len(f)
            else torch.zeros(0, cfg.image_size, cfg.image_size, dtype=torch.bool)
        )
        shape = classes.shape[:-1]
        out = {
            "x": (masks.numpy().astype(np.uint8) * 255).reshape(
                *shape, 1, cfg.image_size, cfg.image_size
            ),
            "factors": factors.astype(np.float32).reshape(*shape, len(FACTORS)),
            "classes": classes.astype(np.int64),
        }
        if k is not None:
            out["k"] = k.astype(np.int64)
        return out
