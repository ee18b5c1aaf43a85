"""The documentation builds with warnings as errors (a broken docstring fails the suite)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT

pytest.importorskip("sphinx", reason="the docs extra is not installed")
pytest.importorskip("furo", reason="the docs extra is not installed")


@pytest.mark.docs
def test_sphinx_build_has_no_warnings(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        str(ROOT / "docs"),
        str(tmp_path / "html"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "html" / "writing-a-plugin.html").is_file()
    catalogue = (tmp_path / "html" / "catalogue.html").read_text()
    assert "covariance-pooling" in catalogue and "svd" in catalogue
