"""The solver benchmark harness (eigenflow.bench): inputs, references, rows, output files,
command line. Speeds are never asserted; only the consistency of what is measured."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

import attrs
import numpy as np
import pytest
import torch

import eigenflow as ef
import eigenflow.registry as reg
from eigenflow import bench
from eigenflow.plugins.eig.svd import SVDSolver

FAIL_SIZE = 8


class FlakySolver(SVDSolver):
    """The ``svd`` solver, except that it raises on matrices of size FAIL_SIZE."""

    def _check(self, A: torch.Tensor) -> None:
        if A.shape[-1] == FAIL_SIZE:
            raise RuntimeError(f"flaky solver refuses n={FAIL_SIZE}")

    def _sqrt(self, A):
        self._check(A)
        return super()._sqrt(A)

    def _invsqrt(self, A):
        self._check(A)
        return super()._invsqrt(A)

    def _eigh(self, A):
        self._check(A)
        return super()._eigh(A)


class UnbuildableSolver(SVDSolver):
    """A broken third-party solver: building it with its defaults raises."""

    def __init__(self, config=None, **options):
        raise RuntimeError("cannot build this solver")


class FlakyPlugin:
    @reg.hookimpl
    def eigenflow_register(self, registry):
        registry.add("solver", FlakySolver, name="flaky-test")
        registry.add("solver", UnbuildableSolver, name="unbuildable-test")


@pytest.fixture(scope="module")
def flaky_solver():
    reg.reset()
    reg.register_plugin(FlakyPlugin(), name="flaky-test-plugin")
    assert "flaky-test" in ef.list("solver")
    yield "flaky-test"
    reg.unregister_plugin("flaky-test-plugin")
    assert "flaky-test" not in ef.list("solver")


# --------------------------------------------------------------------------- inputs


def test_make_spd_is_deterministic_spd_with_the_requested_condition_number():
    A = bench.make_spd(5, 6, cond=1e4, seed=3)
    assert A.shape == (5, 6, 6) and A.dtype == torch.float64
    assert torch.equal(A, bench.make_spd(5, 6, cond=1e4, seed=3))
    assert not torch.equal(A, bench.make_spd(5, 6, cond=1e4, seed=4))
    assert torch.equal(A, A.mT)
    L = torch.linalg.eigvalsh(A)
    assert (L > 0).all()
    torch.testing.assert_close(
        L[:, -1] / L[:, 0], torch.full((5,), 1e4, dtype=torch.float64), rtol=1e-8, atol=0
    )
    # per-matrix scales differ (solvers must normalise per matrix)
    assert L[:, -1].max() / L[:, -1].min() > 1.5


def test_make_spd_size_one():
    A = bench.make_spd(3, 1, cond=1e6, seed=0)
    assert A.shape == (3, 1, 1) and (A > 0).all()


@pytest.mark.parametrize("cond", [1e1, 1e6])
def test_reference_against_scipy(cond):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    A = bench.make_spd(3, 7, cond=cond, seed=1)
    S = bench.reference("sqrt", A)
    Si = bench.reference("invsqrt", A)
    for k in range(3):
        expected = torch.from_numpy(scipy_linalg.sqrtm(A[k].numpy()).real)
        torch.testing.assert_close(S[k], expected, rtol=1e-9, atol=1e-12)
        expected_inv = torch.from_numpy(scipy_linalg.inv(expected.numpy()))
        torch.testing.assert_close(Si[k], expected_inv, rtol=1e-7, atol=1e-10)
    L = bench.reference("eigh", A)
    torch.testing.assert_close(L, torch.from_numpy(np.linalg.eigvalsh(A.numpy())))


def test_accuracy_measures_relative_frobenius_error():
    A = bench.make_spd(4, 5, cond=10.0, seed=2)
    R = bench.reference("sqrt", A)
    perturbed = R.clone()
    perturbed[1] *= 1.0 + 1e-3  # only matrix 1 is off, by exactly 1e-3 relative
    acc = bench.accuracy("sqrt", perturbed, A)
    assert acc["rel_err_max"] == pytest.approx(1e-3, rel=1e-9)
    assert acc["rel_err"] == pytest.approx(1e-3 / 4, rel=1e-9)
    assert acc["recon_err"] is None
    L, V = torch.linalg.eigh(A)
    acc = bench.accuracy("eigh", (L, -V), A)  # eigenvector signs do not matter
    assert acc["rel_err"] < 1e-14 and acc["recon_err"] < 1e-14


def test_peers_are_correct():
    A = bench.make_spd(3, 6, cond=100.0, seed=5)
    for op in ("sqrt", "invsqrt"):
        X = bench.contenders._peer_eigh(op, A)
        assert bench.accuracy(op, X, A)["rel_err_max"] < 1e-12
    for peer in (bench.contenders._peer_eigh, bench.contenders._peer_svd):
        acc = bench.accuracy("eigh", peer("eigh", A), A)
        assert acc["rel_err_max"] < 1e-12 and acc["recon_err"] < 1e-12


# --------------------------------------------------------------------------- selection


def test_parse_solver_spec():
    assert bench.parse_solver_spec("mpa-lya") == ("mpa-lya", {})
    assert bench.parse_solver_spec("mpa-lya:degree=8/7:eps=1e-3:x=none:y=true:z=abc") == (
        "mpa-lya",
        {"degree": (8, 7), "eps": 1e-3, "x": None, "y": True, "z": "abc"},
    )
    with pytest.raises(ef.ConfigError, match="KEY=VALUE"):
        bench.parse_solver_spec("svd:eps")


def test_select_contenders_patterns_and_peers():
    labels = [c.label for c in bench.select_contenders(["svd"])]
    assert labels[:2] == [bench.EIGH_PEER, bench.SVD_PEER]
    assert "svd" in labels
    if "ns" in ef.list("solver"):
        assert "ns" in labels  # the baseline always runs
    all_labels = [c.label for c in bench.select_contenders(["*"])]
    assert set(ef.list("solver")) <= set(all_labels)
    with pytest.raises(ef.UnknownNameError, match="registered"):
        bench.select_contenders(["no-such-solver*"])
    with pytest.raises(ef.ConfigError, match="eps"):
        bench.select_contenders(["svd:eps=5.0"])  # invalid option value for svd
    variant = bench.select_contenders(["svd:eps=0.001"])[-1]
    assert variant.label == "svd:eps=0.001" and variant.base == "svd"
    assert "eigh" in variant.ops


def test_spec_validation():
    spec = bench.BenchSpec(solvers="svd,mpa*", ops=["sqrt"], sizes=[4, 8], devices="cpu")
    assert spec.solvers == ("svd", "mpa*") and spec.ops == ("sqrt",)
    assert spec.sizes == (4, 8) and spec.devices == ("cpu",)
    with pytest.raises(ef.ConfigError, match="dtypes"):
        bench.BenchSpec(dtypes=("float16",))
    with pytest.raises(ef.ConfigError, match="ops"):
        bench.BenchSpec(ops=("cbrt",))
    with pytest.raises(ef.ConfigError, match="batches"):
        bench.BenchSpec(batches=(0,))
    with pytest.raises(ef.ConfigError, match="repeats"):
        bench.BenchSpec(repeats=0)
    if not torch.cuda.is_available():
        with pytest.raises(ef.ConfigError, match="CUDA is not available"):
            bench.BenchSpec(devices=("cuda",))


# --------------------------------------------------------------------------- the run

TINY = dict(
    ops=("sqrt", "invsqrt", "eigh"),
    batches=(2,),
    sizes=(4, FAIL_SIZE),
    dtypes=("float32", "float64"),
    devices=("cpu",),
    repeats=1,
    warmup=0,
)


def _by(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


@pytest.fixture(scope="module")
def tiny_rows(flaky_solver):
    spec = bench.BenchSpec(solvers=("svd", flaky_solver), **TINY)
    lines: list[str] = []
    rows = bench.run_benchmark(spec, progress=lines.append)
    return spec, rows, lines


def test_run_has_a_row_per_solver_op_size_dtype(tiny_rows):
    spec, rows, lines = tiny_rows
    names = {r["solver"] for r in rows}
    expected = {bench.EIGH_PEER, bench.SVD_PEER, "svd", "flaky-test"}
    if "ns" in ef.list("solver"):
        expected.add("ns")
    assert names == expected
    for r in rows:
        assert set(r) == set(bench.COLUMNS)
    for solver in ("svd", "flaky-test", bench.EIGH_PEER):
        for op in spec.ops:
            for n in spec.sizes:
                for dtype in spec.dtypes:
                    assert len(_by(rows, solver=solver, op=op, n=n, dtype=dtype)) == 1
    # torch.linalg.svd is an eigh-only peer; ns has no eigh
    assert {r["op"] for r in _by(rows, solver=bench.SVD_PEER)} == {"eigh"}
    assert not _by(rows, solver="ns", op="eigh")
    assert len(lines) == len(rows)  # one progress line per measurement
    assert all(line.startswith("[") for line in lines)


def test_failing_solver_gives_error_rows_and_the_run_goes_on(tiny_rows):
    _, rows, lines = tiny_rows
    failed = _by(rows, solver="flaky-test", n=FAIL_SIZE)
    assert len(failed) == 6
    for r in failed:
        assert r["status"] == "error"
        assert "RuntimeError" in r["message"] and "refuses" in r["message"]
        assert r["fwd_ms"] is None and r["ratio_vs_eigh"] is None
    assert any("ERROR" in line and "flaky-test" in line for line in lines)
    fine = _by(rows, solver="flaky-test", n=4)
    assert len(fine) == 6 and all(r["status"] == "ok" for r in fine)
    # rows measured after the failures are fine
    assert all(r["status"] == "ok" for r in rows if r["solver"] != "flaky-test")


def test_times_ratios_and_accuracy_are_consistent(tiny_rows):
    _, rows, _ = tiny_rows
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["repeats"] == 1 and r["mode"] == "eager"
        for col in ("fwd_ms", "bwd_ms", "fwdbwd_ms"):
            assert r[col] > 0 and math.isfinite(r[col])
        assert r["fwdbwd_min_ms"] == r["fwdbwd_ms"]  # one repeat: its median is its minimum
        eigh = _by(rows, solver=bench.EIGH_PEER, op=r["op"], dtype=r["dtype"], n=r["n"])[0]
        assert r["ratio_vs_eigh"] == pytest.approx(eigh["fwdbwd_ms"] / r["fwdbwd_ms"])
        assert r["fwd_ratio_vs_eigh"] == pytest.approx(eigh["fwd_ms"] / r["fwd_ms"])
        ns = _by(rows, solver="ns", op=r["op"], dtype=r["dtype"], n=r["n"], status="ok")
        if ns:
            assert r["ratio_vs_ns"] == pytest.approx(ns[0]["fwdbwd_ms"] / r["fwdbwd_ms"])
        else:
            assert r["ratio_vs_ns"] is None
        assert (r["recon_err"] is not None) == (r["op"] == "eigh")
    for r in _by(rows, solver=bench.EIGH_PEER):
        assert r["ratio_vs_eigh"] == pytest.approx(1.0)
    for r in ok:
        if r["solver"] in ("svd", "flaky-test", bench.EIGH_PEER, bench.SVD_PEER):
            tol = 1e-4 if r["dtype"] == "float32" else 1e-10
            assert r["rel_err"] <= r["rel_err_max"] < tol, r
            if r["op"] == "eigh":
                assert r["recon_err"] < tol


def test_ratios_from_synthetic_rows():
    base = dict.fromkeys(bench.COLUMNS)
    common = dict(
        op="sqrt", device="cpu", dtype="float32", batch=4, n=8, cond=1e3, mode="eager", status="ok"
    )
    rows = [
        {**base, **common, "solver": bench.EIGH_PEER, "fwd_ms": 6.0, "fwdbwd_ms": 10.0},
        {**base, **common, "solver": "ns", "fwd_ms": 1.0, "fwdbwd_ms": 4.0},
        {**base, **common, "solver": "fast", "fwd_ms": 0.5, "fwdbwd_ms": 2.0},
        {**base, **common, "solver": "fast", "mode": "cuda-graph", "fwd_ms": 0.1, "fwdbwd_ms": 0.5},
        {**base, **common, "solver": "other-size", "n": 16, "fwd_ms": 1.0, "fwdbwd_ms": 1.0},
    ]
    bench.add_ratios(rows)
    assert rows[2]["ratio_vs_eigh"] == pytest.approx(5.0)
    assert rows[2]["fwd_ratio_vs_eigh"] == pytest.approx(12.0)
    assert rows[2]["ratio_vs_ns"] == pytest.approx(2.0)
    assert rows[3]["ratio_vs_eigh"] == pytest.approx(20.0)  # graph rows vs eager peers
    assert rows[1]["ratio_vs_ns"] == pytest.approx(1.0)
    assert rows[4]["ratio_vs_eigh"] is None and rows[4]["ratio_vs_ns"] is None


def test_flags_from_synthetic_rows():
    # Issue 17: a row is flagged when its worst-matrix error is above the solver's stated
    # envelope (Solver.stated_error) or above 1e-2, so a user sees it.
    base = dict.fromkeys(bench.COLUMNS)
    common = dict(op="sqrt", device="cpu", dtype="float64", batch=4, n=64, cond=1e3)
    common.update(mode="eager", status="ok")
    rows = [
        {**base, **common, "solver": "mpa-lya", "rel_err_max": 1e-4},
        {**base, **common, "solver": "mpa-lya", "rel_err_max": 5e-3},
        {**base, **common, "solver": "ns", "op": "invsqrt", "rel_err_max": 0.7},
        {**base, **common, "solver": bench.EIGH_PEER, "rel_err_max": 1e-12},
        {**base, **common, "solver": bench.EIGH_PEER, "rel_err_max": 0.05},
        {**base, **common, "solver": "svd", "rel_err_max": float("nan")},
        {**base, **common, "solver": "mpa-lya", "n": 256, "rel_err_max": 5e-3},
        {**base, **common, "solver": "mpa-lya:steps=1", "rel_err_max": 5e-3},
        {**base, **common, "solver": "svd", "status": "error", "rel_err_max": None},
    ]
    bench.add_flags(rows)
    stated = ef.get("solver", "mpa-lya").stated_error("sqrt", torch.float64, 1e3)
    assert 1e-4 <= stated < 5e-3  # the two mpa-lya rows straddle its envelope
    assert rows[0]["envelope"] == stated and rows[0]["flag"] == ""
    assert rows[1]["flag"] == f"above the stated envelope {stated:.0e}"
    assert rows[2]["envelope"] == ef.get("solver", "ns").stated_error("invsqrt", torch.float64, 1e3)
    assert rows[2]["flag"] == "above 0.01"  # within its (poor) envelope, above 1e-2
    assert rows[3]["envelope"] is None and rows[3]["flag"] == ""
    assert rows[4]["flag"] == "above 0.01"
    assert rows[5]["flag"] == "non-finite error"
    assert rows[6]["envelope"] is None and rows[6]["flag"] == ""  # n above the envelope's 128
    assert rows[7]["envelope"] is None and rows[7]["flag"] == ""  # variant: no statement
    assert rows[8]["flag"] == ""
    text = bench.format_summary(rows, detail=False)
    assert "accuracy flags: 4 row(s)" in text
    assert "ns invsqrt cpu float64 batch=4 n=64 cond=1000: 7.00e-01 (above 0.01)" in text


def test_bench_flags_the_inverse_square_root_of_ill_conditioned_input():
    # A real run: Newton-Schulz's inverse square root at condition 1e3 has a relative error
    # near 0.7 (the issue: "eigenflow bench ... says nothing"); eigh's is 1e-13.
    spec = bench.BenchSpec(
        solvers=("ns",),
        ops=("invsqrt",),
        batches=(2,),
        sizes=(16,),
        dtypes=("float64",),
        devices=("cpu",),
        conds=(1e3,),
        repeats=1,
        warmup=0,
    )
    rows = bench.run_benchmark(spec)
    (ns,) = _by(rows, solver="ns")
    (eigh,) = _by(rows, solver=bench.EIGH_PEER)
    assert ns["rel_err_max"] > 0.1 and "above 0.01" in ns["flag"]
    assert eigh["rel_err_max"] < 1e-10 and eigh["flag"] == ""
    assert "accuracy flags: 1 row(s)" in bench.format_summary(rows)


def test_write_results_csv_and_json_agree(tiny_rows, tmp_path):
    spec, rows, _ = tiny_rows
    paths = bench.write_results(rows, tmp_path / "out", spec=spec)
    with paths["csv"].open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == bench.COLUMNS
        table = list(reader)
    payload = json.loads(paths["json"].read_text())
    assert payload["columns"] == list(bench.COLUMNS)
    assert payload["spec"]["sizes"] == list(spec.sizes)
    assert payload["environment"]["torch"] == torch.__version__
    assert len(table) == len(payload["rows"]) == len(rows)
    for line, record, row in zip(table, payload["rows"], rows):
        assert line["solver"] == record["solver"] == row["solver"]
        assert int(line["n"]) == record["n"] == row["n"]
        for col in ("fwd_ms", "fwdbwd_ms", "bwd_ms", "rel_err", "ratio_vs_eigh"):
            if row[col] is None:
                assert line[col] == "" and record[col] is None
            else:
                assert float(line[col]) == record[col] == row[col]


def test_summary_lists_every_block_and_errors(tiny_rows):
    _, rows, _ = tiny_rows
    text = bench.format_summary(rows)
    assert "x eigh" in text
    assert "speed-up over torch.linalg.eigh + autograd (fwd+bwd), sqrt on cpu float32" in text
    headings = [line for line in text.splitlines() if " matrices of size " in line]
    assert headings.count("sqrt on cpu float32, 2 matrices of size 4 (cond 1000)") == 1
    assert len(headings) == len({(r["op"], r["dtype"], r["n"]) for r in rows})
    assert "error: " in text and "refuses" in text


def test_plots_are_written(tiny_rows, tmp_path):
    pytest.importorskip("matplotlib")
    _, rows, _ = tiny_rows
    rows = [r for r in rows if r["op"] in ("sqrt", "eigh") and r["dtype"] == "float64"]
    paths = bench.plot_results(rows, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        f"{kind}_{op}_cpu_float64.png"
        for op in ("sqrt", "eigh")
        for kind in ("time_vs_batch", "time_vs_size", "error_vs_time")
    )
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_solver_that_cannot_be_built_gives_error_rows(flaky_solver):
    (contender,) = [
        c for c in bench.select_contenders(["unbuildable-*"]) if c.label == "unbuildable-test"
    ]
    assert contender.ops == {"sqrt", "invsqrt", "eigh"}
    spec = bench.BenchSpec(
        solvers=("unbuildable-test",),
        ops=("sqrt", "eigh"),
        batches=(2,),
        sizes=(3,),
        devices=("cpu",),
        repeats=1,
        warmup=0,
    )
    rows = bench.run_benchmark(spec)
    broken = [r for r in rows if r["solver"] == "unbuildable-test"]
    assert len(broken) == 2
    for r in broken:
        assert r["status"] == "error"
        assert r["message"] == "setup: RuntimeError: cannot build this solver"
    assert all(r["status"] == "ok" for r in rows if r["solver"] != "unbuildable-test")


def test_solver_failing_in_backward_is_an_error_row():
    def forward_only(op, A):
        return A.detach() * 2.0  # no graph: autograd.grad raises

    contender = bench.Contender("no-grad", "no-grad", False, frozenset({"sqrt"}), forward_only)
    spec = bench.BenchSpec(
        ops=("sqrt",), batches=(2,), sizes=(3,), devices=("cpu",), repeats=1, warmup=0
    )
    (row,) = bench.run_benchmark(spec, contenders=[contender])
    assert row["status"] == "error" and row["message"].startswith("backward:")


def test_solver_failing_during_the_timed_repeats_is_an_error_row():
    calls = {"n": 0}

    def tires(op, A):
        calls["n"] += 1
        if calls["n"] > 2:  # the first call and the warm-up pass, the repeats do not
            raise RuntimeError("tired")
        return A * 2.0

    contenders = [
        bench.Contender("tires", "tires", False, frozenset({"sqrt"}), tires),
        bench.Contender(
            bench.EIGH_PEER,
            bench.EIGH_PEER,
            True,
            frozenset(bench.OPS),
            bench.contenders._peer_eigh,
        ),
    ]
    spec = bench.BenchSpec(
        ops=("sqrt",), batches=(2,), sizes=(3,), devices=("cpu",), repeats=3, warmup=2
    )
    rows = bench.run_benchmark(spec, contenders=contenders)
    tired, eigh = rows
    assert tired["status"] == "error" and tired["message"] == "forward: RuntimeError: tired"
    assert tired["fwd_ms"] is None and tired["rel_err"] is None
    assert eigh["status"] == "ok" and eigh["repeats"] == 3
    assert eigh["fwdbwd_min_ms"] <= eigh["fwdbwd_ms"]


def test_non_finite_output_is_reported(tmp_path):
    def broken(op, A):
        return A * torch.tensor(float("nan"), dtype=A.dtype)

    contender = bench.Contender("nan", "nan", False, frozenset({"sqrt"}), broken)
    spec = bench.BenchSpec(
        ops=("sqrt",), batches=(2,), sizes=(3,), devices=("cpu",), repeats=1, warmup=0
    )
    rows = bench.run_benchmark(spec, contenders=[contender])
    assert rows[0]["status"] == "ok" and math.isnan(rows[0]["rel_err"])
    assert rows[0]["message"] == "non-finite values in the output"
    paths = bench.write_results(rows, tmp_path, spec=spec)
    record = json.loads(paths["json"].read_text())["rows"][0]  # strict JSON: no NaN
    assert record["rel_err"] is None and record["fwd_ms"] > 0


def test_ctrl_c_keeps_the_rows_measured_so_far(tmp_path, monkeypatch):
    def interrupts_at_8(op, A):
        if A.shape[-1] == 8:
            raise KeyboardInterrupt
        return A * 2.0

    contender = bench.Contender("ctrl-c", "ctrl-c", False, frozenset({"sqrt"}), interrupts_at_8)
    spec = bench.BenchSpec(
        ops=("sqrt",),
        batches=(2,),
        sizes=(4, 8, 16),
        devices=("cpu",),
        repeats=1,
        warmup=0,
        threads=1,
    )
    threads = torch.get_num_threads()
    with pytest.raises(bench.BenchInterrupted) as stop:
        bench.run_benchmark(spec, contenders=[contender])
    assert [r["n"] for r in stop.value.rows] == [4]
    assert torch.get_num_threads() == threads  # restored

    def interrupted_run(*args, **kwargs):
        raise bench.BenchInterrupted(stop.value.rows)

    monkeypatch.setattr(bench.cli, "run_benchmark", interrupted_run)
    args = _parser().parse_args(["--solvers", "svd", "--no-plots", "--out", str(tmp_path)])
    stderr = io.StringIO()
    assert bench.main(args, stdout=io.StringIO(), stderr=stderr) == 130
    assert "interrupted" in stderr.getvalue()
    assert len(json.loads((tmp_path / "results.json").read_text())["rows"]) == 1


def test_max_time_reduces_the_repeats_of_a_slow_solver():
    import time

    def slow(op, A):
        time.sleep(0.05)
        return A * 2.0

    contender = bench.Contender("slow", "slow", False, frozenset({"sqrt"}), slow)
    spec = bench.BenchSpec(
        ops=("sqrt",),
        batches=(1,),
        sizes=(2,),
        devices=("cpu",),
        repeats=10,
        warmup=2,
        max_time=0.3,
    )
    (row,) = bench.run_benchmark(spec, contenders=[contender])
    assert row["status"] == "ok"
    assert 1 <= row["repeats"] <= 2  # 0.3 s / (3 x >= 50 ms)
    assert row["fwd_ms"] >= 50.0 and row["bwd_ms"] < row["fwd_ms"]


# --------------------------------------------------------------------------- command line


def _parser():
    parser = argparse.ArgumentParser(prog="eigenflow bench")
    bench.add_arguments(parser)
    return parser


def test_cli_runs_a_tiny_grid(tmp_path, flaky_solver):
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench"
    args = _parser().parse_args(
        [
            "--solvers",
            f"svd,{flaky_solver}",
            "--ops",
            "sqrt,eigh",
            "--batch",
            "2",
            "--size",
            f"4,{FAIL_SIZE}",
            "--dtype",
            "float64",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    assert bench.main(args, stdout=stdout, stderr=stderr) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(r["op"], r["n"], r["dtype"]) for r in rows if r["solver"] == "svd"} == {
        (op, n, dt) for op in ("sqrt", "eigh") for n in (4, FAIL_SIZE) for dt in ("float64",)
    }
    assert sum(r["status"] == "error" for r in rows) == 2  # flaky-test at n=8, sqrt and eigh
    progress = stderr.getvalue().splitlines()
    assert len([line for line in progress if line.startswith("[")]) == len(rows)
    assert "x eigh" in stdout.getvalue() and "failed" in stdout.getvalue()
    assert (out / "time_vs_batch_sqrt_cpu_float64.png").exists()


def test_cli_from_json_summarises_and_plots_a_saved_run(tiny_rows, tmp_path):
    pytest.importorskip("matplotlib")
    spec, rows, _ = tiny_rows
    rows = [r for r in rows if r["op"] == "sqrt" and r["dtype"] == "float64"]
    saved = bench.write_results(rows, tmp_path / "run", spec=spec)["json"]
    loaded = bench.load_results(saved)
    assert [r["solver"] for r in loaded] == [r["solver"] for r in rows]
    assert [r["fwdbwd_ms"] for r in loaded] == [r["fwdbwd_ms"] for r in rows]
    args = _parser().parse_args(["--from-json", str(saved)])
    stdout = io.StringIO()
    assert bench.main(args, stdout=stdout, stderr=io.StringIO()) == 0
    assert stdout.getvalue().startswith("speed-up over torch.linalg.eigh")
    assert (tmp_path / "run" / "time_vs_size_sqrt_cpu_float64.png").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    stderr = io.StringIO()
    args = _parser().parse_args(["--from-json", str(bad)])
    assert bench.main(args, stdout=io.StringIO(), stderr=stderr) == 2
    assert "not an eigenflow benchmark" in stderr.getvalue()


def test_cli_quiet_and_no_plots(tmp_path):
    args = _parser().parse_args(
        [
            "--solvers",
            "svd",
            "--batch",
            "1",
            "--size",
            "3",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--quiet",
            "--no-plots",
            "--out",
            str(tmp_path),
        ]
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    assert bench.main(args, stdout=stdout, stderr=stderr) == 0
    assert stdout.getvalue() == "" and stderr.getvalue() == ""
    assert (tmp_path / "results.csv").exists()
    assert not list(tmp_path.glob("*.png"))


def test_cli_presets_and_overrides():
    quick = bench.spec_from_args(_parser().parse_args(["--quick"]))
    assert quick.batches == bench.QUICK_GRID["batches"] and quick.sizes == (16, 64)
    default = bench.spec_from_args(_parser().parse_args([]))
    assert default == quick
    full = bench.spec_from_args(_parser().parse_args(["--full", "--device", "cpu"]))
    assert full.batches == (1, 16, 64, 256, 1024, 4096)
    assert full.sizes[0] == 4 and full.sizes[-1] == 256 and full.ops == bench.OPS
    mixed = bench.spec_from_args(
        _parser().parse_args(["--full", "--size", "8", "--cond", "1e2,1e5", "--dtype", "float64"])
    )
    assert mixed.sizes == (8,) and mixed.conds == (1e2, 1e5) and mixed.dtypes == ("float64",)
    assert mixed.batches == bench.FULL_GRID["batches"]


@pytest.mark.parametrize(
    "argv", [["--dtype", "float16"], ["--ops", "cbrt"], ["--batch", "x"], ["--quick", "--full"]]
)
def test_cli_rejects_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2


def test_cli_unknown_solver_is_a_clear_error(tmp_path):
    args = _parser().parse_args(["--solvers", "nope", "--out", str(tmp_path), "--no-plots"])
    stderr = io.StringIO()
    assert bench.main(args, stdout=io.StringIO(), stderr=stderr) == 2
    assert "nope" in stderr.getvalue() and "svd" in stderr.getvalue()
    assert not (tmp_path / "results.csv").exists()


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_mode():
    def square(op, A):  # pure tensor ops: capturable
        return A @ A

    square_contender = bench.Contender("square", "square", False, frozenset({"sqrt"}), square)
    contenders = [*bench.select_contenders(["svd"]), square_contender]
    spec = bench.BenchSpec(
        ops=("sqrt", "eigh"),
        batches=(4,),
        sizes=(8,),
        dtypes=("float32",),
        devices=("cuda",),
        repeats=3,
        warmup=1,
        cuda_graph=True,
    )
    rows = bench.run_benchmark(spec, contenders=contenders)
    eager = [r for r in rows if r["mode"] == "eager"]
    graph = [r for r in rows if r["mode"] == "cuda-graph"]
    assert len(eager) == len(graph) > 0
    assert all(r["status"] == "ok" for r in eager)
    for r in graph:
        assert r["status"] in ("ok", "skipped")
        if r["status"] == "ok":
            assert r["fwdbwd_ms"] > 0 and r["repeats"] == 3
            assert r["bwd_ms"] == pytest.approx(r["fwdbwd_ms"] - r["fwd_ms"])
            if r["solver"] != "square":  # the replay computes what the eager call does
                twin = next(e for e in eager if (e["solver"], e["op"]) == (r["solver"], r["op"]))
                assert r["rel_err"] == pytest.approx(twin["rel_err"], rel=1e-3, abs=1e-6), r
        else:
            assert "CUDA graph" in r["message"]
    (square_row,) = [r for r in graph if r["solver"] == "square"]
    assert square_row["status"] == "ok"
    (square_eager,) = [r for r in eager if r["solver"] == "square"]
    assert square_row["rel_err"] == pytest.approx(square_eager["rel_err"], rel=1e-3)
    # torch.linalg.eigh synchronises with the host: it cannot be captured
    peer = [r for r in graph if r["solver"] == bench.EIGH_PEER]
    assert peer and all(r["status"] == "skipped" for r in peer)
    # the device still works after failed captures
    assert torch.ones(2, device="cuda").sum().item() == 2.0


def test_peers_that_sync_with_the_host_are_not_captured():
    # a failed capture can break the CUDA generator for the rest of the process: never try
    calls = []
    peers = [c for c in bench.select_contenders(["svd"]) if c.is_peer]
    assert {c.label for c in peers} == {bench.EIGH_PEER, bench.SVD_PEER}
    for peer in peers:
        traced = attrs.evolve(peer, call=lambda op, A: calls.append(op))
        row = bench.timing._new_row(traced, "eigh", "cuda", "float32", 2, 4, 10.0, bench.spec.GRAPH)
        bench.timing._measure_point_graph(traced, row, "eigh", torch.eye(4)[None], (), None)
        assert row["status"] == "skipped" and "not attempted" in row["message"]
        assert row["fwdbwd_ms"] is None
    assert calls == []
