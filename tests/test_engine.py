"""The training engine: exact resume, non-finite stop, clipping, logging, DDP agreement."""

from __future__ import annotations

import os
import random
import socket

import numpy as np
import pytest
import torch
from helpers import Regression

import eigenflow as ef
from eigenflow.core.io import load_weights
from eigenflow.engine import TrainConfig, Trainer, capture_rng, restore_rng


def _data(n=64, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.rand(n, d, generator=gen))


def _vae():
    return ef.create(
        "model", "vae", input_shape=[6], latent_dim=2, hidden=16, likelihood="gaussian"
    )


class BlowsUp(Regression):
    """Its ``kl`` term becomes NaN from the 13th call on."""

    calls = 0

    def loss(self, batch):
        out = super().loss(batch)
        self.calls += 1
        bad = torch.tensor(float("nan") if self.calls >= 13 else 0.0)
        out["kl"] = bad
        out["loss"] = out["loss"] + bad
        return out


def test_resume_continues_bit_for_bit(tmp_path):
    data = _data()
    torch.manual_seed(0)
    straight = _vae()
    Trainer(
        straight,
        data,
        steps=20,
        batch_size=8,
        checkpoint_every=10,
        quiet=True,
        scheduler="cosine",
        out_dir=tmp_path / "a",
    ).fit()
    torch.manual_seed(0)
    first = _vae()
    Trainer(
        first,
        data,
        steps=20,
        batch_size=8,
        checkpoint_every=10,
        quiet=True,
        scheduler="cosine",
        out_dir=tmp_path / "b",
    ).fit(until=10)  # interrupted
    # the process "restarts": a fresh model with other weights and other RNG states
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002 - the engine restores the global state
    random.seed(99)
    resumed = _vae()
    summary = Trainer(
        resumed,
        data,
        steps=20,
        batch_size=8,
        checkpoint_every=10,
        quiet=True,
        scheduler="cosine",
        resume=True,
        out_dir=tmp_path / "b",
    ).fit()
    assert summary["steps"] == 20
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    state = load_weights(tmp_path / "b" / "checkpoint.pt")  # weights_only=True
    assert state["step"] == 20 and "optimizer" in state and state["scheduler"] is not None


def test_rng_states_round_trip():
    state = capture_rng()
    a = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = BlowsUp()
    trainer = Trainer(
        model, _data(), steps=50, batch_size=8, checkpoint_every=5, quiet=True, out_dir=tmp_path
    )
    with pytest.raises(ef.NonFiniteLossError, match=r"'?kl'? = nan") as info:
        trainer.fit()
    message = str(info.value)
    # the 13th loss (state after 12 updates) is NaN: the kept state is the one after 11
    # updates, whose loss was finite, taken before the update that produced the NaN state
    assert "step 13" in message and "(step 11)" in message and "before the update" in message
    state = load_weights(tmp_path / "checkpoint.pt")
    assert state["step"] == 11
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert load_weights(tmp_path / "checkpoint.1.pt")["step"] == 10  # the one before is kept


def test_gradient_clipping_bounds_the_first_update(tmp_path):
    torch.manual_seed(0)
    model = Regression()
    before = [p.detach().clone() for p in model.parameters()]
    Trainer(
        model,
        _data(),
        steps=1,
        batch_size=8,
        optimizer="sgd",
        lr=0.1,
        grad_clip=1e-3,
        quiet=True,
        out_dir=tmp_path,
    ).fit()
    moved = torch.sqrt(sum((p - b).square().sum() for p, b in zip(model.parameters(), before)))
    assert 0 < moved <= 0.1 * 1e-3 * (1 + 1e-5)


def test_progress_lines_csv_log_and_eval_callback(tmp_path, capsys):
    calls = []

    def eval_fn(model, step):
        calls.append(step)
        return {"score": float(step)}

    summary = Trainer(
        Regression(),
        _data(),
        steps=6,
        batch_size=8,
        log_every=2,
        eval_every=3,
        tensorboard=False,
        out_dir=tmp_path,
        eval_fn=eval_fn,
    ).fit()
    err = capsys.readouterr().err
    assert "[train]" in err and "6/6" in err and "it/s" in err and "loss" in err
    assert calls == [3, 6]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,name,value" and any("train/mse" in r for r in rows)
    assert any(r.startswith("3,eval/score") for r in rows)
    assert summary["log"] == "csv" and summary["eval"]["score"] == 6.0


def test_config_errors():
    with pytest.raises(ef.ConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ef.ConfigError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ef.ConfigError, match="only 4 items"):
        Trainer(Regression(), _data(n=4), batch_size=8, out_dir="/tmp/unused-eigenflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    import sys

    sys.stderr = open(os.path.join(os.path.dirname(out), f"stderr{rank}.txt"), "w")
    try:
        model = Regression()
        Trainer(
            model, _data(), steps=8, batch_size=8, log_every=2, out_dir=out, checkpoint_every=4
        ).fit()
        if rank == 0:
            torch.save(model.state_dict(), os.path.join(os.path.dirname(out), "ddp.pt"))
    finally:
        sys.stderr.close()
        torch.distributed.destroy_process_group()


def _logged(folder):
    rows = [r.split(",") for r in (folder / "metrics.csv").read_text().splitlines()[1:]]
    return {(int(s), n): float(v) for s, n, v in rows if n in ("train/loss", "train/mse")}


@pytest.mark.slow
def test_ddp_two_processes_agree_with_one(tmp_path):
    single = Regression()
    Trainer(
        single, _data(), steps=8, batch_size=8, log_every=2, quiet=True, out_dir=tmp_path / "one"
    ).fit()
    out = tmp_path / "two"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(out)), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    for name, p in single.state_dict().items():
        torch.testing.assert_close(ddp[name], p, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(ddp["net.0.weight"], Regression().state_dict()["net.0.weight"])
    state = load_weights(out / "checkpoint.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # logged values are the mean over both processes: the full batch's, as in one process
    one, two = _logged(tmp_path / "one"), _logged(out)
    assert one.keys() == two.keys() and len(one) == 8
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-5), key
    # only rank 0 writes files and prints
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.1.pt",
        "checkpoint.pt",
        "metrics.csv",
    ]
    assert "[train]" in (tmp_path / "stderr0.txt").read_text()
    assert (tmp_path / "stderr1.txt").read_text() == ""


def test_train_pipeline_runs_a_model_on_a_registered_dataset(tmp_path):
    result = ef.Pipeline.from_config(
        {
            "pipeline": "train",
            "model": {"name": "vae", "likelihood": "gaussian", "hidden": 16, "latent_dim": 2},
            "dataset": {"name": "synthetic-linear", "n_samples": 400, "cache": False},
            "steps": 5,
            "batch_size": 16,
            "eval_items": 32,
            "iw_samples": 5,
        }
    ).run(out=tmp_path, quiet=True)
    test = result["stages"][0]["result"]["test"]
    assert np.isfinite(test["log_likelihood"]) and np.isfinite(test["test_loss"])
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "result.json").exists()


def test_tensorboard_scalars_and_image_grids_when_available(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, name, value, step):
            calls.append(("scalar", name, step))

        def add_images(self, name, images, step):
            calls.append(("images", name, tuple(images.shape), step))

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)

    def eval_fn(model, step):
        return {"score": 1.0, "grid": torch.rand(4, 1, 5, 5)}

    summary = Trainer(
        Regression(),
        _data(),
        steps=4,
        batch_size=8,
        log_every=2,
        quiet=True,
        tensorboard=True,
        out_dir=tmp_path,
        eval_fn=eval_fn,
    ).fit()
    assert summary["log"] == "csv+tensorboard" and (tmp_path / "metrics.csv").exists()
    assert ("scalar", "train/loss", 2) in calls and ("scalar", "eval/score", 4) in calls
    assert ("images", "eval/grid", (4, 1, 5, 5), 4) in calls and calls[-1] == ("close",)
