"""Sampling factor indices for datasets rendered from discrete generative factors: single
images (independent uniform factors) or sequences along one factor at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core.errors import ConfigError
from ._base import split_rng

__all__ = [
    "SequenceFactorsMixin",
    "check_sequence_factors",
    "sample_factor_classes",
    "sample_factor_values",
]


class SequenceFactorsMixin:
    """``num_transforms`` and ``transform_names`` of a factor dataset made of sequences (the
    attributes the runtime and the sequence pipelines look for, as on ``digits-sequences``);
    a dataset of single images has neither (reading them raises ``AttributeError``)."""

    @property
    def num_transforms(self) -> int:
        """Number of transformations K: the factors sequences move along (``k`` in
        ``0..K-1``)."""
        return len(self.transform_names)

    @property
    def transform_names(self) -> tuple[str, ...]:
        """The factor each label ``k`` moves (``sequence_factors``)."""
        cfg = self.config  # type: ignore[attr-defined]
        if cfg.sequence_length is None:
            raise AttributeError("a dataset of single images has no transformations")
        return tuple(cfg.sequence_factors)


def check_sequence_factors(
    names: Sequence[str],
    sizes: Sequence[int],
    circular: Sequence[bool],
    chosen: Sequence[str],
    length: int | None,
) -> None:
    """Raise :class:`ConfigError` if ``chosen`` factors cannot carry sequences of ``length``."""
    if length is None:
        return
    if not chosen or len(set(chosen)) != len(chosen) or any(c not in names for c in chosen):
        raise ConfigError(
            f"option 'sequence_factors' = {tuple(chosen)!r} is invalid: expected distinct "
            f"names among {', '.join(names)}"
        )
    for name in chosen:
        i = list(names).index(name)
        if not circular[i] and sizes[i] < length:
            raise ConfigError(
                f"option 'sequence_length' = {length} is too long for factor {name!r}, which "
                f"has {sizes[i]} values (and does not wrap around)"
            )


def sample_factor_classes(
    rng: np.random.Generator,
    n: int,
    sizes: Sequence[int],
    circular: Sequence[bool],
    length: int | None,
    sequence_axes: Sequence[int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Factor class indices for ``n`` images or ``n`` sequences.

    Parameters
    ----------
    rng
        The generator.
    n
        Number of items.
    sizes, circular
        Per factor: the number of values and whether it wraps around (angles, hues).
    length
        ``None`` for single images, else the sequence length ``T``.
    sequence_axes
        Indices of the factors a sequence may move along; ``k`` indexes this list.

    Returns
    -------
    tuple
        ``(classes, k)``: ``classes`` is ``(n, F)`` for images or ``(n, T, F)`` for sequences; ``k``
        is ``(n,)`` (the moving factor's position in ``sequence_axes``) or ``None`` for images.
        Along a sequence the moving factor steps up by one value per frame.
    """
    sizes_arr = np.asarray(sizes)
    start = rng.integers(0, sizes_arr, size=(n, len(sizes)))
    if length is None:
        return start, None
    k = rng.integers(len(sequence_axes), size=n)
    axis = np.asarray(sequence_axes)[k]
    # A non-wrapping factor must start low enough to take `length` steps up.
    room = np.where(np.asarray(circular)[axis], sizes_arr[axis], sizes_arr[axis] - length + 1)
    start[np.arange(n), axis] = rng.integers(0, room)
    steps = np.arange(length)
    classes = np.repeat(start[:, None, :], length, axis=1)
    moved = classes[np.arange(n), :, axis] + steps  # (n, T)
    classes[np.arange(n), :, axis] = np.mod(moved, sizes_arr[axis][:, None])
    return classes, k


def sample_factor_values(
    cfg: Any, names: Sequence[str], values: Sequence[np.ndarray], circular: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Draw the factor classes of a dataset config and look up their values.

    ``cfg`` carries ``seed``, ``split``, ``n_samples``, ``sequence_length`` and
    ``sequence_factors``; ``values[i]`` lists the values of factor ``names[i]``. Returns the
    classes ``(N, [T,] F)``, the varying factor ``k`` of each sequence (``None`` for single
    images) and the values ``(N * [T], F)`` in row order.
    """
    sizes = [len(v) for v in values]
    axes = [list(names).index(f) for f in cfg.sequence_factors]
    rng = split_rng(cfg.seed, cfg.split)
    classes, k = sample_factor_classes(
        rng, cfg.n_samples, sizes, circular, cfg.sequence_length, axes
    )
    flat = classes.reshape(-1, len(names))
    factors = np.stack([values[i][flat[:, i]] for i in range(len(names))], axis=-1)
    return classes, k, factors
