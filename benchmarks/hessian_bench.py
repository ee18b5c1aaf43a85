"""Lanczos top-k of the metric tensor vs the full Hessian by back-propagation (seed 003,
App. A.2, Table 1), on a generator with a 512-d latent: time and eigenvalue agreement.

    python benchmarks/hessian_bench.py          # decays 0 and 3, CPU, one thread

Writes ``benchmarks/results/hessian-cpu.json`` (``--json``, with its provenance) and the
table of ``docs/traversals.rst`` (``--docs``, default ``docs/generated/hessian_bench.inc``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import eigenflow as ef
from eigenflow.bench.provenance import imported_modules, record, write_generated
from eigenflow.plugins.traversals.metric_tensor import metric_by_backprop

SCRIPT = "benchmarks/hessian_bench.py"
#: the measured code: the hessian-metric traversal, its Lanczos and the full metric tensor
DEPENDENCIES = (
    "eigenflow.plugins.traversals.hessian_metric",
    "eigenflow.plugins.traversals.krylov",
    "eigenflow.plugins.traversals.metric_tensor",
)


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


def measure(args: argparse.Namespace, decay: float) -> list[dict]:
    """Full Hessian by backprop against Lanczos (backward and forward HVP) on a generator
    whose latent gains fall over ``decay`` decades."""
    torch.manual_seed(0)
    G = ConvGenerator(args.latent, decay=decay).to(args.device)
    for p in G.parameters():
        p.requires_grad_(False)
    z = torch.randn(1, args.latent, device=args.device)
    rows = []
    H, t_full = timed(lambda: metric_by_backprop(G, z).detach())
    exact = torch.linalg.eigvalsh(H.double()).flip(-1)[0, : args.k]
    rows.append({"decay": decay, "method": "full backprop", "seconds": t_full, "max_rel_err": 0.0})
    for hvp in ("backward", "forward"):
        hm = ef.create(
            "traversal", "hessian-metric", num_directions=args.k, hvp=hvp, lanczos_iters=args.iters
        )
        (values, _), t = timed(lambda hm=hm: hm.eigenpairs(G, z, args.k))
        err = float(((values[0].double() - exact).abs() / exact.abs()).max())
        rows.append(
            {
                "decay": decay,
                "method": f"lanczos ({hvp})",
                "seconds": t,
                "max_rel_err": err,
                "speedup_vs_full": t_full / t,
            }
        )
    return rows


def rst(payload: dict) -> str:
    """The docs table: one row per generator, times in ms with the speed-up over the full
    Hessian, and the largest relative error of the top-k eigenvalues."""
    cfg = payload["provenance"]["config"]
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - generator",
        "     - full back-propagation",
        "     - Lanczos, backward HVP",
        "     - Lanczos, forward HVP (``torch.func.jvp``)",
        f"     - top-{cfg['k']} relative eigenvalue error (backward / forward)",
    ]
    for decay in cfg["decays"]:
        rows = {r["method"]: r for r in payload["rows"] if r["decay"] == decay}
        full, bwd, fwd = (
            rows[m] for m in ("full backprop", "lanczos (backward)", "lanczos (forward)")
        )
        name = (
            "untrained (flat spectrum)"
            if decay == 0
            else f"anisotropic (latent gains over {decay:g} decades, as trained GANs, seed 003 "
            "Fig. 2)"
        )
        lines += [
            f"   * - {name}",
            f"     - {1e3 * full['seconds']:.0f} ms",
            f"     - {1e3 * bwd['seconds']:.0f} ms ({bwd['speedup_vs_full']:.1f}x)",
            f"     - {1e3 * fwd['seconds']:.0f} ms ({fwd['speedup_vs_full']:.1f}x)",
            f"     - {bwd['max_rel_err']:.1e} / {fwd['max_rel_err']:.1e}",
        ]
    setting = (
        f"Latent {cfg['latent']}, top {cfg['k']}, Krylov dimension "
        f"{cfg['krylov_dimension']}, {cfg['device']}, {cfg['threads']} thread(s), float32; "
        "median of 3 runs after a warm-up."
    )
    return "\n".join([setting, "", *lines]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latent", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--iters", type=int, default=None, help="Krylov dimension")
    parser.add_argument(
        "--decays",
        default="0,3",
        help="decades over which the latent gains fall, one generator each (0: untrained, "
        "flat spectrum; seed 003 reports trained-GAN spectra spanning 5-10 decades of "
        "eigenvalues, i.e. 2.5-5 of gains)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/hessian-cpu.json"))
    parser.add_argument("--docs", type=Path, default=Path("docs/generated/hessian_bench.inc"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    decays = [float(d) for d in args.decays.split(",")]
    rows = [row for decay in decays for row in measure(args, decay)]
    krylov = min(args.latent, args.iters if args.iters is not None else max(3 * args.k + 30, 40))
    config = {
        "latent": args.latent,
        "k": args.k,
        "krylov_dimension": krylov,
        "decays": decays,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "generator": "ConvGenerator (DCGAN-style, width 64, 32x32 RGB)",
    }
    payload = {
        "provenance": record(
            SCRIPT, seeds=[0], config=config, dependencies=imported_modules(DEPENDENCIES), argv=argv
        ),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    write_generated(args.docs, rst(payload), script=SCRIPT, sources=[args.json.as_posix()])
    for row in rows:
        print(
            f"decay {row['decay']:g} {row['method']:<22} {row['seconds'] * 1e3:9.1f} ms  "
            f"rel.err {row['max_rel_err']:.2e}  "
            f"speed-up {row.get('speedup_vs_full', 1.0):6.1f}x"
        )


if __name__ == "__main__":
    main()
