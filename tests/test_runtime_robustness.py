"""The runtime under failures: a checkpoint writer killed mid-write, devices the runtime cannot
run on, a damaged ``run.json``, a crash while ``metrics.csv`` is rewritten on resume, and
weights of another model given to the pipelines that load a trained model."""

from __future__ import annotations

import csv
import json
import re
import signal
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import FAST_GCP_ARGS, ROOT, Regression, error_line, run_python
from torch import nn

import eigenflow as ef
from eigenflow.cli import main
from eigenflow.runtime import CheckpointStore, ScalarLog, Trainer, prepare_run_folder
from eigenflow.runtime.checkpoints import read_checkpoint

#: a ``gcp`` run of one step on 16 covariance textures (seconds on a CPU)
GCP = {
    "pipeline": "gcp",
    "steps": 1,
    "baseline": False,
    "dataset": {"name": "covariance-textures", "samples": 16},
}

#: a clean temporary name of the checkpoint writer (``mkstemp``'s random part has no dot)
CLEAN_TEMP = re.compile(r"\.checkpoint\.pt\.[A-Za-z0-9_]+\.tmp")


def _data(n: int = 32, d: int = 6) -> torch.utils.data.Dataset:
    gen = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.rand(n, d, generator=gen))


def _trainer(out: Path, steps: int, **options) -> Trainer:
    return Trainer(
        Regression(),
        _data(),
        steps=steps,
        batch_size=8,
        checkpoint_every=1,
        quiet=True,
        out_dir=out,
        **options,
    )


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".new")))


# --------------------------------------------------------------------------- checkpoints

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_runtime_robustness import _trainer
    from pathlib import Path

    out = Path({out!r})
    _trainer(out, steps=2).fit()  # checkpoints of steps 1 and 2, whole

    def killed_mid_write(obj, f, *args, **kwargs):
        f.write(b"PK\\x03\\x04 the first bytes of a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = killed_mid_write
    _trainer(out, steps=3, resume=True).fit()  # killed while writing the checkpoint of step 3
    """
)


def test_a_writer_killed_mid_checkpoint_leaves_a_clean_temp_name_that_resume_removes(tmp_path):
    out = tmp_path / "run"
    code = KILLED_WRITER.format(tests=str(ROOT / "tests"), out=str(out))
    done = run_python(code)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = _temp_files(out)
    assert len(left) == 1, left
    assert CLEAN_TEMP.fullmatch(left[0]), f"temporary name {left[0]!r}"  # was ..ckpt.pt.new.X.tmp
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 2

    trainer = _trainer(out, steps=2, resume=True)
    trainer.fit()  # loads the last good checkpoint; nothing left to train
    assert trainer.step == 2
    assert _temp_files(out) == []
    saved = read_checkpoint(out / "checkpoint.pt")["model"]
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)


@pytest.mark.parametrize(
    "stale",
    [
        ".checkpoint.pt.k3j_x9q2.tmp",  # this writer's temporary name
        "..checkpoint.pt.new.k3j_x9q2.tmp",  # the earlier writer's, with the doubled dot
        ".checkpoint.pt.new",  # the earlier writer's staged file
    ],
)
def test_resume_removes_stale_temp_files_and_loads_the_last_good_checkpoint(tmp_path, stale):
    out = tmp_path / "run"
    first = _trainer(out, steps=2)
    first.fit()
    (out / stale).write_bytes(b"PK\x03\x04 partial")
    resumed = _trainer(out, steps=2, resume=True)
    resumed.fit()
    assert _temp_files(out) == []
    assert resumed.step == 2 and resumed.resumed_from == out / "checkpoint.pt"
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)


def test_the_next_checkpoint_write_removes_stale_temp_files(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    (tmp_path / ".checkpoint.pt.dead0001.tmp").write_bytes(b"partial")
    (tmp_path / "..checkpoint.pt.new.dead0002.tmp").write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("not a checkpoint's: kept")
    state = {"step": 1, "model": {"w": torch.ones(2)}, "optimizer": {}, "rng": []}
    assert store.save(state) == tmp_path / "checkpoint.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "notes.tmp"]
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["mps", "foo", "meta", "cpu:1", "gpu"])
def test_pipeline_run_refuses_a_device_it_cannot_use_before_writing(tmp_path, device):
    out = tmp_path / "run"
    pipeline = ef.Pipeline.from_config(GCP)
    with pytest.raises(ef.ConfigError, match=rf"^device: '{device}' is not a device eigenflow"):
        pipeline.run(out=out, device=device, quiet=True)
    assert not out.exists()
    # in the specification: refused by from_config (not a torch device) or by run
    with pytest.raises(ef.EigenflowError, match=rf"device: '{device}' is not a"):
        ef.Pipeline.from_config({**GCP, "device": device, "out": str(out)}).run(quiet=True)
    assert not out.exists()


def test_pipeline_run_refuses_cuda_without_cuda_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    with pytest.raises(ef.ConfigError, match="'cuda:0' requested but CUDA is not available"):
        ef.Pipeline.from_config(GCP).run(out=out, device="cuda:0", quiet=True)
    assert not out.exists()


def test_resolve_device_names_where_the_device_came_from():
    from eigenflow.runtime import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ef.ConfigError, match=r"^--device: 'gpu:1' .*did you mean 'cuda:1'\?"):
        resolve_device("gpu:1", "--device")


# --------------------------------------------------------------------------- run.json


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"seed": 0, "sta', "it is not valid JSON"),
        ("", "it is not valid JSON"),
        ("[1, 2]", "it is not a run record"),
        ('{"seed": 0, "stages": 3}', "it is not a run record"),
    ],
)
def test_resume_with_a_damaged_run_record_names_the_file_and_what_to_do(tmp_path, text, problem):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(text, encoding="utf-8")
    (folder / "summary.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ef.RunFolderError) as info:
        prepare_run_folder(folder, {"seed": 0, "stages": []}, resume=True)
    message = str(info.value)
    assert repr(str(folder / "run.json")) in message and problem in message
    assert "--overwrite" in message and "delete it to resume" in message
    assert (folder / "run.json").read_text(encoding="utf-8") == text  # nothing rewritten


def test_cli_resume_with_a_damaged_run_record_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "gcp", "--device", "cpu", "--out", str(out), *FAST_GCP_ARGS]) == 0
    (out / "run.json").write_text('{"seed": 0, "stag', encoding="utf-8")
    capsys.readouterr()
    args = ["run", "gcp", "--device", "cpu", "--out", str(out), "--resume", *FAST_GCP_ARGS]
    assert main(args) == 1
    line = error_line(capsys)
    assert line.startswith(f"eigenflow: error: cannot resume the run in {str(out)!r}")
    assert "run.json" in line and "not valid JSON" in line
    (out / "run.json").unlink()  # what the message offers: resume without the check
    assert main(args) == 0
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["seed"] == 0


# --------------------------------------------------------------------------- metrics.csv


class _Killed(BaseException):
    """Stands for the process dying (SIGKILL) in the middle of a write."""


def test_a_crash_while_resume_rewrites_metrics_csv_keeps_the_history(tmp_path, monkeypatch):
    rows = [[str(step), "train/loss", f"{1 / step:.8g}"] for step in range(1, 9)]
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["step", "name", "value"], *rows])
    before = path.read_bytes()
    real_writer = csv.writer

    class DiesInWriterows:
        def __init__(self, fh, *args, **kwargs):
            self.inner = real_writer(fh, *args, **kwargs)

        def writerow(self, row):
            return self.inner.writerow(row)

        def writerows(self, many):
            many = list(many)
            self.inner.writerows(many[: len(many) // 2])
            raise _Killed

    monkeypatch.setattr(csv, "writer", DiesInWriterows)
    with pytest.raises(_Killed):
        ScalarLog(tmp_path, resume_from=4)
    monkeypatch.undo()
    assert path.read_bytes() == before  # the whole history, not a truncated file
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]

    ScalarLog(tmp_path, resume_from=4)  # the resume that is not interrupted
    with path.open(newline="") as fh:
        assert list(csv.reader(fh)) == [["step", "name", "value"], *rows[:4]]


# --------------------------------------------------------------------------- wrong weights


def _other_models_weights(path: Path, engine_checkpoint: bool = False) -> Path:
    """Weights of a model unlike any the pipelines build (other names and shapes)."""
    state = nn.Sequential(nn.Linear(3, 2)).state_dict()
    torch.save({"step": 5, "model": state} if engine_checkpoint else state, path)
    return path


@pytest.mark.parametrize("engine_checkpoint", [False, True])
def test_traverse_with_weights_of_another_model_names_the_checkpoint(tmp_path, engine_checkpoint):
    weights = _other_models_weights(tmp_path / "other.pt", engine_checkpoint)
    spec = {
        "pipeline": "traverse",
        "dataset": {"name": "dsprites", "n_samples": 64, "image_size": 16},
        "checkpoint": str(weights),
        "traversal": "sefa",
    }
    with pytest.raises(ef.CheckpointError) as info:
        ef.Pipeline.from_config(spec).run(out=tmp_path / "out", device="cpu", quiet=True)
    message = str(info.value)
    assert f"checkpoint {str(weights)!r} does not fit the model" in message
    assert (
        "missing in the checkpoint" in message and "not in the model: 0.bias, 0.weight" in message
    )


def test_hessian_analysis_with_weights_of_another_model_names_the_checkpoint(tmp_path):
    weights = _other_models_weights(tmp_path / "other.pt")
    spec = {
        "pipeline": "hessian-analysis",
        "model": {"name": "dcgan", "width": 8},
        "dataset": {"name": "dsprites", "image_size": 16, "n_samples": 96},
        "latent_dim": 5,
        "checkpoint": str(weights),
    }
    with pytest.raises(ef.CheckpointError, match=re.escape(f"checkpoint {str(weights)!r}")):
        ef.Pipeline.from_config(spec).run(out=tmp_path / "out", device="cpu", quiet=True)


def test_load_model_state_lists_reshaped_missing_and_unexpected_parameters():
    from eigenflow.runtime import load_model_state

    model = nn.Sequential(nn.Linear(3, 2))
    saved = {"0.weight": torch.zeros(4, 3), "extra": torch.zeros(1)}
    with pytest.raises(ef.CheckpointError) as info:
        load_model_state(model, saved, "w.pt")
    message = str(info.value)
    assert message.startswith("checkpoint 'w.pt' does not fit the model: ")
    assert "0.weight: checkpoint (4, 3), model (2, 3)" in message
    assert "missing in the checkpoint: 0.bias" in message and "not in the model: extra" in message
    with pytest.raises(ef.CheckpointError, match=r"expected a state dict .* got Tensor"):
        load_model_state(model, torch.zeros(3), "w.pt")
