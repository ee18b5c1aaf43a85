"""The solver benchmark behind ``eigenflow bench`` and ``benchmarks/run_solvers.py``.

Every registered solver (third-party ones included) is timed side by side in one run with two
peers implemented here, independently of eigenflow's solvers:

``torch.linalg.eigh``
    the matrix function through ``torch.linalg.eigh`` with plain autograd
    (``V diag(f(lambda)) V^T``), and ``torch.linalg.eigh`` itself for the ``eigh`` op;
``torch.linalg.svd``
    ``torch.linalg.svd`` as an eigendecomposition (``eigh`` op only, issue 5's grid);

and the ``ns`` solver (Newton-Schulz with autograd) when it is registered. For each solver,
op (``sqrt``, ``invsqrt``, ``eigh``), device, dtype, batch size ``B`` and matrix size ``n`` it
measures the median over repeats of the forward, the backward (after an untimed forward) and
the forward+backward, plus the relative Frobenius error against a float64 ``torch.linalg.eigh``
reference on the same input. Inputs are random SPD matrices of a chosen condition number made
deterministically from a seed (:func:`make_spd`).

Results are rows (dicts with :data:`COLUMNS`), written as CSV and JSON, plotted (time vs batch,
time vs size, error vs time as in thesis 000, Fig. 2.3) and summarised with the speed ratios
against ``torch.linalg.eigh`` and ``ns``. A solver that raises gives an error row; the run goes on.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import fnmatch
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import torch

from .core.errors import ConfigError, EigenflowError, NotSupportedError, UnknownNameError

__all__ = [
    "COLUMNS",
    "EIGH_PEER",
    "FULL_GRID",
    "NS_SOLVER",
    "OPS",
    "QUICK_GRID",
    "SVD_PEER",
    "BenchInterrupted",
    "BenchSpec",
    "Contender",
    "accuracy",
    "add_arguments",
    "add_flags",
    "add_ratios",
    "environment",
    "format_summary",
    "load_results",
    "main",
    "make_spd",
    "parse_solver_spec",
    "plot_results",
    "reference",
    "run_benchmark",
    "select_contenders",
    "spec_from_args",
    "write_results",
]

OPS = ("sqrt", "invsqrt", "eigh")
EIGH_PEER = "torch.linalg.eigh"
SVD_PEER = "torch.linalg.svd"
NS_SOLVER = "ns"
EAGER = "eager"
GRAPH = "cuda-graph"

#: Columns of a result row, in the order of the CSV file.
COLUMNS = (
    "solver",
    "op",
    "device",
    "dtype",
    "batch",
    "n",
    "fwd_ms",
    "fwdbwd_ms",
    "bwd_ms",
    "rel_err",
    "ratio_vs_eigh",
    "ratio_vs_ns",
    "fwd_ratio_vs_eigh",
    "fwdbwd_min_ms",
    "rel_err_max",
    "recon_err",
    "mode",
    "cond",
    "repeats",
    "status",
    "message",
    "envelope",
    "flag",
)

#: Above this worst-matrix relative error a row is flagged whatever the solver states.
FLAG_ERROR = 1e-2

#: The default grid (``--quick``): about a minute on a 2-core CPU.
QUICK_GRID: dict[str, tuple] = {
    "ops": ("sqrt",),
    "batches": (1, 64),
    "sizes": (16, 64),
    "dtypes": ("float32",),
}
#: The grid of issues 3-5 (``--full``): batch 1..4096, size 4..256, every op and dtype.
FULL_GRID: dict[str, tuple] = {
    "ops": OPS,
    "batches": (1, 16, 64, 256, 1024, 4096),
    "sizes": (4, 8, 16, 24, 32, 48, 64, 96, 128, 256),
    "dtypes": ("float32", "float64"),
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_DEFAULT_OUT = "eigenflow-bench"


def _default_devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


# --------------------------------------------------------------------------- the spec


def _items(value: Any) -> tuple:
    """A tuple from a tuple, list or comma-separated string (``"sqrt,eigh"``)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    try:
        return tuple(value)
    except TypeError:
        return (value,)


def _positive_ints(name: str) -> Callable:
    def check(_inst: Any, _attr: attrs.Attribute, value: tuple) -> None:
        if not value or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in value):
            raise ConfigError(f"{name}: expected positive integers, got {value!r}")

    return check


def _members(name: str, allowed: Iterable[str]) -> Callable:
    allowed = tuple(allowed)

    def check(_inst: Any, _attr: attrs.Attribute, value: tuple) -> None:
        bad = [v for v in value if v not in allowed]
        if not value or bad:
            raise ConfigError(
                f"{name}: got {', '.join(map(repr, bad)) or 'nothing'}; "
                f"allowed: {', '.join(allowed)}"
            )

    return check


def _check_devices(_inst: Any, _attr: attrs.Attribute, value: tuple) -> None:
    if not value:
        raise ConfigError("devices: expected at least one device")
    for dev in value:
        try:
            device = torch.device(dev)
        except RuntimeError:
            raise ConfigError(f"devices: {dev!r} is not a torch device (use cpu or cuda)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"devices: {dev!r} requested but CUDA is not available here")
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"devices: {dev!r} is not supported (use cpu or cuda)")


def _check_conds(_inst: Any, _attr: attrs.Attribute, value: tuple) -> None:
    if not value or any(not (isinstance(c, (int, float)) and c >= 1) for c in value):
        raise ConfigError(f"conds: expected condition numbers >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class BenchSpec:
    """What to benchmark (the defaults are :data:`QUICK_GRID` on every available device).

    Attributes
    ----------
    solvers
        fnmatch patterns of registered solver names (``"svd*"``; ``("*",)`` is all), or a name
        with options to time a variant (``"mpa-lya:degree=6/6:lya_iters=4"``; ``/`` makes a
        tuple).
        The peers (``torch.linalg.eigh``, ``torch.linalg.svd``) and ``ns`` always run.
    ops, batches, sizes, dtypes, devices, conds
        The grid: ``sqrt``/``invsqrt``/``eigh``; batch sizes ``B``; matrix sizes ``n``;
        ``float32``/``float64``; ``cpu``/``cuda``; condition numbers of the inputs.
    repeats, warmup
        Timed repeats (the median is reported) and untimed warm-up calls per measurement.
    max_time
        Seconds one measurement may take: repeats are reduced (never below 1) to fit.
    seed
        Seed of the inputs and upstream gradients.
    threads
        ``torch.set_num_threads`` during the run (``None``: leave as is).
    cuda_graph
        Also time each solver's forward+backward captured once in a CUDA graph and replayed
        (CUDA devices only; rows with ``mode = "cuda-graph"``).
    """

    solvers: tuple[str, ...] = attrs.field(default=("*",), converter=_items)
    ops: tuple[str, ...] = attrs.field(
        default=QUICK_GRID["ops"], converter=_items, validator=_members("ops", OPS)
    )
    batches: tuple[int, ...] = attrs.field(
        default=QUICK_GRID["batches"], converter=_items, validator=_positive_ints("batches")
    )
    sizes: tuple[int, ...] = attrs.field(
        default=QUICK_GRID["sizes"], converter=_items, validator=_positive_ints("sizes")
    )
    dtypes: tuple[str, ...] = attrs.field(
        default=QUICK_GRID["dtypes"], converter=_items, validator=_members("dtypes", _DTYPES)
    )
    devices: tuple[str, ...] = attrs.field(
        factory=_default_devices, converter=_items, validator=_check_devices
    )
    conds: tuple[float, ...] = attrs.field(default=(1e3,), converter=_items, validator=_check_conds)
    repeats: int = 5
    warmup: int = 2
    max_time: float = 10.0
    seed: int = 0
    cuda_graph: bool = False
    threads: int | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise ConfigError(f"repeats: expected an integer >= 1, got {self.repeats!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"warmup: expected an integer >= 0, got {self.warmup!r}")
        if not self.max_time > 0:
            raise ConfigError(f"max_time: expected seconds > 0, got {self.max_time!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"threads: expected an integer >= 1, got {self.threads!r}")
        if not self.solvers:
            raise ConfigError("solvers: expected at least one name or pattern")


# --------------------------------------------------------------------------- inputs


def make_spd(batch: int, n: int, cond: float = 1e3, seed: int = 0) -> torch.Tensor:
    """Random symmetric positive-definite matrices ``(batch, n, n)`` in float64 on the CPU.

    ``A = s Q diag(lambda) Q^T`` with ``Q`` Haar-random orthogonal (QR of a Gaussian matrix,
    signs fixed by ``diag(R)``), eigenvalues ``lambda_i = cond^(-u_i)`` with ``u`` sorted
    uniform in ``[0, 1]`` and its ends pinned to 0 and 1 (so each matrix has condition number
    exactly ``cond`` when ``n >= 2``), and a per-matrix scale ``s = 10^U(-1, 1)`` (solvers must
    normalise per matrix). Deterministic for a given ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
    u = torch.rand(batch, n, generator=gen, dtype=torch.float64).sort(dim=-1).values
    if n >= 2:
        u[:, 0], u[:, -1] = 0.0, 1.0
    else:
        u.zero_()
    lam = torch.as_tensor(float(cond), dtype=torch.float64) ** (-u)
    scale = 10.0 ** (2.0 * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64) - 1.0)
    A = scale * (Q * lam.unsqueeze(-2)) @ Q.mT
    return 0.5 * (A + A.mT)


def _upstream(op: str, batch: int, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Fixed upstream gradients (float64, CPU) for the backward of ``op``'s outputs."""
    gen = torch.Generator().manual_seed(seed + 7919)
    G = torch.randn(batch, n, n, generator=gen, dtype=torch.float64) / n
    if op == "eigh":
        gL = torch.randn(batch, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        return gL, G
    return (0.5 * (G + G.mT),)


def reference(op: str, A: torch.Tensor) -> torch.Tensor:
    """The float64 reference of ``op`` on ``A (..., n, n)`` through ``torch.linalg.eigh``.

    ``sqrt`` and ``invsqrt`` are ``V diag(lambda^(+-1/2)) V^T`` (eigenvalues clamped at 0 for
    the square root); ``eigh`` gives the eigenvalues ``(..., n)``, ascending.
    """
    L, V = torch.linalg.eigh(A.to(torch.float64))
    if op == "eigh":
        return L
    f = L.clamp_min(0).sqrt() if op == "sqrt" else L.rsqrt()
    return (V * f.unsqueeze(-2)) @ V.mT


def _relative_errors(X: torch.Tensor, R: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    num = torch.linalg.vector_norm(X.to(torch.float64) - R, dim=dims)
    return num / torch.linalg.vector_norm(R, dim=dims).clamp_min(torch.finfo(torch.float64).tiny)


def accuracy(op: str, out: Any, A: torch.Tensor) -> dict[str, float]:
    """``rel_err`` (mean over the batch of the relative Frobenius error of the result against
    :func:`reference` on the same input), ``rel_err_max`` (the worst matrix) and, for
    ``eigh``, ``recon_err`` (mean ``||V diag(L) V^T - A||_F / ||A||_F``). Eigenvectors are
    compared through the reconstruction because their signs are arbitrary."""
    ref = reference(op, A)
    if op == "eigh":
        L, V = out
        errs = _relative_errors(L, ref, (-1,))
        L64, V64 = L.to(torch.float64), V.to(torch.float64)
        recon = (V64 * L64.unsqueeze(-2)) @ V64.mT
        recon_err = _relative_errors(recon, A.to(torch.float64), (-2, -1)).mean()
    else:
        errs = _relative_errors(out, ref, (-2, -1))
        recon_err = None
    values = torch.stack([errs.mean(), errs.max()]).tolist()
    return {
        "rel_err": values[0],
        "rel_err_max": values[1],
        "recon_err": None if recon_err is None else recon_err.item(),
    }


# --------------------------------------------------------------------------- contenders


def _peer_eigh(op: str, A: torch.Tensor) -> Any:
    """``torch.linalg.eigh`` with plain autograd (independent of eigenflow's solvers)."""
    L, V = torch.linalg.eigh(A)
    if op == "eigh":
        return L, V
    if op == "sqrt":
        f = L.clamp_min(0).sqrt()
    else:
        f = L.rsqrt()
    return (V * f.unsqueeze(-2)) @ V.mT


def _peer_svd(op: str, A: torch.Tensor) -> Any:
    """``torch.linalg.svd`` of a symmetric PSD matrix read as its eigendecomposition
    (singular values flipped to ascending order, left singular vectors as eigenvectors)."""
    U, S, _ = torch.linalg.svd(A, full_matrices=False)
    return S.flip(-1), U.flip(-1)


# A failed capture can leave the process's CUDA generator and stream unusable (seen on an
# H200, torch 2.11: every later capture failed and torch.randn raised "Offset increment outside
# graph capture"), so the peers known to synchronise with the host are not attempted.
_CUSOLVER = "cuSOLVER's eigh and svd check their result on the host; capture not attempted"


@attrs.frozen
class Contender:
    """One timed method: a peer or a configured registered solver.

    ``label`` is the row's ``solver`` column (``"mpa-lya"``, ``"mpa-lya:degree=8"``,
    ``"torch.linalg.eigh"``); ``call(op, A)`` computes ``op`` on a flat batch ``A (B, n, n)``
    without input validation; ``ops`` are the ops it provides. ``setup_error`` is the
    exception a registered solver raised when built with its defaults: its rows are errors.
    ``graph_skip`` says why its CUDA-graph rows are skipped without a capture attempt.
    """

    label: str
    base: str
    is_peer: bool
    ops: frozenset[str]
    call: Callable[[str, torch.Tensor], Any]
    setup_error: Exception | None = None
    graph_skip: str | None = None


def _parse_value(text: str) -> Any:
    if "/" in text:  # a tuple: degree=6/6 -> (6, 6)
        return tuple(_parse_value(part) for part in text.split("/"))
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_solver_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"mpa-lya:degree=6/6:lya_iters=4"`` -> ``("mpa-lya", {"degree": (6, 6), "lya_iters": 4})``.

    Values are read as int, float, ``true``/``false``, ``none`` or text; ``a/b`` is a tuple.
    """
    name, *parts = spec.strip().split(":")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"solvers: {spec!r} has option {part!r}; expected NAME:KEY=VALUE[:KEY=VALUE]"
            )
        options[key.strip()] = _parse_value(value.strip())
    return name, options


def _solver_contender(name: str, options: dict[str, Any], label: str) -> Contender:
    """A registered solver as a contender. Options given by the user that the solver rejects
    raise (a usage error); a solver that cannot be built with its defaults (a broken
    third-party plugin) becomes a contender whose rows are errors."""
    from . import api

    try:
        solver = api.create("solver", name, **options)
    except Exception as exc:
        if options:
            raise
        provides_eigh = getattr(api.get("solver", name), "provides_eigh", False)
        ops = {"sqrt", "invsqrt"} | ({"eigh"} if provides_eigh else set())
        return Contender(label, name, False, frozenset(ops), _peer_eigh, setup_error=exc)
    ops = {"sqrt", "invsqrt"} | ({"eigh"} if getattr(solver, "provides_eigh", False) else set())

    def call(op: str, A: torch.Tensor) -> Any:
        if op == "sqrt":
            return solver.sqrt(A, check=False)
        if op == "invsqrt":
            return solver.invsqrt(A, check=False)
        return solver.eigh(A, check=False)

    return Contender(label, name, False, frozenset(ops), call)


def select_contenders(patterns: Sequence[str] = ("*",)) -> list[Contender]:
    """The peers, ``ns`` (when registered) and the registered solvers matching ``patterns``.

    A pattern without options is an fnmatch pattern over ``ef.list("solver")``; a pattern
    with options (``name:key=value``) names one solver. A pattern that matches nothing is an
    error listing the registered names. Order: peers, ``ns``, then the rest by name.
    """
    from . import api

    registered = api.list("solver")
    chosen: list[tuple[str, dict[str, Any], str]] = []
    for pattern in patterns:
        name, options = parse_solver_spec(pattern)
        if options:
            if name not in registered:
                raise UnknownNameError(
                    f"solvers: unknown solver {name!r} (registered: {', '.join(registered)})"
                )
            chosen.append((name, options, pattern.strip()))
            continue
        matches = [n for n in registered if fnmatch.fnmatchcase(n, name)]
        if not matches and name not in (EIGH_PEER, SVD_PEER):
            raise UnknownNameError(
                f"solvers: {name!r} matches no registered solver "
                f"(registered: {', '.join(registered) or 'none'})"
            )
        chosen.extend((m, {}, m) for m in matches)
    if NS_SOLVER in registered:
        chosen.append((NS_SOLVER, {}, NS_SOLVER))
    labels: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, options, label in chosen:
        labels.setdefault(label, (name, options))
    order = sorted(labels, key=lambda lab: (lab != NS_SOLVER, lab))
    peers = [
        Contender(EIGH_PEER, EIGH_PEER, True, frozenset(OPS), _peer_eigh, graph_skip=_CUSOLVER),
        Contender(SVD_PEER, SVD_PEER, True, frozenset({"eigh"}), _peer_svd, graph_skip=_CUSOLVER),
    ]
    return peers + [_solver_contender(*labels[lab], lab) for lab in order]


# --------------------------------------------------------------------------- timing


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


# --------------------------------------------------------------------------- the run


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``ratio_vs_eigh`` (eager ``torch.linalg.eigh`` fwd+bwd time / this row's),
    ``fwd_ratio_vs_eigh`` (the same for the forward) and ``ratio_vs_ns`` (eager ``ns``
    fwd+bwd / this row's) within each (op, device, dtype, batch, n, cond); a ratio above 1
    means faster than the peer. Missing peers or times leave ``None``."""

    def key(r: dict[str, Any]) -> tuple:
        return (r["op"], r["device"], r["dtype"], r["batch"], r["n"], r["cond"])

    peers = {
        (r["solver"], key(r)): r
        for r in rows
        if r["mode"] == EAGER and r["status"] == "ok" and r["solver"] in (EIGH_PEER, NS_SOLVER)
    }

    def ratio(peer: dict[str, Any] | None, row: dict[str, Any], column: str) -> float | None:
        if peer is None or not peer.get(column) or not row.get(column):
            return None
        return peer[column] / row[column]

    for r in rows:
        eigh_row = peers.get((EIGH_PEER, key(r)))
        ns_row = peers.get((NS_SOLVER, key(r)))
        r["ratio_vs_eigh"] = ratio(eigh_row, r, "fwdbwd_ms")
        r["fwd_ratio_vs_eigh"] = ratio(eigh_row, r, "fwd_ms")
        r["ratio_vs_ns"] = ratio(ns_row, r, "fwdbwd_ms")
    return rows


def add_flags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``envelope`` (the bound the solver states for the row's op, dtype and condition
    number at its default config, :meth:`eigenflow.core.solver.Solver.stated_error`; ``None``
    for peers, configured variants, ``eigh`` rows and sizes above
    :data:`~eigenflow.core.solver.ENVELOPE_MAX_N`) and ``flag``: ``""``, or why the row's
    worst-matrix error ``rel_err_max`` needs a look (above the stated envelope, above
    :data:`FLAG_ERROR`, or not finite), so that ``eigenflow bench`` says so."""
    from . import api
    from .core.solver import ENVELOPE_MAX_N

    registered = set(api.list("solver"))
    for r in rows:
        r["envelope"], r["flag"] = None, ""
        if r["status"] != "ok" or r["rel_err_max"] is None:
            continue
        err = r["rel_err_max"]
        stated_for = r["op"] in ("sqrt", "invsqrt") and r["n"] <= ENVELOPE_MAX_N
        if stated_for and r["solver"] in registered and r["dtype"] in _DTYPES:
            cls = api.get("solver", r["solver"])
            stated = getattr(cls, "stated_error", None)
            r["envelope"] = stated(r["op"], _DTYPES[r["dtype"]], r["cond"]) if stated else None
        reasons = []
        if not math.isfinite(err):
            reasons.append("non-finite error")
        else:
            if r["envelope"] is not None and err > r["envelope"]:
                reasons.append(f"above the stated envelope {r['envelope']:.0e}")
            if err > FLAG_ERROR:
                reasons.append(f"above {FLAG_ERROR:g}")
        r["flag"] = "; ".join(reasons)
    return rows


def _flag_lines(rows: list[dict[str, Any]]) -> list[str]:
    flagged = [r for r in rows if r.get("flag")]
    if not flagged:
        return []
    lines = [
        f"\naccuracy flags: {len(flagged)} row(s) whose worst relative error is above the "
        f"solver's stated envelope or above {FLAG_ERROR:g} (docs/matfn.rst lists the envelopes)"
    ]
    for r in flagged:
        lines.append(
            f"  {r['solver']} {r['op']} {r['device']} {r['dtype']} batch={r['batch']} "
            f"n={r['n']} cond={r['cond']:g}: {r['rel_err_max']:.2e} ({r['flag']})"
        )
    return lines


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def _progress_line(row: dict[str, Any], index: int, total: int) -> str:
    where = (
        f"[{index}/{total}] {row['device']} {row['dtype']} {row['op']} "
        f"B={row['batch']} n={row['n']} cond={row['cond']:g} {row['solver']}"
        + (" [graph]" if row["mode"] == GRAPH else "")
    )
    if row["status"] != "ok":
        return f"{where}: {row['status'].upper()} {row['message']}"
    return (
        f"{where}: fwd {_fmt(row['fwd_ms'])} ms, bwd {_fmt(row['bwd_ms'])} ms, "
        f"fwd+bwd {_fmt(row['fwdbwd_ms'])} ms, rel_err {_fmt(row['rel_err'], '.2e')}"
    )


def _plan(spec: BenchSpec, contenders: list[Contender]) -> list[tuple]:
    """Grid points in run order: ``(device, dtype, cond, B, n, op, contenders, modes)``;
    the inputs (made per ``cond, B, n``) are shared by the devices, dtypes and ops after it."""
    plan = []
    for cond in spec.conds:
        for B in spec.batches:
            for n in spec.sizes:
                for device in spec.devices:
                    cuda = torch.device(device).type == "cuda"
                    modes = (EAGER, GRAPH) if spec.cuda_graph and cuda else (EAGER,)
                    for dtype in spec.dtypes:
                        for op in spec.ops:
                            chosen = [c for c in contenders if op in c.ops]
                            if chosen:
                                plan.append((device, dtype, cond, B, n, op, chosen, modes))
    return plan


class BenchInterrupted(EigenflowError):
    """The run was interrupted (Ctrl-C); ``rows`` holds the measurements finished so far."""

    def __init__(self, rows: list[dict[str, Any]]):
        super().__init__(f"benchmark interrupted after {len(rows)} measurements")
        self.rows = rows


def run_benchmark(
    spec: BenchSpec | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    contenders: list[Contender] | None = None,
) -> list[dict[str, Any]]:
    """Run the grid of ``spec`` and return the result rows (with ratios).

    Parameters
    ----------
    spec
        The grid and timing settings; :class:`BenchSpec` defaults when ``None``.
    progress
        Called with one line per finished measurement (e.g. ``print`` to stderr).
    contenders
        Overrides :func:`select_contenders` ``(spec.solvers)``.

    Returns
    -------
    list of dict
        One row per (device, dtype, cond, batch, n, op, solver, mode) with :data:`COLUMNS`.

    Raises
    ------
    BenchInterrupted
        On Ctrl-C, carrying the rows finished so far.
    """
    spec = spec or BenchSpec()
    contenders = contenders if contenders is not None else select_contenders(spec.solvers)
    plan = _plan(spec, contenders)
    threads = torch.get_num_threads()
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    rows: list[dict[str, Any]] = []
    try:
        _run_plan(plan, spec, progress, rows)
    except KeyboardInterrupt:
        raise BenchInterrupted(add_flags(add_ratios(rows))) from None
    finally:
        torch.set_num_threads(threads)
    return add_flags(add_ratios(rows))


def _run_plan(
    plan: list[tuple],
    spec: BenchSpec,
    progress: Callable[[str], None] | None,
    rows: list[dict[str, Any]],
) -> None:
    """Measure the grid points of ``plan``, appending finished rows to ``rows``."""
    total = sum(len(point[6]) * len(point[7]) for point in plan)
    matrices: dict[tuple, torch.Tensor] = {}
    upstream: dict[tuple, tuple] = {}
    for device, dtype, cond, B, n, op, contenders, modes in plan:
        if (cond, B, n) not in matrices:
            matrices.clear()  # one input set alive at a time (large grids)
            upstream.clear()
            matrices[(cond, B, n)] = make_spd(B, n, cond, spec.seed)
        if op not in upstream:
            upstream[op] = _upstream(op, B, n, spec.seed)
        A64, grads64 = matrices[(cond, B, n)], upstream[op]
        dev = torch.device(device)
        point_rows = {
            mode: [_new_row(c, op, device, dtype, B, n, cond, mode) for c in contenders]
            for mode in modes
        }
        try:
            A = A64.to(dev, _DTYPES[dtype])
            grads = tuple(g.to(dev, _DTYPES[dtype]) for g in grads64)
        except Exception as exc:
            for row in (r for mode_rows in point_rows.values() for r in mode_rows):
                row["stage"] = "input"
                _record_failure(row, exc, dev)
        else:
            _measure_point_eager(contenders, point_rows[EAGER], op, A, grads, spec)
            for contender, row in zip(contenders, point_rows.get(GRAPH, [])):
                _measure_point_graph(contender, row, op, A, grads, spec)
            del A, grads
        for mode_rows in point_rows.values():
            for row in mode_rows:
                rows.append(_close_row(row))
                if progress is not None:
                    progress(_progress_line(row, len(rows), total))


# --------------------------------------------------------------------------- output


def environment() -> dict[str, Any]:
    """Where the numbers come from: versions, threads, devices."""
    from ._version import __version__

    info: dict[str, Any] = {
        "eigenflow": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: non-finite numbers become null (the row's message says
    the output was non-finite)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(
    rows: list[dict[str, Any]], out: str | os.PathLike, *, spec: BenchSpec | None = None
) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` (rows plus the spec and environment) into
    the directory ``out`` (created); returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "results.csv", out / "results.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {
                    k: "" if r.get(k) is None else (repr(r[k]) if isinstance(r[k], float) else r[k])
                    for k in COLUMNS
                }
            )
    payload = {
        "format": "eigenflow-bench/1",
        "environment": environment(),
        "spec": attrs.asdict(spec) if spec is not None else None,
        "columns": list(COLUMNS),
        "rows": [{k: _json_value(r.get(k)) for k in COLUMNS} for r in rows],
    }
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    return {"csv": csv_path, "json": json_path}


#: Up to this many grid points, :func:`format_summary` adds one block per grid point.
DETAIL_BLOCKS = 24


def _detail_blocks(blocks: dict[tuple, list[dict[str, Any]]]) -> list[str]:
    header = (
        f"{'solver':<28}{'mode':<7}{'fwd ms':>10}{'bwd ms':>10}{'fwd+bwd':>10}"
        f"{'rel err':>10}{'x eigh':>9}{'x ns':>8}"
    )
    lines = []
    for (op, device, dtype, cond, B, n), group in blocks.items():
        lines.append(f"\n{op} on {device} {dtype}, {B} matrices of size {n} (cond {cond:g})")
        lines.append(header)
        group = sorted(group, key=lambda r: (r["status"] != "ok", r["fwdbwd_ms"] or math.inf))
        for r in group:
            mode = "graph" if r["mode"] == GRAPH else ""
            if r["status"] != "ok":
                lines.append(f"{r['solver']:<28}{mode:<7}{r['status']}: {r['message'][:80]}")
                continue
            lines.append(
                f"{r['solver']:<28}{mode:<7}{_fmt(r['fwd_ms']):>10}{_fmt(r['bwd_ms']):>10}"
                f"{_fmt(r['fwdbwd_ms']):>10}{_fmt(r['rel_err'], '.1e'):>10}"
                f"{_fmt(r['ratio_vs_eigh'], '.2f'):>9}{_fmt(r['ratio_vs_ns'], '.2f'):>8}"
            )
    return lines


def _ratio_tables(rows: list[dict[str, Any]]) -> list[str]:
    """Per (op, device, dtype, cond): rows (batch, n), a column per solver holding its
    ``ratio_vs_eigh`` (``err``/``skip`` for failed rows), and eigh's own fwd+bwd time."""
    tables: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        tables.setdefault((r["op"], r["device"], r["dtype"], r["cond"]), []).append(r)
    lines = []
    for (op, device, dtype, cond), group in tables.items():
        columns = list(dict.fromkeys(_series_label(r) for r in group))
        columns = [c for c in columns if c != EIGH_PEER]
        widths = {c: max(8, len(c) + 2) for c in columns}
        lines.append(
            f"\nspeed-up over torch.linalg.eigh + autograd (fwd+bwd), {op} on {device} {dtype} "
            f"(cond {cond:g})"
        )
        heading = "".join(f"{c:>{widths[c]}}" for c in columns)
        lines.append(f"{'batch':>6}{'n':>5}{'eigh ms':>10}{heading}")
        cells: dict[tuple, dict[str, str]] = {}
        eigh_ms: dict[tuple, str] = {}
        for r in group:
            key = (r["batch"], r["n"])
            if r["solver"] == EIGH_PEER and r["mode"] == EAGER:
                eigh_ms[key] = _fmt(r["fwdbwd_ms"]) if r["status"] == "ok" else r["status"]
                continue
            text = (
                _fmt(r["ratio_vs_eigh"], ".2f")
                if r["status"] == "ok"
                else ("err" if r["status"] == "error" else "skip")
            )
            cells.setdefault(key, {})[_series_label(r)] = text
        for key in sorted(set(cells) | set(eigh_ms)):
            row = cells.get(key, {})
            lines.append(
                f"{key[0]:>6}{key[1]:>5}{eigh_ms.get(key, '-'):>10}"
                + "".join(f"{row.get(c, '-'):>{widths[c]}}" for c in columns)
            )
    return lines


def format_summary(rows: list[dict[str, Any]], *, detail: bool | None = None) -> str:
    """A plain-text summary of the rows.

    One table per (op, device, dtype, cond) of the speed-up of each solver over
    ``torch.linalg.eigh`` + autograd (eigh's fwd+bwd time / the solver's; above 1 is faster),
    then, when ``detail`` (default: at most :data:`DETAIL_BLOCKS` grid points), one block per
    grid point with the forward, backward and forward+backward times, the relative error and
    the ratios against eigh and ``ns``, solvers sorted by forward+backward time; last, the
    rows :func:`add_flags` flagged (error above the stated envelope or above 1e-2).
    """
    blocks: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["op"], r["device"], r["dtype"], r["cond"], r["batch"], r["n"])
        blocks.setdefault(key, []).append(r)
    if detail is None:
        detail = len(blocks) <= DETAIL_BLOCKS
    lines = _ratio_tables(rows)
    if detail:
        lines += _detail_blocks(blocks)
    lines += _flag_lines(rows)
    return "\n".join(lines).lstrip("\n")


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NotSupportedError(
            "benchmark plots need matplotlib: pip install 'eigenflow[bench]' (or pass --no-plots)"
        ) from None
    return Figure, FigureCanvasAgg


def _panels(Figure: Any, count: int) -> tuple[Any, list[Any]]:
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.2 * cols + 2.2, 3.4 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _log_axis(ax: Any, axis: str, values: list[float]) -> None:
    """Log scale spanning at least a decade (so a major tick is labelled), minor labels off."""
    from matplotlib.ticker import NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if values:
        lo, hi = min(values) / 1.3, max(values) * 1.3
        if hi / lo < 10.0:
            mid = math.sqrt(lo * hi)
            lo, hi = mid / math.sqrt(10.0), mid * math.sqrt(10.0)
        getattr(ax, f"set_{axis}lim")(lo, hi)
    getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


def _series_label(r: dict[str, Any]) -> str:
    return r["solver"] + (" [graph]" if r["mode"] == GRAPH else "")


_MARKERS = "osD^vP*Xh<>p"


def _styles(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, marker) per series across one figure; peers dashed."""
    from matplotlib import colormaps

    colours = colormaps["tab20"].colors
    styles = {}
    for i, label in enumerate(sorted(set(labels))):
        styles[label] = {
            "color": colours[(2 * i) % 20 + (i // 10) % 2],
            "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": "--" if label.startswith("torch.") else "-",
        }
    return styles


def _finish(fig: Any, axes: list[Any], title: str, path: Path) -> None:
    """One legend for the figure (outside the panels), the title, and the PNG."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)


def _line_plot(
    Figure: Any, rows: list[dict[str, Any]], panel_key: str, x_key: str, title: str, path: Path
) -> None:
    panels = sorted({r[panel_key] for r in rows})
    fig, axes = _panels(Figure, len(panels))
    styles = _styles(_series_label(r) for r in rows)
    for ax, value in zip(axes, panels):
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r[panel_key] == value and r["status"] == "ok" and r["fwdbwd_ms"]:
                series.setdefault(_series_label(r), []).append((r[x_key], r["fwdbwd_ms"]))
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot(*zip(*points), markersize=4, label=label, **styles[label])
        ax.set_xscale("log", base=2)
        _log_axis(ax, "y", [p[1] for pts in series.values() for p in pts])
        ax.set_xlabel("batch size" if x_key == "batch" else "matrix size n")
        ax.set_ylabel("forward+backward (ms)")
        ax.set_title(f"{'n' if panel_key == 'n' else 'batch'} = {value}")
        ax.grid(True, which="both", alpha=0.3)
    _finish(fig, axes, title, path)


def _error_plot(Figure: Any, rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Forward error vs forward time, one panel per (batch, n) (thesis 000, Fig. 2.3):
    variants of one solver (``name:key=value``) are joined by a line."""

    def base(r: dict[str, Any]) -> str:
        return r["solver"].split(":")[0] + (" [graph]" if r["mode"] == GRAPH else "")

    panels = sorted({(r["batch"], r["n"]) for r in rows})
    fig, axes = _panels(Figure, len(panels))
    styles = _styles(base(r) for r in rows)
    for ax, (B, n) in zip(axes, panels):
        groups: dict[str, list[tuple[float, float, str]]] = {}
        for r in rows:
            ok = r["status"] == "ok" and r["fwd_ms"] and r["rel_err"] is not None
            if (r["batch"], r["n"]) == (B, n) and ok and math.isfinite(r["rel_err"]):
                groups.setdefault(base(r), []).append(
                    (r["fwd_ms"], max(r["rel_err"], 1e-17), r["solver"])
                )
        for name, points in sorted(groups.items()):
            points.sort()
            style = dict(styles[name])
            if len(points) == 1:
                style["linestyle"] = ""
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], markersize=5, label=name, **style
            )
            for x, y, label in points:
                if ":" in label:
                    ax.annotate(label.split(":", 1)[1], (x, y), fontsize=6)
        _log_axis(ax, "x", [p[0] for pts in groups.values() for p in pts])
        _log_axis(ax, "y", [p[1] for pts in groups.values() for p in pts])
        ax.set_xlabel("forward time (ms)")
        ax.set_ylabel("relative error")
        ax.set_title(f"batch {B}, n = {n}")
        ax.grid(True, which="both", alpha=0.3)
    _finish(fig, axes, title, path)


def plot_results(rows: list[dict[str, Any]], out: str | os.PathLike) -> list[Path]:
    """Write PNG plots into ``out`` for each (op, device, dtype, cond): forward+backward time
    vs batch size (a panel per n), vs matrix size (a panel per batch size) and forward error
    vs forward time (a panel per (batch, n)). Needs matplotlib (``eigenflow[bench]``)."""
    Figure, _ = _matplotlib()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["op"], r["device"], r["dtype"], r["cond"]), []).append(r)
    multi_cond = len({k[3] for k in groups}) > 1
    for (op, device, dtype, cond), group in groups.items():
        tag = f"{op}_{device.replace(':', '')}_{dtype}" + (f"_cond{cond:g}" if multi_cond else "")
        title = f"{op}, {device}, {dtype}, cond {cond:g}"
        for name, panel, x in (("time_vs_batch", "n", "batch"), ("time_vs_size", "batch", "n")):
            path = out / f"{name}_{tag}.png"
            _line_plot(Figure, group, panel, x, title, path)
            paths.append(path)
        path = out / f"error_vs_time_{tag}.png"
        _error_plot(Figure, group, title, path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- command line


def _csv_list(convert: Callable[[str], Any], allowed: Sequence[str] | None = None) -> Callable:
    def parse(text: str) -> tuple:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        if allowed is not None:
            bad = [t for t in items if t not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"{', '.join(map(repr, bad))} not allowed (choose from {', '.join(allowed)})"
                )
        try:
            return tuple(convert(t) for t in items)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _solver_list(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected solver names or patterns")
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``eigenflow bench`` to ``parser`` (a subparser)."""
    grid = parser.add_argument_group("grid (defaults: the --quick grid)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="the default grid: sqrt, batch 1,64, size 16,64, float32 "
        "(about a minute on a 2-core CPU)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="the issues' grid: sqrt,invsqrt,eigh x batch 1..4096 x size 4..256 x "
        "float32,float64 (hours on a CPU)",
    )
    grid.add_argument(
        "--solvers",
        type=_solver_list,
        default=("*",),
        metavar="LIST",
        help="comma-separated fnmatch patterns of registered solvers, or "
        "NAME:KEY=VALUE[:KEY=VALUE] for a configured variant (a/b is a tuple; default: all); "
        f"{EIGH_PEER}, {SVD_PEER} and ns always run as peers",
    )
    grid.add_argument(
        "--ops",
        type=_csv_list(str, OPS),
        metavar="LIST",
        help="comma-separated ops: sqrt, invsqrt, eigh (eigh: solvers with eigh)",
    )
    grid.add_argument(
        "--batch",
        type=_csv_list(int),
        metavar="LIST",
        help="comma-separated batch sizes, e.g. 1,64,1024",
    )
    grid.add_argument(
        "--size",
        type=_csv_list(int),
        metavar="LIST",
        help="comma-separated matrix sizes n, e.g. 4,16,64",
    )
    grid.add_argument(
        "--dtype",
        type=_csv_list(str, tuple(_DTYPES)),
        metavar="LIST",
        help="comma-separated dtypes: float32, float64",
    )
    grid.add_argument(
        "--device",
        type=_csv_list(str),
        metavar="LIST",
        help="comma-separated devices: cpu, cuda, cuda:1 (default: cpu, and cuda when available)",
    )
    grid.add_argument(
        "--cond",
        type=_csv_list(float),
        metavar="LIST",
        help="comma-separated condition numbers of the random SPD inputs (default: 1e3)",
    )
    timing = parser.add_argument_group("timing")
    timing.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed repeats per measurement; the median is reported (default 5)",
    )
    timing.add_argument(
        "--warmup", type=int, default=2, help="untimed warm-up calls per measurement (default 2)"
    )
    timing.add_argument(
        "--max-time",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time budget of one measurement; repeats are reduced to fit (default 10)",
    )
    timing.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads during the run (default: torch's default)",
    )
    timing.add_argument("--seed", type=int, default=0, help="seed of the inputs (default 0)")
    timing.add_argument(
        "--cuda-graph",
        action="store_true",
        help="also capture each solver's forward+backward in a CUDA graph and "
        "time its replay (CUDA devices; solvers that cannot be captured are "
        "skipped with a note)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        metavar="DIR",
        help="directory for results.csv, results.json and the plots (default ./eigenflow-bench)",
    )
    output.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    output.add_argument(
        "--gradient-quality",
        action="store_true",
        help="also write the gradient-quality report of the eigh-based solvers (relative "
        "error against the exact float64 gradient and largest gradient entry over a "
        "conditioning sweep) to OUT/gradients",
    )
    output.add_argument(
        "--from-json",
        metavar="FILE",
        default=None,
        help="measure nothing: summarise and plot the rows of a saved "
        "results.json (into --out, default: next to FILE)",
    )
    output.add_argument(
        "--quiet", action="store_true", help="no progress lines and no summary table"
    )


def spec_from_args(args: argparse.Namespace) -> BenchSpec:
    """The :class:`BenchSpec` of parsed command-line ``args`` (grid options override the
    ``--quick``/``--full`` preset)."""
    preset = FULL_GRID if getattr(args, "full", False) else QUICK_GRID
    fields: dict[str, Any] = {
        "solvers": args.solvers,
        "ops": args.ops or preset["ops"],
        "batches": args.batch or preset["batches"],
        "sizes": args.size or preset["sizes"],
        "dtypes": args.dtype or preset["dtypes"],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_time": args.max_time,
        "seed": args.seed,
        "cuda_graph": args.cuda_graph,
        "threads": getattr(args, "threads", None),
    }
    if args.device:
        fields["devices"] = args.device
    if args.cond:
        fields["conds"] = args.cond
    return BenchSpec(**fields)


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``results.json`` written by :func:`write_results` (``null`` read back as
    ``None``)."""
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or payload.get("format") != "eigenflow-bench/1":
        raise ConfigError(f"{path}: not an eigenflow benchmark results.json")
    return [{k: row.get(k) for k in COLUMNS} for row in payload["rows"]]


def _from_json(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    source = Path(args.from_json)
    out = source.parent if args.out == _DEFAULT_OUT else Path(args.out)
    try:
        rows = load_results(source)
        written = [] if args.no_plots else plot_results(rows, out)
    except (OSError, ValueError, EigenflowError) as exc:
        print(f"eigenflow bench: error: {exc}", file=stderr)
        return 2
    if not args.quiet:
        print(format_summary(rows), file=stdout)
        if written:
            print("\nwrote " + ", ".join(str(p) for p in written), file=stdout)
    return 0


def _gradient_report(args: argparse.Namespace, progress: Any) -> list[Path]:
    """Gradient quality of every solver with ``eigh`` (thesis 000, Tables 3.1-3.2 in spirit)."""
    from .bench_gradients import gradient_quality, write_gradient_report

    if not args.quiet:
        progress("eigenflow bench: gradient quality over the conditioning sweep")
    rows = gradient_quality()
    return write_gradient_report(rows, Path(args.out) / "gradients", plot=not args.no_plots)


def main(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``eigenflow bench`` with parsed ``args``; returns the exit status (0 on success,
    even when some solvers produced error rows; 2 on a bad option; 130 when interrupted with
    Ctrl-C, after writing the rows measured so far)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if getattr(args, "from_json", None):
        return _from_json(args, stdout, stderr)
    try:
        spec = spec_from_args(args)
        if not args.no_plots:
            _matplotlib()  # fail before a long run, not after it
        contenders = select_contenders(spec.solvers)
    except EigenflowError as exc:
        print(f"eigenflow bench: error: {exc}", file=stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=stderr, flush=True)

    if not args.quiet:
        names = ", ".join(c.label for c in contenders)
        progress(f"eigenflow bench: {names}")
    status = 0
    try:
        rows = run_benchmark(spec, progress=None if args.quiet else progress, contenders=contenders)
    except BenchInterrupted as stop:
        rows, status = stop.rows, 130
        print(f"interrupted: writing the {len(rows)} rows measured so far", file=stderr)
    paths = write_results(rows, args.out, spec=spec)
    written = [paths["csv"], paths["json"]]
    if not args.no_plots:
        written += plot_results(rows, args.out)
    if not args.quiet:
        print(format_summary(rows), file=stdout)
        print("\nwrote " + ", ".join(str(p) for p in written), file=stdout)
    if getattr(args, "gradient_quality", False) and status == 0:
        written += _gradient_report(args, progress)
        if not args.quiet:
            print(
                "wrote the gradient-quality report to " + str(Path(args.out) / "gradients"),
                file=stdout,
            )
    errors = sum(r["status"] == "error" for r in rows)
    if errors and not args.quiet:
        print(f"{errors} measurement(s) failed; see the status and message columns", file=stdout)
    return status
