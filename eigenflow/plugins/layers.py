"""Meta-layers built around a solver chosen by name (thesis 000, Sec. 2.5)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core.checks import check_tensor
from ..core.component import Layer
from ..core.config import (
    boolean,
    component_option,
    config,
    floating,
    integer,
    one_of,
    option,
    optional,
)
from ..core.errors import ConfigError, InputError
from ..core.spectral import symmetrize
from ..core.stats import centered_covariance, upper_triangle
from ..registry import hookimpl
from ..registry.registry import get_registries

__all__ = [
    "WCT",
    "CovariancePooling",
    "CovariancePoolingConfig",
    "WCTConfig",
    "ZCAWhitening",
    "ZCAWhiteningConfig",
    "build_solver",
]


def build_solver(ref: Any) -> Any:
    """Create the solver named by a :class:`~eigenflow.core.config.ComponentRef`."""
    return get_registries()["solver"].create(ref.name, **dict(ref.options))


# --------------------------------------------------------------------------- shared helpers

_HALF_DTYPES = (torch.float16, torch.bfloat16)
_FEATURE_DTYPES = (*_HALF_DTYPES, torch.float32, torch.float64)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the statistics and matrix functions are computed in (half -> float32)."""
    return torch.float32 if dtype in _HALF_DTYPES else dtype


def _add_ridge(P: torch.Tensor, eps: float) -> torch.Tensor:
    """``P + eps I`` for ``P (..., d, d)`` (the ``eps I`` of thesis 000, Eq. 2.40)."""
    if eps == 0.0:
        return P
    return P + eps * torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)


def _mean_and_covariance(
    X: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, centred samples and covariance of ``X (..., d, N)`` (``N`` samples as columns).

    Returns ``mu (..., d, 1)``, ``X - mu (..., d, N)`` and ``(X - mu)(X - mu)^T / N
    (..., d, d)`` (thesis 000, Eq. 2.40 without the ``eps I``; Eq. 2.45-2.46).
    """
    mu = X.mean(dim=-1, keepdim=True)
    centred = X - mu
    cov = centred @ centred.mT / X.shape[-1]
    return mu, centred, symmetrize(cov)


def _group_count(channels: int, group_size: int | None, where: str) -> tuple[int, int]:
    """``(groups G, group size g)`` splitting ``channels`` into groups of ``group_size``."""
    g = channels if group_size is None else group_size
    if channels % g != 0:
        raise InputError(
            f"{where}: group_size = {g} does not divide the {channels} channels; "
            f"choose a divisor of {channels} or group_size=None (one group)"
        )
    return channels // g, g


def _check_alpha(alpha: Any) -> float:
    ok = isinstance(alpha, int | float) and not isinstance(alpha, bool) and 0.0 <= alpha <= 1.0
    if not ok:
        raise InputError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    return float(alpha)


def _graph_option() -> Any:
    return option(
        False,
        validator=boolean(),
        help="run forward through torch.compile(mode='reduce-overhead', fullgraph=True) on CUDA "
        "input (CUDA graphs, the captured speed without graph code); CPU input runs eagerly "
        "with a one-time notice (eigenflow extension)",
    )


@config
class CovariancePoolingConfig:
    """Options of ``covariance-pooling`` (thesis 000, Sec. 2.5.3, Eq. 2.42-2.43; So-ViT
    head Eq. 2.48)."""

    solver: Any = component_option(
        "solver", "mpa-lya", help="solver for the matrix square root (name or table)"
    )
    layout: str = option(
        "channels-first",
        validator=one_of(["channels-first", "tokens"]),
        help="input layout: 'channels-first' (B, C, *spatial) features, or 'tokens' "
        "(B, N, C) as in a vision transformer",
    )
    cls_token: bool = option(
        False,
        validator=boolean(),
        help="tokens layout: the first token is a class token c, kept apart (So-ViT, Eq. 2.48)",
    )
    in_channels: int | None = option(
        None,
        validator=optional(integer(1)),
        help="feature channels C (needed with reduce_dim or num_classes)",
    )
    reduce_dim: int | None = option(
        None,
        validator=optional(integer(1)),
        help="reduce C to this many channels by a learned linear map before pooling "
        "(iSQRT-COV uses 256)",
    )
    post_norm: str = option(
        "none",
        validator=one_of(["none", "trace", "frobenius"]),
        help="normalisation of Q = P^(1/2): none, divide by sqrt(trace P), or by ||Q||_F",
    )
    graph: bool = _graph_option()
    eps: float = option(
        0.0,
        validator=floating(0.0),
        help="added to the covariance diagonal before the root",
    )
    triu: bool = option(
        True,
        validator=boolean(),
        help="output the upper triangle d(d+1)/2 instead of the d x d matrix",
    )
    num_classes: int | None = option(
        None,
        validator=optional(integer(1)),
        help="if set, add the classifier FC(Q) (+ FC(c) with cls_token) and return logits",
    )

    def __attrs_post_init__(self) -> None:
        if (self.reduce_dim or self.num_classes) and self.in_channels is None:
            raise ConfigError("in_channels is required with reduce_dim or num_classes")
        if self.cls_token and self.layout != "tokens":
            raise ConfigError("cls_token=True needs layout='tokens'")
        if self.num_classes and not self.triu:
            raise ConfigError("num_classes needs triu=True (the classifier reads the triangle)")


class CovariancePooling(Layer):
    """Global covariance pooling: ``Q = (X Ibar X^T)^(1/2)`` by the chosen solver.

    Input ``(B, C, *spatial)`` (``layout='channels-first'``) or ``(B, N, C)``
    (``layout='tokens'``, optionally with a leading class token), with ``C >= 1`` channels and
    at least 2 positions (spatial positions, or tokens besides the class token) per sample:
    fewer raise :class:`~eigenflow.InputError`, as in ``wct``. Output ``(B, d(d+1)/2)``
    (``triu``), ``(B, d, d)``, or logits ``(B, num_classes)`` when ``num_classes`` is set,
    with ``d = reduce_dim or C``.
    """

    Config = CovariancePoolingConfig
    source = "000 (Song 2023), Sec. 2.5.3, Eq. 2.42-2.43; Sec. 2.5.5, Eq. 2.48"

    def __init__(self, config: CovariancePoolingConfig | None = None, **options: Any):
        super().__init__()
        self.config = cfg = self.make_config(config, options)
        self.solver = build_solver(cfg.solver)
        self.reduce = nn.Linear(cfg.in_channels, cfg.reduce_dim) if cfg.reduce_dim else None
        d = cfg.reduce_dim or cfg.in_channels
        self.fc = nn.Linear(d * (d + 1) // 2, cfg.num_classes) if cfg.num_classes else None
        self.fc_token = (
            nn.Linear(cfg.in_channels, cfg.num_classes)
            if cfg.num_classes and cfg.cls_token
            else None
        )

    @classmethod
    def example_inputs(cls, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        """A small input for smoke tests: features ``(2, 4, 3, 3)``."""
        gen = torch.Generator().manual_seed(0)
        return (torch.randn(2, 4, 3, 3, generator=gen, dtype=dtype),)

    @property
    def out_features(self) -> int | None:
        """Size of the output vector, when known from the config."""
        cfg = self.config
        if cfg.num_classes:
            return cfg.num_classes
        d = cfg.reduce_dim or cfg.in_channels
        return None if d is None else (d * (d + 1) // 2 if cfg.triu else d * d)

    def _check_positions(self, x: torch.Tensor) -> None:
        """At least one channel and 2 positions (tokens) per sample: a covariance over fewer
        samples is undefined (0/0), and its root would be NaN. Host shape checks only."""
        cfg = self.config
        if cfg.layout == "tokens":
            channels, n = x.shape[-1], x.shape[1] - int(cfg.cls_token)
            what = "tokens (after the class token)" if cfg.cls_token else "tokens"
        else:
            channels, n = x.shape[1], math.prod(x.shape[2:])
            what = "spatial positions"
        if channels < 1:
            raise InputError(
                f"x: expected at least 1 channel, got 0 (shape {tuple(x.shape)}, "
                f"layout={cfg.layout!r})"
            )
        if n < 2:
            raise InputError(
                f"x: expected at least 2 {what} to estimate a covariance, got {max(n, 0)} "
                f"(shape {tuple(x.shape)}, layout={cfg.layout!r})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        check_tensor(x, "x", min_dims=3)
        self._check_positions(x)
        token = None
        if cfg.layout == "tokens":
            if cfg.cls_token:
                token, x = x[:, 0], x[:, 1:]
            feats = x  # (B, N, C)
        else:
            feats = x.flatten(2).mT  # (B, N, C)
        if cfg.in_channels is not None and feats.shape[-1] != cfg.in_channels:
            raise InputError(
                f"x: expected {cfg.in_channels} channels, got {feats.shape[-1]} "
                f"(shape {tuple(x.shape)})"
            )
        if self.reduce is not None:
            feats = self.reduce(feats)
        P = centered_covariance(feats.mT)
        if cfg.eps:
            P = P + cfg.eps * torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
        Q = self.solver.sqrt(P, check=False)
        if cfg.post_norm == "trace":
            trace = P.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(torch.finfo(P.dtype).tiny)
            Q = Q / trace.sqrt()[..., None, None]
        elif cfg.post_norm == "frobenius":
            norm = torch.linalg.matrix_norm(Q).clamp_min(torch.finfo(Q.dtype).tiny)
            Q = Q / norm[..., None, None]
        out = upper_triangle(Q) if cfg.triu else Q
        if self.fc is None:
            return out
        logits = self.fc(out)
        if self.fc_token is not None:
            logits = logits + self.fc_token(token)  # Eq. 2.48
        return logits


@config
class ZCAWhiteningConfig:
    """Options of ``zca-whitening``: decorrelated batch normalisation (thesis 000,
    Sec. 2.5.2, Eq. 2.40-2.41; Huang et al., "Decorrelated Batch Normalization", CVPR 2018,
    the thesis's [101]).

    Defaults: ``num_features = 64`` and one group of all channels are the thesis's ZCA
    experiment (Table 2.3: one 64 x 64 covariance, the layer after the first convolution of
    ResNet, Fig. 2.7); Table 3.7 splits the same 64 channels into groups of 4, 8 or 16.
    The thesis gives no value for ``eps`` or the running-statistics momentum; ``eps = 1e-5``
    and ``momentum = 0.1`` are the batch-normalisation conventions the decorrelated-BN
    reference code also uses, and ``affine = True`` makes the layer a drop-in for BN.
    The default solver ``mpa-lya`` has the lowest validation error in the thesis's ZCA
    experiment (Table 2.3).
    """

    num_features: int = option(
        64, validator=integer(1), help="channels C of the input (B, C, *spatial) or (B, C)"
    )
    group_size: int | None = option(
        None,
        validator=optional(integer(1)),
        help="channels per whitening group: C is split into C/group_size groups, each "
        "whitened by its own group_size x group_size covariance (None: one group, Eq. 2.40)",
    )
    graph: bool = _graph_option()
    eps: float = option(
        1e-5,
        validator=floating(0.0),
        help="eps in A = cov + eps I (Eq. 2.40)",
    )
    momentum: float = option(
        0.1,
        validator=floating(0.0, 1.0),
        help="running stats: running = (1 - momentum) running + momentum batch",
    )
    affine: bool = option(
        True,
        validator=boolean(),
        help="learn a per-channel scale and shift after whitening",
    )
    track_running_stats: bool = option(
        True,
        validator=boolean(),
        help="keep a running mean and whitening matrix and use them in eval mode "
        "(False: eval mode whitens with the batch statistics too)",
    )
    solver: Any = component_option(
        "solver", "mpa-lya", help="solver for the inverse square root A^(-1/2) (name or table)"
    )

    def __attrs_post_init__(self) -> None:
        if self.group_size is not None and self.num_features % self.group_size != 0:
            raise ConfigError(
                f"group_size = {self.group_size} must divide num_features = {self.num_features}"
            )


class ZCAWhitening(Layer):
    """Decorrelated batch normalisation by ZCA whitening (thesis 000, Eq. 2.40-2.41).

    In training mode each group of ``g`` channels of ``x`` is centred by its batch mean
    ``mu`` and whitened by ``A^(-1/2)`` with ``A = cov + eps I`` (Eq. 2.40-2.41), the
    statistics taken over the batch and every spatial position; the ``G = C/g`` groups are
    one batched solver call. The running mean and the running whitening matrix are updated
    with ``momentum`` and replace the batch statistics in eval mode. Eq. 2.41 writes
    ``A^(-1/2) X``; like decorrelated BN, the layer whitens the centred ``X - mu`` so the
    output has zero mean as well as identity covariance (up to ``eps``).

    Input ``(B, C, *spatial)`` or ``(B, C)``; output of the same shape and dtype. Half
    precision input is whitened in float32 (autocast is switched off inside the layer).

    Buffers: ``running_mean (C,)``, ``running_whitening (G, g, g)``. Parameters (``affine``):
    ``weight (C,)`` and ``bias (C,)``.
    """

    Config = ZCAWhiteningConfig
    source = "000 (Song 2023), Sec. 2.5.2, Eq. 2.40-2.41; Huang et al. 2018 (thesis ref. [101])"

    def __init__(self, config: ZCAWhiteningConfig | None = None, **options: Any):
        super().__init__()
        self.config = cfg = self.make_config(config, options)
        self.solver = build_solver(cfg.solver)
        self.groups, self.group_size = _group_count(cfg.num_features, cfg.group_size, "config")
        g = self.group_size
        self.register_buffer("running_mean", torch.zeros(cfg.num_features))
        self.register_buffer("running_whitening", torch.eye(g).repeat(self.groups, 1, 1))
        if cfg.affine:
            self.weight = nn.Parameter(torch.ones(cfg.num_features))
            self.bias = nn.Parameter(torch.zeros(cfg.num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @classmethod
    def example_inputs(cls, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        """A small input for smoke tests at the default config: ``(4, 64, 5, 5)``."""
        gen = torch.Generator().manual_seed(0)
        return (torch.randn(4, 64, 5, 5, generator=gen, dtype=dtype),)

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"num_features={cfg.num_features}, groups={self.groups}, "
            f"group_size={self.group_size}, eps={cfg.eps}, momentum={cfg.momentum}, "
            f"affine={cfg.affine}, solver={cfg.solver.name!r}"
        )

    def reset_running_stats(self) -> None:
        """Running mean to zero and running whitening matrices to the identity."""
        self.running_mean.zero_()
        self.running_whitening.copy_(torch.eye(self.group_size).expand_as(self.running_whitening))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten ``x (B, C, *spatial)`` or ``(B, C)``; returns the same shape and dtype."""
        cfg = self.config
        check_tensor(x, "x", dtypes=_FEATURE_DTYPES, min_dims=2)
        if x.shape[1] != cfg.num_features:
            raise InputError(
                f"x: expected {cfg.num_features} channels (num_features) in dimension 1, "
                f"got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        n_samples = x.shape[0] * math.prod(x.shape[2:])
        use_batch = self.training or not cfg.track_running_stats
        if use_batch and n_samples < 2:
            raise InputError(
                f"x: whitening with batch statistics needs at least 2 values per channel "
                f"(batch x spatial positions), got shape {tuple(x.shape)}"
            )
        with torch.autocast(x.device.type, enabled=False):
            out = self._whiten(x.to(_compute_dtype(x.dtype)), n_samples, use_batch)
        return out.to(x.dtype)

    def _whiten(self, x: torch.Tensor, n_samples: int, use_batch: bool) -> torch.Tensor:
        cfg = self.config
        G, g = self.groups, self.group_size
        # (B, C, *S) -> (G, g, B * prod(S)): every group is one batch entry of the solver
        X = x.transpose(0, 1).reshape(G, g, n_samples)
        if use_batch:
            mu, centred, cov = _mean_and_covariance(X)
            W = self.solver.invsqrt(_add_ridge(cov, cfg.eps), check=False)  # Eq. 2.40-2.41
            if self.training and cfg.track_running_stats:
                self._update_running_stats(mu, W)
        else:
            mu = self.running_mean.to(x.dtype).reshape(G, g, 1)
            centred = X - mu
            W = self.running_whitening.to(x.dtype)
        out = (W @ centred).reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1)
        if self.weight is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mu: torch.Tensor, W: torch.Tensor) -> None:
        m = self.config.momentum
        self.running_mean.lerp_(mu.reshape(-1).to(self.running_mean.dtype), m)
        self.running_whitening.lerp_(W.to(self.running_whitening.dtype), m)


@config
class WCTConfig:
    """Options of ``wct``: whitening and colouring transform (thesis 000, Sec. 2.5.4,
    Eq. 2.45-2.47; group-wise variant of Cho et al., CVPR 2019, the thesis's [40], used in
    Sec. 3.4.7, Table 3.9).

    The thesis bounds ``alpha`` to [0, 1] without fixing a value; the default 1 is the full
    transform of Eq. 2.45-2.46 with the style mean. ``group_size = None`` whitens all
    channels together as in Eq. 2.45; Table 3.9 uses groups of 4, 8 and 16 channels of the
    256-channel features. ``eps`` (not in the equations) keeps the content covariance
    invertible when there are fewer spatial positions than channels. The default solver
    ``mpa-lya`` has the best LPIPS score and user preference in the thesis (Table 2.6).
    """

    solver: Any = component_option(
        "solver",
        "mpa-lya",
        help="solver for the content inverse square root and the style square root",
    )
    alpha: float = option(
        1.0,
        validator=floating(0.0, 1.0),
        help="style strength alpha in Eq. 2.47 (1: full transfer, 0: content unchanged)",
    )
    graph: bool = _graph_option()
    eps: float = option(
        1e-5,
        validator=floating(0.0),
        help="added to the diagonal of the content and style covariances",
    )
    group_size: int | None = option(
        None,
        validator=optional(integer(1)),
        help="channels per group, each group transformed by its own covariances "
        "(None: one group of all channels)",
    )


class WCT(Layer):
    """Whitening and colouring transform (thesis 000, Eq. 2.45-2.47).

    ``forward(content, style)`` on features ``(B, C, *spatial)``: per sample (and per channel
    group), the centred content ``X_c - mu_c`` is whitened by ``C_c^(-1/2)`` (Eq. 2.45),
    coloured by ``C_s^(1/2)`` (Eq. 2.46), shifted by the style mean and blended with the
    content, ``alpha (colored + mu_s) + (1 - alpha) X_c`` (Eq. 2.47). ``C_c`` and ``C_s`` are
    the covariances over the spatial positions (divided by their number, so content and
    style may have different spatial sizes) plus ``eps I``. Both matrix functions come from
    one batched :meth:`~eigenflow.core.solver.Solver.sqrt_invsqrt` call. Eq. 2.45 writes the
    uncentred ``X_c``; centring it (as in the original WCT) is what makes the output carry
    exactly the style's mean and covariance when ``alpha = 1``.

    ``style`` has the content's channels and batch size, or batch size 1 (one style for every
    content); its spatial size may differ. Output: the content's shape and dtype.
    """

    Config = WCTConfig
    source = "000 (Song 2023), Sec. 2.5.4, Eq. 2.45-2.47; Cho et al. 2019 (thesis ref. [40])"

    def __init__(self, config: WCTConfig | None = None, **options: Any):
        super().__init__()
        self.config = cfg = self.make_config(config, options)
        self.solver = build_solver(cfg.solver)

    @classmethod
    def example_inputs(cls, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        """Small inputs for smoke tests: content ``(2, 8, 5, 5)``, style ``(2, 8, 4, 6)``."""
        gen = torch.Generator().manual_seed(0)
        content = torch.randn(2, 8, 5, 5, generator=gen, dtype=dtype)
        style = 2.0 * torch.randn(2, 8, 4, 6, generator=gen, dtype=dtype) + 1.0
        return content, style

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"alpha={cfg.alpha}, eps={cfg.eps}, group_size={cfg.group_size}, "
            f"solver={cfg.solver.name!r}"
        )

    def forward(
        self, content: torch.Tensor, style: torch.Tensor, alpha: float | None = None
    ) -> torch.Tensor:
        """Transfer the second-order statistics of ``style`` to ``content``.

        Parameters
        ----------
        content
            ``(B, C, *spatial)`` features.
        style
            ``(B, C, *spatial')`` or ``(1, C, *spatial')`` features.
        alpha
            Overrides the configured style strength for this call (a number in [0, 1]).

        Returns
        -------
        torch.Tensor
            ``(B, C, *spatial)``, the dtype of ``content``.
        """
        alpha = self.config.alpha if alpha is None else _check_alpha(alpha)
        self._check_inputs(content, style)
        with torch.autocast(content.device.type, enabled=False):
            dtype = _compute_dtype(content.dtype)
            out = self._transfer(content.to(dtype), style.to(dtype), alpha)
        return out.to(content.dtype)

    def _check_inputs(self, content: torch.Tensor, style: torch.Tensor) -> None:
        check_tensor(content, "content", dtypes=_FEATURE_DTYPES, min_dims=3)
        check_tensor(style, "style", dtypes=_FEATURE_DTYPES, min_dims=3)
        if style.dtype != content.dtype:
            raise InputError(
                f"style: expected the content's dtype {content.dtype}, got {style.dtype}"
            )
        if style.shape[1] != content.shape[1]:
            raise InputError(
                f"style: expected {content.shape[1]} channels like content, got "
                f"{style.shape[1]} (content {tuple(content.shape)}, style {tuple(style.shape)})"
            )
        if style.shape[0] not in (1, content.shape[0]):
            raise InputError(
                f"style: expected batch size 1 or {content.shape[0]} (the content's), got "
                f"{style.shape[0]}"
            )
        _group_count(content.shape[1], self.config.group_size, "content")
        for name, t in (("content", content), ("style", style)):
            if math.prod(t.shape[2:]) < 2:
                raise InputError(
                    f"{name}: expected at least 2 spatial positions to estimate a covariance, "
                    f"got shape {tuple(t.shape)}"
                )

    def _transfer(self, content: torch.Tensor, style: torch.Tensor, alpha: float) -> torch.Tensor:
        G, g = _group_count(content.shape[1], self.config.group_size, "content")
        eps = self.config.eps
        B, Bs = content.shape[0], style.shape[0]
        Xc = content.reshape(B, G, g, -1)  # (B, G, g, N_c)
        Xs = style.reshape(Bs, G, g, -1)
        _, centred_c, cov_c = _mean_and_covariance(Xc)
        mu_s, _, cov_s = _mean_and_covariance(Xs)
        stacked = torch.cat([_add_ridge(cov_c, eps), _add_ridge(cov_s, eps)]).reshape(-1, g, g)
        roots, inv_roots = self.solver.sqrt_invsqrt(stacked, check=False)
        whiten = inv_roots[: B * G].reshape(B, G, g, g)  # C_c^(-1/2), Eq. 2.45
        colour = roots[B * G :].reshape(Bs, G, g, g)  # C_s^(1/2), Eq. 2.46
        coloured = (colour @ whiten) @ centred_c
        out = alpha * (coloured + mu_s) + (1.0 - alpha) * Xc  # Eq. 2.47
        return out.reshape(content.shape)


@hookimpl
def eigenflow_register(registry):
    registry.add("layer", CovariancePooling, name="covariance-pooling")
    registry.add("layer", ZCAWhitening, name="zca-whitening")
    registry.add("layer", WCT, name="wct")
