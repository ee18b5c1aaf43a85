"""Shared fixtures: an isolated registry state for tests that register plugins."""

from __future__ import annotations

import pytest

import eigenflow.registry as reg


@pytest.fixture
def fresh_registry():
    """Rediscover plugins before and after the test (for tests that register plugins)."""
    reg.reset()
    yield
    reg.registry._extra_plugins.clear()
    reg.reset()
