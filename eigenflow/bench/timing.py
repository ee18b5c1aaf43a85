"""Timing one grid point: the forward, the backward after an untimed forward and the
forward+backward, eagerly or replayed from a captured CUDA graph, with the median over
repeats; failures become error rows.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from .accuracy import accuracy
from .contenders import Contender
from .spec import COLUMNS, GRAPH, BenchSpec

__all__ = []


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Wall-clock (CPU) or CUDA-event timing of one region, in milliseconds."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"

    def time(self, run: Callable[[], Any], setup: Callable[[], Any] | None = None) -> float:
        state = setup() if setup is not None else None
        _synchronize(self.device)
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            result = run() if state is None else run(state)
            end.record()
            end.synchronize()
            del result
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        result = run() if state is None else run(state)
        elapsed = (time.perf_counter() - t0) * 1e3
        del result
        return elapsed


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class _Case:
    """One contender on one input: forward, backward and forward+backward callables."""

    def __init__(self, contender: Contender, op: str, A: torch.Tensor, grads: tuple):
        self.contender, self.op = contender, op
        self.A = A.detach().clone().requires_grad_(True)
        self.grads = grads

    def forward(self, A: torch.Tensor | None = None) -> Any:
        return self.contender.call(self.op, self.A if A is None else A)

    def backward(self, out: Any, A: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        outs = _as_tuple(out)
        return torch.autograd.grad(outs, self.A if A is None else A, self.grads[: len(outs)])

    def forward_backward(self, A: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return self.backward(self.forward(A), A)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fit_repeats(call_ms: float, spec: BenchSpec) -> int:
    """Repeats (3 timed regions each) that fit ``spec.max_time``; at least 1."""
    per_round = max(call_ms, 1e-3) * 3.0
    return int(max(1, min(spec.repeats, spec.max_time * 1e3 // per_round)))


def _timed_call(run: Callable[[], Any], device: torch.device) -> float:
    """Milliseconds of one synchronised call (for planning, not for the results)."""
    _synchronize(device)
    t0 = time.perf_counter()
    run()
    _synchronize(device)
    return (time.perf_counter() - t0) * 1e3


def _detached(out: Any) -> Any:
    return tuple(o.detach() for o in out) if isinstance(out, (tuple, list)) else out.detach()


class _EagerRun:
    """One contender's eager measurement at one grid point, advanced a repeat at a time so
    that the contenders of a grid point can be interleaved (load changes on a shared machine
    then hit them alike). ``row['stage']`` says where a failure happened."""

    def __init__(self, case: _Case, spec: BenchSpec, row: dict[str, Any]):
        self.case, self.spec, self.row = case, spec, row
        self.clock = _Clock(case.A.device)
        self.times: dict[str, list[float]] = {"fwd_ms": [], "bwd_ms": [], "fwdbwd_ms": []}
        self.repeats = 0

    def prepare(self) -> None:
        """First forward+backward (its output gives the accuracy), then the warm-up calls
        (the first call counts as one; they stop early past half of ``spec.max_time``); the
        last call's duration sizes the repeats to ``spec.max_time``."""
        case, row, device = self.case, self.row, self.case.A.device
        row["stage"] = "forward"
        outputs: list[Any] = []

        def first() -> None:
            outputs.append(case.forward())
            row["stage"] = "backward"
            case.backward(outputs[0])

        last_ms = spent_ms = _timed_call(first, device)
        row["stage"] = "accuracy"
        with torch.no_grad():
            row.update(accuracy(case.op, _detached(outputs.pop()), case.A.detach()))
        row["stage"] = "warm-up"
        for _ in range(self.spec.warmup - 1):
            if spent_ms > self.spec.max_time * 500.0:
                break
            last_ms = _timed_call(case.forward_backward, device)
            spent_ms += last_ms
        self.repeats = row["repeats"] = _fit_repeats(last_ms, self.spec)

    def step(self) -> None:
        """One timed forward, backward (after an untimed forward) and forward+backward."""
        case, row = self.case, self.row
        row["stage"] = "forward"
        self.times["fwd_ms"].append(self.clock.time(case.forward))
        row["stage"] = "backward"
        self.times["bwd_ms"].append(self.clock.time(case.backward, setup=case.forward))
        row["stage"] = "forward+backward"
        self.times["fwdbwd_ms"].append(self.clock.time(case.forward_backward))

    def finish(self) -> None:
        """Medians of the repeats (and the fastest forward+backward)."""
        for column, values in self.times.items():
            self.row[column] = _median(values)
        self.row["fwdbwd_min_ms"] = min(self.times["fwdbwd_ms"])


def _replay_ms(graph: torch.cuda.CUDAGraph, repeats: int) -> tuple[float, float]:
    """Median and minimum of ``repeats`` timed replays of ``graph``."""
    clock = _Clock(torch.device("cuda", torch.cuda.current_device()))
    times = [clock.time(graph.replay) for _ in range(repeats)]
    return _median(times), min(times)


def _measure_graph(case: _Case, spec: BenchSpec, row: dict[str, Any]) -> None:
    """Capture the forward, and the forward+backward, in CUDA graphs once; time replays.

    The static input is ``case.A``; capture follows the PyTorch recipe (warm-up on a side
    stream, then capture). Solvers that synchronise with the host (``torch.linalg.eigh``,
    ``torch.linalg.solve`` error checks, ``.item()``) fail to capture and raise here.
    """
    device = case.A.device
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        row["stage"] = "graph warm-up"
        with torch.cuda.stream(side):
            for _ in range(max(spec.warmup, 2)):
                case.forward_backward()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        row["stage"] = "graph capture (forward)"
        fwd_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(fwd_graph):
            static_out = case.forward()
        row["stage"] = "graph capture (forward+backward)"
        fb_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(fb_graph):
            case.forward_backward()
        row["stage"] = "graph replay"
        for _ in range(max(spec.warmup, 1)):
            fb_graph.replay()
        row["repeats"] = spec.repeats
        row["fwd_ms"] = _replay_ms(fwd_graph, spec.repeats)[0]
        row["fwdbwd_ms"], row["fwdbwd_min_ms"] = _replay_ms(fb_graph, spec.repeats)
        row["bwd_ms"] = row["fwdbwd_ms"] - row["fwd_ms"]
        fwd_graph.replay()
        torch.cuda.synchronize()
        row["stage"] = "accuracy"
        with torch.no_grad():
            row.update(accuracy(case.op, _detached(static_out), case.A.detach()))


def _recover(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
        except Exception:
            pass
        torch.cuda.empty_cache()


def _new_row(
    contender: Contender, op: str, device: str, dtype: str, B: int, n: int, cond: float, mode: str
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        solver=contender.label,
        op=op,
        device=device,
        dtype=dtype,
        batch=B,
        n=n,
        cond=cond,
        mode=mode,
        status="ok",
        message="",
    )
    return row


_MEASURED = (
    "fwd_ms",
    "fwdbwd_ms",
    "fwdbwd_min_ms",
    "bwd_ms",
    "rel_err",
    "rel_err_max",
    "recon_err",
)


def _record_failure(row: dict[str, Any], exc: Exception, device: torch.device) -> None:
    """Turn ``exc`` into an ``error`` row (``skipped`` for a failed CUDA-graph capture),
    naming the stage that failed."""
    stage = row.get("stage") or "setup"
    text = " ".join(str(exc).split())[:300]
    cause = exc.__cause__ or exc.__context__
    if cause is not None:  # e.g. a failed capture_end hiding the call that broke the capture
        text += f" (raised while handling {type(cause).__name__}: "
        text += " ".join(str(cause).split())[:200] + ")"
    if row["mode"] == GRAPH:
        row["status"] = "skipped"
        row["message"] = f"not capturable in a CUDA graph ({stage}): {type(exc).__name__}: {text}"
    else:
        row["status"] = "error"
        row["message"] = f"{stage}: {type(exc).__name__}: {text}"
    for key in _MEASURED:
        row[key] = None
    _recover(device)


def _close_row(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("stage", None)
    if row["status"] == "ok" and row["rel_err"] is not None and not math.isfinite(row["rel_err"]):
        row["message"] = "non-finite values in the output"
    return row


def _check_setup(contender: Contender, row: dict[str, Any]) -> None:
    """Raise the contender's construction error, if any, as a failure of stage ``setup``."""
    row["stage"] = "setup"
    if contender.setup_error is not None:
        raise contender.setup_error


def _measure_point_eager(
    contenders: list[Contender],
    rows: list[dict[str, Any]],
    op: str,
    A: torch.Tensor,
    grads: tuple,
    spec: BenchSpec,
) -> None:
    """Eager measurements of ``contenders`` at one grid point, repeats interleaved
    (repeat k of every contender before repeat k+1 of any); failures become error rows."""
    runs: list[_EagerRun] = []
    for contender, row in zip(contenders, rows):
        try:
            _check_setup(contender, row)
            run = _EagerRun(_Case(contender, op, A, grads), spec, row)
            run.prepare()
        except Exception as exc:
            _record_failure(row, exc, A.device)
        else:
            runs.append(run)
    for k in range(spec.repeats):
        for run in list(runs):
            if k >= run.repeats:
                continue
            try:
                run.step()
            except Exception as exc:
                _record_failure(run.row, exc, A.device)
                runs.remove(run)
    for run in runs:
        run.finish()


def _measure_point_graph(
    contender: Contender,
    row: dict[str, Any],
    op: str,
    A: torch.Tensor,
    grads: tuple,
    spec: BenchSpec,
) -> None:
    if contender.graph_skip is not None:
        row["status"] = "skipped"
        row["message"] = f"not capturable in a CUDA graph: {contender.graph_skip}"
        return
    try:
        _check_setup(contender, row)
        _measure_graph(_Case(contender, op, A, grads), spec, row)
    except Exception as exc:
        _record_failure(row, exc, A.device)
