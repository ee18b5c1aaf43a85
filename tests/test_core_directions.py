"""eigenflow.core.directions: the direction count of a fitted traversal."""

from __future__ import annotations

import types

import pytest
import torch

from eigenflow.core.directions import num_directions
from eigenflow.core.errors import InputError


def test_integer_attribute_wins():
    traversal = types.SimpleNamespace(num_directions=4, directions=torch.zeros(8, 2))
    assert num_directions(traversal) == 4


def test_columns_of_the_directions_tensor():
    count = num_directions(types.SimpleNamespace(directions=torch.zeros(8, 3)))
    assert count == 3 and type(count) is int


def test_unfitted_traversal_is_an_input_error():
    with pytest.raises(InputError, match="traversal: cannot tell how many directions"):
        num_directions(types.SimpleNamespace(num_directions=None, directions=None))
