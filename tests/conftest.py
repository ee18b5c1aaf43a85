"""Shared fixtures: an isolated registry state for tests that register plugins."""

from __future__ import annotations

import pytest
import torch

import eigenflow.registry as reg

# The suite runs many small tensor operations: one intra-op thread avoids thread start-up and
# oversubscription costs (measured: the learned-traversal tests 111 s -> 4 s on a busy 2-core
# machine). Tests that need more threads set them themselves.
torch.set_num_threads(1)


@pytest.fixture
def fresh_registry():
    """Rediscover plugins before and after the test (for tests that register plugins)."""
    reg.reset()
    yield
    reg.registry._extra_plugins.clear()
    reg.reset()
