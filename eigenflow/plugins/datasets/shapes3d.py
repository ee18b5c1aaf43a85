"""``shapes3d-lite``: procedurally drawn coloured scenes (wall, floor and a shaded object)
with the Shapes3D factors floor hue, wall hue, object hue, object scale and shape, as
sequences along one factor (the Floor Hue, Wall Hue, Object Hue and Scale transformations of
thesis 000 Sec. 4.6.3 and seed 004 Table 2)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ...core.config import config, integer, option, optional
from ._base import (
    GeneratedDataset,
    GeneratedDatasetConfig,
    hsv_to_rgb,
    pixel_centres,
    to_uint8,
)
from ._factors import SequenceFactorsMixin, check_sequence_factors, sample_factor_values

__all__ = ["Shapes3DLite", "Shapes3DLiteConfig", "render_scenes"]

FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape")
SHAPES = ("cube", "cylinder", "sphere", "capsule")
_CIRCULAR = (True, True, True, False, False)
HORIZON = 0.55  # image row (fraction of the height) where the wall meets the floor
OBJECT_BASE = 0.85  # row of the object's bottom
OBJECT_SIZE = 0.32  # object height at scale 1 (fraction of the image)
SATURATION = 0.8


@config
class Shapes3DLiteConfig(GeneratedDatasetConfig):
    """Options of ``shapes3d-lite``.

    Factor grid after Shapes3D: 10 floor, wall and object hues, 8 scales in [0.75, 1.25],
    4 shapes; 32x32 RGB by default to keep generation and training fast.
    """

    n_samples: int = option(
        1000, help="Number of sequences (or images).", validator=integer(minimum=1)
    )
    image_size: int = option(
        32, help="Side of the square images in pixels.", validator=integer(minimum=16, maximum=128)
    )
    n_hues: int = option(
        10, help="Number of hue values per coloured factor.", validator=integer(minimum=2)
    )
    n_scales: int = option(
        8, help="Number of object scales in [0.75, 1.25].", validator=integer(minimum=2)
    )
    sequence_length: int | None = option(
        8,
        help="Frames per sequence along one factor; None for single images.",
        validator=optional(integer(minimum=2)),
    )
    sequence_factors: tuple = option(
        ("floor_hue", "wall_hue", "object_hue", "scale"),
        help="Factors sequences move along (k indexes this list).",
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )

    def __attrs_post_init__(self) -> None:
        sizes = (self.n_hues, self.n_hues, self.n_hues, self.n_scales, len(SHAPES))
        check_sequence_factors(
            FACTORS, sizes, _CIRCULAR, self.sequence_factors, self.sequence_length
        )


def _factor_values(cfg: Shapes3DLiteConfig) -> list[np.ndarray]:
    hues = np.arange(cfg.n_hues) / cfg.n_hues
    return [
        hues,
        hues,
        hues,
        np.linspace(0.75, 1.25, cfg.n_scales),
        np.arange(len(SHAPES), dtype=np.float64),
    ]


def _cube(dx: torch.Tensor, v: torch.Tensor, h: torch.Tensor, top: torch.Tensor):
    """Front face plus a sheared top face of depth ``h / 4``."""
    front = (dx.abs() <= 1) & (v >= top) & (v <= OBJECT_BASE)
    shear = (top - v) / (h / 4)  # 0..1 up the top face
    top_face = (v < top) & (shear <= 1) & ((dx - 0.5 * shear).abs() <= 1)
    return front | top_face, torch.where(top_face, 1.0, 0.75)


def _cylinder(dx: torch.Tensor, v: torch.Tensor, h: torch.Tensor, top: torch.Tensor):
    """Body shaded across its width under an elliptical lid."""
    lid = dx.square() + ((v - top) / (h / 6)).square() <= 1
    body = (dx.abs() <= 1) & (v >= top) & (v <= OBJECT_BASE)
    shade = 0.55 + 0.4 * torch.sqrt((1 - dx.square()).clamp_min(0)) - 0.15 * dx
    return lid | body, torch.where(lid, 1.0, shade)


def _sphere(dx: torch.Tensor, v: torch.Tensor, h: torch.Tensor, top: torch.Tensor):
    """Lambertian disc of diameter ``h`` lit from the upper left."""
    dy = (v - (OBJECT_BASE - h / 2)) / (h / 2)
    r2 = dx.square() + dy.square()
    normal_z = torch.sqrt((1 - r2).clamp_min(0))
    lambert = (-0.5 * dx - 0.5 * dy + 0.707 * normal_z).clamp_min(0)
    return r2 <= 1, 0.35 + 0.65 * lambert


def _capsule(dx: torch.Tensor, v: torch.Tensor, h: torch.Tensor, top: torch.Tensor):
    """A narrower body with rounded ends."""
    w, half = 0.6, h / 2
    # Nearest point of the capsule's vertical axis segment to each pixel row.
    cy = torch.maximum(torch.minimum(v, OBJECT_BASE - w * half), top + w * half)
    inside = (dx / w).square() + ((v - cy) / (w * half)).square() <= 1
    shade = 0.5 + 0.45 * torch.sqrt((1 - (dx / w).square()).clamp_min(0)) - 0.1 * dx
    return inside, shade


_DRAW = (_cube, _cylinder, _sphere, _capsule)


def _object_layer(
    shape: torch.Tensor, scale: torch.Tensor, u: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask and brightness of the object standing on the floor in the middle.

    ``u``, ``v`` are ``(1, H, W)`` pixel-centre coordinates in ``(0, 1)``; ``shape`` and
    ``scale`` are ``(M,)``. Returns ``(mask (M, H, W) bool, value (M, H, W))``.
    """
    size = u.shape[1:]
    mask = torch.zeros(len(shape), *size, dtype=torch.bool)
    value = torch.zeros(len(shape), *size)
    for index, draw in enumerate(_DRAW):  # each shape drawn on its own items
        rows = torch.nonzero(shape == index).squeeze(1)
        if len(rows) == 0:
            continue
        h = (OBJECT_SIZE * scale[rows])[:, None, None]
        dx = (u - 0.5) / (h / 2)  # -1..1 across the object's width
        m, val = draw(dx, v, h, OBJECT_BASE - h)
        mask[rows], value[rows] = m, val.clamp(0, 1)
    return mask, value


def render_scenes(
    floor_hue: torch.Tensor,
    wall_hue: torch.Tensor,
    object_hue: torch.Tensor,
    scale: torch.Tensor,
    shape: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Render scenes: wall above the horizon, a floor brightening towards the viewer, and a
    shaded object standing on the floor in the middle.

    Parameters
    ----------
    floor_hue, wall_hue, object_hue
        ``(M,)`` hues in ``[0, 1)``.
    scale
        ``(M,)`` object scale (1 = a third of the image high).
    shape
        ``(M,)`` shape index (cube, cylinder, sphere, capsule).
    size
        Image side.

    Returns
    -------
    torch.Tensor
        ``(M, 3, size, size)`` RGB in ``[0, 1]``.
    """
    t = pixel_centres(size)
    v, u = t[None, :, None].expand(1, size, size), t[None, None, :].expand(1, size, size)
    # The background depends on two factors and the object on three: draw each distinct
    # combination once and assemble the frames by lookup.
    walls, wall_of = torch.unique(
        torch.stack([floor_hue, wall_hue], 1).float(), dim=0, return_inverse=True
    )
    objects, object_of = torch.unique(
        torch.stack([object_hue.float(), scale.float(), shape.float()], 1),
        dim=0,
        return_inverse=True,
    )
    is_wall = v < HORIZON
    floor_value = 0.6 + 0.4 * (v - HORIZON) / (1 - HORIZON)
    wall_value = 0.9 - 0.15 * (HORIZON - v) / HORIZON
    bg_value = torch.where(is_wall, wall_value, floor_value)  # (1, H, W)
    bg_hue = torch.where(is_wall, walls[:, 1, None, None], walls[:, 0, None, None])
    background = hsv_to_rgb(bg_hue, SATURATION, bg_value).permute(0, 3, 1, 2)
    mask, obj_value = _object_layer(objects[:, 2].long(), objects[:, 1], u, v)
    obj_hue = objects[:, 0, None, None].expand_as(obj_value)
    foreground = hsv_to_rgb(obj_hue, SATURATION, obj_value).permute(0, 3, 1, 2)
    rgb = torch.where(mask[object_of, None], foreground[object_of], background[wall_of])
    return rgb.clamp(0, 1)


class Shapes3DLite(SequenceFactorsMixin, GeneratedDataset):
    """Procedural Shapes3D-like scenes with floor, wall and object hue, object scale and
    shape.

    By default each item is a sequence along one factor (``k`` its index in
    ``sequence_factors``; hues wrap around the colour wheel, scale steps up): ``x``
    ``(T, 3, H, W)`` float32 in ``[0, 1]``, ``factors`` ``(T, 5)`` (values: three hues in
    ``[0, 1)``, scale, shape index), ``classes`` ``(T, 5)`` int64 and ``k``. With
    ``sequence_length = None`` items are single images (``x`` ``(3, H, W)``, no ``k``).
    """

    Config: ClassVar[type] = Shapes3DLiteConfig
    source = "Shapes3D factors (thesis 000 Sec. 4.6.3; seed 004 Table 2), procedural"
    item_keys = ("factors", "classes", "k")
    factor_names: ClassVar[tuple[str, ...]] = FACTORS

    def generate(self) -> dict[str, np.ndarray]:
        cfg = self.config
        classes, k, factors = sample_factor_values(cfg, FACTORS, _factor_values(cfg), _CIRCULAR)
        f = torch.from_numpy(factors).float()
        images = torch.cat(
            [
                render_scenes(c[:, 0], c[:, 1], c[:, 2], c[:, 3], c[:, 4], cfg.image_size)
                for c in f.split(1024)
            ]
        )
        lead = classes.shape[:-1]
        out = {
            "x": to_uint8(images).reshape(*lead, 3, cfg.image_size, cfg.image_size),
            "factors": factors.astype(np.float32).reshape(*lead, len(FACTORS)),
            "classes": classes.astype(np.int64),
        }
        if k is not None:
            out["k"] = k.astype(np.int64)
        return out
