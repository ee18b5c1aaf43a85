"""Generative-model metrics against closed forms and brute force: DtO (signed permutations by
enumeration), k-NN predictions (all pairwise distances), MIG / disentanglement score on
known codes, the importance-weighted log-likelihood of a linear-Gaussian model (exact
marginal), and the equivariance error of an exactly equivariant linear model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import eigenflow as ef
import eigenflow.plugins.gen_metrics as gm
from eigenflow.core.errors import ConfigError, InputError
from eigenflow.registry import register_plugin, unregister_plugin
from eigenflow.testing import MetricConformance

NAMES = ("equivariance-error", "log-likelihood", "dto", "disentanglement-score", "mig")
_PLUGIN = "test-gen-metrics"


@pytest.fixture
def registered():
    """Register the module as an in-process plugin unless an entry point already did."""
    added = "dto" not in ef.list("metric")
    if added:
        register_plugin(gm, name=_PLUGIN)
    yield
    if added:
        unregister_plugin(_PLUGIN)


class TestGenMetricsConformance(MetricConformance):
    names = NAMES

    @pytest.fixture(autouse=True)
    def _register(self, registered):
        yield


def test_registered_by_name(registered):
    assert set(NAMES) <= set(ef.list("metric"))
    metric = ef.create("metric", "disentanglement-score", neighbours=3)
    assert isinstance(metric, gm.DisentanglementScore) and metric.config.neighbours == 3
    with pytest.raises(ConfigError, match="variant"):
        ef.create("metric", "equivariance-error", variant="pixels")


# =========================================================================== DtO


def _signed_permutations(d: int):
    for perm in itertools.permutations(range(d)):
        for signs in itertools.product((-1.0, 1.0), repeat=d):
            P = torch.zeros(d, d, dtype=torch.float64)
            P[torch.arange(d), torch.tensor(perm)] = torch.tensor(signs, dtype=torch.float64)
            yield P


def _brute_force_closest(V: torch.Tensor) -> torch.Tensor:
    return min(_signed_permutations(V.shape[-1]), key=lambda P: float((V - P).abs().sum()))


def test_dto_is_zero_for_signed_permutations():
    g = torch.Generator().manual_seed(0)
    Ps = torch.stack([P for i, P in enumerate(_signed_permutations(3)) if i % 7 == 0])
    torch.testing.assert_close(gm.closest_signed_permutation(Ps), Ps, rtol=0, atol=0)
    assert gm.distance_to_orthogonality(Ps).abs().max() == 0
    # A decoder J = U S P^T with distinct singular values: its V is a signed permutation.
    U = torch.linalg.qr(torch.randn(len(Ps), 7, 3, dtype=torch.float64, generator=g))[0]
    S = torch.diag(torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64))
    J = U @ S @ Ps.mT
    out = gm.DtO()(J)
    assert out["dto"] < 1e-12 and out["std"] < 1e-12


@pytest.mark.parametrize("d", [2, 3, 4])
def test_closest_signed_permutation_matches_brute_force(d):
    g = torch.Generator().manual_seed(d)
    orthogonal = torch.linalg.qr(torch.randn(6, d, d, dtype=torch.float64, generator=g))[0]
    general = torch.randn(6, d, d, dtype=torch.float64, generator=g)
    for V in torch.cat([orthogonal, general]):
        ref = _brute_force_closest(V)
        got = gm.closest_signed_permutation(V)
        assert float((V - got).abs().sum()) == pytest.approx(
            float((V - ref).abs().sum()), abs=1e-12
        )
        torch.testing.assert_close(got, ref, rtol=0, atol=0)  # unique for random V
        ref_dto = torch.linalg.matrix_norm(V - ref)
        torch.testing.assert_close(gm.distance_to_orthogonality(V), ref_dto)


def test_dto_of_a_plane_rotation_has_a_closed_form():
    theta = math.radians(30.0)
    R = torch.tensor(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
        dtype=torch.float64,
    )
    expected = 2.0 * math.sqrt(1.0 - math.cos(theta))  # ||R - I||_F
    assert float(gm.distance_to_orthogonality(R)) == pytest.approx(expected, rel=1e-12)
    # Through a decoder with distinct singular values: J = diag(3, 1) R^T.
    J = (torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)) @ R.T)[None]
    assert gm.DtO()(J)["dto"] == pytest.approx(expected, rel=1e-9)


def test_dto_from_a_decoder_matches_autograd_jacobians():
    g = torch.Generator().manual_seed(1)
    W1 = torch.randn(8, 3, dtype=torch.float64, generator=g)
    W2 = torch.randn(5, 8, dtype=torch.float64, generator=g)

    def decoder(z):
        return torch.tanh(z @ W1.T) @ W2.T

    z = torch.randn(4, 3, dtype=torch.float64, generator=g)
    J = gm.decoder_jacobians(decoder, z)
    ref = torch.stack([torch.autograd.functional.jacobian(decoder, zi[None])[0, :, 0] for zi in z])
    torch.testing.assert_close(J, ref)
    metric = gm.DtO()
    assert metric(decoder=decoder, z=z) == pytest.approx(metric(ref), rel=1e-12)
    with pytest.raises(InputError, match="D >= d"):
        metric(torch.randn(2, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="jacobians"):
        metric()


# =========================================================================== k-NN, DS, MIG


def test_knn_1d_matches_all_pairs_brute_force():
    g = torch.Generator().manual_seed(2)
    train_x = torch.randn(3, 200, dtype=torch.float64, generator=g)
    query = torch.randn(3, 50, dtype=torch.float64, generator=g) * 1.5  # some beyond the ends
    y = torch.randn(200, dtype=torch.float64, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    for k in (1, 5, 20):
        dist = (query[:, :, None] - train_x[:, None, :]).abs()  # (3, 50, 200)
        idx = dist.topk(k, dim=-1, largest=False).indices
        torch.testing.assert_close(
            gm.knn_predict_1d(train_x, y, query, k, classify=False), y[idx].mean(-1)
        )
        votes = torch.nn.functional.one_hot(labels[idx], 4).sum(-2)  # (3, 50, 4)
        got = gm.knn_predict_1d(train_x, labels, query, k, classify=True)
        # the prediction is a class with the most votes
        assert torch.equal(votes.gather(-1, got[..., None])[..., 0], votes.max(-1).values)


def _codes(n: int = 3000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, 2, dtype=torch.float64, generator=g)
    nuisance = 0.01 * torch.randn(n, 1, dtype=torch.float64, generator=g)
    disentangled = torch.cat([nuisance, -3.0 * w[:, 1:], 2.0 * w[:, :1] + 1.0], dim=1)
    c = math.sqrt(0.5)
    rotated = w @ torch.tensor([[c, -c], [c, c]], dtype=torch.float64)
    random = torch.randn(n, 3, dtype=torch.float64, generator=g)
    return w, disentangled, rotated, random


@pytest.mark.parametrize("metric_cls", [gm.DisentanglementScore, gm.MIG])
def test_disentangled_entangled_and_random_codes(metric_cls):
    w, disentangled, rotated, random = _codes()
    metric = metric_cls()
    key = "disentanglement_score" if metric_cls is gm.DisentanglementScore else "mig"
    assert metric(disentangled, w)[key] > 0.9
    assert metric(rotated, w)[key] < 0.1
    assert metric(random, w)[key] < 0.05
    # Discrete factors (integer tensors) take the classification / entropy route.
    classes = (w * 4).long().clamp(max=3)
    assert metric(classes.double()[:, [1, 0]] + 0.05 * torch.rand_like(w), classes)[key] > 0.9
    assert metric(random, classes)[key] < 0.05


def test_disentanglement_score_terms_stay_in_unit_interval():
    w, disentangled, rotated, random = _codes(n=1000, seed=3)
    for z in (disentangled, rotated, random):
        for factors, discrete in ((w, None), ((w * 5).long().clamp(max=4), None)):
            terms = gm.DisentanglementScore().per_factor(z, factors, discrete)
            assert terms.min() >= 0 and terms.max() <= 1
    with pytest.raises(InputError, match="latent"):
        gm.DisentanglementScore()(w[:, :1], w)
    with pytest.raises(InputError, match="flags"):
        gm.MIG()(disentangled, w, discrete=[True])


def test_discrete_mutual_information_closed_forms():
    a = torch.arange(4).repeat(256)  # uniform over 4 values
    same = gm.discrete_mutual_information(a[:, None], a, 4, 4)
    assert float(same) == pytest.approx(math.log(4.0), rel=1e-12)
    b = torch.arange(4).repeat_interleave(256)  # independent of a: a cycles within b's blocks
    assert float(gm.discrete_mutual_information(a[:, None], b, 4, 4)) == pytest.approx(
        0.0, abs=1e-12
    )
    # A deterministic 2-to-1 function keeps log 2 of log 4 nats.
    half = gm.discrete_mutual_information(a[:, None], a // 2, 4, 2)
    assert float(half) == pytest.approx(math.log(2.0), rel=1e-12)


# =========================================================================== log-likelihood


class LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I): p(x) = N(b, W W^T + s^2 I) in closed form."""

    def __init__(
        self,
        d: int = 2,
        D: int = 4,
        s: float = 0.5,
        seed: int = 0,
        shift: float = 0.0,
        inflate: float = 1.0,
        exact: bool = True,
    ):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, d, dtype=torch.float64, generator=g)
        self.b = torch.randn(D, dtype=torch.float64, generator=g)
        self.s, self.shift, self.inflate, self.exact = s, shift, inflate, exact
        precision = torch.eye(d, dtype=torch.float64) + self.W.T @ self.W / s**2
        self.post_cov = torch.linalg.inv(precision)

    def posterior(self, x):
        mean = (x - self.b) @ self.W @ self.post_cov / self.s**2 + self.shift
        if self.exact:
            return torch.distributions.MultivariateNormal(mean, self.post_cov)
        std = self.inflate * self.post_cov.diagonal().sqrt()
        return torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)

    def log_px_given_z(self, x, z):
        mean = z @ self.W.T + self.b
        return torch.distributions.Normal(mean, self.s).log_prob(x).sum(-1)

    def marginal(self):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov)


def test_log_likelihood_is_exact_with_the_true_posterior():
    model = LinearGaussian()
    x = model.marginal().sample((20,))
    got = gm.LogLikelihood(samples=3, chunk=2).per_item(model, x)
    torch.testing.assert_close(got, model.marginal().log_prob(x), rtol=0, atol=1e-10)


def test_log_likelihood_estimate_converges_with_a_wrong_posterior():
    model = LinearGaussian(shift=0.2, inflate=1.3, exact=False, seed=1)
    x = model.marginal().sample((40,))
    exact = model.marginal().log_prob(x)
    runs = torch.stack(
        [gm.LogLikelihood(samples=1000, chunk=1000, seed=s).per_item(model, x) for s in (1, 2, 3)]
    )
    # Monte-Carlo error per point, measured from the spread of independent replicates.
    mc_sd = float(runs.std(dim=0).pow(2).mean().sqrt())
    assert 0 < mc_sd < 0.05
    error = runs.mean(0) - exact
    assert error.abs().max() < 5 * mc_sd / math.sqrt(3) + 2e-3
    assert abs(float(error.mean())) < 4 * mc_sd / math.sqrt(3 * 40) + 2e-3
    # K=1 is the ELBO: below the exact value on average by the KL gap.
    few = gm.LogLikelihood(samples=1, seed=1).per_item(model, x)
    assert few.mean() < exact.mean() - 0.02
    out = gm.LogLikelihood(samples=1000, chunk=1000, seed=1)(model, x)
    assert out["log_likelihood"] == pytest.approx(float(runs[0].mean()), rel=1e-12)
    assert out["count"] == 40 and out["stderr"] == pytest.approx(
        float(runs[0].std() / math.sqrt(40)), rel=1e-9
    )


def test_log_likelihood_is_seeded_and_restores_training_mode():
    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = LinearGaussian(exact=False, shift=0.2)
            self.modes = []

        def posterior(self, x):
            self.modes.append(self.training)
            return self.inner.posterior(x)

        def log_px_given_z(self, x, z):
            return self.inner.log_px_given_z(x, z)

    model = Module().train()
    x = model.inner.marginal().sample((5,))
    metric = gm.LogLikelihood(samples=50)
    assert metric(model, x) == metric(model, x)
    assert model.training and model.modes == [False, False]


# =========================================================================== equivariance


class LinearFlowModel:
    """An exactly equivariant linear model: x = A z, Encode = A^+ (posterior mean), latent
    flow z_t = z_0 + t v_k, decoder A. Data made by the same flow have zero error."""

    def __init__(self, d: int = 3, D: int = 10, K: int = 2, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(D, d, dtype=torch.float64, generator=g)
        self.v = torch.randn(K, d, dtype=torch.float64, generator=g)
        self.K = K

    def posterior_mean(self, x):
        return x @ torch.linalg.pinv(self.A).T

    def flow_weights(self, x, k):
        return torch.nn.functional.one_hot(k, self.K).to(x.dtype)

    def traverse(self, z0, weights, steps):
        t = torch.arange(steps + 1, dtype=z0.dtype)[:, None, None]
        return z0 + t * (weights @ self.v)

    def decode(self, z):
        return z @ self.A.T

    def sequences(self, B: int, T: int, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        z0 = torch.randn(B, self.A.shape[1], dtype=torch.float64, generator=g)
        k = torch.randint(0, self.K, (B,), generator=g)
        path = self.traverse(z0, self.flow_weights(z0, k), T).transpose(0, 1)
        return self.decode(path), k


@pytest.mark.parametrize("variant", ["image", "latent"])
def test_equivariance_error_is_zero_for_an_equivariant_model(variant):
    model = LinearFlowModel()
    x, k = model.sequences(B=8, T=5)
    out = gm.EquivarianceError(variant=variant)(x, model=model, k=k)
    assert out["equivariance_error"] < 1e-10 and out["count"] == 8
    assert out["k0"] < 1e-10 and out["k1"] < 1e-10


def test_equivariance_error_with_zero_latent_update_has_a_closed_form():
    model = LinearFlowModel()
    x, k = model.sequences(B=6, T=4)
    out = gm.EquivarianceError(latent_operator="zero")(x, model=model, k=k)
    # x_t - Decode(z_0) = t A v_k exactly, so E = sum_t t |A v_k|_1 = 10 |A v_k|_1 for T=4.
    per_k = (model.v @ model.A.T).abs().sum(-1) * sum(range(1, 5))
    expected = per_k[k]
    assert out["equivariance_error"] == pytest.approx(float(expected.mean()), rel=1e-10)
    for j in range(2):
        assert out[f"k{j}"] == pytest.approx(float(expected[k == j].mean()), rel=1e-10)
    latent = gm.EquivarianceError(latent_operator="zero", variant="latent")(x, model=model, k=k)
    expected_latent = model.v.abs().sum(-1)[k] * 10
    assert latent["equivariance_error"] == pytest.approx(float(expected_latent.mean()), rel=1e-9)


def test_equivariance_error_from_given_frames():
    x = torch.zeros(3, 4, 1, 2, 2)
    predicted = torch.full_like(x, 0.5)
    metric = gm.EquivarianceError()
    # Frames 1..3 count: 3 frames x 4 pixels x 0.5.
    assert metric(x, predicted)["equivariance_error"] == pytest.approx(6.0)
    assert gm.EquivarianceError(include_start=True)(x, predicted)[
        "equivariance_error"
    ] == pytest.approx(8.0)
    with pytest.raises(InputError, match="predicted"):
        metric(x, predicted[:, :3])
    with pytest.raises(InputError, match="model"):
        metric(x)


# =========================================================================== devices


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_cpu():
    w, disentangled, rotated, _ = _codes(n=1000)
    cuda = torch.device("cuda")
    for metric in (gm.DisentanglementScore(), gm.MIG()):
        for z in (disentangled, rotated):
            cpu = metric(z, w)
            gpu = metric(z.to(cuda), w.to(cuda))
            assert gpu == pytest.approx(cpu, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    J = torch.randn(6, 5, 3, dtype=torch.float64, generator=g)
    assert gm.DtO()(J.to(cuda)) == pytest.approx(gm.DtO()(J), rel=1e-9)
    x = torch.rand(4, 3, 1, 5, 5, generator=g)
    p = torch.rand(4, 3, 1, 5, 5, generator=g)
    k = torch.tensor([0, 1, 1, 0])
    assert gm.EquivarianceError()(x.to(cuda), p.to(cuda), k=k.to(cuda)) == pytest.approx(
        gm.EquivarianceError()(x, p, k=k), rel=1e-6
    )
