"""Localise the eigenvector fault of the ``batched-ed`` Triton kernel seen on the first GPU run.

The archived H200 run (``benchmarks/results/h200-2026-11-30/issue5-batched-ed.csv``) has
correct eigenvalues but ``||V^T V - I||_2 = 1`` at ``n = 48`` and at ``n = 64`` with 1024 and
4096 matrices; the same inputs are exact under the Triton interpreter. This script runs the
kernel on those inputs (``batched_ed_bench.py``'s matrices and seeds) with 1, 4 and 8
warps per program, with ``torch.linalg.eigh`` and the PyTorch implementation on the same
device as controls, and reports per run how many matrices are wrong and, for the first wrong
one, what is wrong with its eigenvectors: zero columns, repeated columns (``|v_i^T v_j| >
0.99``), unsorted or wrong eigenvalues. One run per warp count tells a fault between warps
(gone with one warp) from one in the algorithm. Each row also has its median time, and two
small-``n`` configurations are added for the speed target there (``n <= 32``: the number of
warps per program is the kernel's main free parameter). Results go to ``--out`` as JSON with
the provenance of the run.

Examples::

    python benchmarks/batched_ed_gpu_diagnose.py --out $OUT/diagnose.json          # a GPU
    python benchmarks/batched_ed_gpu_diagnose.py --device cpu --configs 5x3 --warps 1,4 \\
        --out /tmp/diagnose.json          # the interpreter, for checking the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batched_ed_bench import random_symmetric, time_call

from eigenflow.bench.provenance import imported_modules, record

SCRIPT = "benchmarks/batched_ed_gpu_diagnose.py"
DEPENDENCIES = ("eigenflow.plugins.batched_ed",)
#: (n, batch) of the archived run where the eigenvectors were wrong, then two of the small-n
#: target's (n <= 32, batch >= 256: at least as fast as torch.linalg.eigh), where the run's
#: 8 warps per program were 1.5-1.9x slower than eigh and fewer may be faster
CONFIGS = ((48, 64), (64, 1024), (16, 4096), (32, 4096))
#: warps per program: one (no fault between warps possible), the default's 8, and 4; each is a
#: separate compilation of the kernel (seconds on a GPU), hence not every count
WARPS = (1, 4, 8)
#: an orthogonality error above this counts as a wrong matrix (correct ones are ~1e-6)
BAD_ORTHOGONALITY = 1e-3


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(int(v) for v in item.split("x")) for item in text.split(",") if item)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def errors(A: torch.Tensor, L: torch.Tensor, V: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per matrix, in float64 on the CPU: eigenvalue error relative to ``||A||_2``,
    ``||V^T V - I||_2`` and the reconstruction error relative to ``||A||_2``."""
    A, L, V = A.double().cpu(), L.double().cpu(), V.double().cpu()
    norm = torch.linalg.matrix_norm(A, ord=2).clamp_min(1e-300)
    eye = torch.eye(A.shape[-1], dtype=torch.float64)
    return {
        "eig": (L - torch.linalg.eigvalsh(A)).abs().amax(-1) / norm,
        "orth": torch.linalg.matrix_norm(V.mT @ V - eye, ord=2),
        "rec": torch.linalg.matrix_norm((V * L.unsqueeze(-2)) @ V.mT - A, ord=2) / norm,
    }


def describe_columns(V: torch.Tensor, L: torch.Tensor) -> dict:
    """What is wrong with one eigenvector matrix ``V (n, n)`` and its eigenvalues ``L (n,)``."""
    V, L = V.double().cpu(), L.double().cpu()
    gram = V.mT @ V
    norms = gram.diagonal()
    off = (gram - torch.diag_embed(norms)).abs()
    repeated = (off > 0.99).nonzero().tolist()
    return {
        "zero columns": (norms < 0.5).nonzero().flatten().tolist(),
        "long columns": (norms > 1.5).nonzero().flatten().tolist(),
        "repeated column pairs": [p for p in repeated if p[0] < p[1]],
        "largest off-diagonal of V^T V": float(off.max()),
        "eigenvalues ascending": bool((L[1:] >= L[:-1]).all()),
    }


def summarise(A: torch.Tensor, L: torch.Tensor, V: torch.Tensor, converged: torch.Tensor) -> dict:
    """Counts and maxima of one run, and the first wrong matrix described."""
    err = errors(A, L, V)
    bad = (err["orth"] > BAD_ORTHOGONALITY).nonzero().flatten().tolist()
    out = {
        "matrices": A.shape[0],
        "wrong (orthogonality > 1e-3)": len(bad),
        "wrong indices (first 20)": bad[:20],
        "converged": int(converged.sum()),
        **{f"max {k} error": float(v.max()) for k, v in err.items()},
    }
    if bad:
        first = bad[0]
        out["first wrong"] = {"index": first, **describe_columns(V[first], L[first])}
        out["first wrong"]["eigenvalue error"] = float(err["eig"][first])
    return out


def _eigh_result(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    L, V = torch.linalg.eigh(A)
    return L, V, torch.ones(A.shape[0], dtype=torch.bool)


def diagnose(configs, warps, device: str, dtype: torch.dtype, repeats: int = 5) -> list[dict]:
    """One row per (configuration, method): errors, the first wrong matrix described, and
    (but for the PyTorch implementation, a control only) the median time of ``repeats``
    calls in ms, after the checked call, which compiles."""
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernel module is imported
    from eigenflow.plugins.batched_ed import torch_impl, triton_impl

    def triple(result) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return result.eigenvalues, result.eigenvectors, result.converged

    rows = []
    for n, batch in configs:
        A = random_symmetric(n, batch, dtype, device, seed=n * 7919 + batch)
        runs = [
            ("torch.linalg.eigh", None, lambda A=A: _eigh_result(A)),
            ("torch", None, lambda A=A: triple(torch_impl.batched_eigh(A))),
        ]
        runs += [
            ("triton", w, lambda A=A, w=w: triple(triton_impl.batched_eigh(A, num_warps=w)))
            for w in warps
        ]
        for backend, w, call in runs:
            row = {"n": n, "batch": batch, "backend": backend, "num_warps": w}
            try:
                with torch.no_grad():
                    row.update(summarise(A, *call()))
                    if backend != "torch":  # the control's speed is not the question
                        row["ms"] = 1e3 * time_call(call, device, repeats, warmup=0)
            except Exception as err:  # a launch that fails is a finding, not the end
                row["error"] = f"{type(err).__name__}: {err}"[:500]
            print(json.dumps({k: v for k, v in row.items() if k != "first wrong"}), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--configs", type=_pairs, default=CONFIGS, help="NxBATCH,...")
    parser.add_argument("--warps", type=_ints, default=WARPS)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = diagnose(args.configs, args.warps, args.device, getattr(torch, args.dtype), args.repeats)
    environment = {"torch": torch.__version__}
    try:
        import triton

        environment["triton"] = triton.__version__
    except ImportError:  # pragma: no cover - the kernel needs it anyway
        pass
    if args.device == "cuda":
        environment["gpu"] = torch.cuda.get_device_name()
    provenance = record(
        SCRIPT,
        seeds=[n * 7919 + b for n, b in args.configs],
        config={
            "device": args.device,
            "dtype": args.dtype,
            "configs": [list(c) for c in args.configs],
            "warps": list(args.warps),
            "repeats": args.repeats,
            **environment,
        },
        dependencies=[*imported_modules(DEPENDENCIES), "benchmarks/batched_ed_bench.py"],
        argv=argv,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"provenance": provenance, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
