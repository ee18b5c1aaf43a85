"""The benchmark run: the plan over the grid, progress lines, Ctrl-C handling
(:class:`BenchInterrupted` carries the rows measured so far), ratios and flags of the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.errors import EigenflowError
from .accuracy import add_flags
from .contenders import Contender, select_contenders
from .inputs import _upstream, make_spd
from .reporting import _fmt, add_ratios
from .spec import _DTYPES, EAGER, GRAPH, BenchSpec
from .timing import (
    _close_row,
    _measure_point_eager,
    _measure_point_graph,
    _new_row,
    _record_failure,
)

__all__ = ["BenchInterrupted", "run_benchmark"]


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
        One row per (device, dtype, cond, batch, n, op, solver, mode) with ``COLUMNS``.

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
