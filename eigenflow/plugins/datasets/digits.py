"""``digits-sequences``: scikit-learn's bundled 8x8 digits, upsampled to 28x28, as sequences
under rotation, scaling and colouring and their combinations (the local stand-in for the
transformed MNIST of thesis 000, Sec. 4.5.2 and 4.6.3, Table 4.11)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ...core.config import config, floating, integer, one_of, option
from ...core.errors import ConfigError, NotSupportedError
from ._base import (
    GeneratedDataset,
    GeneratedDatasetConfig,
    hsv_to_rgb,
    split_rng,
    to_uint8,
)

__all__ = ["BASE_TRANSFORMS", "DigitsSequences", "DigitsSequencesConfig", "render_digits"]

#: The single transformations; a sequence's transform is one of them or a ``+``-joined set.
BASE_TRANSFORMS = ("rotation", "scaling", "colouring")
IMAGE_SIZE = 28
#: Side of the box the 8x8 digit fills at scale 1 (MNIST puts digits in a 20x20 box).
DIGIT_BOX = 20
#: Fixed seed of the image split, so train and test never share a source image.
_SPLIT_SEED = 20231123


def _transforms_validator(_inst: Any, attribute: Any, value: Any) -> None:
    ok = isinstance(value, list | tuple) and len(value) > 0
    if ok:
        for entry in value:
            parts = entry.split("+") if isinstance(entry, str) else [None]
            if (
                not parts
                or any(p not in BASE_TRANSFORMS for p in parts)
                or len(set(parts)) != len(parts)
            ):
                ok = False
    if not ok or len(set(value)) != len(value):
        raise ConfigError(
            f"option {attribute.name!r} = {value!r} is invalid: expected a non-empty list of "
            f"distinct transforms, each one of {', '.join(BASE_TRANSFORMS)} or several joined "
            "by '+' (e.g. 'rotation+scaling')"
        )


@config
class DigitsSequencesConfig(GeneratedDatasetConfig):
    """Options of ``digits-sequences``.

    Source: thesis 000 Sec. 4.6.3 (MNIST with Scaling, Rotation and Coloring sequences, each
    labelled with its transformation ``k``). The thesis does not give the step sizes or ``T``;
    the defaults here are chosen so a digit stays inside the 28x28 frame.
    """

    n_sequences: int = option(2000, help="Number of sequences.", validator=integer(minimum=1))
    length: int = option(
        8,
        help="Frames per sequence T (frame 0 is the start).",
        validator=integer(minimum=2, maximum=64),
    )
    transforms: tuple = option(
        BASE_TRANSFORMS,
        help="Transformations, k = index in this list; each is rotation, scaling, colouring "
        "or several joined by '+'.",
        validator=_transforms_validator,
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )
    channels: int = option(3, help="1 (grey, no colouring) or 3 (RGB).", validator=one_of((1, 3)))
    rotation_range: float = option(
        90.0,
        help="Degrees turned (counter-clockwise) from frame 0 to frame T-1.",
        validator=floating(-360.0, 360.0),
    )
    scale_start: tuple = option(
        (0.55, 0.75),
        help="Range of the initial scale (1 = the digit fills a 20x20 box).",
        converter=lambda v: tuple(v) if isinstance(v, list) else v,
    )
    scale_range: float = option(
        0.5, help="Scale added from frame 0 to frame T-1.", validator=floating(-0.5, 1.0)
    )
    hue_range: float = option(
        0.5,
        help="Hue shift (fraction of the colour wheel) from frame 0 to frame T-1.",
        validator=floating(-1.0, 1.0),
    )
    initial_angle: float = option(
        15.0,
        help="Initial angle drawn uniformly in +-this (degrees).",
        validator=floating(0.0, 180.0),
    )
    test_fraction: float = option(
        0.2,
        help="Fraction of the 1797 source images kept for the "
        "'test' split ('val' uses the test images too).",
        validator=floating(0.05, 0.5),
    )

    def __attrs_post_init__(self) -> None:
        lo_hi = self.scale_start
        if not (
            isinstance(lo_hi, tuple)
            and len(lo_hi) == 2
            and all(isinstance(v, int | float) for v in lo_hi)
            and 0.1 <= lo_hi[0] <= lo_hi[1] <= 1.3
        ):
            raise ConfigError(
                f"option 'scale_start' = {lo_hi!r} is invalid: expected two "
                "numbers lo <= hi in [0.1, 1.3]"
            )
        if min(lo_hi[0], lo_hi[0] + self.scale_range) < 0.1:
            raise ConfigError(
                "options 'scale_start' and 'scale_range': the scale would drop below 0.1"
            )
        if self.channels == 1 and any("colouring" in t for t in self.transforms):
            raise ConfigError("option 'transforms': 'colouring' needs channels = 3")


def _load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits shipped with scikit-learn, in ``[0, 1]``, and their labels.

    Reads scikit-learn's bundled ``digits.csv.gz`` directly (importing scikit-learn takes
    seconds); falls back to ``sklearn.datasets.load_digits`` if the file moved.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise NotSupportedError(
            "dataset 'digits-sequences' needs the package scikit-learn (it ships the 8x8 digits "
            "images); install it with `pip install scikit-learn`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        images, labels = table[:, :64].reshape(-1, 8, 8), table[:, 64]
    else:  # pragma: no cover - depends on scikit-learn's layout
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = digits.images, digits.target
    return (images / 16.0).astype(np.float32), labels.astype(np.int64)


def render_digits(
    images: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, hue: torch.Tensor | None
) -> torch.Tensor:
    """Render 8x8 digits rotated, scaled and coloured into 28x28 frames.

    One bilinear resampling from the 8x8 source per frame (no accumulated blur). At scale 1
    the digit fills a centred 20x20 box; rotation is counter-clockwise as displayed (rows
    grow downwards) about the frame centre.

    Parameters
    ----------
    images
        ``(M, 8, 8)`` intensities in ``[0, 1]``.
    angle_deg, scale
        ``(M,)`` angle in degrees and scale.
    hue
        ``(M,)`` hue in ``[0, 1)`` for RGB output, or ``None`` for one grey channel.

    Returns
    -------
    torch.Tensor
        ``(M, C, 28, 28)`` in ``[0, 1]`` with ``C = 3`` when ``hue`` is given, else 1.
    """
    theta = torch.deg2rad(angle_deg.to(torch.float64))
    c, s = torch.cos(theta), torch.sin(theta)
    # Output pixel p (normalised, x right, y down) samples the source at R(-theta) p / scale,
    # where R(theta) = [[c, s], [-s, c]] turns counter-clockwise on screen; the 8x8 source
    # spans [-1, 1] in grid_sample's units, which is DIGIT_BOX / IMAGE_SIZE of the frame.
    zoom = (IMAGE_SIZE / DIGIT_BOX) / scale.to(torch.float64)
    affine = torch.zeros(len(theta), 2, 3, dtype=torch.float64)
    affine[:, 0, 0], affine[:, 0, 1] = c * zoom, -s * zoom
    affine[:, 1, 0], affine[:, 1, 1] = s * zoom, c * zoom
    grid = F.affine_grid(
        affine.float(), [len(theta), 1, IMAGE_SIZE, IMAGE_SIZE], align_corners=False
    )
    grey = F.grid_sample(
        images.unsqueeze(1).float(),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    if hue is None:
        return grey.clamp(0.0, 1.0)
    rgb = hsv_to_rgb(hue.float())  # (M, 3)
    return (grey * rgb[:, :, None, None]).clamp(0.0, 1.0)


class DigitsSequences(GeneratedDataset):
    """Sequences of upsampled scikit-learn digits under rotation, scaling and colouring.

    Each item is a dict:

    - ``x``: ``(T, C, 28, 28)`` float32 frames in ``[0, 1]``;
    - ``k``: the transformation index (into the ``transforms`` option);
    - ``label``: the digit (0-9);
    - ``factors``: ``(T, 3)`` float32 per-frame ``[angle in degrees, scale, hue]``.

    A sequence starts from a random angle (within ``initial_angle``), scale (in
    ``scale_start``) and hue; its transformation changes angle, scale and/or hue linearly
    from frame 0 to frame ``T-1`` by ``rotation_range``, ``scale_range``, ``hue_range``. The
    source images are split once (fixed seed) into train and test images, so the splits never
    share a digit image. Needs scikit-learn (its bundled digits); nothing is downloaded.
    """

    Config: ClassVar[type] = DigitsSequencesConfig
    source = "thesis 000 Sec. 4.5.2, 4.6.3 (transformed MNIST), local stand-in"
    item_keys = ("k", "label", "factors")
    factor_names: ClassVar[tuple[str, ...]] = ("angle", "scale", "hue")

    def generate(self) -> dict[str, np.ndarray]:
        cfg = self.config
        images, labels = _load_digit_images()
        order = np.random.default_rng(_SPLIT_SEED).permutation(len(images))
        n_test = round(cfg.test_fraction * len(images))
        pool = order[n_test:] if cfg.split == "train" else order[:n_test]

        rng = split_rng(cfg.seed, cfg.split)
        n, T = cfg.n_sequences, cfg.length
        source = rng.choice(pool, size=n)
        k = rng.integers(len(cfg.transforms), size=n)
        angle0 = rng.uniform(-cfg.initial_angle, cfg.initial_angle, size=n)
        scale0 = rng.uniform(*cfg.scale_start, size=n)
        hue0 = rng.uniform(0.0, 1.0, size=n)

        progress = np.arange(T) / (T - 1)  # 0 at frame 0, 1 at frame T-1
        moves = np.array(
            [
                [name in cfg.transforms[j].split("+") for name in BASE_TRANSFORMS]
                for j in range(len(cfg.transforms))
            ],
            dtype=np.float64,
        )[k]  # (n, 3)
        angle = angle0[:, None] + moves[:, :1] * cfg.rotation_range * progress
        scale = scale0[:, None] + moves[:, 1:2] * cfg.scale_range * progress
        hue = np.mod(hue0[:, None] + moves[:, 2:3] * cfg.hue_range * progress, 1.0)

        frames = render_digits(
            torch.from_numpy(images[np.repeat(source, T)]),
            torch.from_numpy(angle.reshape(-1)),
            torch.from_numpy(scale.reshape(-1)),
            torch.from_numpy(hue.reshape(-1)) if cfg.channels == 3 else None,
        )
        factors = np.stack([angle, scale, hue], axis=-1).astype(np.float32)
        return {
            "x": to_uint8(frames).reshape(n, T, cfg.channels, IMAGE_SIZE, IMAGE_SIZE),
            "k": k.astype(np.int64),
            "label": labels[source],
            "source_index": source.astype(np.int64),
            "factors": factors,
        }

    @property
    def num_transforms(self) -> int:
        """Number of transformations K (labels ``k`` are in ``0..K-1``)."""
        return len(self.config.transforms)

    @property
    def transform_names(self) -> tuple[str, ...]:
        """The transformation each label ``k`` stands for (``transforms``)."""
        return tuple(self.config.transforms)

    def transform_steps(self) -> torch.Tensor:
        """``(K, 3)`` change of ``[angle, scale, hue]`` per frame for each transformation."""
        cfg = self.config
        per_step = torch.tensor([cfg.rotation_range, cfg.scale_range, cfg.hue_range]) / (
            cfg.length - 1
        )
        mask = torch.tensor(
            [[name in t.split("+") for name in BASE_TRANSFORMS] for t in cfg.transforms],
            dtype=per_step.dtype,
        )
        return mask * per_step
