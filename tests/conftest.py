"""Shared fixtures: an isolated registry state for tests that register plugins."""

from __future__ import annotations

import subprocess

import pytest
import torch
from helpers import ROOT

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


# --------------------------------------------------------------------------- a clean tree

# Written by any Python or pytest run, not by a test.
_CACHE_PARTS = ("__pycache__", ".pytest_cache")
_TREE_BEFORE = pytest.StashKey[set[str] | None]()


def source_tree_entries() -> set[str] | None:
    """``git status`` of the checkout, ignored paths included (``build/``, ``*.egg-info``,
    ``runs/`` are ignored but must not appear either); ``None`` outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return {
        line for line in done.stdout.splitlines() if not any(part in line for part in _CACHE_PARTS)
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        session.config.stash[_TREE_BEFORE] = source_tree_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests left files in the source tree (tests write under
    ``tmp_path``): compare ``git status`` before and after."""
    before = session.config.stash.get(_TREE_BEFORE, None)
    after = source_tree_entries() if before is not None else None
    if before is None or after is None:
        return
    new = sorted(after - before)
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the tests changed the source tree (git status):\n  " + "\n  ".join(new)
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
