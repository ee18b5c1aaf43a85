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
    page = (tmp_path / "html" / "plugins" / "solver" / "mpa-lya.html").read_text()
    assert "lya_iters" in page and "Lyapunov" in page and "eigenflow.plugins" in page
    assert (tmp_path / "html" / "bibliography.html").is_file()


def test_every_builtin_plugin_has_its_page():
    """docs/plugins holds one stub per built-in plugin (regenerate with
    ``python -m eigenflow.sphinxext docs/plugins --distribution eigenflow``)."""
    from eigenflow.sphinxext import check_stubs, stub_files

    assert check_stubs(ROOT / "docs" / "plugins", "eigenflow") == []
    files = stub_files("eigenflow")
    assert files["solver/mpa-lya.rst"].endswith(".. eigenflow-plugin:: solver mpa-lya\n")
    assert "   solver/mpa-lya" in files["index.rst"].splitlines()


def test_stub_check_reports_missing_stale_and_extra_pages(tmp_path):
    from eigenflow.sphinxext import check_stubs, main

    assert main([str(tmp_path), "--distribution", "eigenflow"]) == 0
    assert check_stubs(tmp_path, "eigenflow") == []
    (tmp_path / "solver" / "svd.rst").unlink()
    (tmp_path / "solver" / "ns.rst").write_text("stale\n")
    (tmp_path / "solver" / "gone.rst").write_text("removed plugin\n")
    assert sorted(check_stubs(tmp_path, "eigenflow")) == [
        "solver/gone.rst: no such plugin registered",
        "solver/ns.rst: out of date",
        "solver/svd.rst: missing",
    ]
    assert main([str(tmp_path), "--distribution", "eigenflow", "--check"]) == 1
    assert main([str(tmp_path), "--distribution", "eigenflow"]) == 0
    assert check_stubs(tmp_path, "eigenflow") == []
