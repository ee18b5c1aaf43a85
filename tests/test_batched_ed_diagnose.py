"""benchmarks/batched_ed_gpu_diagnose.py: it recognises the eigenvector faults it is meant to
localise (a lost or repeated column) and runs end to end (under the Triton interpreter here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark_script

HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(scope="module")
def diag():
    return load_benchmark_script("batched_ed_gpu_diagnose")


def exact_eigh(n: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, n, n, dtype=torch.float64, generator=g)
    A = X @ X.mT / n
    L, V = torch.linalg.eigh(A)
    return A, L, V


def test_correct_eigenvectors_are_not_flagged(diag) -> None:
    A, L, V = exact_eigh(6, 4, seed=1)
    summary = diag.summarise(A, L, V, torch.ones(4, dtype=torch.bool))
    assert summary["wrong (orthogonality > 1e-3)"] == 0 and "first wrong" not in summary
    assert summary["max orth error"] < 1e-12 and summary["max rec error"] < 1e-12


def test_repeated_column_is_found(diag) -> None:
    A, L, V = exact_eigh(6, 3, seed=2)
    V = V.clone()
    V[1, :, 4] = V[1, :, 2]  # matrix 1 loses eigenvector 4 and has eigenvector 2 twice
    summary = diag.summarise(A, L, V, torch.ones(3, dtype=torch.bool))
    assert summary["wrong (orthogonality > 1e-3)"] == 1
    assert summary["wrong indices (first 20)"] == [1]
    # V^T V then has the eigenvalues 2 and 0: ||V^T V - I||_2 = 1, as on the GPU run
    assert summary["max orth error"] == pytest.approx(1.0, abs=1e-12)
    first = summary["first wrong"]
    assert first["index"] == 1 and first["repeated column pairs"] == [[2, 4]]
    assert first["zero columns"] == [] and first["eigenvalues ascending"]
    assert first["eigenvalue error"] < 1e-14  # the eigenvalues are right, as they were


def test_zero_column_and_unsorted_values_are_found(diag) -> None:
    _, L, V = exact_eigh(5, 1, seed=3)
    V, L = V[0].clone(), L[0].flip(0)
    V[:, 0] = 0.0
    found = diag.describe_columns(V, L)
    assert found["zero columns"] == [0] and found["repeated column pairs"] == []
    assert not found["eigenvalues ascending"]


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_runs_end_to_end(diag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    out = tmp_path / "diagnose.json"
    argv = ["--device", device, "--configs", "5x3,7x2", "--warps", "1,4", "--repeats", "1"]
    argv += ["--out", str(out)]
    assert diag.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["provenance"]["command"].endswith(" ".join(argv))
    rows = data["rows"]
    methods = [("torch.linalg.eigh", None), ("torch", None), ("triton", 1), ("triton", 4)]
    assert [(r["n"], r["backend"], r["num_warps"]) for r in rows] == [
        (n, *method) for n in (5, 7) for method in methods
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["wrong (orthogonality > 1e-3)"] == 0 and row["converged"] == row["matrices"]
        assert row["max orth error"] < 1e-5 and row["max eig error"] < 1e-5
        assert (row["ms"] > 0) if row["backend"] != "torch" else ("ms" not in row)
