"""The VAE family, the potential-flow models and their math (KL terms, change of variables,
Laplacians, PDE residuals), each against an independent reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MultivariateNormal, Normal, kl_divergence

import eigenflow as ef
from eigenflow.core.potentials import (
    PotentialFamily,
    exact_laplacian,
    hj_residual,
    hutchinson_laplacian,
    potential_derivatives,
    wave_residual,
)
from eigenflow.plugins.models.kl import (
    kl_categorical_uniform,
    kl_diag_normal_std,
    kl_fullcov_normal_std,
    log_normal_diag,
    log_normal_fullcov,
    log_normal_std,
)

D64 = torch.float64
MODELS = ["vae", "beta-vae", "beta-vae-fullcov", "pde-vae", "ffvae", "factor-vae", "slow-vae"]


def _random_tril(b: int, d: int, gen: torch.Generator) -> torch.Tensor:
    tril = torch.randn(b, d, d, dtype=D64, generator=gen).tril(-1) * 0.5
    return tril + torch.diag_embed(torch.rand(b, d, dtype=D64, generator=gen) + 0.3)


# --------------------------------------------------------------------------- KL terms


def test_kl_diag_matches_torch_distributions_and_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 4, dtype=D64, generator=gen)
    logvar = torch.randn(5, 4, dtype=D64, generator=gen) * 0.5
    ours = kl_diag_normal_std(mu, logvar)
    q = Normal(mu, torch.exp(0.5 * logvar))
    ref = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    z = q.sample((50_000,))
    logr = log_normal_diag(z, mu, logvar) - log_normal_std(z)
    mc, err = logr.mean(0), logr.std(0) / math.sqrt(z.shape[0])
    assert torch.all((mc - ours).abs() < 5 * err)


def test_kl_fullcov_matches_torch_distributions_and_monte_carlo():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(3, 4, dtype=D64, generator=gen)
    tril = _random_tril(3, 4, gen)
    ours = kl_fullcov_normal_std(mu, tril)
    q = MultivariateNormal(mu, scale_tril=tril)
    prior = MultivariateNormal(torch.zeros(4, dtype=D64), torch.eye(4, dtype=D64))
    torch.testing.assert_close(ours, kl_divergence(q, prior), rtol=1e-12, atol=1e-12)
    z = q.sample((50_000,))
    torch.testing.assert_close(log_normal_fullcov(z[:5], mu, tril), q.log_prob(z[:5]))
    logr = log_normal_fullcov(z, mu, tril) - log_normal_std(z)
    mc, err = logr.mean(0), logr.std(0) / math.sqrt(z.shape[0])
    assert torch.all((mc - ours).abs() < 5 * err)


def test_kl_categorical_uniform_matches_torch():
    logits = torch.randn(6, 5, dtype=D64)
    ref = kl_divergence(
        Categorical(logits=logits), Categorical(logits=torch.zeros(6, 5, dtype=D64))
    )
    torch.testing.assert_close(kl_categorical_uniform(logits), ref)


# --------------------------------------------------------------------------- potentials


@pytest.fixture
def field():
    torch.manual_seed(0)
    return PotentialFamily(3, 4, hidden=16, time_dim=8).double()


def _one_potential(field, i, t, w):
    return lambda z: field(z[None], t[i : i + 1], w[i : i + 1]).sum()


def test_exact_laplacian_is_hessian_trace(field):
    z = torch.randn(5, 4, dtype=D64, requires_grad=True)
    t = torch.rand(5, dtype=D64) * 6
    w = torch.rand(5, 3, dtype=D64)
    (g,) = torch.autograd.grad(field(z, t, w).sum(), z, create_graph=True)
    lap = exact_laplacian(g, z, create_graph=False)
    ref = torch.stack(
        [
            torch.autograd.functional.hessian(_one_potential(field, i, t, w), z[i].detach()).trace()
            for i in range(5)
        ]
    )
    torch.testing.assert_close(lap, ref, rtol=1e-10, atol=1e-12)


def test_hutchinson_laplacian_is_unbiased(field):
    z = torch.randn(3, 4, dtype=D64, requires_grad=True)
    t = torch.full((3,), 2.0, dtype=D64)
    w = torch.eye(3, dtype=D64)
    (g,) = torch.autograd.grad(field(z, t, w).sum(), z, create_graph=True)
    exact = exact_laplacian(g, z, create_graph=False)
    n = 20_000
    est = hutchinson_laplacian(
        g, z, probes=n, create_graph=False, generator=torch.Generator().manual_seed(3)
    )
    hess = torch.stack(
        [
            torch.autograd.functional.hessian(_one_potential(field, i, t, w), z[i].detach())
            for i in range(3)
        ]
    )
    # Var(v^T H v) for Rademacher v is 2 * sum_{i != j} H_ij^2.
    off = hess - torch.diag_embed(torch.diagonal(hess, dim1=-2, dim2=-1))
    stderr = torch.sqrt(2 * off.square().sum((-2, -1)) / n)
    assert torch.all((est - exact).abs() < 5 * stderr + 1e-12)
    assert not torch.allclose(
        hutchinson_laplacian(g, z, probes=1, create_graph=False), exact
    )  # a real estimate


def test_time_derivatives_and_residuals_match_finite_differences(field):
    z = torch.randn(4, 4, dtype=D64)
    t = torch.rand(4, dtype=D64) * 5 + 0.5
    w = torch.softmax(torch.randn(4, 3, dtype=D64), -1)
    step = potential_derivatives(field, z, t, w)
    h = 1e-4
    u = lambda tt: field(z, tt, w)  # noqa: E731
    du = (u(t + h) - u(t - h)) / (2 * h)
    d2u = (u(t + h) - 2 * u(t) + u(t - h)) / h**2
    torch.testing.assert_close(step.du_dt, du, rtol=1e-6, atol=1e-8)
    c = torch.tensor(1.3, dtype=D64)
    res, wstep = wave_residual(field, z, t, w, c)
    torch.testing.assert_close(res, d2u - c**2 * step.laplacian, rtol=1e-4, atol=1e-6)
    f = -torch.rand(4, dtype=D64)
    torch.testing.assert_close(
        hj_residual(step, f), du + 0.5 * step.grad_z.square().sum(-1) - f, rtol=1e-6, atol=1e-8
    )
    torch.testing.assert_close(wstep.grad_z, step.grad_z)


def test_force_field_is_non_positive():
    force = PotentialFamily(2, 3, hidden=8, time_dim=4, squared_negative=True)
    out = force.all(torch.randn(50, 3), torch.rand(50) * 4)
    assert out.shape == (50, 2) and torch.all(out <= 0)


# --------------------------------------------------------------------------- models


def _sequence_batch(b=4, steps=3, shape=(1, 8, 8), dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(b, steps + 1, *shape, generator=gen).to(dtype)
    k = torch.arange(b) % 3
    return {"x": x, "k": k}


@pytest.mark.parametrize(
    ("name", "architecture"),
    [(name, "mlp") for name in MODELS] + [("vae", "conv"), ("ffvae", "conv")],
)
def test_every_model_trains_on_sequences(name, architecture):
    torch.manual_seed(0)
    model = ef.create(
        "model", name, input_shape=[1, 8, 8], latent_dim=3, hidden=16, architecture=architecture
    )
    batch = _sequence_batch()
    out = model.loss(batch)
    assert "loss" in out and all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        pred = model.predict_sequence(batch["x"], batch["k"])
    assert pred.shape == batch["x"].shape
    assert model.sample(2).shape == (2, 1, 8, 8)


def test_conv_width_sets_the_channels_of_both_networks():
    model = ef.create(
        "model",
        "vae",
        input_shape=[3, 8, 8],
        latent_dim=3,
        hidden=16,
        architecture="conv",
        conv_width=5,
    )
    enc_convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    dec_convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in enc_convs] == [(3, 5), (5, 10)]
    assert [(c.in_channels, c.out_channels) for c in dec_convs] == [(10, 5), (5, 3)]
    x = torch.rand(2, 3, 8, 8)
    assert model.decode(model.posterior_mean(x)).shape == x.shape
    with pytest.raises(ef.ConfigError, match="conv_width"):
        ef.create("model", "vae", architecture="conv", conv_width=0)


@pytest.mark.parametrize("name", MODELS)
def test_models_run_in_float64(name):
    torch.manual_seed(0)
    model = ef.create("model", name, input_shape=[5], latent_dim=2, hidden=8).double()
    out = model.loss(_sequence_batch(shape=(5,), dtype=D64))
    assert out["loss"].dtype == D64 and torch.isfinite(out["loss"])


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_px_given_z_matches_torch_distributions(likelihood):
    torch.manual_seed(0)
    model = ef.create(
        "model",
        "vae",
        input_shape=[6],
        latent_dim=2,
        hidden=8,
        likelihood=likelihood,
        decoder_std=0.7,
    ).double()
    x = torch.rand(3, 6, dtype=D64)
    z = torch.randn(5, 3, 2, dtype=D64)  # 5 importance samples for 3 items
    logits = model.decoder(z.reshape(-1, 2)).reshape(5, 3, 6)
    if likelihood == "bernoulli":
        ref = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none"
        ).sum(-1)
    else:
        ref = Normal(logits, 0.7).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_px_given_z(x, z), ref)


def test_fullcov_posterior_reparameterisation_and_kl():
    torch.manual_seed(0)
    model = ef.create(
        "model", "beta-vae-fullcov", input_shape=[6], latent_dim=3, hidden=8, beta=1.0
    ).double()
    x = torch.rand(2, 6, dtype=D64)
    mu, tril = model.encode(x)
    assert torch.equal(tril, tril.tril()) and torch.all(torch.diagonal(tril, 0, -2, -1) > 0)
    assert torch.any(tril.tril(-1) != 0)
    n = 20_000
    samples = model.reparameterize((mu.repeat(n, 1), tril.repeat(n, 1, 1))).view(n, 2, 3)
    cov = torch.einsum("nbi,nbj->bij", samples - mu, samples - mu) / samples.shape[0]
    torch.testing.assert_close(cov, tril @ tril.mT, atol=0.05, rtol=0.1)
    q = model.posterior(x)
    torch.testing.assert_close(
        model.kl((mu, tril)),
        kl_divergence(q, MultivariateNormal(torch.zeros(3, dtype=D64), torch.eye(3, dtype=D64))),
    )


def _ffvae(**opts):
    torch.manual_seed(0)
    return ef.create(
        "model",
        "ffvae",
        input_shape=[5],
        latent_dim=3,
        hidden=8,
        potential_hidden=16,
        time_dim=8,
        **opts,
    ).double()


def _flow_reference(model, z0, logq0, w, steps):
    """log q_t by the exact Jacobian of z -> z + grad u(z, t), one sample at a time."""
    logq, z = logq0.clone(), z0.clone()
    for t in range(1, steps + 1):
        tt = torch.full((z.shape[0],), float(t), dtype=D64)

        def update(zi, i, tt=tt):
            zi = zi.unsqueeze(0)
            step = potential_derivatives(
                model.potentials, zi, tt[i : i + 1], w[i : i + 1], laplacian=None
            )
            return (zi + step.grad_z).squeeze(0)

        jac = torch.stack(
            [
                torch.autograd.functional.jacobian(lambda v, i=i: update(v, i), z[i])
                for i in range(z.shape[0])
            ]
        )
        logq = logq - torch.linalg.slogdet(jac).logabsdet
        z = torch.stack([update(z[i], i) for i in range(z.shape[0])]).detach()
    return z, logq


def test_change_of_variables_logdet_matches_exact_jacobian():
    model = _ffvae(density_update="logdet")
    z0 = torch.randn(4, 3, dtype=D64, requires_grad=True)
    logq0, logp0 = torch.zeros(4, dtype=D64), torch.zeros(4, dtype=D64)
    w = torch.eye(3, dtype=D64)[[0, 1, 2, 0]]
    flow = model.posterior_flow(z0, logq0, logp0, w, steps=3)
    z_ref, logq_ref = _flow_reference(model, z0.detach(), logq0, w, 3)
    torch.testing.assert_close(flow["z"][-1], z_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flow["logq"][-1], logq_ref, rtol=1e-10, atol=1e-12)
    assert torch.any(logq_ref.abs() > 1e-4)  # the flow does change the density


def test_laplacian_density_update_is_first_order_in_the_potential():
    """log|1 + tr H| and log|det(I + H)| agree up to O(|H|^2) (Eq. 4.25)."""
    errs = []
    for eps in (1e-1, 1e-2):
        model = _ffvae()
        with torch.no_grad():
            for p in (model.potentials.out.weight, model.potentials.out.bias):
                p.mul_(eps * 20)
        z0 = torch.randn(
            4, 3, dtype=D64, generator=torch.Generator().manual_seed(1), requires_grad=True
        )
        zeros = torch.zeros(4, dtype=D64)
        w = torch.eye(3, dtype=D64)[[0, 1, 2, 1]]
        lap = model.posterior_flow(z0, zeros, zeros, w, steps=1)["logq"][-1]
        _, exact = _flow_reference(model, z0.detach(), zeros, w, 1)
        errs.append((lap - exact).abs().max().item())
        assert exact.abs().max() > 0
    assert errs[1] < errs[0] / 30  # quadratic: ratio about 100


def test_ffvae_hutchinson_option_trains():
    model = _ffvae(laplacian="hutchinson", hutchinson_probes=2)
    out = model.loss(_sequence_batch(shape=(5,), dtype=D64))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.potentials.space.weight.grad is not None


@pytest.mark.parametrize("k_encoder", ["frames", "latent"])
def test_ffvae_weak_supervision_has_categorical_kl_and_ignores_labels(k_encoder):
    model = _ffvae(supervision="weak", k_encoder=k_encoder)
    batch = _sequence_batch(shape=(5,), dtype=D64)
    out = model.loss(batch["x"])  # no k needed
    assert "kl_k" in out and out["kl_k"] >= 0
    w = model.flow_weights(batch["x"], None)
    assert torch.equal(w.sum(-1), torch.ones(4, dtype=D64))
    out["loss"].backward()
    assert model.k_head.weight.grad.abs().sum() > 0  # q(k|x) is trained through the ELBO
    # 'frames' reads the frame differences only: a constant offset of the whole sequence
    # leaves q(k|x) unchanged; 'latent' reads the encoder.
    shifted = model.k_logits(batch["x"] + 0.25)
    same = torch.allclose(shifted, model.k_logits(batch["x"]))
    assert same == (k_encoder == "frames")


def test_per_frame_log_likelihood_uses_the_encoder_for_models_without_a_flow():
    torch.manual_seed(0)
    model = ef.create("model", "vae", input_shape=[5], latent_dim=2, hidden=8).double()
    x = torch.rand(3, 4, 5, dtype=D64)
    metric = ef.create("metric", "log-likelihood", samples=7, seed=3)
    per_frame = metric.per_frame(model, x)
    torch.testing.assert_close(per_frame, metric.per_item(model, x.reshape(12, 5)).view(3, 4))


def test_switching_and_superposition_paths():
    model = _ffvae()
    z0 = torch.randn(2, 3, dtype=D64)
    w_all = torch.ones(2, 3, dtype=D64)
    sup = model.traverse(z0, w_all, 1)
    grads = [
        potential_derivatives(
            model.potentials,
            z0,
            torch.ones(2, dtype=D64),
            torch.eye(3, dtype=D64)[[j, j]],
            laplacian=None,
        ).grad_z
        for j in range(3)
    ]
    torch.testing.assert_close(sup[1] - sup[0], sum(grads))
    switch = torch.zeros(4, 2, 3, dtype=D64)
    switch[:2, :, 0], switch[2:, :, 2] = 1.0, 1.0
    path = model.traverse(z0, switch, 4)
    first = model.traverse(z0, torch.eye(3, dtype=D64)[[0, 0]], 2)
    torch.testing.assert_close(path[:3], first)
    assert path.shape == (5, 2, 3)


def test_vae_latent_update_is_zero():
    model = ef.create("model", "vae", input_shape=[5], latent_dim=2, hidden=8)
    z0 = torch.randn(3, 2)
    assert torch.equal(model.traverse(z0, None, 4), z0.expand(5, 3, 2))


def test_bad_inputs_raise_clear_errors():
    model = _ffvae()
    with pytest.raises(ef.InputError, match="label k"):
        model.loss(torch.rand(2, 3, 5, dtype=D64))
    with pytest.raises(ef.InputError, match="trailing shape"):
        model.loss({"x": torch.rand(2, 3, 7, dtype=D64), "k": torch.zeros(2)})
    with pytest.raises(ef.InputError, match="sequences"):
        model.loss({"x": torch.rand(2, 5, dtype=D64), "k": torch.zeros(2)})
    with pytest.raises(ef.ConfigError, match="input_shape"):
        ef.create("model", "vae", input_shape=[0, 3])
    with pytest.raises(ef.ConfigError, match="divisible by 4"):
        ef.create("model", "vae", input_shape=[1, 6, 6], architecture="conv")


@pytest.mark.parametrize("density_update", ["logdet", "laplacian"])
def test_diffusion_prior_step_matches_autograd(density_update):
    """Prior step of Eq. 4.17-4.18: psi = -D log N(0, var I), map z -> z + grad psi."""
    from eigenflow.plugins.models.kl import gaussian_log_density

    diffusion, var = 0.3, 1.7
    model = _ffvae(density_update=density_update, diffusion=diffusion)

    def psi(z):
        return -diffusion * gaussian_log_density(z, var)

    z = torch.randn(3, dtype=D64)
    hess = torch.autograd.functional.hessian(psi, z)
    if density_update == "logdet":
        ref = torch.linalg.slogdet(torch.eye(3, dtype=D64) + hess).logabsdet
    else:
        ref = torch.log1p(hess.trace())
    assert model._prior_log_jacobian(var, 3) == pytest.approx(float(ref), rel=1e-12)


def test_ffvae_digits_pipeline_smoke(tmp_path):
    """The demo pipeline runs end to end with the registered metrics and writes its files."""
    import eigenflow as ef

    spec = {
        "pipeline": "ffvae-digits",
        "seeds": [0],
        "steps": 3,
        "n_sequences": 32,
        "eval_items": 16,
        "iw_samples": 4,
    }
    result = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)
    summary = result["stages"][0]["result"]["summary"]
    assert {"vae", "ffvae", "ffvae-weak", "targets"} <= set(summary)
    for name in ("vae", "ffvae", "ffvae-weak"):
        assert math.isfinite(summary[name]["equivariance_error"]["mean"])
        assert math.isfinite(summary[name]["log_likelihood"]["mean"])
        assert math.isfinite(summary[name]["log_likelihood_sequence"]["mean"])
    assert "ffvae_sequence_ll_minus_vae" in summary["targets"]
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "results.md").is_file()
    assert list(tmp_path.rglob("*.png"))


def test_ffvae_digits_trains_the_chosen_models_only(tmp_path):
    spec = {
        "pipeline": "ffvae-digits",
        "models": ["vae"],
        "seeds": [1],
        "steps": 2,
        "scheduler": "cosine",
        "batch_size": 8,
        "n_sequences": 16,
        "eval_items": 8,
        "iw_samples": 2,
    }
    result = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)
    summary = result["stages"][0]["result"]["summary"]
    assert set(summary) == {"vae"}
    with pytest.raises(ef.PipelineSpecError, match=r"models: 'fvae'.*did you mean 'ffvae'"):
        ef.Pipeline.from_config({**spec, "models": ["fvae"]})


def test_flow_proposal_densities_match_exact_jacobians_and_prior():
    """``flow_proposal``: samples moved by the flow, ``log q_t`` by the exact Jacobian of each
    step, and ``log p_t`` the closed-form diffusion prior N(0, var_t I)."""
    model = _ffvae(diffusion=0.1)
    x = torch.rand(3, 4, 5, dtype=D64)
    k = torch.tensor([0, 1, 2])
    torch.manual_seed(3)
    z, log_q, log_p = model.flow_proposal(x, k, samples=2)
    assert z.shape == (2, 4, 3, 3) and log_q.shape == log_p.shape == (2, 4, 3)
    w = torch.eye(3, dtype=D64)[k]
    q0 = model.posterior(x[:, 0])
    for i in range(2):
        torch.testing.assert_close(log_q[i, 0], q0.log_prob(z[i, 0]))
        z_ref, logq_ref = _flow_reference(model, z[i, 0], log_q[i, 0], w, 3)
        torch.testing.assert_close(z[i, -1], z_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(log_q[i, -1], logq_ref, rtol=1e-10, atol=1e-12)
    var = 1.0
    for t in range(4):
        prior = Normal(torch.zeros(3, dtype=D64), math.sqrt(var) * torch.ones(3, dtype=D64))
        torch.testing.assert_close(log_p[:, t], prior.log_prob(z[:, t]).sum(-1))
        var = var * (1 + 0.1 / var) ** 2


def _ffvae_2d(decoder_std: float):
    """A small float64 ffvae with a 2-D latent and a Gaussian decoder, in eval mode."""
    torch.manual_seed(0)
    model = ef.create(
        "model",
        "ffvae",
        input_shape=[4],
        latent_dim=2,
        hidden=8,
        potential_hidden=8,
        time_dim=8,
        likelihood="gaussian",
        decoder_std=decoder_std,
    ).double()
    return model.eval()


def test_flow_log_likelihood_converges_to_quadrature_in_two_dimensions():
    """The flowed-posterior importance-weighted ``log p(x_t)`` approaches the exact
    ``log int p(x_t|z) N(z; 0, var_t I) dz`` computed on a 2-D grid, from below."""
    from eigenflow.plugins.gen_metrics import flow_importance_weighted_log_likelihood

    model = _ffvae_2d(decoder_std=0.7)
    x = torch.rand(2, 3, 4, dtype=D64)
    k = torch.tensor([0, 2])
    torch.manual_seed(1)
    with torch.no_grad():
        est = flow_importance_weighted_log_likelihood(model, x, k, samples=20000, chunk=5000)
    grid = torch.linspace(-9, 9, 601, dtype=D64)
    zz = (
        torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
        .reshape(-1, 1, 2)
        .expand(-1, 2, 2)
    )
    cell = float(grid[1] - grid[0]) ** 2
    exact = torch.empty(2, 3, dtype=D64)
    for t in range(3):
        var = model.prior_variance(t)
        with torch.no_grad():
            log_joint = model.log_px_given_z(x[:, t], zz) - 0.5 * (
                zz.square().sum(-1) / var + 2 * math.log(2 * math.pi * var)
            )
        exact[:, t] = torch.logsumexp(log_joint, 0) + math.log(cell)
    assert torch.all(est <= exact + 0.02)
    torch.testing.assert_close(est, exact, atol=0.05, rtol=0)


def test_sequence_log_likelihood_converges_to_quadrature_in_two_dimensions():
    """``log p(x_0..T)`` of the flow model's sequence model (``z_0 ~ N(0, I)`` moved by
    ``u^k``), importance-weighted, against ``log int N(z_0) prod_t p(x_t|z_t(z_0)) dz_0`` on
    a 2-D grid: conditional on k, and with k marginalised over the three potentials."""
    model = _ffvae_2d(decoder_std=0.8)
    with torch.no_grad():  # stronger, distinct flows: the three labels differ by nats
        for p in model.potentials.out.parameters():
            p.mul_(12.0)
    x = torch.rand(2, 3, 4, dtype=D64)
    k = torch.tensor([0, 2])
    metric = ef.create("metric", "log-likelihood", samples=20000, chunk=5000, seed=1)
    conditional = metric.per_sequence(model, x, k)
    marginal = metric.per_sequence(model, x)

    grid = torch.linspace(-8, 8, 321, dtype=D64)
    z0 = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    cell = float(grid[1] - grid[0]) ** 2
    log_prior = -0.5 * z0.square().sum(-1) - math.log(2 * math.pi)
    exact = torch.empty(3, 2, dtype=D64)  # (label, sequence)
    for label in range(3):
        weights = torch.zeros(len(z0), 3, dtype=D64)
        weights[:, label] = 1.0
        path = model.traverse(z0, weights, 2).detach()  # (3, G, 2)
        with torch.no_grad():
            log_joint = log_prior.unsqueeze(-1) + sum(
                model.log_px_given_z(x[:, t], path[t].unsqueeze(1).expand(-1, 2, -1))
                for t in range(3)
            )
        exact[label] = torch.logsumexp(log_joint, 0) + math.log(cell)
    exact_conditional = exact[k, torch.arange(2)]
    exact_marginal = torch.logsumexp(exact, 0) - math.log(3)
    assert (exact.max(0).values - exact.min(0).values).min() > 0.5
    assert torch.all(conditional <= exact_conditional + 0.02)
    torch.testing.assert_close(conditional, exact_conditional, atol=0.05, rtol=0)
    torch.testing.assert_close(marginal, exact_marginal, atol=0.05, rtol=0)


def test_sample_sequences_decode_the_flowed_prior_samples():
    model = _ffvae()
    torch.manual_seed(5)
    got = model.sample_sequences(4, torch.tensor([0, 1, 2, 1]), 3)
    torch.manual_seed(5)
    z0 = torch.randn(4, model.latent_dim, dtype=D64)
    path = model.traverse(z0, torch.eye(3, dtype=D64)[[0, 1, 2, 1]], 3).detach()
    assert got.shape == (4, 4, *model.input_shape)
    torch.testing.assert_close(got, model.decode(path).transpose(0, 1).detach())
    with pytest.raises(ef.InputError, match="k: labels must lie in"):
        model.sample_sequences(2, 3, 3)


def test_sequence_log_likelihood_of_a_frame_model_is_the_sum_over_frames():
    model = ef.create("model", "vae", input_shape=[5], latent_dim=2, hidden=8).double()
    x = torch.rand(3, 4, 5, dtype=D64)
    metric = ef.create("metric", "log-likelihood", samples=7, seed=3)
    torch.testing.assert_close(
        metric.per_sequence(model, x), metric.per_item(model, x.reshape(12, 5)).view(3, 4).sum(1)
    )


def test_weak_k_inference_picks_the_argmax_of_q_or_of_the_responsibilities():
    x = torch.rand(6, 4, 5, dtype=D64)
    amortised = _ffvae(supervision="weak")
    responsibilities = _ffvae(supervision="weak", k_inference="responsibilities")
    eye = torch.eye(3, dtype=D64)
    torch.testing.assert_close(
        amortised.flow_weights(x, None), eye[amortised.k_logits(x).argmax(-1)]
    )
    r = responsibilities.k_responsibilities(x)
    assert not torch.equal(r.argmax(-1), responsibilities.k_logits(x).argmax(-1))
    torch.testing.assert_close(responsibilities.flow_weights(x, None), eye[r.argmax(-1)])


def test_k_responsibilities_match_a_per_potential_loop_and_train_q():
    model = _ffvae(supervision="weak", k_amortisation=1.0)
    x = torch.rand(4, 4, 5, dtype=D64)
    r = model.k_responsibilities(x)
    z0 = model.posterior_mean(x[:, 0])
    scores = []
    for j in range(3):
        w = torch.zeros(4, 3, dtype=D64)
        w[:, j] = 1
        path = model.traverse(z0, w, 3).detach()
        scores.append(sum(model.log_px_given_z(x[:, t], path[t]) for t in range(1, 4)))
    torch.testing.assert_close(r, torch.softmax(torch.stack(scores, -1), -1))
    out = model.loss(x)
    assert out["k_match"] > 0
    out["loss"].backward()
    assert model.k_head.weight.grad.abs().sum() > 0


def test_the_e_step_target_trains_only_the_sequence_classifier():
    # with k_encoder="frames" the cross-entropy to the detached responsibilities reaches
    # q(k|x)'s own network and nothing else, so its weight only sets how fast q follows r
    model = _ffvae(supervision="weak", k_amortisation=100.0)
    model.loss(torch.rand(4, 4, 5, dtype=D64))["k_match"].backward()
    reached = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert reached == {"k_features", "k_head"}
    assert all(p.grad.abs().sum() > 0 for p in model.k_head.parameters())


def test_flow_kl_prior_is_the_sum_of_per_frame_kls_to_the_exact_diffusion_prior():
    model = _ffvae(flow_kl="prior", diffusion=0.2)
    x = torch.rand(4, 4, 5, dtype=D64)
    k = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(5)
    out = model.loss({"x": x, "k": k})
    torch.manual_seed(5)
    mu, logvar = model.encode(x[:, 0])
    z0 = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    flow = model.posterior_flow(
        z0, log_normal_diag(z0, mu, logvar), log_normal_std(z0), torch.eye(3, dtype=D64)[k], 3
    )
    expected, var = 0.0, 1.0
    for t in range(1, 4):
        var = var * (1 + 0.2 / var) ** 2
        prior = Normal(torch.zeros(3, dtype=D64), math.sqrt(var) * torch.ones(3, dtype=D64))
        expected = expected + flow["logq"][t] - prior.log_prob(flow["z"][t]).sum(-1)
    torch.testing.assert_close(out["kl_flow"], expected.mean())
