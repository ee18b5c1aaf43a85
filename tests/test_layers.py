"""Meta-layers ``covariance-pooling``, ``zca-whitening`` and ``wct`` (thesis 000, Sec. 2.5).

Every expected value is computed here from float64 ``torch.linalg.eigh`` and plain
covariance formulas, never by the layer under test.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import eigenflow as ef
from eigenflow.core.errors import ConfigError, InputError, UnknownNameError

F64 = torch.float64
SOLVERS = ef.list("solver")


# --------------------------------------------------------------------------- references


def eigh_power(A: torch.Tensor, p: float) -> torch.Tensor:
    """``A^p`` of symmetric positive-definite ``A (..., n, n)`` by float64 eigh."""
    L, V = torch.linalg.eigh(A.to(F64))
    return (V * L.pow(p).unsqueeze(-2)) @ V.mT


def covariance(X: torch.Tensor) -> torch.Tensor:
    """``(X - mean)(X - mean)^T / N`` of ``X (..., d, N)``, samples as columns."""
    Xc = X - X.mean(-1, keepdim=True)
    return Xc @ Xc.mT / X.shape[-1]


def samples_with_covariance(
    cov: torch.Tensor, n: int, mean: torch.Tensor | None = None, seed: int = 0
) -> torch.Tensor:
    """``(..., d, n)`` samples whose sample covariance is exactly ``cov (..., d, d)``."""
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(*cov.shape[:-1], n, generator=gen, dtype=F64)
    Z = Z - Z.mean(-1, keepdim=True)
    Z = eigh_power(covariance(Z), -0.5) @ Z  # exactly white
    X = eigh_power(cov, 0.5) @ Z
    return X if mean is None else X + mean.unsqueeze(-1)


def spd(n: int, *batch: int, cond: float = 10.0, seed: int = 0) -> torch.Tensor:
    """Random SPD ``(*batch, n, n)`` with eigenvalues log-spaced in ``[1, cond]``."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(*batch, n, n, generator=gen, dtype=F64))
    eig = torch.logspace(0.0, torch.log10(torch.tensor(cond)).item(), n, dtype=F64)
    return (Q * eig) @ Q.mT


def correlated(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    """Features ``(B, C, *spatial)`` with correlated, non-centred channels."""
    gen = torch.Generator().manual_seed(seed)
    C = shape[1]
    Q1, _ = torch.linalg.qr(torch.randn(C, C, generator=gen, dtype=F64))
    Q2, _ = torch.linalg.qr(torch.randn(C, C, generator=gen, dtype=F64))
    mix = Q1 @ torch.diag(torch.linspace(1.0, 3.0, C, dtype=F64)) @ Q2  # condition number 3
    x = torch.randn(*shape, generator=gen, dtype=F64)
    x = torch.einsum("ij,bj...->bi...", mix, x)
    shift = torch.linspace(-2.0, 3.0, C, dtype=F64).reshape(1, C, *([1] * (len(shape) - 2)))
    return (x + shift).to(dtype)


def channel_groups(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B, C, *S) -> (G, g, B * prod(S))``: each group's channels as rows, samples as columns."""
    C = x.shape[1]
    return x.transpose(0, 1).reshape(C // group_size, group_size, -1)


def reference_zca(x: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """Decorrelated BN output (Eq. 2.40-2.41 on the centred features), float64, no affine."""
    X = channel_groups(x.to(F64), group_size)
    Xc = X - X.mean(-1, keepdim=True)
    W = eigh_power(covariance(X) + eps * torch.eye(group_size, dtype=F64), -0.5)
    out = W @ Xc
    return out.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1)


def reference_wct(content: torch.Tensor, style: torch.Tensor, alpha: float, eps: float = 0.0):
    """Eq. 2.45-2.47 per sample with one group, float64."""
    B, C = content.shape[:2]
    Xc = content.to(F64).reshape(B, C, -1)
    Xs = style.to(F64).reshape(style.shape[0], C, -1)
    eye = torch.eye(C, dtype=F64)
    whiten = eigh_power(covariance(Xc) + eps * eye, -0.5)
    colour = eigh_power(covariance(Xs) + eps * eye, 0.5)
    coloured = colour @ whiten @ (Xc - Xc.mean(-1, keepdim=True))
    out = alpha * (coloured + Xs.mean(-1, keepdim=True)) + (1 - alpha) * Xc
    return out.reshape(content.shape)


def triu_reference(Q: torch.Tensor) -> torch.Tensor:
    """Upper triangle row by row, written out with Python loops."""
    d = Q.shape[-1]
    return torch.stack([Q[..., i, j] for i in range(d) for j in range(i, d)], dim=-1)


def forward_tolerance(solver: str) -> float:
    """Error allowed for a solver's whitening on condition number <= 10 (float64)."""
    rtol = ef.get("solver", solver).forward_rtol.get(F64, 1e-10)
    return max(50.0 * rtol, 1e-9)


# --------------------------------------------------------------------------- covariance-pooling


class TestCovariancePooling:
    def test_channels_first_matrix_and_triangle(self):
        x = correlated(3, 5, 4, 3)
        layer = ef.create("layer", "covariance-pooling", solver="svd", triu=False)
        Q_ref = eigh_power(covariance(x.reshape(3, 5, -1)), 0.5)
        Q = layer(x)
        assert Q.shape == (3, 5, 5)
        torch.testing.assert_close(Q, Q_ref, rtol=1e-10, atol=1e-12)
        tri = ef.create("layer", "covariance-pooling", solver="svd", triu=True)(x)
        assert tri.shape == (3, 15)
        torch.testing.assert_close(tri, triu_reference(Q_ref), rtol=1e-10, atol=1e-12)

    def test_tokens_layout(self):
        tokens = correlated(2, 5, 12).transpose(1, 2).contiguous()  # (B, N=12 tokens, C=5)
        layer = ef.create(
            "layer", "covariance-pooling", layout="tokens", triu=False, eps=1e-3, solver="svd"
        )
        Q_ref = eigh_power(covariance(tokens.mT) + 1e-3 * torch.eye(5, dtype=F64), 0.5)
        out = layer(tokens)
        assert out.shape == (2, 5, 5)
        torch.testing.assert_close(out, Q_ref, rtol=1e-9, atol=1e-10)
        # the same features given channels-first pool to the same matrix
        same = ef.create("layer", "covariance-pooling", triu=False, eps=1e-3, solver="svd")
        torch.testing.assert_close(same(tokens.mT.contiguous()), out, rtol=1e-12, atol=1e-13)

    def test_so_vit_head_eq_2_48(self):
        torch.manual_seed(0)
        B, N, C, K = 4, 10, 6, 3
        tokens = correlated(B, N + 1, C).contiguous()  # token 0 is the class token
        layer = ef.create(
            "layer",
            "covariance-pooling",
            layout="tokens",
            cls_token=True,
            in_channels=C,
            num_classes=K,
            solver="svd",
        ).double()
        logits = layer(tokens)
        assert logits.shape == (B, K)
        assert layer.out_features == K
        cls, visual = tokens[:, 0], tokens[:, 1:]
        Q = eigh_power(covariance(visual.mT), 0.5)
        # y = FC(c) + FC((X X^T)^(1/2)), two separate classifiers
        expected = (
            triu_reference(Q) @ layer.fc.weight.T
            + layer.fc.bias
            + cls @ layer.fc_token.weight.T
            + layer.fc_token.bias
        )
        torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-10)
        # the class token reaches the logits only through FC(c)
        moved = tokens.clone()
        moved[:, 0] += 1.0
        delta = layer(moved) - logits
        torch.testing.assert_close(delta, layer.fc_token.weight.sum(1).expand(B, K))

    @pytest.mark.parametrize("post_norm", ["trace", "frobenius"])
    def test_post_norm(self, post_norm):
        x = correlated(2, 4, 5, 5)
        layer = ef.create(
            "layer", "covariance-pooling", post_norm=post_norm, triu=False, solver="svd"
        )
        P = covariance(x.reshape(2, 4, -1))
        Q = eigh_power(P, 0.5)
        if post_norm == "trace":
            scale = P.diagonal(dim1=-2, dim2=-1).sum(-1).sqrt()
        else:
            scale = Q.square().sum((-2, -1)).sqrt()
        out = layer(x)
        torch.testing.assert_close(out, Q / scale[:, None, None], rtol=1e-10, atol=1e-12)
        if post_norm == "frobenius":
            torch.testing.assert_close(torch.linalg.matrix_norm(out), torch.ones(2, dtype=F64))

    def test_reduce_dim(self):
        x = correlated(3, 8, 4, 4)
        layer = ef.create(
            "layer", "covariance-pooling", in_channels=8, reduce_dim=3, triu=True, solver="svd"
        ).double()
        out = layer(x)
        assert out.shape == (3, 6)
        assert layer.out_features == 6
        feats = x.reshape(3, 8, -1).mT @ layer.reduce.weight.T + layer.reduce.bias
        Q = eigh_power(covariance(feats.mT), 0.5)
        torch.testing.assert_close(out, triu_reference(Q), rtol=1e-9, atol=1e-11)

    def test_gradients_are_finite(self):
        x = correlated(2, 5, 6, 6).requires_grad_()
        out = ef.create("layer", "covariance-pooling", post_norm="trace")(x)
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()

    def test_bad_input(self):
        layer = ef.create("layer", "covariance-pooling", in_channels=4)
        with pytest.raises(InputError, match="at least 3 dimensions, got 2"):
            layer(torch.randn(4, 9))
        with pytest.raises(InputError, match="expected 4 channels, got 5"):
            layer(torch.randn(2, 5, 3, 3))
        with pytest.raises(InputError, match="dtype"):
            layer(torch.ones(2, 4, 3, 3, dtype=torch.int64))

    @pytest.mark.parametrize(
        ("options", "shape", "message"),
        [
            ({}, (2, 3, 1, 1), r"at least 2 spatial positions .* got 1 \(shape \(2, 3, 1, 1\)"),
            ({}, (2, 3, 0, 4), r"at least 2 spatial positions .* got 0"),
            ({}, (2, 3, 1), r"at least 2 spatial positions .* got 1"),
            ({"layout": "tokens"}, (2, 1, 4), r"at least 2 tokens to estimate .* got 1"),
            (
                {"layout": "tokens", "cls_token": True, "in_channels": 4, "num_classes": 3},
                (2, 2, 4),
                r"at least 2 tokens \(after the class token\) .* got 1",
            ),
            ({"layout": "tokens", "cls_token": True}, (2, 0, 4), r"2 tokens .* got 0"),
            ({}, (2, 0, 4, 4), r"x: expected at least 1 channel, got 0 \(shape \(2, 0, 4, 4\)"),
            ({"layout": "tokens"}, (2, 5, 0), r"x: expected at least 1 channel, got 0"),
        ],
    )
    def test_too_few_positions_or_no_channel(self, options, shape, message):
        """A covariance needs 2 samples: 1 position gave NaN (or an identity / zero root and NaN
        gradients), 0 channels a raw PyTorch error. Now an InputError, as in wct."""
        layer = ef.create("layer", "covariance-pooling", **options)
        with pytest.raises(InputError, match=message):
            layer(torch.randn(*shape, dtype=F64))

    def test_two_positions_are_enough(self):
        """The boundary of the check: 2 positions (and 2 tokens after a class token) pool to
        the root of their rank-1 covariance, against float64 eigh (the zero eigenvalues'
        roots are only known to about sqrt(eps))."""
        x = correlated(2, 3, 2, 1)
        out = ef.create("layer", "covariance-pooling", solver="svd", triu=False)(x)
        L, V = torch.linalg.eigh(covariance(x.reshape(2, 3, 2)))
        ref = (V * L.clamp_min(0.0).sqrt().unsqueeze(-2)) @ V.mT  # PSD root, rank 1
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        tokens = torch.cat([torch.randn(2, 1, 3, dtype=F64), x.reshape(2, 3, 2).mT], dim=1)
        layer = ef.create(
            "layer",
            "covariance-pooling",
            layout="tokens",
            cls_token=True,
            solver="svd",
            triu=False,
        )
        torch.testing.assert_close(layer(tokens), out, rtol=0, atol=1e-12)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"cls_token": True}, "cls_token=True needs layout='tokens'"),
            ({"num_classes": 3}, "in_channels is required"),
            ({"in_channels": 4, "num_classes": 3, "triu": False}, "num_classes needs triu"),
            ({"post_norm": "frobenious"}, "did you mean 'frobenius'"),
            ({"reduce_dim": 0, "in_channels": 4}, "reduce_dim"),
            ({"eps": -1.0}, "eps"),
            ({"solver": "no-such-solver"}, "no-such-solver"),
        ],
    )
    def test_bad_config(self, options, message):
        with pytest.raises(ef.EigenflowError, match=message):
            ef.create("layer", "covariance-pooling", **options)


# --------------------------------------------------------------------------- zca-whitening


def zca(**options):
    options.setdefault("solver", "svd")
    return ef.create("layer", "zca-whitening", **options).double()


class TestZCAWhitening:
    @pytest.mark.parametrize("group_size", [None, 4, 2])
    def test_output_is_white_and_matches_reference(self, group_size):
        x = correlated(16, 8, 3, 3)
        layer = zca(num_features=8, group_size=group_size, eps=0.0, affine=False)
        out = layer(x)
        g = group_size or 8
        torch.testing.assert_close(out, reference_zca(x, g, 0.0), rtol=1e-9, atol=1e-10)
        Y = channel_groups(out, g)
        eye = torch.eye(g, dtype=F64).expand(8 // g, g, g)
        torch.testing.assert_close(covariance(Y), eye, rtol=0, atol=1e-10)
        torch.testing.assert_close(
            Y.mean(-1), torch.zeros(8 // g, g, dtype=F64), atol=1e-12, rtol=0
        )

    def test_eps_is_added_to_the_covariance(self):
        x = correlated(8, 6, 2, 2)
        out = zca(num_features=6, eps=0.5, affine=False)(x)
        torch.testing.assert_close(out, reference_zca(x, 6, 0.5), rtol=1e-10, atol=1e-12)

    def test_groups_are_whitened_independently(self):
        x = correlated(32, 8, 2)  # channels correlated across the two groups
        layer = zca(num_features=8, group_size=4, eps=0.0, affine=False)
        out = layer(x)
        Y = out.transpose(0, 1).reshape(8, -1)
        cross = covariance(Y)[:4, 4:]
        assert cross.abs().max() > 1e-2  # no whitening across groups
        # changing the second group leaves the first group's output unchanged
        x2 = x.clone()
        x2[:, 4:] = 3.0 * x2[:, 4:] ** 3 + 1.0
        out2 = layer(x2)
        torch.testing.assert_close(out2[:, :4], out[:, :4], rtol=0, atol=1e-12)
        torch.testing.assert_close(
            out2[:, 4:], reference_zca(x2, 4, 0.0)[:, 4:], rtol=1e-9, atol=1e-10
        )

    @pytest.mark.parametrize("shape", [(20, 6), (4, 6, 5), (3, 6, 2, 3, 2)])
    def test_input_layouts(self, shape):
        x = correlated(*shape)
        out = zca(num_features=6, group_size=3, eps=0.0, affine=False)(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, reference_zca(x, 3, 0.0), rtol=1e-9, atol=1e-10)

    def test_running_statistics_and_eval_mode(self):
        m, eps = 0.1, 1e-3
        layer = zca(num_features=6, group_size=3, eps=eps, momentum=m, affine=False)
        x1, x2, x3 = (correlated(10, 6, 3, seed=s) for s in (1, 2, 3))
        layer(x1)
        layer(x2)

        def batch_stats(x):
            X = channel_groups(x, 3)
            W = eigh_power(covariance(X) + eps * torch.eye(3, dtype=F64), -0.5)
            return X.mean(-1).reshape(-1), W

        (mu1, W1), (mu2, W2) = batch_stats(x1), batch_stats(x2)
        eye = torch.eye(3, dtype=F64).expand(2, 3, 3)
        mean_ref = (1 - m) * (m * mu1) + m * mu2
        W_ref = (1 - m) * ((1 - m) * eye + m * W1) + m * W2
        torch.testing.assert_close(layer.running_mean, mean_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(layer.running_whitening, W_ref, rtol=1e-10, atol=1e-12)

        layer.eval()
        out = layer(x3)
        X3 = channel_groups(x3, 3)
        expected = W_ref @ (X3 - mean_ref.reshape(2, 3, 1))
        expected = expected.reshape(6, 10, 3).transpose(0, 1)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(layer.running_mean, mean_ref)  # eval does not update
        # a single sample is fine in eval mode
        assert layer(x3[:1, :, :1]).shape == (1, 6, 1)

    def test_momentum_one_eval_equals_train_on_same_batch(self):
        layer = zca(num_features=4, momentum=1.0, eps=1e-4)
        x = correlated(12, 4, 3)
        train_out = layer(x)
        layer.eval()
        torch.testing.assert_close(layer(x), train_out, rtol=1e-9, atol=1e-10)

    def test_without_running_stats_eval_uses_the_batch(self):
        layer = zca(num_features=4, eps=0.0, affine=False, track_running_stats=False)
        x = correlated(12, 4, 3)
        layer(x)
        torch.testing.assert_close(layer.running_mean, torch.zeros(4, dtype=F64))
        layer.eval()
        torch.testing.assert_close(layer(x), reference_zca(x, 4, 0.0), rtol=1e-9, atol=1e-10)

    def test_affine(self):
        layer = zca(num_features=4, eps=0.0)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
            layer.bias.copy_(torch.tensor([0.0, 1.0, 2.0, 3.0]))
        x = correlated(9, 4, 2)
        ref = reference_zca(x, 4, 0.0) * layer.weight.reshape(1, 4, 1) + layer.bias.reshape(1, 4, 1)
        torch.testing.assert_close(layer(x), ref, rtol=1e-9, atol=1e-10)
        assert zca(num_features=4, affine=False).weight is None

    def test_state_dict_round_trip(self):
        layer = zca(num_features=4, group_size=2)
        layer(correlated(8, 4, 3))
        state = layer.state_dict()
        assert state["running_whitening"].shape == (2, 2, 2)
        fresh = zca(num_features=4, group_size=2)
        fresh.load_state_dict(state)
        fresh.eval()
        layer.eval()
        x = correlated(3, 4, 3, seed=5)
        torch.testing.assert_close(fresh(x), layer(x))
        fresh.reset_running_stats()
        torch.testing.assert_close(fresh.running_whitening, torch.eye(2, dtype=F64).repeat(2, 1, 1))

    def test_float32_matches_float64(self):
        x = correlated(16, 8, 4)
        l32 = ef.create("layer", "zca-whitening", num_features=8, group_size=4, solver="svd")
        out32 = l32(x.float())
        assert out32.dtype == torch.float32
        torch.testing.assert_close(out32.double(), reference_zca(x, 4, 1e-5), rtol=0, atol=1e-4)

    def test_half_precision_is_whitened_in_float32(self):
        x = correlated(16, 8, 4, dtype=torch.float32)
        layer = ef.create("layer", "zca-whitening", num_features=8, solver="svd")
        ref = layer(x)
        out = layer(x.bfloat16())
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = layer(x)
        assert auto.dtype == torch.float32
        torch.testing.assert_close(auto, ref, rtol=1e-5, atol=1e-5)

    def test_gradcheck(self):
        layer = zca(num_features=3, eps=1e-2, track_running_stats=False)
        x = correlated(7, 3).requires_grad_()
        assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)

    def test_gradients_are_finite(self):
        layer = ef.create("layer", "zca-whitening", num_features=8, group_size=4)
        x = correlated(6, 8, 3, 3, dtype=torch.float32).requires_grad_()
        layer(x).pow(3).sum().backward()
        grads = [x.grad, layer.weight.grad, layer.bias.grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)

    def test_bad_input(self):
        layer = zca(num_features=4)
        with pytest.raises(InputError, match="at least 2 dimensions, got 1"):
            layer(torch.randn(4, dtype=F64))
        with pytest.raises(InputError, match=r"expected 4 channels \(num_features\).*got 5"):
            layer(torch.randn(3, 5, 2, dtype=F64))
        with pytest.raises(InputError, match="at least 2 values per channel"):
            layer(torch.randn(1, 4, 1, dtype=F64))
        with pytest.raises(InputError, match="dtype"):
            layer(torch.ones(3, 4, dtype=torch.int32))
        with pytest.raises(InputError, match=r"torch\.Tensor"):
            layer([[1.0, 2.0, 3.0, 4.0]])

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"num_features": 6, "group_size": 4}, "group_size = 4 must divide num_features = 6"),
            ({"num_features": 4, "group_size": 8}, "group_size = 8 must divide num_features = 4"),
            ({"momentum": 1.5}, "momentum"),
            ({"eps": -1e-3}, "eps"),
            ({"num_features": 0}, "num_features"),
            ({"group_sise": 4}, "did you mean 'group_size'"),
            ({"solver": "no-such-solver"}, "no-such-solver"),
            ({"solver": {"name": "svd", "bogus": 1}}, "bogus"),
        ],
    )
    def test_bad_config(self, options, message):
        with pytest.raises(ConfigError, match=message):
            ef.create("layer", "zca-whitening", **options)

    def test_direct_construction_with_unknown_solver(self):
        from eigenflow.plugins.layers import ZCAWhitening

        with pytest.raises(UnknownNameError, match="no-such-solver"):
            ZCAWhitening(solver="no-such-solver")


# --------------------------------------------------------------------------- wct


def wct(**options):
    options.setdefault("solver", "svd")
    return ef.create("layer", "wct", **options)


def content_and_style(B=2, C=5, seed=0):
    """Content ``(B, C, 6, 5)`` and style ``(B, C, 4, 8)`` with known style statistics."""
    content = correlated(B, C, 6, 5, seed=seed)
    cov_s = spd(C, B, cond=20.0, seed=seed + 1)
    mean_s = torch.linspace(-1.0, 4.0, C, dtype=F64).expand(B, C)
    style = samples_with_covariance(cov_s, 32, mean_s, seed=seed + 2).reshape(B, C, 4, 8)
    return content, style, cov_s, mean_s


class TestWCT:
    def test_full_transfer_gives_the_style_statistics(self):
        content, style, cov_s, mean_s = content_and_style()
        out = wct(eps=0.0)(content, style)
        assert out.shape == content.shape and out.dtype == F64
        Y = out.reshape(2, 5, -1)
        torch.testing.assert_close(Y.mean(-1), mean_s, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(covariance(Y), cov_s, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(out, reference_wct(content, style, 1.0), rtol=1e-9, atol=1e-9)

    def test_alpha_zero_returns_the_content(self):
        content, style, _, _ = content_and_style()
        torch.testing.assert_close(wct(alpha=0.0)(content, style), content, rtol=0, atol=1e-14)

    def test_alpha_blends_linearly(self):
        content, style, _, _ = content_and_style()
        layer = wct(alpha=0.3, eps=1e-3)
        expected = reference_wct(content, style, 0.3, eps=1e-3)
        torch.testing.assert_close(layer(content, style), expected, rtol=1e-9, atol=1e-10)
        full = reference_wct(content, style, 1.0, eps=1e-3)
        torch.testing.assert_close(layer(content, style, alpha=1.0), full, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(
            layer(content, style, alpha=0.6), 0.6 * full + 0.4 * content, rtol=1e-9, atol=1e-10
        )

    def test_one_style_for_the_whole_batch(self):
        content, style, cov_s, mean_s = content_and_style(B=3)
        out = wct(eps=0.0)(content, style[:1])
        Y = out.reshape(3, 5, -1)
        torch.testing.assert_close(covariance(Y), cov_s[:1].expand(3, 5, 5), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(Y.mean(-1), mean_s[:1].expand(3, 5), rtol=1e-10, atol=1e-10)

    def test_groups(self):
        content, style, _, _ = content_and_style(C=6)
        out = wct(eps=0.0, group_size=3)(content, style)
        Y, S = out.reshape(2, 2, 3, -1), style.reshape(2, 2, 3, -1)
        # each group carries its own group's style covariance ...
        torch.testing.assert_close(covariance(Y), covariance(S), rtol=1e-9, atol=1e-9)
        for grp in range(2):
            sl = slice(3 * grp, 3 * grp + 3)
            ref = reference_wct(content[:, sl], style[:, sl], 1.0)
            torch.testing.assert_close(out[:, sl], ref, rtol=1e-9, atol=1e-9)
        # ... but not the style's cross-group covariance
        cross_out = covariance(out.reshape(2, 6, -1))[:, :3, 3:]
        cross_style = covariance(style.reshape(2, 6, -1))[:, :3, 3:]
        assert (cross_out - cross_style).abs().max() > 1e-2

    def test_float32(self):
        content, style, _, _ = content_and_style()
        out = wct()(content.float(), style.float())
        assert out.dtype == torch.float32
        ref = reference_wct(content, style, 1.0, eps=1e-5)
        torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)

    def test_gradcheck(self):
        gen = torch.Generator().manual_seed(0)
        content = torch.randn(1, 3, 6, generator=gen, dtype=F64).requires_grad_()
        style = torch.randn(1, 3, 5, generator=gen, dtype=F64).requires_grad_()
        layer = wct(alpha=0.7, eps=1e-2)
        assert torch.autograd.gradcheck(layer, (content, style), eps=1e-6, atol=1e-6)

    def test_gradients_are_finite(self):
        content, style, _, _ = content_and_style()
        content = content.float().requires_grad_()
        style = style.float().requires_grad_()
        wct(alpha=0.8)(content, style).square().sum().backward()
        assert torch.isfinite(content.grad).all() and torch.isfinite(style.grad).all()

    def test_bad_input(self):
        layer = wct()
        content, style, _, _ = content_and_style()
        with pytest.raises(InputError, match="content: expected at least 3 dimensions, got 2"):
            layer(content[0, 0], style)
        with pytest.raises(InputError, match="style: expected 5 channels like content, got 4"):
            layer(content, style[:, :4])
        with pytest.raises(InputError, match="style: expected batch size 1 or 2"):
            layer(content, torch.cat([style, style]))
        with pytest.raises(InputError, match="style: expected the content's dtype"):
            layer(content, style.float())
        with pytest.raises(InputError, match="at least 2 spatial positions"):
            layer(content[..., :1, :1], style)
        with pytest.raises(InputError, match="group_size = 2 does not divide the 5 channels"):
            wct(group_size=2)(content, style)
        with pytest.raises(InputError, match=r"alpha: expected a number in \[0, 1\], got 1.5"):
            layer(content, style, alpha=1.5)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"alpha": 2.0}, "alpha"),
            ({"eps": -1.0}, "eps"),
            ({"group_size": 0}, "group_size"),
            ({"alfa": 0.5}, "did you mean 'alpha'"),
            ({"solver": "no-such-solver"}, "no-such-solver"),
        ],
    )
    def test_bad_config(self, options, message):
        with pytest.raises(ConfigError, match=message):
            ef.create("layer", "wct", **options)


# --------------------------------------------------------------------------- every solver


@pytest.mark.parametrize("solver", SOLVERS)
def test_zca_whitening_accuracy_per_solver(solver):
    """Whitening of groups with condition number <= 10, within the solver's forward error."""
    cov = spd(4, 3, cond=10.0)
    x = samples_with_covariance(cov, 40).permute(2, 0, 1).reshape(40, 12)  # (B, C) input
    layer = zca(num_features=12, group_size=4, eps=0.0, affine=False, solver=solver)
    out = layer(x)
    Y = channel_groups(out, 4)
    err = (covariance(Y) - torch.eye(4, dtype=F64)).abs().max().item()
    assert err <= forward_tolerance(solver), f"{solver}: covariance error {err:.3g}"


@pytest.mark.parametrize("solver", SOLVERS)
def test_wct_accuracy_per_solver(solver):
    content, style, cov_s, _ = content_and_style(C=4)
    out = wct(eps=0.0, solver=solver)(content, style)
    rel = (covariance(out.reshape(2, 4, -1)) - cov_s).norm() / cov_s.norm()
    assert rel.item() <= forward_tolerance(solver), f"{solver}: relative error {rel.item():.3g}"


def _train(model: nn.Module, loss_fn, steps: int = 50, lr: float = 1e-2) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _assert_learns(losses: list[float], solver: str) -> None:
    assert all(torch.isfinite(torch.tensor(losses))), f"{solver}: non-finite loss {losses}"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"{solver}: loss {first:.4f} -> {last:.4f}"


def _blobs(n: int = 96, d: int = 10, k: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(k, d, generator=gen)
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, d, generator=gen)
    return x, y


@pytest.mark.parametrize("solver", SOLVERS)
def test_zca_whitening_trains(solver):
    torch.manual_seed(0)
    x, y = _blobs()
    net = nn.Sequential(
        nn.Linear(10, 8),
        ef.create("layer", "zca-whitening", num_features=8, group_size=4, solver=solver),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    losses = _train(net, lambda: nn.functional.cross_entropy(net(x), y))
    _assert_learns(losses, solver)
    net.eval()
    accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8, f"{solver}: eval-mode accuracy {accuracy:.2f}"


@pytest.mark.parametrize("solver", SOLVERS)
def test_wct_trains(solver):
    """Learn a style tensor whose WCT output matches the output of a hidden target style."""
    torch.manual_seed(0)
    content = correlated(2, 4, 6, 6, dtype=torch.float32)
    gen = torch.Generator().manual_seed(1)
    target_style = torch.diag(torch.tensor([3.0, 1, 1, 1])) @ torch.randn(1, 4, 30, generator=gen)
    layer = ef.create("layer", "wct", alpha=0.8, solver=solver)
    with torch.no_grad():
        target = layer(content, target_style.reshape(1, 4, 30))
    style = nn.Parameter(torch.randn(1, 4, 30, generator=gen))
    holder = nn.ParameterList([style])
    losses = _train(holder, lambda: (layer(content, style) - target).square().mean(), lr=5e-2)
    _assert_learns(losses, solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_covariance_pooling_trains(solver):
    """Tell apart token sets by their covariance with a learned embedding and the GCP head."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n, tokens, channels = 64, 12, 5
    y = torch.arange(n) % 2
    scales = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [3.0, 0.3, 1.0, 1.0, 1.0]])[y]
    x = torch.randn(n, tokens, channels, generator=gen) * scales[:, None, :]
    head = ef.create(
        "layer",
        "covariance-pooling",
        layout="tokens",
        in_channels=channels,
        reduce_dim=4,
        num_classes=2,
        eps=1e-4,
        post_norm="trace",
        solver=solver,
    )
    losses = _train(head, lambda: nn.functional.cross_entropy(head(x), y))
    _assert_learns(losses, solver)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_layers_on_cuda_match_cpu():
    x = correlated(8, 8, 4, 4, dtype=torch.float32)
    layer = ef.create("layer", "zca-whitening", num_features=8, group_size=4, solver="svd")
    cpu = layer(x)
    gpu = layer.cuda()(x.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    layer.eval()
    torch.testing.assert_close(layer(x.cuda()).cpu(), layer.cpu()(x), rtol=1e-3, atol=1e-3)
    content, style, _, _ = content_and_style()
    t = ef.create("layer", "wct", solver="svd")
    out = t(content.float().cuda(), style.float().cuda())
    torch.testing.assert_close(out.cpu(), t(content.float(), style.float()), rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- graph=True


@pytest.mark.parametrize("name", ["covariance-pooling", "zca-whitening", "wct"])
def test_graph_option_runs_eagerly_on_cpu_with_one_notice(name):
    """graph=True is a CUDA-graph fast path; on the CPU it is the eager layer (same output and
    gradient) after one EigenflowWarning."""
    torch.manual_seed(0)
    plain = ef.create("layer", name)
    torch.manual_seed(0)
    graphed = ef.create("layer", name, graph=True)
    inputs = type(plain).example_inputs(torch.float64)
    with pytest.warns(ef.EigenflowWarning, match="graph=True .* running eagerly on cpu"):
        out = graphed(*inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphed(*inputs)  # no second notice
    ref = plain(*inputs)
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    for a, b in zip(outs, refs):
        torch.testing.assert_close(a, b)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_option_on_cuda_matches_eager():
    torch.manual_seed(0)
    plain = ef.create("layer", "covariance-pooling", solver="mpa-lya").cuda()
    graphed = ef.create("layer", "covariance-pooling", solver="mpa-lya", graph=True).cuda()
    x = torch.randn(8, 16, 7, 7, device="cuda")
    for _ in range(3):  # warm-up runs, then replays
        out = graphed(x)
    torch.testing.assert_close(out, plain(x), rtol=1e-4, atol=1e-5)
