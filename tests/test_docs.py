"""The documentation builds with warnings as errors and every reference resolved (a broken
docstring or a reference to an undocumented name fails the suite)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zlib

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
        "-n",
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
    # references resolve: to PyTorch's docs through the local inventory, to a plugin's page
    # for its class, to the documented object for a re-exported name
    api = (tmp_path / "html" / "api.html").read_text()
    assert 'href="https://pytorch.org/docs/stable/tensors.html#torch.Tensor"' in api
    assert 'href="plugins/solver/svd.html#eigenflow-solver-svd"' in catalogue
    concepts = (tmp_path / "html" / "concepts.html").read_text()
    assert 'href="api.html#eigenflow.core.errors.ConfigError"' in concepts


def _inventory(path):
    """``{name: (role, uri, display)}`` of an objects.inv file (version 2)."""
    data = path.read_bytes()
    header, _, body = data.partition(b"# The remainder of this file is compressed using zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2\n")
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        name, role, _priority, uri, display = line.split(" ", 4)
        entries[name] = (role, uri, display)
    return entries


def test_intersphinx_reads_local_inventories_only():
    """The build never fetches: every intersphinx inventory is a file in docs/."""
    tree = ast.parse((ROOT / "docs" / "conf.py").read_text())
    mapping = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "intersphinx_mapping"
    )
    mapping = ast.literal_eval(mapping)
    assert set(mapping) == {"python", "numpy", "torch"}
    for base, inventory in mapping.values():
        assert base.startswith("https://") and not inventory.startswith(("http:", "https:"))
        assert (ROOT / "docs" / inventory).is_file()


def test_inventories_are_current_and_follow_each_sites_url_scheme():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_inventories.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    folder = ROOT / "docs" / "_inventories"
    torch_inv, python_inv = _inventory(folder / "torch.inv"), _inventory(folder / "python.inv")
    numpy_inv = _inventory(folder / "numpy.inv")
    # the pages of pytorch.org/docs/stable, docs.python.org/3 and numpy.org/doc/stable
    assert torch_inv["torch.Tensor"][:2] == ("py:class", "tensors.html#torch.Tensor")
    assert torch_inv["torch.nn.Module"][1] == "generated/torch.nn.Module.html#torch.nn.Module"
    assert torch_inv["torch.dtype"][1] == "tensor_attributes.html#torch.dtype"
    assert torch_inv["torch.nn.modules.module.Module"] == (
        "py:class",
        "generated/torch.nn.Module.html#torch.nn.Module",
        "torch.nn.Module",
    )
    assert python_inv["pathlib.Path"][1] == "library/pathlib.html#pathlib.Path"
    assert (
        python_inv["collections.abc.Callable"][1]
        == "library/collections.abc.html#collections.abc.Callable"
    )
    assert numpy_inv["numpy.ndarray"][1] == "reference/generated/numpy.ndarray.html#numpy.ndarray"


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
