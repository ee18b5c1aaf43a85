"""What is benchmarked: the registered solvers (selected by fnmatch patterns, with options) and
the two peers written here independently of eigenflow's solvers, ``torch.linalg.eigh`` and
``torch.linalg.svd``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from ..core.errors import ConfigError, UnknownNameError
from .spec import EIGH_PEER, NS_SOLVER, OPS, SVD_PEER

__all__ = ["Contender", "parse_solver_spec", "select_contenders"]


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
    from .. import api

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
    from .. import api

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
