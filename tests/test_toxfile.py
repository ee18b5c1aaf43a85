"""toxfile.py: which tox environments can install their torch here."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import ROOT


@pytest.fixture(scope="module")
def toxfile():
    spec = importlib.util.spec_from_file_location("eigenflow_toxfile", ROOT / "toxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def wheels(tmp_path):
    for name in (
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "torch-2.14.1-cp312-cp312-manylinux_2_28_x86_64.whl",  # a CUDA build: not taken
        "torchvision-0.28.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_torch_factor(toxfile):
    assert toxfile.torch_factor("py311-torch213") == "2.13"
    assert toxfile.torch_factor("py310-torch24") == "2.4"
    assert toxfile.torch_factor("torch214-py312") == "2.14"
    assert toxfile.torch_factor("lint") is None
    assert toxfile.torch_factor("py311-torchvision") is None


def test_torch_version_from_deps_or_name(toxfile):
    assert toxfile.torch_version("docs", ["sphinx", "torch==2.13.*"]) == "2.13"
    assert toxfile.torch_version("py311-torch24", ["torch == 2.4.1"]) == "2.4"
    assert toxfile.torch_version("py311-torch24", ["pytest"]) == "2.4"
    assert toxfile.torch_version("lint", ["ruff>=0.5", "torchvision==0.28"]) is None


def test_local_cpu_wheel(toxfile, wheels):
    found = toxfile.local_cpu_wheel("2.13", (3, 11), [wheels])
    assert found is not None and found.name.startswith("torch-2.13.0+cpu-cp311")
    assert toxfile.local_cpu_wheel("2.13", (3, 12), [wheels]) is None  # other Python
    assert toxfile.local_cpu_wheel("2.14", (3, 12), [wheels]) is None  # not a CPU build
    assert toxfile.local_cpu_wheel("2.1", (3, 11), [wheels]) is None  # 2.1 is not 2.13


def test_skip_reason(toxfile, wheels, monkeypatch):
    monkeypatch.delenv(toxfile.ANY_TORCH_ENV, raising=False)
    assert toxfile.skip_reason("py311-torch213", (3, 11), [wheels]) is None
    assert toxfile.skip_reason("lint", (3, 11), []) is None
    assert toxfile.skip_reason("docs", (3, 11), [wheels], ["torch==2.13.*"]) is None
    assert "torch 2.13 for Python 3.12" in toxfile.skip_reason(
        "docs", (3, 12), [wheels], ["torch==2.13.*"]
    )
    reason = toxfile.skip_reason("py312-torch214", (3, 12), [wheels])
    assert reason.startswith(f"no CPU wheel of torch 2.14 for Python 3.12 in {wheels}; ")
    assert "EIGENFLOW_TOX_ANY_TORCH=1" in reason
    monkeypatch.setenv(toxfile.ANY_TORCH_ENV, "1")
    assert toxfile.skip_reason("py312-torch214", (3, 12), [wheels]) is None


def test_find_links_reads_the_environment(toxfile, wheels, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", f"file://{wheels} /no/such/folder")
    assert toxfile.find_links()[0] == wheels
