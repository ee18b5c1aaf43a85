"""Meta-layers built around a solver chosen by name (thesis 000, Sec. 2.5)."""

from __future__ import annotations

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
from ..core.stats import centered_covariance, upper_triangle
from ..registry import hookimpl
from ..registry.registry import get_registries

__all__ = ["CovariancePooling", "CovariancePoolingConfig", "build_solver"]


def build_solver(ref: Any) -> Any:
    """Create the solver named by a :class:`~eigenflow.core.config.ComponentRef`."""
    return get_registries()["solver"].create(ref.name, **dict(ref.options))


@config
class CovariancePoolingConfig:
    """Options of ``covariance-pooling`` (thesis 000, Sec. 2.5.3, Eq. 2.42-2.43; So-ViT
    head Eq. 2.48)."""

    solver: Any = component_option(
        "solver", "svd", help="solver for the matrix square root (name or table)"
    )
    layout: str = option(
        "channels-first",
        validator=one_of(["channels-first", "tokens"]),
        help="input layout: 'channels-first' (B, C, *spatial) features, or 'tokens' "
        "(B, N, C) as in a vision transformer",
    )
    cls_token: bool = option(
        False, validator=boolean(),
        help="tokens layout: the first token is a class token c, kept apart (So-ViT, Eq. 2.48)",
    )
    in_channels: int | None = option(
        None, validator=optional(integer(1)),
        help="feature channels C (needed with reduce_dim or num_classes)",
    )
    reduce_dim: int | None = option(
        None, validator=optional(integer(1)),
        help="reduce C to this many channels by a learned linear map before pooling "
        "(iSQRT-COV uses 256)",
    )
    post_norm: str = option(
        "none", validator=one_of(["none", "trace", "frobenius"]),
        help="normalisation of Q = P^(1/2): none, divide by sqrt(trace P), or by ||Q||_F",
    )
    eps: float = option(
        0.0, validator=floating(0.0), help="added to the covariance diagonal before the root",
    )
    triu: bool = option(
        True, validator=boolean(),
        help="output the upper triangle d(d+1)/2 instead of the d x d matrix",
    )
    num_classes: int | None = option(
        None, validator=optional(integer(1)),
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
    (``layout='tokens'``, optionally with a leading class token). Output ``(B, d(d+1)/2)``
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
            if cfg.num_classes and cfg.cls_token else None
        )

    @property
    def out_features(self) -> int | None:
        """Size of the output vector, when known from the config."""
        cfg = self.config
        if cfg.num_classes:
            return cfg.num_classes
        d = cfg.reduce_dim or cfg.in_channels
        return None if d is None else (d * (d + 1) // 2 if cfg.triu else d * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        check_tensor(x, "x", min_dims=3)
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
            Q = Q / torch.linalg.matrix_norm(Q).clamp_min(torch.finfo(Q.dtype).tiny)[..., None, None]
        out = upper_triangle(Q) if cfg.triu else Q
        if self.fc is None:
            return out
        logits = self.fc(out)
        if self.fc_token is not None:
            logits = logits + self.fc_token(token)  # Eq. 2.48
        return logits


@hookimpl
def eigenflow_register(registry):
    registry.add("layer", CovariancePooling, name="covariance-pooling")
