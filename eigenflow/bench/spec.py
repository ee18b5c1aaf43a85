"""The benchmark grid: operations, peers, result columns, the quick and full grids and
:class:`BenchSpec`, the validated description of one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs
import torch

from ..core.errors import ConfigError

__all__ = [
    "COLUMNS",
    "EAGER",
    "EIGH_PEER",
    "FULL_GRID",
    "GRAPH",
    "NS_SOLVER",
    "OPS",
    "QUICK_GRID",
    "SVD_PEER",
    "BenchSpec",
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
    """What to benchmark (the defaults are ``QUICK_GRID`` on every available device).

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
