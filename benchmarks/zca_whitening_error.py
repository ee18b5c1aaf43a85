"""Whitening error of the ``zca-whitening`` layer per solver, group size and condition number
(the table of ``docs/layers.rst``).

Samples: ``N`` draws of ``C`` channels, ``x = L^(1/2) z`` with ``z`` standard Gaussian and
``L = U diag(lambda) U^T`` (Haar-random ``U``, eigenvalues log-spaced in ``[1/cond, 1]``),
built in float64 and cast to float32. The layer (training mode, ``eps = 1e-5``, no affine,
default solver options) whitens each group of ``g`` channels with its own covariance; the
error is ``||cov(out_group) - I||_F / sqrt(g)`` in float64, averaged over the groups.

    python benchmarks/zca_whitening_error.py

Writes ``benchmarks/results/zca-whitening-error.json`` (``--json``, with its provenance) and
``docs/generated/zca_whitening_error.inc`` (``--docs``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated

SCRIPT = "benchmarks/zca_whitening_error.py"
#: the measured code: the layer and the solvers it is built around
DEPENDENCIES = ("eigenflow.plugins.layers", "eigenflow.plugins.matfn", "eigenflow.plugins.eig")
SOLVERS = ("svd", "mpa-lya", "mtp-lya", "ns")
GROUPS = (64, 16, 4)
CONDS = (1e1, 1e2, 1e3)


def samples(n: int, channels: int, cond: float, seed: int) -> torch.Tensor:
    """``(n, channels)`` float64 samples with population covariance of condition ``cond``."""
    gen = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(channels, channels, generator=gen, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    lam = torch.logspace(0.0, -math.log10(cond), channels, dtype=torch.float64)
    root = (Q * lam.sqrt()) @ Q.T
    return torch.randn(n, channels, generator=gen, dtype=torch.float64) @ root


def whitening_error(out: torch.Tensor, g: int) -> float:
    """Mean over groups of ``||cov(group) - I||_F / sqrt(g)`` of ``out (n, C)``."""
    x = out.double()
    x = x - x.mean(0)
    errors = []
    for start in range(0, x.shape[1], g):
        block = x[:, start : start + g]
        cov = block.T @ block / block.shape[0]
        eye = torch.eye(g, dtype=torch.float64)
        errors.append(float(torch.linalg.matrix_norm(cov - eye) / math.sqrt(g)))
    return sum(errors) / len(errors)


def measure(n: int, channels: int, seed: int) -> list[dict]:
    rows = []
    for cond in CONDS:
        x = samples(n, channels, cond, seed).float()
        for g in GROUPS:
            for solver in SOLVERS:
                layer = ef.create(
                    "layer",
                    "zca-whitening",
                    num_features=channels,
                    group_size=g,
                    eps=1e-5,
                    affine=False,
                    solver=solver,
                )
                layer.train()
                with torch.no_grad():
                    out = layer(x)
                err = whitening_error(out, g)
                rows.append({"solver": solver, "g": g, "cond": cond, "whitening_error": err})
    return rows


def rst(rows: list[dict], config: dict) -> str:
    header = ["solver", "``g``", *(f"cond {c:.0e}".replace("e+0", "e") for c in CONDS)]
    error = {(r["solver"], r["g"], r["cond"]): r["whitening_error"] for r in rows}
    body = []
    for g in GROUPS:
        for solver in SOLVERS:
            cells = [f"{error[solver, g, c]:.1e}" for c in CONDS]
            body.append([f"``{solver}``", str(g), *cells])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    table = "\n".join([rule, fmt(header), rule, *(fmt(b) for b in body), rule])
    setting = (
        f"{config['samples']} samples of {config['channels']} channels, float32, eps 1e-5, "
        f"seed {config['seed']}, {config['threads']} thread(s):"
    )
    return f"{setting}\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/zca-whitening-error.json")
    )
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/zca_whitening_error.inc"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args.samples, args.channels, args.seed)
    config = {
        "samples": args.samples,
        "channels": args.channels,
        "seed": args.seed,
        "solvers": list(SOLVERS),
        "groups": list(GROUPS),
        "conds": list(CONDS),
        "eps": 1e-5,
        "threads": torch.get_num_threads(),
    }
    prov = record(
        SCRIPT,
        seeds=[args.seed],
        config=config,
        dependencies=imported_modules(DEPENDENCIES),
        argv=argv,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"provenance": prov, "rows": rows}, indent=1) + "\n")
    write_generated(args.docs, rst(rows, config), script=SCRIPT, sources=[args.json.as_posix()])
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
