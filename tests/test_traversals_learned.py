"""Learned traversals (potential-flow, linear), householder directions and the traversal
metrics (vp-score, alignment-map)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.potentials import wave_residual
from eigenflow.plugins.traversals.potential_flow import jacobian_vector_product


class PlaneWave(nn.Module):
    """u(z, t) = sin(a.z - omega t): solves u_tt = c^2 Laplacian u exactly when c|a| = omega."""

    def __init__(self, a: torch.Tensor, omega: float):
        super().__init__()
        self.a, self.omega = a, omega

    def forward(self, z, t, weights):
        return torch.sin(z @ self.a - self.omega * t)


@pytest.mark.parametrize("laplacian", ["exact", "hutchinson"])
def test_wave_residual_vanishes_on_an_analytic_solution(laplacian):
    a = torch.tensor([0.6, -0.8, 0.0], dtype=torch.float64)  # |a| = 1
    field = PlaneWave(a, omega=2.0)
    z = torch.randn(5, 3, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    w = torch.ones(5, 1, dtype=torch.float64)
    residual, step = wave_residual(
        field, z, t, w, torch.tensor(2.0).double(), laplacian=laplacian, probes=4
    )
    if laplacian == "exact":
        assert residual.abs().max() < 1e-12
    wrong, _ = wave_residual(field, z, t, w, torch.tensor(1.0).double(), laplacian="exact")
    expected = -3.0 * torch.sin(z @ a - 2.0 * t)  # u_tt - c^2 lap u = (-4 + 1) sin
    torch.testing.assert_close(wrong, expected)
    torch.testing.assert_close(step.grad_z, torch.cos(z @ a - 2.0 * t)[:, None] * a)


def tiny_generator(seed=0, d=4, p=30):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, p), nn.Sigmoid())


def test_potential_flow_trains_and_moves_along_grad_u():
    G = tiny_generator()
    pf = ef.create(
        "traversal",
        "potential-flow",
        num_potentials=3,
        timesteps=4,
        hidden=16,
        time_dim=8,
        train_steps=40,
        batch_size=16,
        lr=3e-3,
    )
    pf.fit(G, 4)
    assert len(pf.history) == 40
    assert all(math.isfinite(v) for row in pf.history for v in row.values())
    first = sum(h["l_k"] for h in pf.history[:5]) / 5
    last = sum(h["l_k"] for h in pf.history[-5:]) / 5
    assert last < first  # the index classifier learns to tell the potentials apart
    z0 = torch.randn(2, 4)
    path = pf.traverse(z0, 1, steps=3)
    assert path.shape == (4, 2, 4)
    # Eq. 4.6: the first update is grad_z u^1(z0, 0), checked by finite differences of u
    w = torch.nn.functional.one_hot(torch.tensor([1, 1]), 3).float()
    h = 1e-3
    t0 = torch.zeros(2)
    fd = torch.stack(
        [
            (pf.field(z0 + h * e, t0, w) - pf.field(z0 - h * e, t0, w)) / (2 * h)
            for e in torch.eye(4)
        ],
        -1,
    )
    torch.testing.assert_close(path[1] - path[0], fd, rtol=1e-2, atol=1e-4)


def test_linear_baseline_trains_unit_directions():
    G = tiny_generator()
    lin = ef.create("traversal", "linear", num_directions=3, train_steps=30, batch_size=16)
    lin.fit(G, 4)
    D = lin.directions
    torch.testing.assert_close(D.norm(dim=0), torch.ones(3))
    path = lin.traverse(torch.zeros(1, 4), 2, steps=2, step_size=0.5)
    torch.testing.assert_close(path[2, 0], D[:, 2])


def test_jacobian_vector_product_matches_forward_mode():
    G = tiny_generator()
    z, v = torch.randn(3, 4), torch.randn(3, 4)
    _, ref = torch.func.jvp(G, (z,), (v,))
    torch.testing.assert_close(
        jacobian_vector_product(G, z, v), ref.flatten(1), rtol=1e-5, atol=1e-6
    )


def _linear(weight: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def test_vp_score_separates_orthogonal_from_identical_directions():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(20, 5, generator=gen)
    G = _linear(W)
    sefa = ef.create("traversal", "sefa", num_directions=4).fit(G)
    vp = ef.create("metric", "vp-score", num_pairs=400, epochs=40, train_fractions=(0.25,))
    good = vp(G, sefa, 5)

    class SameDirection:
        num_directions = 4

        def traverse(self, z0, k, steps):
            return sefa.traverse(z0, 0, steps)

    bad = vp(G, SameDirection(), 5)
    assert good["vp@25%"] > 0.9
    assert abs(bad["vp@25%"] - bad["chance"]) < 0.1


def test_alignment_map_on_axis_aligned_and_rotated_generators():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    aligned = _linear(torch.diag(s)).double()
    F = ef.create("metric", "alignment-map")
    out = F(aligned, torch.randn(8, 4, dtype=torch.float64))
    assert out["diagonal"] == pytest.approx(1.0)
    torch.testing.assert_close(torch.tensor(out["map"], dtype=torch.float64), torch.eye(4).double())
    Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    rotated = _linear(torch.diag(s) @ Q.mT).double()
    assert F(rotated, torch.randn(8, 4, dtype=torch.float64))["axis_alignment"] < 0.95


def test_householder_traversal_reads_the_constraint():
    layer = nn.Linear(6, 8)
    constraint = ef.create("constraint", "householder", rank=3).attach(layer)
    trav = ef.create("traversal", "householder").fit(constraint)
    D = trav.directions
    torch.testing.assert_close(D, constraint.directions())
    torch.testing.assert_close(D.mT @ D, torch.eye(D.shape[1]), atol=1e-5, rtol=0)
    assert trav.traverse(torch.zeros(2, D.shape[0]), 0, steps=3).shape == (4, 2, D.shape[0])
    with pytest.raises(ef.InputError, match="expected an attached 'householder' constraint"):
        ef.create("traversal", "householder").fit(object())


def test_traverse_pipeline_end_to_end(tmp_path):
    spec = {
        "pipeline": "traverse",
        "dataset": {"name": "dsprites", "n_samples": 256, "image_size": 32},
        "train_steps": 10,
        "traversal": {"name": "potential-flow", "train_steps": 3, "batch_size": 8},
        "compare": ["sefa", {"name": "hessian-metric", "num_directions": 3}],
        "num_directions": 3,
        "num_paths": 2,
        "path_steps": 3,
        "vp": {"num_pairs": 60, "epochs": 2, "train_fractions": [0.5]},
        "spectrum_points": 2,
    }
    summary = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)
    result = summary["stages"][0]["result"]
    assert set(result["vp"]) == {"potential-flow", "sefa", "hessian-metric"}
    for scores in result["vp"].values():
        assert 0.0 <= scores["vp@50%"] <= 1.0 and scores["chance"] == pytest.approx(1 / 3)
    for name in result["files"]:
        assert (tmp_path / name).is_file()
    assert (tmp_path / "paths-potential-flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result["spectrum"]["mean_log10_eigenvalues"]) == result["latent_dim"]
    for name, stats in result["paths"].items():  # distinct paths per k, and the output moves
        assert stats["min_endpoint_distance"] > 1e-3, name
        assert stats["mean_output_change"] > 0, name


def test_traverse_pipeline_reports_spec_errors():
    with pytest.raises(ef.PipelineSpecError) as info:
        ef.Pipeline.from_config({"pipeline": "traverse", "compare": ["sefaa"], "traversal": "pf"})
    text = str(info.value)
    assert "traversal: unknown traversal 'pf'" in text
    assert "compare" in text


class UserDecoder(nn.Module):
    """A user's own generator class, not shipped with eigenflow."""

    latent_dim = 3

    def __init__(self, config=None):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2 * 8 * 8))

    def decode(self, z):
        return torch.sigmoid(self.net(z)).view(-1, 2, 8, 8)


def test_traverse_pipeline_on_a_users_module_and_checkpoint(tmp_path, fresh_registry):
    from eigenflow.core import Model

    class UserModel(Model, UserDecoder):
        """A user's decoder registered in-process as a model plugin."""

        def __init__(self, config=None, **options):
            UserDecoder.__init__(self)
            self.config = self.make_config(config, options)

        def loss(self, batch):
            raise NotImplementedError("inference only")  # never called: weights come from a file

        def encode(self, x):
            raise NotImplementedError("inference only")

    class Plugin:
        @staticmethod
        @ef.hookimpl
        def eigenflow_register(registry):
            registry.add("model", UserModel, name="user-decoder")

    ef.registry.register_plugin(Plugin(), name="user-plugin")
    torch.manual_seed(3)
    weights = UserModel().state_dict()
    torch.save(weights, tmp_path / "weights.pt")
    spec = {
        "pipeline": "traverse",
        "model": "user-decoder",
        "checkpoint": str(tmp_path / "weights.pt"),
        "dataset": "synthetic-linear",
        "traversal": {"name": "hessian-metric", "num_directions": 3},
        "num_directions": 3,
        "vp": {"num_pairs": 60, "epochs": 2, "train_fractions": [0.5]},
        "spectrum_points": 2,
    }
    result = ef.Pipeline.from_config(spec).run(out=tmp_path / "out", quiet=True)
    stages = result["stages"][0]["result"]
    assert stages["latent_dim"] == 3 and "hessian-metric" in stages["vp"]
    assert (tmp_path / "out" / "paths-hessian-metric.png").is_file()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_learned_traversals_and_vp_on_cuda():
    G = tiny_generator().cuda()
    pf = ef.create(
        "traversal",
        "potential-flow",
        num_potentials=3,
        timesteps=4,
        hidden=16,
        time_dim=8,
        train_steps=5,
        batch_size=8,
    )
    pf.fit(G, 4, device="cuda")
    path = pf.traverse(torch.randn(2, 4, device="cuda"), 1)
    assert path.device.type == "cuda" and torch.isfinite(path).all()
    lin = ef.create("traversal", "linear", num_directions=3, train_steps=5).fit(G, 4, device="cuda")
    vp = ef.create("metric", "vp-score", num_pairs=60, epochs=2, train_fractions=(0.5,))
    assert 0.0 <= vp(G, lin, 4, device="cuda")["vp@50%"] <= 1.0
