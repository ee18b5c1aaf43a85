"""What every consumer of a fitted traversal asks first: how many directions it has.

Shared by the traversal metrics (``traversals``) and the path-length metric
(``gan_geometry``), which accept any fitted traversal, built-in or a user's own.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputError

__all__ = ["num_directions"]


def num_directions(traversal: Any) -> int:
    """The number ``K`` of directions of a fitted ``traversal``.

    Its ``num_directions`` attribute when that is an integer, else the column count of its
    ``(d, K)`` ``directions`` tensor.

    Raises
    ------
    InputError
        When the traversal has neither (e.g. it is not fitted yet).
    """
    count = getattr(traversal, "num_directions", None)
    if isinstance(count, int):
        return count
    directions = getattr(traversal, "directions", None)
    if isinstance(directions, torch.Tensor):
        return int(directions.shape[1])
    raise InputError("traversal: cannot tell how many directions it has (fit it first)")
