"""Results: speed ratios against the peers, the environment record, the CSV and JSON files
(``results.json`` format ``eigenflow-bench/1``) and the text summary.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import attrs
import torch

from ..core.errors import ConfigError
from .accuracy import FLAG_ERROR
from .spec import COLUMNS, EAGER, EIGH_PEER, GRAPH, NS_SOLVER, BenchSpec

__all__ = [
    "DETAIL_BLOCKS",
    "add_ratios",
    "environment",
    "format_summary",
    "load_results",
    "series_label",
    "write_results",
]


def series_label(row: dict[str, Any]) -> str:
    """The label of a row's series in tables and plots: the solver, ``[graph]`` when replayed
    from a CUDA graph."""
    return row["solver"] + (" [graph]" if row["mode"] == GRAPH else "")


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


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


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


def environment() -> dict[str, Any]:
    """Where the numbers come from: versions, threads, devices."""
    from .._version import __version__

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
    rows: list[dict[str, Any]],
    out: str | os.PathLike,
    *,
    spec: BenchSpec | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` (rows plus the spec, the environment and,
    when given, the :func:`eigenflow.bench.provenance.record` of the run under
    ``"provenance"``) into the directory ``out`` (created); returns their paths."""
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
        **({} if provenance is None else {"provenance": provenance}),
        "format": "eigenflow-bench/1",
        "environment": environment(),
        "spec": attrs.asdict(spec) if spec is not None else None,
        "columns": list(COLUMNS),
        "rows": [{k: _json_value(r.get(k)) for k in COLUMNS} for r in rows],
    }
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    return {"csv": csv_path, "json": json_path}


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
        columns = list(dict.fromkeys(series_label(r) for r in group))
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
            cells.setdefault(key, {})[series_label(r)] = text
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
    then, when ``detail`` (default: at most :data:`~eigenflow.bench.reporting.DETAIL_BLOCKS`
    grid points), one block per grid point with the forward, backward and forward+backward
    times, the relative error and the ratios against eigh and ``ns``, solvers sorted by
    forward+backward time; last, the rows :func:`add_flags` flagged (error above the stated
    envelope or above 1e-2).
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


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``results.json`` written by :func:`write_results` (``null`` read back as
    ``None``)."""
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or payload.get("format") != "eigenflow-bench/1":
        raise ConfigError(f"{path}: not an eigenflow benchmark results.json")
    return [{k: row.get(k) for k in COLUMNS} for row in payload["rows"]]
