"""Helpers shared by the tests (importable as ``helpers``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from eigenflow.core.component import Model

ROOT = Path(__file__).resolve().parents[1]


def run_python(
    code: str, *, pythonpath: list[Path] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a fresh interpreter with extra ``sys.path`` entries."""
    full_env = dict(os.environ)
    if pythonpath:
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(p) for p in pythonpath] + [full_env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        check=False,
    )


def load_benchmark_script(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (the scripts are not a package), imported under
    ``<name>_script``."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_script", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``eigenflow run gcp`` options of a one-step run on 16 samples (the CLI tests)
FAST_GCP_ARGS = ["--quiet", "--set", "steps=1", "--set", "baseline=false"]
FAST_GCP_ARGS += ["--set", 'dataset={"name": "covariance-textures", "samples": 16}']


class Regression(Model):
    """Deterministic least squares ``|W x - A x|^2``: no sampling, so processes agree."""

    def __init__(self, d: int = 6):
        nn.Module.__init__(self)
        self.config = None
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, d))
        self.register_buffer("target", torch.linspace(-1, 1, d * d).view(d, d))

    def loss(self, batch):
        (x,) = batch
        err = (self.net(x) - x @ self.target.T).square().sum(-1).mean()
        return {"loss": err, "mse": err}


def error_line(capsys) -> str:
    """The one line the CLI wrote to stderr (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]
