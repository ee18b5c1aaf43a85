"""Generated datasets: determinism, factor labels checked against independent measurements
(moments, scipy rotations, colorsys), the on-disk cache, and configuration errors."""

from __future__ import annotations

import colorsys
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import eigenflow as ef
from eigenflow.core.errors import ConfigError, NotSupportedError
from eigenflow.plugins.datasets import CACHE_ENV, cache_root
from eigenflow.plugins.datasets import digits as digits_module
from eigenflow.plugins.datasets.dsprites import SHAPE_RADIUS

SMALL = {
    "digits-sequences": {"n_sequences": 24, "length": 5},
    "dsprites": {"n_samples": 40, "image_size": 32},
    "shapes3d-lite": {"n_samples": 16, "sequence_length": 4},
    "synthetic-linear": {"n_samples": 200},
    "synthetic-nonlinear": {"n_samples": 200},
}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Every test caches under its own temporary folder."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def _make(name: str, **options):
    return ef.create("dataset", name, **{**SMALL[name], **options})


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- all datasets


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_data_other_seed_differs(name):
    first = _make(name, seed=3, cache=False).batch()
    again = _make(name, seed=3, cache=False).batch()
    other = _make(name, seed=4, cache=False).batch()
    _assert_same(first, again)
    assert not torch.equal(first["x"], other["x"])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_items_batches_and_dataloader_agree(name):
    ds = _make(name)
    whole = ds.batch()
    item = ds[len(ds) - 1]
    for key, value in item.items():
        assert torch.equal(value, whole[key][-1]), key
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
    first = next(iter(loader))
    for key in item:
        assert torch.equal(first[key], whole[key][:4]), key
    assert whole["x"].dtype == torch.float32
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_cache_is_written_once_and_reused(name, tmp_path, monkeypatch):
    ds = _make(name)
    path = ds.cache_path
    assert path is not None and path.is_file()
    assert path.parent == tmp_path / "cache" / "datasets"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    def refuse(self):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(type(ds), "generate", refuse)
    cached = _make(name)
    assert cached.cache_path == path
    _assert_same(ds.batch(), cached.batch())
    # A different option is a different file; a different split too.
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert _make(name, seed=1).cache_path != path
    assert _make(name, split="test").cache_path != path


def test_default_cache_is_outside_the_repository(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    root = cache_root()
    repo = Path(ef.__file__).resolve().parents[1]
    assert root == Path.home() / ".cache" / "eigenflow" / "datasets"
    assert repo not in root.resolve().parents
    ds = ef.create("dataset", "synthetic-linear", n_samples=20, cache=False)
    assert ds.cache_path is None


def test_cache_dir_option_and_unreadable_cache(tmp_path):
    ds = _make("synthetic-linear", cache_dir=str(tmp_path / "mine"))
    assert ds.cache_path.parent == tmp_path / "mine"
    ds.cache_path.write_bytes(b"not an npz file")
    with pytest.warns(ef.core.errors.EigenflowWarning, match="unreadable cache"):
        again = _make("synthetic-linear", cache_dir=str(tmp_path / "mine"))
    _assert_same(ds.batch(), again.batch())


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("digits-sequences", {"transforms": ["rotation", "shear"]}, "transforms"),
        ("digits-sequences", {"channels": 1}, "colouring"),
        ("digits-sequences", {"length": 1}, "length"),
        ("dsprites", {"sequence_length": 8, "sequence_factors": ["scale"]}, "too long"),
        ("dsprites", {"sequence_length": 3, "sequence_factors": ["colour"]}, "sequence_factors"),
        ("shapes3d-lite", {"split": "validation"}, "split"),
        ("synthetic-linear", {"stretch": 0.0}, "stretch"),
    ],
)
def test_bad_options_are_clear_errors(name, options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ef.create("dataset", name, **options)


# --------------------------------------------------------------------------- digits-sequences


def _moments(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centroid (x, y_up), covariance (x, y_up) and mass of an image."""
    rows, cols = np.indices(img.shape)
    x, y = cols + 0.5 - img.shape[1] / 2, -(rows + 0.5 - img.shape[0] / 2)
    m = img.sum()
    c = np.array([(img * x).sum(), (img * y).sum()]) / m
    dx, dy = x - c[0], y - c[1]
    cov = (
        np.array(
            [
                [(img * dx * dx).sum(), (img * dx * dy).sum()],
                [(img * dx * dy).sum(), (img * dy * dy).sum()],
            ]
        )
        / m
    )
    return c, cov, m


def test_digits_shapes_labels_and_splits():
    from sklearn.datasets import load_digits

    ds = _make("digits-sequences")
    batch = ds.batch()
    assert batch["x"].shape == (24, 5, 3, 28, 28)
    assert 0.0 <= batch["x"].min() and batch["x"].max() <= 1.0
    assert set(batch["k"].tolist()) <= {0, 1, 2}
    target = load_digits().target
    assert np.array_equal(batch["label"].numpy(), target[ds.arrays["source_index"].numpy()])
    test = _make("digits-sequences", split="test", n_sequences=200)
    train = _make("digits-sequences", n_sequences=200)
    shared = set(test.arrays["source_index"].tolist()) & set(train.arrays["source_index"].tolist())
    assert not shared


def test_digits_rotation_matches_scipy_and_moments():
    from scipy import ndimage

    ds = _make(
        "digits-sequences",
        transforms=["rotation"],
        channels=1,
        n_sequences=6,
        length=4,
        rotation_range=60.0,
    )
    x = ds.batch()["x"][:, :, 0].numpy()
    angles = ds.batch()["factors"][..., 0].numpy()
    for seq, ang in zip(x, angles):
        for t in range(1, 4):
            turn = ang[t] - ang[0]
            assert turn == pytest.approx(20.0 * t, abs=1e-4)
            expected = ndimage.rotate(seq[0], turn, reshape=False, order=1)
            corr = np.corrcoef(expected.ravel(), seq[t].ravel())[0, 1]
            assert corr > 0.95
            # The second-moment tensor turns by the same angle: C_t = R C_0 R^T (y up).
            _, c0, _ = _moments(seq[0])
            _, ct, _ = _moments(seq[t])
            r = math.radians(turn)
            R = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
            np.testing.assert_allclose(ct, R @ c0 @ R.T, atol=0.08 * np.abs(c0).max())


def test_digits_scaling_and_colouring_factors():
    ds = _make("digits-sequences", transforms=["scaling", "colouring"], n_sequences=30, length=4)
    batch = ds.batch()
    x, k, f = batch["x"].numpy(), batch["k"].numpy(), batch["factors"].numpy()
    for seq, kind, fac in zip(x, k, f):
        grey = seq.max(axis=1)
        if kind == 0:  # scaling: the radius of gyration grows with the scale
            _, c0, m0 = _moments(grey[0])
            _, c3, m3 = _moments(grey[3])
            ratio = math.sqrt(np.trace(c3) / np.trace(c0))
            assert ratio == pytest.approx(fac[3, 1] / fac[0, 1], rel=0.05)
            assert m3 / m0 == pytest.approx((fac[3, 1] / fac[0, 1]) ** 2, rel=0.1)
            assert np.allclose(fac[:, 2], fac[0, 2])
        else:  # colouring: the colour of the brightest pixel follows the hue (colorsys)
            for t in range(4):
                r, c = np.unravel_index(grey[t].argmax(), grey[t].shape)
                rgb = seq[t, :, r, c] / seq[t, :, r, c].max()
                expected = colorsys.hsv_to_rgb(float(fac[t, 2]), 1.0, 1.0)
                np.testing.assert_allclose(rgb, expected, atol=0.03)
            step = np.mod(np.diff(fac[:, 2]), 1.0)
            np.testing.assert_allclose(step, 0.5 / 3, atol=1e-5)
            assert np.allclose(fac[:, 1], fac[0, 1])


def test_digits_without_scikit_learn_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec

    def missing(name, *args, **kwargs):
        return None if name == "sklearn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(NotSupportedError, match="scikit-learn"):
        _make("digits-sequences", cache=False)
    assert digits_module.BASE_TRANSFORMS == ("rotation", "scaling", "colouring")


# --------------------------------------------------------------------------- dsprites


def test_dsprites_position_scale_and_orientation():
    size = 64
    ds = _make("dsprites", n_samples=150, image_size=size)
    batch = ds.batch()
    masks = batch["x"][:, 0].numpy() > 0.5
    factors = batch["factors"].numpy()
    margin = SHAPE_RADIUS * size
    rows, cols = np.indices((size, size))
    for mask, (shape, scale, angle, px, py) in zip(masks, factors):
        area = mask.sum()
        cx, cy = (cols[mask] + 0.5).mean(), (rows[mask] + 0.5).mean()
        assert cx == pytest.approx(margin + px * (size - 2 * margin), abs=0.5)
        assert cy == pytest.approx(margin + py * (size - 2 * margin), abs=0.5)
        r = SHAPE_RADIUS * size * scale
        if shape == 0:  # square inscribed in the disc of radius r
            assert area == pytest.approx(2 * r * r, rel=0.12)
        elif shape == 1:  # ellipse with semi-axes r and r / 2
            assert area == pytest.approx(math.pi * r * r / 2, rel=0.12)
            # Its major axis points along the orientation (counter-clockwise, y up).
            dx, dy = cols[mask] + 0.5 - cx, -(rows[mask] + 0.5 - cy)
            cov = np.cov(np.stack([dx, dy]))
            _, v = np.linalg.eigh(cov)
            major = math.atan2(v[1, 1], v[0, 1])
            diff = (major - angle) % math.pi
            assert min(diff, math.pi - diff) < 0.12


def test_dsprites_sequences_move_one_factor():
    ds = _make("dsprites", n_samples=30, sequence_length=4)
    batch = ds.batch()
    classes, k = batch["classes"].numpy(), batch["k"].numpy()
    assert batch["x"].shape == (30, 4, 1, 32, 32)
    axes = [1, 2, 3, 4]  # scale, orientation, x, y
    for seq, kind in zip(classes, k):
        moving = axes[kind]
        steps = np.diff(seq, axis=0)
        others = np.delete(steps, moving, axis=1)
        assert not others.any()
        n = {1: 6, 2: 40, 3: 32, 4: 32}[moving]
        assert np.all(np.mod(steps[:, moving], n) == 1)


# --------------------------------------------------------------------------- shapes3d-lite


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*rgb)[0]


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def test_shapes3d_lite_colours_and_sequences():
    ds = _make("shapes3d-lite", n_samples=24, sequence_length=4, image_size=32)
    batch = ds.batch()
    x, f, k = batch["x"].numpy(), batch["factors"].numpy(), batch["k"].numpy()
    assert x.shape == (24, 4, 3, 32, 32)
    scale_checked = 0
    for seq, fac, kind in zip(x, f, k):
        for t in range(4):
            wall, floor = seq[t, :, 1, 1], seq[t, :, 30, 1]
            centre = seq[t, :, 24, 16]  # inside every object at every scale
            assert _hue_distance(_hue(wall), fac[t, 1]) < 0.02
            assert _hue_distance(_hue(floor), fac[t, 0]) < 0.02
            assert _hue_distance(_hue(centre), fac[t, 2]) < 0.02
        moving = np.flatnonzero(np.any(np.diff(fac, axis=0) != 0, axis=0))
        assert moving.tolist() == [kind]
        distinct = min(_hue_distance(fac[0, 2], fac[0, 0]), _hue_distance(fac[0, 2], fac[0, 1]))
        if kind == 3 and distinct > 0.05:  # scale: the object's pixels grow in number
            sizes = [
                sum(
                    _hue_distance(_hue(seq[t, :, r, c]), fac[0, 2]) < 0.02
                    for r in range(32)
                    for c in range(32)
                )
                for t in range(4)
            ]
            assert sizes == sorted(set(sizes)), sizes
            scale_checked += 1
    assert scale_checked > 0


# --------------------------------------------------------------------------- synthetic


def test_synthetic_linear_embedding_and_split():
    from scipy.spatial.transform import Rotation

    ds = _make("synthetic-linear", n_samples=1000)
    axis = np.array([1.0, -1.0, 1.0]) / math.sqrt(3.0)
    R = Rotation.from_rotvec(axis * math.pi / 4).as_matrix()
    A = R @ np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_allclose(ds.matrix.numpy(), A, atol=1e-12)
    batch = ds.batch()
    np.testing.assert_allclose(batch["x"].numpy(), batch["factors"].numpy() @ A.T, atol=1e-5)
    w = batch["factors"].numpy()
    assert w.min() >= 0 and w.max() <= 1
    parts = {
        s: _make("synthetic-linear", n_samples=1000, split=s).batch()["factors"].numpy()
        for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    rows = {s: {tuple(r) for r in parts[s]} for s in parts}
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


def test_synthetic_nonlinear_is_a_fixed_nonlinear_mlp():
    ds = _make("synthetic-nonlinear", n_samples=2000)
    batch = ds.batch()
    x, w = batch["x"].numpy().astype(np.float64), batch["factors"].numpy().astype(np.float64)
    assert x.shape == (1600, 6)
    # Every split embeds through the same map: equal factors give equal data.
    test = _make("synthetic-nonlinear", n_samples=2000, split="test").batch()
    p = ds.mlp_parameters()
    manual = np.tanh(test["factors"].numpy() @ p["W1"].T + p["b1"]) @ p["W2"].T + p["b2"]
    np.testing.assert_allclose(test["x"].numpy(), manual, atol=1e-5)
    # Clearly non-linear: an affine fit leaves a residual.
    design = np.hstack([w, np.ones((len(w), 1))])
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    residual = np.linalg.norm(x - design @ coef) / np.linalg.norm(x - x.mean(0))
    assert residual > 0.02
