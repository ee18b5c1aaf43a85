"""The ``dcgan`` model and the engine's alternating update phases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.errors import ConfigError, InputError, NonFiniteLossError
from eigenflow.core.io import load_weights
from eigenflow.engine import Trainer, UpdatePhase, model_phases


def _gan(**options):
    base = {"input_shape": [1, 16, 16], "latent_dim": 4, "width": 8}
    return ef.create("model", "dcgan", **{**base, **options})


def _images(n=32, shape=(1, 16, 16), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.rand(n, *shape, generator=gen))


@pytest.mark.parametrize(
    ("shape", "upsamples"), [((3, 28, 28), 2), ((1, 64, 64), 3), ((3, 32, 32), 2)]
)
def test_generator_and_discriminator_shapes_on_the_local_dataset_sizes(shape, upsamples):
    gan = ef.create(
        "model", "dcgan", input_shape=list(shape), latent_dim=5, width=4, upsamples=upsamples
    )
    z = torch.randn(3, 5)
    images = gan.generator(z)
    assert images.shape == (3, *shape)
    assert images.min() >= 0 and images.max() <= 1
    assert gan.discriminator(images).shape == (3,)
    assert gan.sample(2).shape == (2, *shape)
    assert isinstance(gan.generator.first_linear, nn.Linear)
    assert gan.generator.first_linear.in_features == 5


def test_mapping_network_puts_a_linear_from_z_first():
    gan = _gan(mapping_layers=2, mapping_width=6)
    first = gan.generator.first_linear
    assert first is gan.generator.mapping.net[0] and first.weight.shape == (6, 4)
    assert gan.generator.project.in_features == 6
    assert gan.generator.mapping(torch.randn(3, 4)).shape == (3, 6)
    assert gan.generator(torch.randn(2, 4)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("loss", ["hinge", "non-saturating"])
def test_losses_are_finite_and_match_their_formulas(loss):
    torch.manual_seed(0)
    gan = _gan(loss=loss).eval()  # fixed BatchNorm and spectral-norm statistics
    x = torch.rand(6, 1, 16, 16)
    both = gan.loss(x)
    assert set(both) >= {"loss", "d_loss", "g_loss"}
    assert all(torch.isfinite(v) for v in both.values())
    torch.testing.assert_close(both["loss"], both["d_loss"] + both["g_loss"])
    # the phase losses from the logits, written out independently
    torch.manual_seed(1)
    d = gan.loss(x, phase="d")
    torch.manual_seed(1)
    z = torch.randn(6, 4)  # the z the model drew
    real, fake = gan.discriminator(x), gan.discriminator(gan.generator(z))
    if loss == "hinge":
        expected_d = torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean()
        expected_g = -fake.mean()
    else:
        expected_d = (
            -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
        )
        expected_g = -torch.log(torch.sigmoid(fake)).mean()
    torch.testing.assert_close(d["loss"], expected_d, rtol=1e-5, atol=1e-6)
    torch.manual_seed(1)
    g = gan.loss(x, phase="g")
    torch.testing.assert_close(g["loss"], expected_g, rtol=1e-5, atol=1e-6)


def test_sequence_batches_use_one_frame_per_sequence():
    gan = _gan()
    seq = torch.rand(5, 8, 1, 16, 16)
    frames = gan.real_images({"x": seq})
    assert frames.shape == (5, 1, 16, 16)
    assert all(any(torch.equal(frames[i], seq[i, t]) for t in range(8)) for i in range(5))


def test_one_engine_step_updates_both_networks_each_with_its_own_optimiser():
    torch.manual_seed(0)
    gan = _gan(loss="non-saturating")  # (the hinge loss's logit bias can have zero gradient)
    before = {k: v.clone() for k, v in gan.named_parameters()}
    trainer = Trainer(gan, _images(), steps=1, batch_size=8, lr=1e-3, quiet=True)
    summary = trainer.fit()
    assert set(trainer.optimizers) == {"d", "g"}
    assert trainer.optimizers["d"].param_groups[0]["betas"] == (0.5, 0.999)
    changed = {k for k, v in gan.named_parameters() if not torch.equal(v, before[k])}
    assert changed == set(before)  # every parameter of both networks moved
    final = summary["final"]
    assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"} <= set(final)
    assert final["loss"] == pytest.approx(final["d_loss"] + final["g_loss"], rel=1e-6)
    with pytest.raises(ConfigError, match="update phases"):
        _ = trainer.optimizer


def test_discriminator_phase_leaves_the_generator_and_its_learning_rate_scale():
    torch.manual_seed(0)
    gan = _gan(d_lr_scale=4.0)
    trainer = Trainer(gan, _images(), steps=1, batch_size=8, lr=1e-3, quiet=True)
    assert trainer.optimizers["d"].param_groups[0]["lr"] == pytest.approx(4e-3)
    assert trainer.optimizers["g"].param_groups[0]["lr"] == pytest.approx(1e-3)
    g_before = {k: v.clone() for k, v in gan.generator.named_parameters()}
    terms = trainer._phase_update(trainer.batches.batch(0), trainer.phases[0], first=True)
    assert set(terms) >= {"d_loss", "d_grad_norm"}
    for k, v in gan.generator.named_parameters():
        assert torch.equal(v, g_before[k]), k
        assert v.grad is None, k
    assert all(p.requires_grad for p in gan.parameters())


def test_resume_continues_bit_for_bit(tmp_path):
    def run(folder, until=None, resume=False):
        torch.manual_seed(3)
        gan = _gan()
        trainer = Trainer(
            gan,
            _images(),
            steps=6,
            batch_size=8,
            lr=1e-3,
            scheduler="cosine",
            quiet=True,
            out_dir=folder,
            resume=resume,
            checkpoint_every=0,
        )
        trainer.fit(until=until)
        return gan

    straight = run(tmp_path / "a")
    run(tmp_path / "b", until=3)
    resumed = run(tmp_path / "b", resume=True)
    for (k, v), (_, w) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k
    state = load_weights(tmp_path / "b" / "checkpoint.pt")
    assert set(state["optimizer"]) == {"d", "g"} and set(state["scheduler"]) == {"d", "g"}


class _GeneratorBlowsUp(ef.get("model", "dcgan")):
    """Its generator loss becomes NaN on the 4th generator update (step index 3)."""

    g_calls = 0

    def loss(self, batch, phase=None):
        out = super().loss(batch, phase)
        if phase == "g":
            self.g_calls += 1
            if self.g_calls >= 4:
                out["loss"] = out["loss"] * float("nan")
        return out


def test_non_finite_generator_loss_stops_keeping_the_last_state_with_finite_losses(tmp_path):
    options = {"input_shape": [1, 16, 16], "latent_dim": 4, "width": 8}
    torch.manual_seed(5)
    reference = _gan()
    Trainer(reference, _images(), steps=2, batch_size=8, lr=1e-3, quiet=True).fit()
    torch.manual_seed(5)
    gan = _GeneratorBlowsUp(**options)
    trainer = Trainer(gan, _images(), steps=10, batch_size=8, lr=1e-3, quiet=True, out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"g_loss = nan.*\(step 2\)"):
        trainer.fit()
    state = load_weights(tmp_path / "checkpoint.pt")
    assert state["step"] == 2  # step 3's discriminator update came from a finite loss, but
    # the state before step 3 never had its generator loss checked finite afterwards
    for k, v in reference.state_dict().items():
        assert torch.equal(state["model"][k], v), k


def test_encode_inverts_the_generator():
    torch.manual_seed(0)
    gan = _gan().eval()
    z = torch.randn(4, 4)
    x = gan.decode(z).detach()
    start = (gan.decode(torch.zeros(4, 4)) - x).square().sum()
    found = gan.encode(x, steps=150, lr=0.05)
    end = (gan.decode(found) - x).square().sum()
    assert end < 0.05 * start
    assert all(p.requires_grad for p in gan.parameters())


def test_update_phases_are_checked():
    gan = _gan()

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)

        def update_phases(self):
            return [UpdatePhase("d", self.parameters()), UpdatePhase("g", self.parameters())]

    with pytest.raises(ConfigError, match="shares parameters"):
        model_phases(Shared())
    assert [p.name for p in model_phases(gan)] == ["d", "g"]
    assert model_phases(nn.Linear(2, 2)) is None


def test_config_and_input_errors_name_the_option():
    with pytest.raises(ConfigError, match=r"input_shape.*divisible by 4"):
        ef.create("model", "dcgan", input_shape=[1, 30, 30])
    with pytest.raises(ConfigError, match=r"loss: 'wgan' is invalid"):
        ef.create("model", "dcgan", loss="wgan")
    with pytest.raises(ConfigError, match="betas"):
        ef.create("model", "dcgan", betas=[0.5, 1.5])
    gan = _gan()
    with pytest.raises(InputError, match="phase"):
        gan.loss(torch.rand(2, 1, 16, 16), phase="x")
    with pytest.raises(InputError, match=r"expected \(B, \*\[1, 16, 16\]\)"):
        gan.loss(torch.rand(2, 3, 16, 16))


def _ddp_gan_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        gan = _gan()
        Trainer(gan, _images(), steps=3, batch_size=8, lr=1e-3, quiet=True, out_dir=out).fit()
        torch.save(gan.state_dict(), os.path.join(os.path.dirname(out), f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_trains_both_phases_and_keeps_the_processes_in_sync(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    torch.multiprocessing.spawn(_ddp_gan_worker, args=(2, port, str(out)), nprocs=2)
    zero = torch.load(tmp_path / "rank0.pt", weights_only=True)
    one = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)
    initial = _gan().state_dict()
    for name, value in zero.items():
        if name.endswith(("weight", "bias", "original")):
            torch.testing.assert_close(one[name], value, msg=name)
    assert not torch.equal(zero["generator.project.weight"], initial["generator.project.weight"])
    state = load_weights(out / "checkpoint.pt")
    assert state["world_size"] == 2 and set(state["optimizer"]) == {"d", "g"}
