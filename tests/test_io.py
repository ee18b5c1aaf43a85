"""Atomic file writing keeps the user's umask."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from eigenflow.core.io import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    current_umask,
)


@pytest.fixture
def umask():
    """Set a umask for the test and restore the previous one after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_of_a_plain_open(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    written = [
        atomic_write_bytes(tmp_path / "a.bin", b"x"),
        atomic_write_json(tmp_path / "a.json", {"a": 1}),
        atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "a.pt"),
    ]
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.json", "a.pt", "plain.txt"]
