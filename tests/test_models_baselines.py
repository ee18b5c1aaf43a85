"""``factor-vae`` and ``slow-vae``: their penalty terms against independent computations
(closed forms, quadrature, torch.distributions), the gradient routing that lets one engine
step update FactorVAE's two players, and their option checks."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Bernoulli, Normal, kl_divergence

import eigenflow as ef
from eigenflow.plugins.models.factor import discriminator_tc, permute_dims
from eigenflow.plugins.models.slow import (
    folded_normal_mean,
    gaussian_laplace_cross_entropy,
    laplace_transition_kl,
)
from eigenflow.runtime import CyclicBatches, TrainConfig, Trainer

D64 = torch.float64
SMALL = {"input_shape": [1, 6, 6], "latent_dim": 3, "hidden": 16}


def _sequences(b=4, frames=3, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(b, frames, 1, 6, 6, generator=gen).to(dtype), "k": torch.arange(b) % 3}


def _factor(**extra):
    return ef.create("model", "factor-vae", **SMALL, disc_hidden=12, disc_layers=2, **extra)


# --------------------------------------------------------------------------- factor-vae


def test_permute_dims_permutes_each_column_on_its_own():
    z = torch.arange(40, dtype=D64).view(10, 4)
    out = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(4):
        assert sorted(out[:, j].tolist()) == z[:, j].tolist()
    rows = [(out[:, j] - j).div(4).long() for j in range(4)]  # the source row of each entry
    assert any(not torch.equal(rows[0], r) for r in rows[1:])
    with pytest.raises(ef.InputError, match="B >= 2"):
        permute_dims(z[:1])


def test_tc_estimate_is_the_log_density_ratio_of_the_discriminator():
    logits = torch.randn(7, 2, dtype=D64)
    p = torch.softmax(logits, -1)
    ref = torch.log(p[:, 0] / p[:, 1]).mean()
    torch.testing.assert_close(discriminator_tc(logits), ref)


def test_one_backward_gives_each_player_only_its_own_gradient():
    torch.manual_seed(0)
    model = _factor(gamma=3.0)
    terms = model.loss(_sequences())
    disc = list(model.discriminator.parameters())
    vae = [p for n, p in model.named_parameters() if not n.startswith("discriminator.")]

    def grads(value, params):
        out = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(out, params)]

    total_disc, own_disc = grads(terms["loss"], disc), grads(terms["disc_loss"], disc)
    for a, b in zip(total_disc, own_disc):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() == 0 for g in grads(terms["tc"], disc))
    vae_objective = terms["neg_elbo"] + 3.0 * terms["tc"]
    for a, b in zip(grads(terms["loss"], vae), grads(vae_objective, vae)):
        torch.testing.assert_close(a, b)
    assert any(g.abs().sum() > 0 for g in grads(terms["tc"], vae))


@pytest.mark.slow
def test_trained_discriminator_estimates_the_tc_of_a_correlated_gaussian():
    """TC of N(0, [[1, r], [r, 1]]) is -log(1 - r^2) / 2 (0.511 at r = 0.8)."""
    torch.manual_seed(0)
    model = ef.create(
        "model", "factor-vae", input_shape=[4], latent_dim=2, disc_hidden=64, disc_layers=2
    )
    r = 0.8
    chol = torch.linalg.cholesky(torch.tensor([[1.0, r], [r, 1.0]]))
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=3e-3)
    for _ in range(1500):
        z = torch.randn(512, 2) @ chol.T
        loss, _ = model.discriminator_loss(z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z = torch.randn(20_000, 2) @ chol.T
        tc = float(discriminator_tc(model.discriminator(z)))
    assert tc == pytest.approx(-0.5 * math.log(1 - r * r), abs=0.08)


def test_factor_vae_terms_shapes_and_finite_loss():
    torch.manual_seed(0)
    model = _factor()
    batch = _sequences()
    out = model.loss(batch)
    assert set(out) == {"loss", "neg_elbo", "recon", "kl", "tc", "disc_loss", "disc_accuracy"}
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    mu, logvar = model.encode(batch["x"][:, 0])
    assert mu.shape == logvar.shape == (4, 3)
    assert model.discriminator(mu).shape == (4, 2)
    assert model.decode(mu).shape == (4, 1, 6, 6)
    single = model.loss(batch["x"][:, 0])  # single frames (B, C, H, W) train too
    assert torch.isfinite(single["loss"])
    with pytest.raises(ef.InputError, match="at least 2 items"):
        model.loss(batch["x"][:1, 0])


# --------------------------------------------------------------------------- slow-vae


def _quad(f, m: float, s: float) -> float:
    """``int f`` over ``m +- 14 s`` (the Gaussian's mass), splitting at the kink at 0."""
    lo, hi = m - 14 * s, m + 14 * s
    points = [0.0] if lo < 0.0 < hi else None
    return integrate.quad(f, lo, hi, limit=400, points=points, epsabs=1e-13, epsrel=1e-11)[0]


@pytest.mark.parametrize(("m", "s"), [(0.0, 1.0), (0.7, 0.3), (-1.5, 2.0), (0.05, 0.01)])
def test_folded_normal_mean_and_laplace_cross_entropy_match_quadrature(m, s):
    rate = 6.0
    mean, std = torch.tensor([m], dtype=D64), torch.tensor([s], dtype=D64)
    pdf = stats.norm(m, s).pdf
    e_abs = _quad(lambda y: abs(y) * pdf(y), m, s)
    assert float(folded_normal_mean(mean, std)) == pytest.approx(e_abs, rel=1e-7, abs=1e-10)
    cross = _quad(lambda y: -stats.laplace(0.0, 1.0 / rate).logpdf(y) * pdf(y), m, s)
    ours = gaussian_laplace_cross_entropy(mean, 2 * std.log(), rate)
    assert float(ours) == pytest.approx(cross, rel=1e-7)


def test_transition_kl_matches_quadrature_of_the_density_ratio():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(2, 3, dtype=D64, generator=gen)
    logvar = torch.randn(2, 3, dtype=D64, generator=gen) * 0.5 - 1.0
    z_prev = torch.randn(2, 3, dtype=D64, generator=gen)
    rate = 2.5
    ours = laplace_transition_kl(mu, logvar, z_prev, rate)
    ref = torch.zeros(2, dtype=D64)
    for i in range(2):
        for j in range(3):
            q = stats.norm(float(mu[i, j]), math.exp(0.5 * float(logvar[i, j])))
            p = stats.laplace(float(z_prev[i, j]), 1.0 / rate)
            ref[i] += integrate.quad(
                lambda y, q=q, p=p: q.pdf(y) * (q.logpdf(y) - p.logpdf(y)),
                -20,
                20,
                limit=400,
                points=[float(z_prev[i, j])],
            )[0]
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-9)


def test_slow_vae_loss_matches_an_independent_computation():
    torch.manual_seed(0)
    model = ef.create("model", "slow-vae", **SMALL, gamma=2.0, beta=0.5, rate=3.0).double()
    x = _sequences(b=2, frames=3, dtype=D64)["x"]
    torch.manual_seed(5)
    out = model.loss(x)
    torch.manual_seed(5)  # the same reparameterisation noise
    flat = x.reshape(-1, 1, 6, 6)
    mu, logvar = model.encode(flat)
    z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).view(2, 3, 3)
    mu, std = mu.view(2, 3, 3), torch.exp(0.5 * logvar).view(2, 3, 3)
    probs = model.decode(z)
    log_px = Bernoulli(probs=probs, validate_args=False).log_prob(x).flatten(2).sum(-1)  # (2, 3)
    recon = -(log_px[:, :2] + log_px[:, 1:]).mean()
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    kl_prior = kl_divergence(Normal(mu, std), prior)[:, :2].sum(-1).mean()
    trans = torch.zeros(2, 2, dtype=D64)
    mu_, std_, z_ = mu.detach(), std.detach(), z.detach()  # scipy reads plain numbers
    for b in range(2):
        for t in (1, 2):
            for j in range(3):
                q = stats.norm(float(mu_[b, t, j]), float(std_[b, t, j]))
                p = stats.laplace(float(z_[b, t - 1, j]), 1.0 / 3.0)
                trans[b, t - 1] += integrate.quad(
                    lambda y, q=q, p=p: q.pdf(y) * (q.logpdf(y) - p.logpdf(y)), -20, 20, limit=400
                )[0]
    kl_trans = trans.mean()
    torch.testing.assert_close(out["recon"], recon, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out["kl_prior"], kl_prior)
    torch.testing.assert_close(out["kl_transition"].detach(), kl_trans, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out["loss"], recon + 0.5 * kl_prior + 2.0 * out["kl_transition"])


def test_slow_vae_needs_sequences():
    model = ef.create("model", "slow-vae", **SMALL)
    with pytest.raises(ef.InputError, match="sequences"):
        model.loss(torch.rand(4, 1, 6, 6))
    with pytest.raises(ef.InputError, match="T >= 1"):
        model.loss(torch.rand(4, 1, 1, 6, 6))


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("name", ["factor-vae", "slow-vae"])
def test_one_engine_step_changes_every_player(name):
    torch.manual_seed(0)
    model = _factor() if name == "factor-vae" else ef.create("model", name, **SMALL)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Trainer(
        model,
        config=TrainConfig(steps=1, lr=1e-2, quiet=True, log_every=1),
        batches=CyclicBatches([_sequences()]),
        local=True,
    ).fit()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("encoder.") for n in changed)
    assert any(n.startswith("decoder.") for n in changed)
    if name == "factor-vae":
        assert {n for n in before if n.startswith("discriminator.")} <= changed


@pytest.mark.parametrize(
    ("name", "option", "value", "allowed"),
    [
        ("factor-vae", "gamma", -1.0, ">= 0"),
        ("factor-vae", "disc_layers", 0, ">= 1"),
        ("factor-vae", "disc_hidden", 1.5, "integer"),
        ("slow-vae", "rate", 0.0, "> 0"),
        ("slow-vae", "gamma", -0.1, ">= 0"),
        ("slow-vae", "beta", "one", "number"),
    ],
)
def test_bad_options_name_the_option_and_value(name, option, value, allowed):
    with pytest.raises(ef.ConfigError, match=option) as info:
        ef.create("model", name, **{option: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)
    assert allowed in str(info.value)


# --------------------------------------------------------------------------- ffvae-digits


class _Steps(torch.utils.data.Dataset):
    """Sequences whose first two pixels move by known steps: k = 0 by (+0.3, +0.1) per
    frame, k = 1 by (0, -0.2); the rest stays."""

    num_transforms = 2

    def __init__(self):
        self.items = []
        for i in range(6):
            k = i % 2
            step = torch.tensor([0.3, 0.1]) if k == 0 else torch.tensor([0.0, -0.2])
            x = torch.zeros(4, 1, 2, 2)
            x.view(4, -1)[:, :2] = torch.arange(4.0)[:, None] * step + i
            self.items.append({"x": x, "k": torch.tensor(k)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_axis_steps_keep_the_largest_mean_change_of_each_transformation():
    from eigenflow.plugins.models.pipelines import axis_path, latent_axis_steps

    model = ef.create("model", "vae", input_shape=[1, 2, 2], latent_dim=3, hidden=4)
    model.posterior_mean = lambda x: x.flatten(1)[:, :3]  # a known encoder: the first pixels
    steps = latent_axis_steps(model, _Steps(), torch.device("cpu"), limit=6)
    expected = torch.tensor([[0.3, 0.0, 0.0], [0.0, -0.2, 0.0]])
    torch.testing.assert_close(steps, expected)
    path = axis_path(torch.zeros(2, 3), torch.tensor([1, 0]), steps, 2)
    torch.testing.assert_close(path[0, :, 1], torch.tensor([0.0, -0.2, -0.4]))
    torch.testing.assert_close(path[1, :, 0], torch.tensor([0.0, 0.3, 0.6]))


def test_comparison_pipeline_runs_the_baselines_on_shapes3d_lite(tmp_path):
    spec = {
        "pipeline": "ffvae-digits",
        "data": "shapes3d-lite",
        "models": ["vae", "factor-vae", "slow-vae", "ffvae"],
        "seeds": [0],
        "steps": 2,
        "batch_size": 8,
        "n_sequences": 16,
        "length": 4,
        "latent_dim": 3,
        "eval_items": 16,
        "iw_samples": 2,
        "axis_sequences": 16,
        "vp_pairs": 40,
        "vp_epochs": 2,
        "figures": False,
        "model_options": {"factor-vae": {"disc_hidden": 8, "disc_layers": 1}},
    }
    result = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)
    summary = result["stages"][0]["result"]["summary"]
    names = ("floor_hue", "wall_hue", "object_hue", "scale")
    for model in spec["models"]:
        row = summary[model]
        for key in ("equivariance_error", "log_likelihood", "vp[vp@10%]", "vp[vp@1%]"):
            assert math.isfinite(row[key]["mean"]), (model, key)
        assert all(f"equivariance_error[{n}]" in row for n in names)
        assert ("equivariance_error_zero" in row) == (model != "ffvae")
    with pytest.raises(ef.PipelineSpecError, match="data"):
        ef.Pipeline.from_config({**spec, "data": "mnist"})
    bad = {**spec, "model_options": {"factorvae": {}}}
    with pytest.raises(ef.ConfigError, match="factorvae"):
        ef.Pipeline.from_config(bad).run(out=tmp_path / "bad", quiet=True)
