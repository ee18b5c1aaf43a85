"""The generator-geometry measures of the gan_geometry family against closed forms:
``higgins-score`` (seed 001 Alg. 4) on exactly disentangled and on random codes,
``path-length`` on linear generators (where the finite difference is exact) and against a
Jacobian-vector product on a nonlinear one, and ``hessian_geometry`` (seed 003) on a linear
generator whose metric tensor is known."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.errors import ConfigError, InputError
from eigenflow.plugins.gan_geometry import (
    InstanceSampler,
    direction_path_lengths,
    factor_groups,
    hessian_geometry,
    random_direction_speeds,
)

# ----------------------------------------------------------------------------- higgins-score


def factor_pool(n: int = 600, sizes=(3, 6, 8, 5), seed: int = 0) -> torch.Tensor:
    """Independent uniform factor classes ``(n, F)``, as dsprites draws them."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, s, (n,), generator=g) for s in sizes], 1)


FAST = {"updates": 600, "eval_instances": 1000, "n_inst": 16}


def test_factor_groups_match_a_loop():
    classes = factor_pool(50, (3, 4))
    groups = factor_groups(classes, [1, 0])
    for row, factor in enumerate([1, 0]):
        for value in range(int(classes[:, factor].max()) + 1):
            start = int(groups["start"][row, value])
            count = int(groups["count"][row, value])
            rows = groups["order"][row, start : start + count]
            expected = (classes[:, factor] == value).nonzero().squeeze(1)
            assert sorted(rows.tolist()) == expected.tolist()


def test_instances_fix_the_chosen_factor():
    """Every pair of an instance shares the fixed factor's class: with the classes
    themselves as codes, the fixed coordinate of |z_a - z_b| is exactly 0."""
    classes = factor_pool()
    sampler = InstanceSampler(
        classes.double(), classes, (1, 2, 3), n_inst=8, gen=torch.Generator().manual_seed(1)
    )
    x, y = sampler.instances(400)
    fixed = torch.tensor([1, 2, 3])[y]
    assert torch.all(x[torch.arange(400), fixed] == 0)
    others = x.clone()
    others[torch.arange(400), fixed] = float("inf")
    assert torch.all(others[:, 1:].amin(1) > 0)  # the free factors do vary
    assert set(y.tolist()) == {0, 1, 2}


def test_disentangled_code_scores_one():
    """z_j = factor j (plus an unrelated noise coordinate): the fixed factor's coordinate
    of the mean |z_a - z_b| is 0 and the others are not, so the score is 1."""
    classes = factor_pool()
    g = torch.Generator().manual_seed(3)
    z = torch.cat([classes.double() * 0.7 + 1.0, torch.randn(len(classes), 2, generator=g)], 1)
    result = ef.create("metric", "higgins-score", **FAST)(z, classes)
    assert result["higgins_score"] == 1.0
    assert result["factors"] == [0, 1, 2, 3]
    assert result["chance"] == 0.25


def test_random_code_scores_near_chance():
    classes = factor_pool(2000)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(len(classes), 5, generator=g)
    result = ef.create("metric", "higgins-score", **FAST)(z, classes)
    assert abs(result["higgins_score"] - result["chance"]) < 0.1, result


def test_entangled_code_scores_below_the_disentangled_one():
    """A rotation mixing the factor coordinates lowers the score."""
    classes = factor_pool()
    z = classes.double()
    Q = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(5)).double())[0]
    metric = ef.create("metric", "higgins-score", **FAST)
    assert metric(z @ Q, classes)["higgins_score"] < 0.95 < metric(z, classes)["higgins_score"]


def test_fixed_factors_choose_the_classes():
    classes = factor_pool()
    result = ef.create("metric", "higgins-score", fixed_factors=[1, 3], **FAST)(
        classes.double(), classes
    )
    assert result["factors"] == [1, 3] and result["chance"] == 0.5
    assert result["higgins_score"] == 1.0 and "factor0" not in result


def test_higgins_bad_input():
    classes = factor_pool(40)
    metric = ef.create("metric", "higgins-score", **FAST)
    with pytest.raises(InputError, match="classes: expected an integer tensor"):
        metric(torch.randn(40, 3), classes.double())
    with pytest.raises(InputError, match="same N"):
        metric(torch.randn(39, 3), classes)
    with pytest.raises(InputError, match="out of range"):
        ef.create("metric", "higgins-score", fixed_factors=[0, 7])(torch.randn(40, 3), classes)
    with pytest.raises(ConfigError, match="fixed_factors"):
        ef.create("metric", "higgins-score", fixed_factors=[1, 1])


# ----------------------------------------------------------------------------- path-length


class LinearTraversal:
    """Straight paths along the columns of ``directions (d, K)``."""

    def __init__(self, directions: torch.Tensor):
        self.directions = directions

    def traverse(self, z0, k, steps=1, step_size=0.5):
        t = torch.arange(steps + 1, dtype=z0.dtype) * step_size
        return z0[None] + t[:, None, None] * self.directions[:, k].to(z0)


def test_path_length_of_a_linear_generator_is_the_metric_quadratic_form():
    """G(z) = A z: every finite difference is exact, PL_k = ||A u_k||^2 / P; SeFa's first
    direction gives the largest, sigma_1^2 / P."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(12, 5, generator=g, dtype=torch.float64)
    layer = nn.Linear(5, 12, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(A)
    sefa = ef.create("traversal", "sefa", num_directions=5).fit(layer)
    metric = ef.create("metric", "path-length", num_samples=64, eps=1e-3)
    result = metric(layer, sefa, 5)
    s = torch.linalg.svdvals(A)
    expected = (s.square() / 12).tolist()
    assert result["per_direction"] == pytest.approx(expected, rel=1e-8)
    assert result["path_length"] == pytest.approx(sum(expected) / 5, rel=1e-8)
    # a linear map moves the image at constant speed on a straight line: ratio exactly 1
    assert result["path_ratio_per_direction"] == pytest.approx([1.0] * 5, rel=1e-6)
    # random unit directions: E[v^T A^T A v] = trace(A^T A) / d, up to sampling error
    assert result["random_path_length"] == pytest.approx(float(s.square().sum()) / 5 / 12, rel=0.1)


def test_path_length_matches_the_jacobian_on_a_nonlinear_generator():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(8, 4, generator=g, dtype=torch.float64)
    u = torch.nn.functional.normalize(torch.randn(8, 4, generator=g, dtype=torch.float64), dim=1)
    t = torch.rand(8, generator=g, dtype=torch.float64)
    found = direction_path_lengths(G, z0, u, t, displacement=2.0, eps=1e-6)
    zt = z0 + 2.0 * t[:, None] * u
    _, jvp = torch.func.jvp(G, (zt,), (u,))
    assert found.tolist() == pytest.approx((jvp.square().mean(1)).tolist(), rel=1e-4)


def test_path_ratio_of_a_curved_edit_exceeds_one():
    """G(z) = (cos z_1, sin z_1): along e_1 the output moves on the unit circle at unit
    speed (1/2 per element squared); an edit of length D has the chord 2 sin(D/2) from every
    start, so the ratio is (D/2)^2 / sin^2(D/2), about 2.24 for D = 3."""
    D = 3.0

    def G(z):
        return torch.stack([torch.cos(z[:, 0]), torch.sin(z[:, 0])], 1)

    trav = LinearTraversal(torch.eye(2, dtype=torch.float64))
    metric = ef.create("metric", "path-length", num_samples=64, num_directions=1, displacement=D)
    result = metric(G, trav, 2, dtype=torch.float64)
    expected = (D / 2) ** 2 / torch.sin(torch.tensor(D / 2)).item() ** 2
    assert result["path_ratio"] == pytest.approx(expected, rel=1e-4)
    assert result["path_length"] == pytest.approx(0.5, rel=1e-4)


def test_path_length_feature_map_and_direction_limit():
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    trav = LinearTraversal(torch.eye(3, dtype=torch.float64))
    metric = ef.create("metric", "path-length", num_samples=8, num_directions=2)
    result = metric(lambda z: z @ A.T, trav, 3, feature_map=lambda x: 2 * x, dtype=A.dtype)
    assert result["per_direction"] == pytest.approx([4 * 1 / 3, 4 * 4 / 3], rel=1e-6)


def test_path_length_bad_input():
    trav = LinearTraversal(torch.eye(3))
    with pytest.raises(InputError, match="latent_dim"):
        ef.create("metric", "path-length")(lambda z: z, trav, 0)
    with pytest.raises(InputError, match="does not move"):
        ef.create("metric", "path-length", num_samples=4)(
            lambda z: z, LinearTraversal(torch.zeros(3, 1)), 3
        )


# ----------------------------------------------------------------------------- hessian analysis


def linear_image_generator(seed: int = 0):
    """G(z) = reshape(W z) to (1, 4, 4) images, with W = U diag(s) V^T."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(16, 4, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    s = torch.tensor([10.0, 1.0, 0.1, 0.01], dtype=torch.float64)
    W = U @ torch.diag(s) @ V.mT
    return (lambda z: (z @ W.T).reshape(-1, 1, 4, 4)), s, V


def test_random_direction_speeds_are_the_quadratic_form():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(3, 5, 5, generator=g, dtype=torch.float64)
    H = M @ M.mT
    L, U = torch.linalg.eigh(H)
    v = torch.randn(7, 5, generator=g, dtype=torch.float64)
    expected = torch.einsum("md,nde,me->nm", v, H, v) / v.square().sum(-1)
    assert torch.allclose(random_direction_speeds(L, U, v), expected, rtol=1e-12)


def test_hessian_geometry_of_a_linear_generator(tmp_path):
    """H = V diag(s^2) V^T everywhere: the spectrum is s^2 at every code, the space is
    perfectly homogeneous (correlation 1), the trace shares give the anisotropy counts,
    and the top traversal is V's first column."""
    G, s, V = linear_image_generator()
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = hessian_geometry(G, z, out_dir=tmp_path, num_traversals=2, traversal_steps=3)
    assert out["mean_log10_eigenvalues"] == pytest.approx(s.square().log10().tolist(), abs=1e-9)
    assert out["top_eigenvalues"] == pytest.approx(s.square().tolist(), rel=1e-9)
    assert out["homogeneity"] == pytest.approx(1.0, abs=1e-9)
    share = (s.square().cumsum(0) / s.square().sum()).tolist()  # 0.990, 0.99999, ...
    expected = {str(f): float(sum(x < f for x in share) + 1) for f in (0.99, 0.999, 0.9999)}
    assert out["anisotropy"] == expected
    assert out["log10_eigenvalue_span"] == pytest.approx(6.0, abs=1e-9)
    top = torch.tensor(out["top_directions"], dtype=torch.float64)  # (2, d)
    assert (top @ V[:, :2]).diagonal().abs().tolist() == pytest.approx([1.0, 1.0], abs=1e-9)
    assert (tmp_path / "hessian-traversals.png").is_file()
    stored = json.loads((tmp_path / "hessian.json").read_text())
    assert stored["homogeneity"] == out["homogeneity"]
    assert "hessian-spectrum.png" in out["files"]


def test_hessian_geometry_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    G, _, _ = linear_image_generator()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = hessian_geometry(G, z, out_dir=tmp_path)
    assert out["files"] == ["hessian-traversals.png", "hessian.json"]


def test_hessian_geometry_bad_input():
    G, _, _ = linear_image_generator()
    with pytest.raises(InputError, match="N >= 2"):
        hessian_geometry(G, torch.randn(1, 4, dtype=torch.float64))


# ----------------------------------------------------------------------------- GAN pipelines

TINY_DATA = {"name": "dsprites", "image_size": 16, "n_samples": 96}
TINY_GAN = {"name": "dcgan", "width": 8}


def tiny_gan(**options):
    data = ef.create("dataset", "dsprites", image_size=16, n_samples=96)
    torch.manual_seed(0)
    return ef.create("model", "dcgan", input_shape=[1, 16, 16], width=8, **options), data


def test_first_linear_is_the_layer_reading_the_code():
    from eigenflow.plugins.gan_geometry.training import first_linear

    plain, _ = tiny_gan(latent_dim=6)
    assert first_linear(plain) is plain.generator.project
    mapped, _ = tiny_gan(latent_dim=6, mapping_layers=1)
    layer = first_linear(mapped)
    assert layer is not mapped.generator.project and layer.weight.shape == (6, 6)


def test_penalized_gan_adds_the_penalty_to_the_generator_loss_only():
    from eigenflow.runtime import WithPenalties

    class Constant:
        def penalty(self):
            return torch.tensor(1.5)

    gan, data = tiny_gan(latent_dim=4)
    gan.eval()  # no spectral-norm power step between the two calls
    wrapped = WithPenalties(gan, [Constant()], phase="g")
    batch = data.batch(slice(0, 8))
    assert wrapped.update_phases()[0].name == gan.update_phases()[0].name
    for phase, added in (("d", 0.0), ("g", 1.5)):
        torch.manual_seed(3)
        base = gan.loss(batch, phase=phase)["loss"]
        torch.manual_seed(3)
        out = wrapped.loss(batch, phase=phase)
        assert float((out["loss"] - base).detach()) == pytest.approx(added, abs=1e-6)
        assert ("penalty" in out) == (phase == "g")


def test_householder_gan_pipeline_tiny(tmp_path):
    """The projected layer stays a rank-N partial isometry (N singular values 1, the rest
    0) through the fine-tuning's optimiser steps; both traversals are scored and drawn."""
    spec = {
        "pipeline": "householder-gan",
        "model": TINY_GAN,
        "dataset": TINY_DATA,
        "latent_dim": 6,
        "rank": 3,
        "pretrain_steps": 3,
        "finetune_steps": 3,
        "batch_size": 16,
        "path_length": {"num_samples": 16},
        "fd_samples": 40,
        "frechet": {"train_steps": 3, "train_items": 64, "real_items": 50, "cache": False},
    }
    out = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)["stages"][0]["result"]
    s = out["singular_values"]["householder"]
    assert s == pytest.approx([1, 1, 1, 0, 0, 0], abs=1e-5)
    assert len(out["path_length"]["sefa"]["per_direction"]) == 3
    assert out["householder_better"] == (
        out["path_length"]["householder"]["path_length"] < out["path_length"]["sefa"]["path_length"]
    )
    assert set(out["frechet_distance"]) == {"sefa", "householder"}
    assert all(v >= 0 for v in out["frechet_distance"].values())
    for name in ("traversals-sefa.png", "traversals-householder.png", "result.json"):
        assert (tmp_path / name).is_file()


def test_alignment_gan_pipeline_tiny(tmp_path):
    spec = {
        "pipeline": "alignment-gan",
        "model": TINY_GAN,
        "dataset": TINY_DATA,
        "latent_dim": 6,
        "steps": 3,
        "batch_size": 16,
        "pool": 60,
        "encode_steps": 3,
        "higgins": {"updates": 20, "eval_instances": 50, "n_inst": 4},
        "map_codes": 4,
        "fd_samples": 0,
    }
    out = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)["stages"][0]["result"]
    for label in ("plain", "aligned"):
        run = out["runs"][label]
        assert run["higgins"]["factors"] == [1, 2, 3, 4]
        F = torch.tensor(run["alignment_map"]["map"])
        assert F.shape == (6, 6)
        # each column of F averages squared unit eigenvectors: it sums to 1
        assert F.sum(0).tolist() == pytest.approx([1.0] * 6, abs=1e-4)
    assert "g_penalty" in out["runs"]["aligned"]["losses"]
    assert "frechet_distance" not in out["runs"]["plain"]


def test_hessian_analysis_pipeline_tiny(tmp_path):
    spec = {
        "pipeline": "hessian-analysis",
        "model": TINY_GAN,
        "dataset": TINY_DATA,
        "latent_dim": 5,
        "steps": 2,
        "batch_size": 16,
        "codes": 3,
        "num_traversals": 2,
    }
    out = ef.Pipeline.from_config(spec).run(out=tmp_path, quiet=True)["stages"][0]["result"]
    assert len(out["mean_log10_eigenvalues"]) == 5
    assert -1.0 <= out["homogeneity"] <= 1.0
    assert (tmp_path / "hessian-traversals.png").is_file()
    assert (tmp_path / "hessian.json").is_file()
