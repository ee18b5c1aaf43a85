"""Lanczos top-k of the metric tensor vs the full Hessian by back-propagation (seed 003,
App. A.2, Table 1), on a generator with a 512-d latent: time and eigenvalue agreement.

    python benchmarks/hessian_bench.py --latent 512 --k 10 --out bench-results/hessian
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import eigenflow as ef
from eigenflow.plugins.traversals.metric_tensor import metric_by_backprop


class ConvGenerator(nn.Module):
    """A DCGAN-style generator: latent (B, d) -> image (B, 3, 32, 32)."""

    def __init__(self, latent: int, width: int = 64, decay: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(latent, width * 4 * 4 * 4)
        if decay:  # latent gains log-spaced over `decay` decades: a trained GAN's anisotropy
            with torch.no_grad():
                self.fc.weight.mul_(torch.logspace(0, -decay, latent))
        self.width = width
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, 3, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 4 * self.width, 4, 4))


def timed(fn, repeats: int = 3):
    """Result of ``fn`` and its median wall time over ``repeats`` runs after one warm-up."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latent", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iters", type=int, default=None, help="Krylov dimension")
    parser.add_argument(
        "--decay",
        type=float,
        default=0.0,
        help="decades over which the latent gains fall (0: untrained, flat spectrum; seed 003 "
        "reports trained-GAN spectra spanning 5-10 decades of eigenvalues, i.e. 2.5-5 of gains)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench-results/hessian")
    args = parser.parse_args()
    torch.manual_seed(0)
    G = ConvGenerator(args.latent, decay=args.decay).to(args.device)
    for p in G.parameters():
        p.requires_grad_(False)
    z = torch.randn(1, args.latent, device=args.device)
    rows = []
    H, t_full = timed(lambda: metric_by_backprop(G, z).detach())
    exact = torch.linalg.eigvalsh(H.double()).flip(-1)[0, : args.k]
    rows.append({"method": "full backprop", "seconds": t_full, "max_rel_err": 0.0})
    for hvp in ("backward", "forward"):
        hm = ef.create(
            "traversal", "hessian-metric", num_directions=args.k, hvp=hvp, lanczos_iters=args.iters
        )
        (values, _), t = timed(lambda hm=hm: hm.eigenpairs(G, z, args.k))
        err = float(((values[0].double() - exact).abs() / exact.abs()).max())
        rows.append(
            {
                "method": f"lanczos ({hvp})",
                "seconds": t,
                "max_rel_err": err,
                "speedup_vs_full": t_full / t,
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"hessian-decay{args.decay:g}.json").write_text(
        json.dumps(
            {"latent": args.latent, "k": args.k, "device": args.device, "rows": rows}, indent=2
        )
    )
    for row in rows:
        print(
            f"{row['method']:<22} {row['seconds'] * 1e3:9.1f} ms  "
            f"rel.err {row['max_rel_err']:.2e}  "
            f"speed-up {row.get('speedup_vs_full', 1.0):6.1f}x"
        )


if __name__ == "__main__":
    main()
