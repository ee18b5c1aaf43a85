"""Detect host-device synchronisation in eager code, on any device (the CPU included).

A read of a tensor's value on the host (``.item()``, ``bool(tensor)``, ``int(tensor)``, a
Python ``if`` on a tensor) reaches the dispatcher as ``aten::_local_scalar_dense``; operators
whose output shape depends on values (``nonzero``, ``masked_select``, ``unique``, boolean-mask
indexing) must synchronise on CUDA to size their output. :func:`record_host_syncs` records
both kinds while a block runs, so a test on the CPU can prove that a hot path would not stall a
GPU nor break a CUDA graph. ``Tensor.tolist()`` on a CPU tensor reads memory without the
dispatcher: whole-graph tracing (``torch.compile(fullgraph=True)``) catches that one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SYNCING_OPERATORS", "record_host_syncs"]

#: aten operators that read values on the host or size their output from values.
SYNCING_OPERATORS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "nonzero_static_fallback",
        "masked_select",
        "unique",
        "_unique",
        "_unique2",
        "unique_consecutive",
        "unique_dim",
        "repeat_interleave",
    }
)


class _SyncRecorder(TorchDispatchMode):
    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNCING_OPERATORS:
            self.found.append(name)
        elif name in ("index", "index_put", "index_put_") and _has_boolean_index(args):
            self.found.append(f"{name} (boolean mask)")
        return func(*args, **(kwargs or {}))


def _has_boolean_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(getattr(i, "dtype", None) == torch.bool for i in indices or ())


@contextmanager
def record_host_syncs() -> Iterator[list[str]]:
    """Record the synchronising operators run inside the block (forward and, when the block
    calls it, backward), in order.

    Examples
    --------
    >>> import torch
    >>> with record_host_syncs() as found:
    ...     _ = torch.ones(3).sum().item()
    >>> found
    ['_local_scalar_dense']
    """
    found: list[str] = []
    with _SyncRecorder(found):
        yield found
