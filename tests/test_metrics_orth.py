"""Metrics ``condition-number`` (thesis 000, Eq. 3.47) and ``orthogonality-error`` (Eq. 3.51)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import eigenflow as ef


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_condition_number_of_matrices_and_layers():
    A = torch.randn(3, 5, 7, generator=_gen(0), dtype=torch.float64)
    ref = [np.linalg.cond(a) for a in A.numpy()]
    metric = ef.create("metric", "condition-number", reduce="none")
    np.testing.assert_allclose(metric(A), ref, rtol=1e-10)
    assert ef.create("metric", "condition-number")(A) == pytest.approx(np.mean(ref), rel=1e-10)
    assert ef.create("metric", "condition-number", reduce="max")(A) == pytest.approx(max(ref))
    conv = nn.Conv2d(2, 4, 3)
    W = conv.weight.detach().reshape(4, -1).double().numpy()
    assert ef.create("metric", "condition-number")(conv) == pytest.approx(
        np.linalg.cond(W), rel=1e-5
    )


def test_condition_number_of_covariances_and_features():
    X = torch.randn(2, 6, 50, generator=_gen(1), dtype=torch.float64)
    X[:, 0] *= 100.0
    covs = [np.cov(x, bias=True) for x in X.numpy()]
    ref = [np.linalg.cond(c) for c in covs]
    feats = ef.create("metric", "condition-number", input="features", reduce="none")
    np.testing.assert_allclose(feats(X), ref, rtol=1e-8)
    cov = ef.create("metric", "condition-number", input="covariance", reduce="none")
    np.testing.assert_allclose(cov(torch.from_numpy(np.stack(covs))), ref, rtol=1e-8)
    singular = torch.zeros(3, 3, dtype=torch.float64)
    singular[0, 0] = 1.0
    assert cov(singular) == [float("inf")]


def test_orthogonality_error():
    W = torch.randn(4, 9, generator=_gen(2), dtype=torch.float64)
    ref = np.linalg.norm(W.numpy() @ W.numpy().T - np.eye(4))
    metric = ef.create("metric", "orthogonality-error")
    assert metric(W) == pytest.approx(ref, rel=1e-12)
    assert metric(W.mT) == pytest.approx(ref, rel=1e-12)  # tall: W^T W - I
    Q = torch.linalg.qr(torch.randn(6, 6, generator=_gen(3), dtype=torch.float64))[0]
    assert metric(Q) < 1e-13
    assert metric(nn.Linear(5, 3)) > 0


def test_bad_inputs():
    with pytest.raises(ef.InputError, match="x"):
        ef.create("metric", "orthogonality-error")(torch.zeros(3))
    with pytest.raises(ef.InputError, match="weight"):
        ef.create("metric", "condition-number")(nn.ReLU())
    with pytest.raises(ef.ConfigError, match="input"):
        ef.create("metric", "condition-number", input="weights")
