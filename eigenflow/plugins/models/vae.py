"""The VAE family: ``vae``, ``beta-vae`` and ``beta-vae-fullcov``.

Every model here is an ``nn.Module`` with

- ``loss(batch) -> dict``: ``"loss"`` (the total, averaged over items) and its terms;
- ``encode(x) -> (mu, logvar)`` (``(mu, scale_tril)`` for the full-covariance posterior);
- ``posterior(x)``: the approximate posterior ``q(z|x)`` as a ``torch.distributions`` object;
- ``decode(z)``: the decoder mean (pixel probabilities for the Bernoulli likelihood);
- ``log_px_given_z(x, z)``: ``log p(x|z)`` summed over the data dimensions;
- ``sample(n)``: decoder means of ``z ~ N(0, I)``;
- ``traverse(z0, weights, steps)`` and ``predict_sequence(x, k)``: the latent path used by the
  equivariance error (thesis 000, Eq. 4.15); a plain VAE has no latent transformation, so its
  update is zero, as in the paper's baseline.

Batches are a tensor ``x``, a tuple ``(x, k, ...)`` or a dict with ``"x"`` (or ``"images"``)
and optionally ``"k"`` (the transformation index). ``x`` is ``(B, *input_shape)`` for
single items or ``(B, T+1, *input_shape)`` for sequences; the VAEs train on every frame
of a sequence.

Likelihoods (option ``likelihood``):

- ``"bernoulli"``: ``log p(x|z) = sum x log p + (1-x) log(1-p)`` with ``p = sigmoid(logits)``,
  the usual choice for intensities in ``[0, 1]`` (for non-binary data this is the
  cross-entropy, not a normalised density);
- ``"gaussian"``: ``N(x; mean, decoder_std^2 I)`` with the identity mean, a normalised density.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Independent, MultivariateNormal, Normal

from ...core.component import Model
from ...core.config import config, floating, integer, one_of, option
from ...core.errors import ConfigError, InputError
from ...runtime.build import unpack_batch
from .kl import kl_diag_normal_std, kl_fullcov_normal_std
from .nets import build_decoder, build_encoder

__all__ = [
    "VAE",
    "BetaVAE",
    "BetaVAEConfig",
    "BetaVAEFullCov",
    "VAEBase",
    "VAEConfig",
    "shape_option",
    "unpack_batch",
]

_LOG_2PI = 1.8378770664093453


def _to_shape(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def shape_option(default: tuple[int, ...], *, help: str) -> Any:
    """An option holding a data shape: a list of positive integers."""

    def check(_inst: Any, attribute: Any, value: Any) -> None:
        ok = (
            isinstance(value, tuple)
            and len(value) >= 1
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        )
        if not ok:
            raise ConfigError(
                f"option {attribute.name!r} = {value!r} is invalid: expected a list of "
                "positive integers, e.g. [1, 28, 28]"
            )

    return option(default, help=help, validator=check, converter=_to_shape)


@config
class VAEConfig:
    """Options of ``vae`` (Kingma and Welling; the controlled baseline of thesis 000, Sec. 4.6.3).

    Architecture defaults follow the MNIST models of thesis 000, Sec. 4.5-4.6 (two stride-2
    convolutions or a two-layer MLP); the latent size is our choice for 28x28 digits.
    """

    input_shape: tuple = shape_option(
        (1, 28, 28), help="shape of one data item, e.g. [channels, height, width]"
    )
    latent_dim: int = option(16, validator=integer(1, 4096), help="latent size d")
    architecture: str = option(
        "mlp",
        validator=one_of(["mlp", "conv"]),
        help="encoder/decoder: 'mlp' (any input shape) or 'conv' ([C, H, W], H and W "
        "divisible by 4)",
    )
    hidden: int = option(256, validator=integer(1), help="hidden width of the networks")
    conv_width: int = option(
        32,
        validator=integer(1),
        help="channels of the 'conv' networks: width and 2 width at the two resolutions",
    )
    likelihood: str = option(
        "bernoulli",
        validator=one_of(["bernoulli", "gaussian"]),
        help="decoder likelihood p(x|z): 'bernoulli' (intensities in [0, 1]) or 'gaussian'",
    )
    decoder_std: float = option(
        1.0,
        validator=floating(0.0, min_open=True),
        help="standard deviation of the Gaussian likelihood",
    )


@config
class BetaVAEConfig(VAEConfig):
    """Options of ``beta-vae`` (Higgins et al.; seed 002, Sec. 3.2: the ELBO with the KL term
    weighted by beta)."""

    beta: float = option(4.0, validator=floating(0.0), help="weight of the KL term")


class VAEBase(Model):
    """Shared machinery of the VAE family (see the module docstring for the interface)."""

    Config = VAEConfig
    #: latent parameters the encoder head outputs per item (2 d for a diagonal posterior)
    full_covariance = False

    def __init__(self, config: Any = None, **options: Any):
        nn.Module.__init__(self)
        self.config = self.make_config(config, options)
        cfg = self.config
        self.input_shape = tuple(cfg.input_shape)
        self.latent_dim = cfg.latent_dim
        self.encoder = build_encoder(cfg.architecture, self.input_shape, cfg.hidden, cfg.conv_width)
        self.decoder = build_decoder(
            cfg.architecture, self.input_shape, cfg.latent_dim, cfg.hidden, cfg.conv_width
        )
        d = cfg.latent_dim
        self.head = nn.Linear(cfg.hidden, self._head_size(d))

    @staticmethod
    def _head_size(d: int) -> int:
        return 2 * d

    # ----------------------------------------------------------------- shapes
    def _item_dims(self) -> int:
        return len(self.input_shape)

    def is_sequence(self, x: torch.Tensor) -> bool:
        """``True`` for ``(B, T+1, *input_shape)`` input, ``False`` for ``(B, *input_shape)``."""
        if tuple(x.shape[-self._item_dims() :]) != self.input_shape:
            raise InputError(
                f"x: expected trailing shape {list(self.input_shape)}, got {list(x.shape)}"
            )
        extra = x.dim() - self._item_dims()
        if extra not in (1, 2):
            raise InputError(
                f"x: expected (B, *{list(self.input_shape)}) or (B, T+1, "
                f"*{list(self.input_shape)}), got {list(x.shape)}"
            )
        return extra == 2

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """Every item of ``x`` as a flat batch ``(N, *input_shape)``."""
        return x.reshape(-1, *self.input_shape)

    # ----------------------------------------------------------------- posterior
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, *input_shape) -> (mu (B, d), logvar (B, d))``."""
        mu, logvar = self.head(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar

    def posterior(self, x: torch.Tensor) -> torch.distributions.Distribution:
        """``q(z|x)`` with batch shape ``(B,)`` and event shape ``(d,)``."""
        mu, logvar = self.encode(x)
        return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)

    def reparameterize(self, params: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A differentiable sample ``mu + sigma * eps`` from ``encode``'s output."""
        mu, logvar = params
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def kl(self, params: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Closed-form ``KL[q(z|x) || N(0, I)]`` per item ``(B,)``."""
        return kl_diag_normal_std(*params)

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``E[z|x]`` ``(B, d)``."""
        return self.encode(x)[0]

    # ----------------------------------------------------------------- decoder
    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder pre-activations ``(..., *input_shape)`` for ``z (..., d)``."""
        lead = z.shape[:-1]
        out = self.decoder(z.reshape(-1, self.latent_dim))
        return out.reshape(*lead, *self.input_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``(..., *input_shape)`` (probabilities for the Bernoulli likelihood)."""
        logits = self.decoder_logits(z)
        return torch.sigmoid(logits) if self.config.likelihood == "bernoulli" else logits

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` summed over data dimensions.

        Parameters
        ----------
        x
            ``(B, *input_shape)`` data.
        z
            ``(..., B, d)`` latents; leading dimensions (e.g. K importance samples)
            broadcast against ``x``.

        Returns
        -------
        torch.Tensor
            ``(..., B)``.
        """
        logits = self.decoder_logits(z)
        x = x.to(logits.dtype).expand_as(logits)
        if self.config.likelihood == "bernoulli":
            elem = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none")
        else:
            std = self.config.decoder_std
            elem = (
                -0.5 * ((x - logits) / std).square()
                - torch.log(torch.tensor(std, dtype=logits.dtype))
                - 0.5 * _LOG_2PI
            )
        return elem.flatten(-self._item_dims()).sum(-1)

    def sample(self, n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
        """``n`` decoder means from the prior: ``(n, *input_shape)``."""
        device = device or next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        return self.decode(torch.randn(n, self.latent_dim, device=device, dtype=dtype))

    # ----------------------------------------------------------------- training
    beta: float = 1.0

    def elbo_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-item reconstruction ``-log p(x|z)`` and KL for a flat batch ``(N, *shape)``."""
        params = self.encode(x)
        z = self.reparameterize(params)
        return {"recon": -self.log_px_given_z(x, z), "kl": self.kl(params)}

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """Negative ELBO ``recon + beta * kl`` averaged over every item (every frame)."""
        x, _ = unpack_batch(batch)
        self.is_sequence(x)
        terms = self.elbo_terms(self._frames(x))
        recon, kl = terms["recon"].mean(), terms["kl"].mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    # ----------------------------------------------------------------- latent paths
    @property
    def num_potentials(self) -> int:
        return 0

    def flow_weights(self, x: torch.Tensor, k: torch.Tensor | None) -> torch.Tensor | None:
        """Potential weights ``(B, K)`` used at test time (``None``: no latent flow)."""
        return None

    def traverse(self, z0: torch.Tensor, weights: torch.Tensor | None, steps: int) -> torch.Tensor:
        """Latent path ``(steps+1, B, d)`` from ``z0 (B, d)``; a VAE's update is zero."""
        return z0.unsqueeze(0).expand(steps + 1, *z0.shape)

    def predict_sequence(self, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded latent flow from ``x[:, 0]``: ``x (B, T+1, *shape) -> (B, T+1, *shape)``.

        ``z_0`` is the posterior mean of the first frame; the path follows
        :meth:`traverse` with the weights of :meth:`flow_weights` (thesis 000, Eq. 4.15).
        """
        steps = x.shape[1] - 1
        z0 = self.posterior_mean(x[:, 0])
        path = self.traverse(z0, self.flow_weights(x, k), steps)
        return self.decode(path).transpose(0, 1)


class VAE(VAEBase):
    """Variational autoencoder with a diagonal Gaussian posterior (beta = 1)."""

    source = "Kingma and Welling 2014; thesis 000 Sec. 4.6.3 (controlled baseline)"


class BetaVAE(VAEBase):
    """beta-VAE: the ELBO with the KL term weighted by ``beta`` (seed 002, Sec. 3.2)."""

    Config = BetaVAEConfig
    source = "Higgins et al. 2017; seed 002 Sec. 3.2"

    @property
    def beta(self) -> float:  # type: ignore[override]
        return self.config.beta


class BetaVAEFullCov(BetaVAE):
    """beta-VAE with a full-covariance Gaussian posterior ``N(mu, L L^T)`` (seed 002,
    Sec. 3.2.7).

    The encoder outputs ``mu``, the log-diagonal of ``L`` and its strictly lower part; samples
    are ``mu + L eps`` (Cholesky reparameterisation) and the KL to ``N(0, I)`` is the closed
    form ``0.5 (||L||_F^2 + ||mu||^2 - d - 2 sum log L_ii)``. ``encode`` returns
    ``(mu, scale_tril)``.
    """

    source = "seed 002 Sec. 3.2.7 (full covariance posterior)"
    full_covariance = True

    @staticmethod
    def _head_size(d: int) -> int:
        return 2 * d + d * (d - 1) // 2

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x -> (mu (B, d), scale_tril (B, d, d))`` with a positive diagonal."""
        d = self.latent_dim
        out = self.head(self.encoder(x))
        mu, log_diag, lower = out[:, :d], out[:, d : 2 * d], out[:, 2 * d :]
        rows, cols = torch.tril_indices(d, d, offset=-1, device=out.device)
        tril = torch.diag_embed(torch.exp(log_diag))
        tril[:, rows, cols] = lower
        return mu, tril

    def posterior(self, x: torch.Tensor) -> torch.distributions.Distribution:
        mu, tril = self.encode(x)
        return MultivariateNormal(mu, scale_tril=tril)

    def reparameterize(self, params: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mu, tril = params
        eps = torch.randn_like(mu)
        return mu + (tril @ eps.unsqueeze(-1)).squeeze(-1)

    def kl(self, params: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return kl_fullcov_normal_std(*params)
