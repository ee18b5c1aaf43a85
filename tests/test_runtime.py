"""The runtime layer's guarantees, each tried by diverging, corrupting or re-running on purpose:
the state kept on divergence, the last K verified checkpoints, one run per folder, option
handling on resume, clear errors for bad files, and TensorBoard logging."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

import pytest
import torch
from test_engine import Regression, _data

import eigenflow as ef
from eigenflow.cli import main
from eigenflow.core.component import FitContext
from eigenflow.core.config import ComponentRef
from eigenflow.core.io import load_weights
from eigenflow.runtime import CheckpointStore, TrainConfig, Trainer, load_spec
from eigenflow.runtime.build import build_model

# --------------------------------------------------------------------------- divergence


def _digits_train_spec(**over):
    spec = {
        "pipeline": "train",
        "model": {"name": "vae", "hidden": 32, "latent_dim": 4},
        "dataset": {"name": "digits-sequences", "n_sequences": 64, "length": 2},
        "steps": 30,
        "batch_size": 16,
        "lr": 10.0,
        "trainer": {"optimizer": "sgd", "checkpoint_every": 1, "log_every": 1},
        "eval_items": 16,
        "iw_samples": 2,
    }
    spec.update(over)
    return spec


def test_divergence_keeps_the_last_finite_state_from_before_the_update_and_resumes(tmp_path):
    """The issue's reproduction: vae on digits-sequences, SGD lr 10."""
    with pytest.raises(ef.NonFiniteLossError, match="before the update") as info:
        ef.Pipeline.from_config(_digits_train_spec()).run(out=tmp_path, quiet=True)
    stopped = int(str(info.value).split("stopped at step ")[1].split(":")[0])
    state = load_weights(tmp_path / "checkpoint.pt")
    # the state after stopped - 2 updates: its loss was finite, its update diverged
    assert state["step"] == stopped - 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # independently: the kept parameters give a finite loss on a training batch
    data = ComponentRef("digits-sequences", {"n_sequences": 64, "length": 2}).build("dataset")
    model = build_model(ComponentRef("vae", {"hidden": 32, "latent_dim": 4}), data)
    model.load_state_dict(state["model"])
    batch = torch.utils.data.default_collate([data[i] for i in range(16)])
    assert torch.isfinite(model.loss(batch)["loss"])
    # resuming the kept state with a small lr finishes the run
    summary = ef.Pipeline.from_config(_digits_train_spec(lr=1e-4)).run(
        out=tmp_path, quiet=True, resume=True
    )
    assert summary["stages"][0]["result"]["train"]["steps"] == 30
    assert load_weights(tmp_path / "checkpoint.pt")["step"] == 30


# --------------------------------------------------------------------------- checkpoints


def _trained(tmp_path, steps=6, **options):
    torch.manual_seed(0)
    trainer = Trainer(
        Regression(),
        _data(),
        steps=steps,
        batch_size=8,
        checkpoint_every=2,
        quiet=True,
        out_dir=tmp_path,
        **options,
    )
    trainer.fit()
    return trainer


def test_keeps_the_last_two_checkpoints_and_writes_with_fsync(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _trained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt")
    assert names == ["checkpoint.1.pt", "checkpoint.pt"]
    assert load_weights(tmp_path / "checkpoint.pt")["step"] == 6
    assert load_weights(tmp_path / "checkpoint.1.pt")["step"] == 4
    assert synced.count("file") >= 3 and synced.count("dir") >= 3  # one of each per save


def _corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_random(path):
    path.write_bytes(os.urandom(4096))


def _corrupt_empty(path):
    path.write_bytes(b"")


def _corrupt_tensor_byte(path):
    state = torch.load(path, weights_only=True)
    state["model"]["net.0.weight"][0, 0] += 1.0  # readable, but not what was written
    torch.save(state, path)


@pytest.mark.parametrize(
    "corrupt", [_corrupt_truncate, _corrupt_random, _corrupt_empty, _corrupt_tensor_byte]
)
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, corrupt):
    _trained(tmp_path)
    corrupt(tmp_path / "checkpoint.pt")
    resumed = Trainer(
        Regression(),
        _data(),
        steps=8,
        batch_size=8,
        checkpoint_every=2,
        quiet=True,
        resume=True,
        out_dir=tmp_path,
    )
    with pytest.warns(ef.EigenflowWarning, match=r"checkpoint\.pt.*previous checkpoint"):
        resumed.fit(until=4)
    assert resumed.resumed_from == tmp_path / "checkpoint.1.pt"


def test_no_usable_checkpoint_names_every_file(tmp_path):
    _trained(tmp_path)
    _corrupt_random(tmp_path / "checkpoint.pt")
    _corrupt_empty(tmp_path / "checkpoint.1.pt")
    with pytest.raises(ef.CheckpointError) as info:
        CheckpointStore(tmp_path).load()
    message = str(info.value)
    assert "checkpoint.pt" in message and "checkpoint.1.pt" in message and "empty" in message


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(os.urandom(300)), "cannot be read"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 10), "cannot be read"),
        (lambda p: torch.save({"x": argparse.Namespace(a=1)}, p), "not tensors or plain data"),
        (lambda p: p.mkdir(), "folder"),
    ],
)
def test_load_errors_are_eigenflow_errors_naming_the_file(tmp_path, write, expected):
    path = tmp_path / "weights.pt"
    write(path)
    with pytest.raises(ef.CheckpointError, match=expected) as info:
        load_weights(path)
    assert str(path) in str(info.value)


def test_a_checkpoint_of_another_model_shape_is_refused_naming_the_parameter(tmp_path):
    _trained(tmp_path)
    other = Regression(d=6)
    other.net[0] = torch.nn.Linear(6, 9)
    other.net[2] = torch.nn.Linear(9, 6)
    trainer = Trainer(
        other, _data(), steps=8, batch_size=8, quiet=True, resume=True, out_dir=tmp_path
    )
    with pytest.raises(ef.CheckpointError, match=r"checkpoint\.pt.*net\.0\.weight.*\(8, 6\)"):
        trainer.fit()


# --------------------------------------------------------------------------- resume options


def test_resume_applies_a_new_lr_and_steps_and_refuses_a_new_batch_size(tmp_path):
    _trained(tmp_path)
    with pytest.raises(ef.ConfigError, match=r"batch_size 8 -> 16"):
        Trainer(
            Regression(), _data(), steps=8, batch_size=16, resume=True, quiet=True, out_dir=tmp_path
        ).fit()
    resumed = Trainer(
        Regression(),
        _data(),
        steps=9,
        batch_size=8,
        lr=5e-4,
        resume=True,
        quiet=True,
        out_dir=tmp_path,
    )
    summary = resumed.fit()
    assert summary["steps"] == 9
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [5e-4]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == sorted(steps) and len(steps) == len(
        set(zip(steps, [r.split(",")[1] for r in rows]))
    )


def test_optimiser_settings_are_range_checked():
    with pytest.raises(ef.ConfigError, match=r"'lr' = 1e\+39.*at most 1.*'adam'"):
        TrainConfig(lr=1e39)
    with pytest.raises(ef.ConfigError, match="momentum"):
        TrainConfig(optimizer="sgd", momentum=1.5)
    TrainConfig(optimizer="sgd", lr=10.0)  # the deliberately divergent runs stay possible
    with pytest.raises(ef.PipelineSpecError, match=r"trainer.*weight_decay: 2.0 is invalid"):
        ef.Pipeline.from_config({"pipeline": "train", "trainer": {"weight_decay": 2.0}})
    # refused by from_config, before anything runs, with the path of the option
    with pytest.raises(ef.PipelineSpecError, match=r"'lr' = 1e\+39.*at most 1"):
        ef.Pipeline.from_config({"pipeline": "train", "lr": 1e39})
    with pytest.raises(ef.PipelineSpecError, match=r"lr: 1e\+39 is invalid"):
        ef.Pipeline.from_config({"pipeline": "gcp", "lr": 1e39})


def test_a_key_given_in_two_places_is_an_error():
    with pytest.raises(ef.PipelineSpecError, match=r"trainer\.steps = 20 duplicates"):
        ef.Pipeline.from_config({"pipeline": "train", "steps": 10, "trainer": {"steps": 20}})


def test_a_duplicated_trainer_key_says_which_option_to_keep_with_its_value():
    with pytest.raises(ef.PipelineSpecError) as info:
        ef.Pipeline.from_config({"pipeline": "train", "lr": 0.002, "trainer": {"lr": 0.01}})
    message = str(info.value)
    assert "trainer.lr = 0.01 duplicates the pipeline's own option lr;" in message
    assert "remove trainer.lr and set lr = 0.01 (--set lr=0.01)" in message
    assert "seed" not in message
    with pytest.raises(ef.PipelineSpecError, match=r"remove trainer\.seed and pass --seed 3"):
        ef.Pipeline.from_config({"pipeline": "train", "trainer": {"seed": 3}})


def test_constructor_checks_are_reported_with_every_other_error_and_its_path():
    with pytest.raises(ef.PipelineSpecError) as info:
        ef.Pipeline.from_config(
            {
                "pipeline": "gcp",
                "solver": {"name": "mpa-lya", "solve": "newton", "degree": [12, 12]},
                "steps": 0,
            }
        )
    errors = info.value.errors
    assert any(e.startswith("solver: solver 'mpa-lya'") and "newton" in e for e in errors)
    assert any(e.startswith("steps:") for e in errors)


def test_component_ref_build_uses_the_registry_and_needs_a_kind():
    solver = ComponentRef("mpa-lya", {"degree": [3, 3]}).build("solver")
    assert solver.config.degree == (3, 3) or list(solver.config.degree) == [3, 3]
    with pytest.raises(ef.ConfigError, match="which kind"):
        ComponentRef("mpa-lya").build()


# --------------------------------------------------------------------------- run folders


def _gcp(tmp_path, *extra):
    return main(
        [
            "run",
            "gcp",
            "--out",
            str(tmp_path),
            "--quiet",
            "--set",
            "steps=4",
            "--set",
            'dataset={"name": "covariance-textures", "samples": 32}',
            *extra,
        ]
    )


def test_a_folder_holding_a_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    assert _gcp(tmp_path) == 0
    first = (tmp_path / "gcp" / "metrics.csv").read_text()
    capsys.readouterr()
    assert _gcp(tmp_path) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert _gcp(tmp_path, "--overwrite") == 0
    assert (tmp_path / "gcp" / "metrics.csv").read_text() == first  # one run, same seed
    assert _gcp(tmp_path, "--resume") == 0
    assert (tmp_path / "gcp" / "metrics.csv").read_text() == first  # nothing appended
    assert _gcp(tmp_path, "--resume", "--set", "hidden=8") == 1
    assert "hidden 16 -> 8" in capsys.readouterr().err


def test_dotted_set_keys_reach_the_table(tmp_path):
    spec = {
        "pipeline": "train",
        "steps": 3,
        "batch_size": 8,
        "eval_items": 8,
        "iw_samples": 2,
        "model": {"name": "vae", "likelihood": "gaussian", "hidden": 8, "latent_dim": 2},
        "dataset": {"name": "synthetic-linear", "n_samples": 64, "cache": False},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    code = main(
        [
            "run",
            str(path),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "trainer.resume=true",
            "--set",
            "steps=5",
        ]
    )
    assert code == 0
    assert load_weights(out / "checkpoint.pt")["step"] == 5
    assert json.loads((out / "run.json").read_text())["stages"][0]["trainer"] == {"resume": True}


# --------------------------------------------------------------------------- config paths


def test_config_paths_that_cannot_be_read_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('pipeline = "gcp"\n# caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ef.ConfigError, match=r"latin1\.toml.*not UTF-8"):
        load_spec(bad)
    with pytest.raises(ef.ConfigError, match=r"is a folder"):
        load_spec(tmp_path)
    locked = tmp_path / "locked.toml"
    locked.write_text('pipeline = "gcp"\n')
    real = type(locked).read_text

    def denied(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(locked), "read_text", denied)  # root reads any file
    with pytest.raises(ef.ConfigError, match=r"locked\.toml.*cannot be read.*Permission denied"):
        load_spec(locked)


# --------------------------------------------------------------------------- traversals


def test_traversals_fit_from_a_typed_context():
    layer = torch.nn.Linear(4, 10)
    ctx = FitContext(generator=layer, latent_dim=4, z=torch.randn(3, 4), layer_or_weight=layer)
    a = ef.create("traversal", "sefa", num_directions=2).fit_context(ctx)
    b = ef.create("traversal", "sefa", num_directions=2).fit(layer)
    torch.testing.assert_close(a.directions, b.directions)
    with pytest.raises(ef.ConfigError, match=r"'householder'.*'constraint'"):
        ef.create("traversal", "householder").fit_context(ctx)


# --------------------------------------------------------------------------- tensorboard


def test_tensorboard_without_the_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ef.ConfigError, match=r"pip install 'eigenflow\[tensorboard\]'"):
        _trained(tmp_path, tensorboard=True)


def test_tensorboard_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _trained(tmp_path, log_every=2, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [2, 4, 6]
    rows = [r.split(",") for r in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    csv_loss = [float(v) for s, n, v in rows if n == "train/loss"]
    assert [e.value for e in loss] == pytest.approx(csv_loss, rel=1e-6)
