"""Progress of long runs: plain lines, quiet, the tqdm bar when available."""

from __future__ import annotations

import io
import sys

import pytest
import torch

from eigenflow.core.component import RunContext
from eigenflow.core.progress import Progress


def test_progress_plain_lines_every_fifth():
    stream = io.StringIO()
    with Progress(10, "[demo]", stream=stream, bar=False) as progress:
        for i in range(10):
            progress.update(loss=1.0 / (i + 1))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[demo]: step 2/10 loss 0.5000",
        "[demo]: step 4/10 loss 0.2500",
        "[demo]: step 6/10 loss 0.1667",
        "[demo]: step 8/10 loss 0.1250",
        "[demo]: step 10/10 loss 0.1000",
    ]


def test_progress_quiet_prints_nothing():
    stream = io.StringIO()
    with Progress(3, "[demo]", stream=stream, quiet=True) as progress:
        for _ in range(3):
            progress.update()
    assert stream.getvalue() == "" and progress.count == 3


def test_progress_without_tqdm_falls_back_to_lines(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    stream = io.StringIO()
    with Progress(1, "[demo]", stream=stream, bar=True) as progress:
        progress.update()
    assert stream.getvalue() == "[demo]: step 1/1\n"


def test_progress_bar_with_tqdm():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    with Progress(4, "[demo]", stream=stream, bar=True) as progress:
        for _ in range(4):
            progress.update(loss=0.5)
    assert "4/4" in stream.getvalue() and "step" not in stream.getvalue()


def test_run_context_logs_to_stderr(tmp_path, capsys):
    ctx = RunContext(out_dir=tmp_path, device=torch.device("cpu"))
    ctx.log("hello")
    with ctx.progress(1, "[demo]") as progress:
        progress.update()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "hello\n[demo]: step 1/1\n"
    quiet = RunContext(out_dir=tmp_path, device=torch.device("cpu"), quiet=True)
    quiet.log("hello")
    assert capsys.readouterr().err == ""
