"""The ``gcp`` pipeline needs a dataset of (image, label) pairs and says so up front."""

from __future__ import annotations

import pytest
import torch

import eigenflow as ef
import eigenflow.registry as reg
from eigenflow.cli import main
from eigenflow.core.component import Dataset
from eigenflow.core.errors import ConfigError, PipelineSpecError

FAST = {"steps": 1, "baseline": False}


@pytest.mark.parametrize(
    "name", ["dsprites", "digits-sequences", "synthetic-linear", "shapes3d-lite"]
)
def test_a_dataset_without_pairs_is_refused_at_validation(name):
    with pytest.raises(PipelineSpecError) as info:
        ef.Pipeline.from_config({"pipeline": "gcp", "dataset": name})
    (error,) = info.value.errors
    assert error == (
        f"dataset: {name!r} is invalid: gcp needs a dataset of (image, label) pairs: a float "
        f"tensor (C, H, W) and an integer class label; the items of {name!r} are dicts "
        "(datasets that give such pairs: covariance-textures)"
    )


def test_the_cli_refuses_it_before_writing(tmp_path, capsys):
    # it used to pass validation, write run.json and stop with KeyError: 0
    out = tmp_path / "run"
    assert main(["run", "gcp", "--set", "dataset=dsprites", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyError" not in err
    assert "dataset: 'dsprites' is invalid: gcp needs a dataset of (image, label) pairs" in err
    assert not out.exists()


def test_other_problems_with_the_dataset_are_reported_as_before():
    with pytest.raises(PipelineSpecError) as info:
        ef.Pipeline.from_config(
            {"pipeline": "gcp", "dataset": "dsprite", "solver": {"name": "svd", "eps": 5.0}}
        )
    text = str(info.value)
    assert "dataset: unknown dataset 'dsprite'; did you mean 'dsprites'?" in text
    assert "solver" in text and "(image, label)" not in text


# --------------------------------------------------------------------------- undeclared items


class _Items(Dataset):
    """Items that the class does not declare (no return annotation): checked at run time."""

    items: tuple = ()

    def __init__(self, config=None, **options):
        super().__init__()
        self.config = self.make_config(config, options)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def _images(n: int = 16) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(3, 4, 4, generator=gen) for _ in range(n)]


class GoodPairs(_Items):
    """(image, int label) pairs, as a tuple of a tensor and a Python int."""

    items = tuple((x, i % 2) for i, x in enumerate(_images()))


class FlatImages(_Items):
    """Pairs whose images are (H, W), without channels."""

    items = tuple((x[0], i % 2) for i, x in enumerate(_images()))


class FloatLabels(_Items):
    """Pairs whose labels are floats."""

    items = tuple((x, float(i % 2)) for i, x in enumerate(_images()))


class ImagesOnly(_Items):
    """Images alone."""

    items = tuple(_images())


class Empty(_Items):
    """No items."""

    items = ()


class _Plugin:
    @reg.hookimpl
    def eigenflow_register(self, registry):
        for cls in (GoodPairs, FlatImages, FloatLabels, ImagesOnly, Empty):
            registry.add("dataset", cls, name=f"eftest-{cls.__name__.lower()}")


@pytest.fixture
def undeclared(fresh_registry):
    reg.register_plugin(_Plugin(), name="eftest-gcp-datasets")
    yield


def _run(name: str, out) -> dict:
    pipeline = ef.Pipeline.from_config({"pipeline": "gcp", "dataset": name, **FAST})
    return pipeline.run(out=out, device="cpu", quiet=True)


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("eftest-flatimages", "tuples (tensor (4, 4), int)"),
        ("eftest-floatlabels", "tuples (tensor (3, 4, 4), float)"),
        ("eftest-imagesonly", "tensors of shape (3, 4, 4)"),
    ],
)
def test_undeclared_items_are_checked_when_the_run_starts(undeclared, tmp_path, name, found):
    with pytest.raises(ConfigError) as info:
        _run(name, tmp_path)
    message = str(info.value)
    assert message.startswith(f"option 'dataset' = {name!r} is invalid: gcp needs a dataset")
    assert f"the items of {name!r} are {found} " in message
    # a class that declares nothing is not listed among those that qualify
    assert message.endswith("(datasets that give such pairs: covariance-textures)")


def test_an_empty_dataset_is_refused(undeclared, tmp_path):
    with pytest.raises(ConfigError, match="'eftest-empty' is invalid: it has no items"):
        _run("eftest-empty", tmp_path)


def test_undeclared_pairs_with_integer_labels_run(undeclared, tmp_path):
    summary = _run("eftest-goodpairs", tmp_path)
    result = summary["stages"][0]["result"]
    assert result["num_classes"] == 2 and result["train_size"] + result["test_size"] == 16
