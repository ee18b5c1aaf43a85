"""``frechet-distance``: the distance against closed forms and scipy, and its classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import eigenflow as ef
from eigenflow.core.errors import InputError
from eigenflow.plugins.gans.frechet import frechet_distance, gaussian_statistics, psd_sqrt


def _spd(d, rank=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=gen, dtype=torch.float64)
    return a @ a.T / (rank or d)


def _reference_eigh(mu1, s1, mu2, s2):
    """tr (S1 S2)^(1/2) from the eigenvalues of S1^(1/2) S2 S1^(1/2), all by numpy eigh."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross)


@pytest.mark.parametrize(("rank", "tol"), [(None, 1e-10), (3, 1e-6)])
def test_zero_for_identical_statistics(rank, tol):
    # singular covariances: sqrt of rounding-level eigenvalues, about d sqrt(eps) |S|
    s = _spd(6, rank)
    mu = torch.linspace(-1, 1, 6, dtype=torch.float64)
    assert abs(float(frechet_distance(mu, s, mu, s))) < tol * float(s.trace())


def test_diagonal_covariances_match_the_closed_form():
    a = torch.tensor([0.5, 2.0, 3.0, 1e-3], dtype=torch.float64)
    b = torch.tensor([1.5, 0.1, 3.0, 4.0], dtype=torch.float64)
    mu1 = torch.tensor([0.0, 1.0, -2.0, 0.5], dtype=torch.float64)
    mu2 = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    expected = float((mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    got = float(frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_general_covariances_match_scipy_sqrtm_and_an_eigh_reference(seed):
    scipy_linalg = pytest.importorskip("scipy.linalg")  # scipy comes with scikit-learn
    s1, s2 = _spd(7, seed=seed), _spd(7, seed=seed + 10) * 2.0
    gen = torch.Generator().manual_seed(seed)
    mu1, mu2 = torch.randn(7, generator=gen, dtype=torch.float64), torch.zeros(7).double()
    got = float(frechet_distance(mu1, s1, mu2, s2))
    n1, n2, m1, m2 = s1.numpy(), s2.numpy(), mu1.numpy(), mu2.numpy()
    cross = np.trace(scipy_linalg.sqrtm(n1 @ n2)).real
    scipy_value = float(((m1 - m2) ** 2).sum() + np.trace(n1) + np.trace(n2) - 2 * cross)
    assert got == pytest.approx(scipy_value, rel=1e-9)
    assert got == pytest.approx(_reference_eigh(m1, n1, m2, n2), rel=1e-10)


def test_rank_deficient_covariances_match_the_eigh_reference():
    s1, s2 = _spd(8, rank=3, seed=4), _spd(8, rank=5, seed=5)
    mu = torch.zeros(8, dtype=torch.float64)
    got = float(frechet_distance(mu, s1, mu, s2))
    assert got == pytest.approx(_reference_eigh(mu.numpy(), s1.numpy(), mu.numpy(), s2.numpy()))
    assert got > 0


def test_the_product_form_root_is_symmetric_psd_and_squares_back():
    s1, s2 = _spd(5, seed=1), _spd(5, seed=2)
    root1 = psd_sqrt(s1)
    m = root1 @ s2 @ root1
    r = psd_sqrt(m)
    torch.testing.assert_close(r, r.T, rtol=0, atol=1e-12)
    assert torch.linalg.eigvalsh(r).min() > -1e-12
    torch.testing.assert_close(r @ r, 0.5 * (m + m.T), rtol=1e-10, atol=1e-12)
    # the solver option is used: another eigen-based solver agrees, Newton-Schulz only roughly
    mu = torch.zeros(5, dtype=torch.float64)
    exact = float(frechet_distance(mu, s1, mu, s2))
    assert float(frechet_distance(mu, s1, mu, s2, solver="svd-pade")) == pytest.approx(exact)
    rough = float(frechet_distance(mu, s1, mu, s2, solver={"name": "ns", "iters": 3}))
    assert rough != pytest.approx(exact, rel=1e-6)


def test_gaussian_statistics_are_the_unbiased_mean_and_covariance():
    x = torch.randn(30, 4, dtype=torch.float64)
    mu, s = gaussian_statistics(x)
    np.testing.assert_allclose(mu.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10)


def test_metric_on_features_and_input_errors():
    metric = ef.create("metric", "frechet-distance")
    x = torch.randn(40, 3, dtype=torch.float64)
    assert metric(x, x) == pytest.approx(0.0, abs=1e-10)
    shifted = metric(x, x + 2.0)
    assert shifted == pytest.approx(3 * 4.0, rel=1e-9)  # the covariances are equal
    with pytest.raises(InputError, match="fake: expected images"):
        metric(torch.randn(5), x)
    with pytest.raises(InputError, match="do not match"):
        metric(x, torch.randn(40, 4))
    with pytest.raises(InputError, match="sigma2: expected shape"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))


def test_classifier_features_are_cached_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("EIGENFLOW_CACHE", str(tmp_path))
    options = {
        "dataset": {"name": "digits-sequences", "n_sequences": 40, "cache": False},
        "train_steps": 3,
        "batch_size": 16,
        "feature_dim": 8,
        "width": 4,
        "real_items": 64,
    }
    metric = ef.create("metric", "frechet-distance", **options)
    images = torch.rand(20, 3, 28, 28)
    feats = metric.features(images)
    assert feats.shape == (20, 8) and feats.dtype == torch.float64
    path = metric.cache_path()
    assert path.exists() and path.is_relative_to(tmp_path)
    assert metric.info["heads"] == [10] and len(metric.info["test_accuracy"]) == 1
    again = ef.create("metric", "frechet-distance", **options)
    torch.testing.assert_close(again.features(images), feats)  # loaded, not retrained
    value = metric(images)  # against the test split's statistics
    assert np.isfinite(value) and value > 0
    assert metric(images, images) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(InputError, match="3 channels"):
        metric.features(torch.rand(4, 1, 28, 28))
