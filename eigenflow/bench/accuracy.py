"""Accuracy of a measured output against a float64 ``torch.linalg.eigh`` reference, and the
flags of rows above a solver's stated error envelope (or above :data:`FLAG_ERROR`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .spec import _DTYPES

__all__ = ["FLAG_ERROR", "accuracy", "add_flags", "reference"]


#: Above this worst-matrix relative error a row is flagged whatever the solver states.
FLAG_ERROR = 1e-2


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


def add_flags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``envelope`` (the bound the solver states for the row's op, dtype and condition
    number at its default config, :meth:`eigenflow.core.solver.Solver.stated_error`; ``None``
    for peers, configured variants, ``eigh`` rows and sizes above
    :data:`~eigenflow.core.solver.ENVELOPE_MAX_N`) and ``flag``: ``""``, or why the row's
    worst-matrix error ``rel_err_max`` needs a look (above the stated envelope, above
    :data:`~eigenflow.bench.accuracy.FLAG_ERROR`, or not finite), so that ``eigenflow bench``
    says so."""
    from .. import api
    from ..core.solver import ENVELOPE_MAX_N

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
