#!/usr/bin/env python
"""Benchmark every registered eigenflow solver side by side (same options as ``eigenflow bench``).

Examples
--------
    python benchmarks/run_solvers.py --quick --out benchmarks/results/cpu-quick
    python benchmarks/run_solvers.py --full --device cuda --cuda-graph --out results/h100
    python benchmarks/run_solvers.py --ops eigh --solvers 'batched-ed,svd' \\
        --batch 1,16,64,256,1024,4096 --size 4,8,16,24,32,48,64,96,128
"""

from __future__ import annotations

import argparse
import sys

from eigenflow import bench


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (the options of :func:`eigenflow.bench.add_arguments`)."""
    parser = argparse.ArgumentParser(
        prog="run_solvers.py",
        description=__doc__.split("\n\n")[0],
    )
    bench.add_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(bench.main(build_parser().parse_args()))
