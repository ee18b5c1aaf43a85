"""Plots of benchmark rows (time vs batch, time vs size, error vs time as in thesis 000,
Fig. 2.3). Needs matplotlib (``pip install 'eigenflow[bench]'``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import NotSupportedError
from .reporting import series_label
from .spec import GRAPH

__all__ = ["plot_results"]


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
    styles = _styles(series_label(r) for r in rows)
    for ax, value in zip(axes, panels):
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r[panel_key] == value and r["status"] == "ok" and r["fwdbwd_ms"]:
                series.setdefault(series_label(r), []).append((r[x_key], r["fwdbwd_ms"]))
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
