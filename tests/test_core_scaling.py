"""Scale-safe helpers of ``eigenflow.core``: division by the largest entry, symmetrisation."""

from __future__ import annotations

import pytest
import torch

from eigenflow.core.scaling import divide_by_peak, peak_magnitude
from eigenflow.core.spectral import symmetrize


@pytest.mark.parametrize("magnitude", [1e-30, 1.0, 1e30])
def test_divide_by_peak_leaves_entries_of_magnitude_at_most_one(magnitude):
    A = torch.tensor([[[3.0, -4.0], [1.0, 2.0]], [[0.5, 0.25], [-0.125, 0.0]]]) * magnitude
    unit, peak = divide_by_peak(A)
    assert peak.shape == (2, 1, 1)
    expected = torch.tensor([4.0, 0.5]) * magnitude  # float64 reference of max|A|
    torch.testing.assert_close(peak.flatten().double(), expected.double(), rtol=1e-6, atol=0)
    assert unit.abs().amax(dim=(-2, -1)).tolist() == [1.0, 1.0]
    torch.testing.assert_close(unit * peak, A, rtol=1e-6, atol=0)


def test_zero_matrix_stays_zero_and_nan_stays_visible():
    unit, peak = divide_by_peak(torch.zeros(1, 3, 3))
    assert (unit == 0).all() and peak.item() == torch.finfo(torch.float32).tiny
    assert peak_magnitude(torch.tensor([[float("nan"), 1.0]])).isnan().all()


def test_symmetrize_does_not_overflow_above_half_the_range():
    big = torch.finfo(torch.float32).max * 0.75
    A = torch.tensor([[big, big], [big, 0.0]])
    S = symmetrize(A)
    assert torch.isfinite(S).all() and S[0, 1].item() == pytest.approx(big, rel=1e-6)
    X = torch.randn(4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(symmetrize(X), (X + X.mT) / 2, rtol=0, atol=0)
