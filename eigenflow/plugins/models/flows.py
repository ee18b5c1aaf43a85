"""VAEs whose latent codes move along learned potential flows: ``pde-vae`` and ``ffvae``.

``pde-vae`` (thesis 000, Sec. 4.5.1, "Integrating Traversal into VAE Training"): K
wave-equation potentials trained inside VAE training on sequences with known transformation
k, with the trajectory loss of Eq. 4.12, the ELBO of Eq. 4.13 and the PDE, initial-condition
and potential-index losses of Eq. 4.14.

``ffvae`` (thesis 000, Sec. 4.6, the flow-factorized VAE): the ELBO of Eq. 4.21 (observed k)
or Eq. 4.23 (k inferred by ``q(k|x)`` with Gumbel-softmax), the posterior density evolved by
Eq. 4.25, the diffusion prior of Eq. 4.17-4.18 and the Hamilton-Jacobi PINN loss of Eq. 4.34.

Sequences are ``x (B, T+1, *input_shape)``; the update at step ``t = 1..T`` is
``z_t = z_{t-1} + grad_z u^k(z_{t-1}, t)``: the potential is read at the step's own time ``t``
so that the initial condition ``grad_z u(z, 0) = 0`` (Eq. 4.8, 4.34) constrains time 0 only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ...core.config import boolean, config, floating, integer, one_of, option
from ...core.errors import InputError
from ...core.potentials import (
    PotentialFamily,
    hessian,
    hj_residual,
    hutchinson_laplacian,
    potential_derivatives,
    wave_residual,
)
from .kl import (
    gaussian_log_density,
    kl_categorical_uniform,
    kl_diag_normal_std,
    log_normal_diag,
    log_normal_std,
)
from .vae import VAEBase, VAEConfig, unpack_batch

__all__ = ["FFVAE", "PDEVAE", "FFVAEConfig", "PDEVAEConfig"]


@config
class PDEVAEConfig(VAEConfig):
    """Options of ``pde-vae`` (thesis 000, Sec. 4.5, Eq. 4.6-4.14).

    The wave speed ``c`` is learnable and starts at 1 (Sec. 4.5.2); the loss weights are 1 as
    in Eq. 4.14.
    """

    num_potentials: int = option(3, validator=integer(1), help="K, the number of potentials")
    potential_hidden: int = option(64, validator=integer(1), help="hidden width of u^k")
    time_dim: int = option(32, validator=integer(4), help="size of the sinusoidal embedding")
    laplacian: str = option(
        "exact",
        validator=one_of(["exact", "hutchinson"]),
        help="Laplacian of u: 'exact' (d Hessian-vector products) or 'hutchinson'",
    )
    hutchinson_probes: int = option(1, validator=integer(1), help="probes for 'hutchinson'")
    wave_speed: float = option(
        1.0,
        validator=floating(0.0, min_open=True),
        help="initial value of the learnable wave speed c",
    )


@config
class FFVAEConfig(VAEConfig):
    """Options of ``ffvae`` (thesis 000, Sec. 4.6, Eq. 4.16-4.34).

    The source gives no value for the diffusion coefficient ``D_k`` or the Gumbel-softmax
    temperature; the defaults here are ours (documented in docs/generative.rst).
    """

    num_potentials: int = option(3, validator=integer(1), help="K, the number of potentials")
    supervision: str = option(
        "supervised",
        validator=one_of(["supervised", "weak"]),
        help="'supervised': k observed (Eq. 4.19-4.21); 'weak': k inferred by q(k|x) with "
        "Gumbel-softmax (Eq. 4.22-4.23)",
    )
    potential_hidden: int = option(
        64, validator=integer(1), help="hidden width of u^k and of the force MLP"
    )
    time_dim: int = option(32, validator=integer(4), help="size of the sinusoidal embedding")
    laplacian: str = option(
        "exact",
        validator=one_of(["exact", "hutchinson"]),
        help="Laplacian in Eq. 4.25: 'exact' (d Hessian-vector products, small latents) or "
        "'hutchinson' (unbiased, 'hutchinson_probes' Hessian-vector products)",
    )
    hutchinson_probes: int = option(1, validator=integer(1), help="probes for 'hutchinson'")
    density_update: str = option(
        "laplacian",
        validator=one_of(["laplacian", "logdet"]),
        help="'laplacian': log q_t = log q_{t-1} - log|1 + Laplacian u| (Eq. 4.25); "
        "'logdet': the exact change of variables log|det(I + Hessian u)| (small latents)",
    )
    diffusion: float = option(
        0.05, validator=floating(0.0), help="D, the prior's diffusion coefficient (Eq. 4.18)"
    )
    flow_kl: str = option(
        "increment",
        validator=one_of(["increment", "marginal", "prior"]),
        help="flow KL terms of Eq. 4.21: 'increment' counts each step's change of log q - log p "
        "(the Jacobian terms) once; 'marginal' sums log q_t - log p_t over t, which also "
        "repeats log q_0/p_0 at z_0 T times; 'prior' sums log q_t(z_t) - log p_t(z_t) over t "
        "with p_t the exact diffusion prior N(0, var_t I) at the sample (Eq. 4.24 reads "
        "q(z_t|z_{t-1}, k) as the evolved marginal q_t, so each term is KL[q_t || p_t] and the "
        "objective is the sum of the per-frame ELBOs)",
    )
    hj_weight: float = option(1.0, validator=floating(0.0), help="weight of L_HJ (Eq. 4.34)")
    gumbel_tau: float = option(
        1.0,
        validator=floating(0.0, min_open=True),
        help="Gumbel-softmax temperature (weak supervision)",
    )
    gumbel_hard: bool = option(
        True, validator=boolean(), help="straight-through one-hot Gumbel-softmax samples"
    )
    k_amortisation: float = option(
        0.0,
        validator=floating(0.0),
        help="weight of the cross-entropy between q(k|x) and the model's own responsibilities "
        "r(k|x) ~ p(k) p(x_1..T | z_0 flowed by u^k) (weak supervision; 0 = the thesis's "
        "Eq. 4.23 alone). The responsibilities are computed without gradient along the "
        "posterior-mean path of every potential: an E-step target that lets q(k|x) find "
        "which potential explains a sequence",
    )
    k_inference: str = option(
        "amortised",
        validator=one_of(["amortised", "responsibilities"]),
        help="how a weakly supervised model picks the potential of a sequence at test time "
        "(flow_weights): 'amortised', argmax q(k|x) (Eq. 4.22); 'responsibilities', argmax "
        "of the model's own posterior r(k|x) ~ p(k) p(x_1..T | z_0 flowed by u^k) "
        "(k_responsibilities), which needs no label either",
    )
    k_encoder: str = option(
        "frames",
        validator=one_of(["frames", "latent"]),
        help="features of q(k|x) (weak supervision): 'frames', an MLP of the frame "
        "differences x_t - x_{t-1} (a network of its own, like the published code's sequence "
        "classifier); 'latent', an MLP of the encoder means' differences mu_t - mu_{t-1}",
    )


def _labels(k: torch.Tensor | None, batch: int, num: int, name: str) -> torch.Tensor:
    if k is None:
        raise InputError(f"{name}: this model needs the transformation label k in the batch")
    k = k.reshape(-1).long()
    if k.shape[0] != batch:
        raise InputError(f"{name}: expected {batch} labels k, got {k.shape[0]}")
    return k


class _PotentialFlowVAE(VAEBase):
    """A VAE with a family of K potentials ``self.potentials`` moving its latent codes."""

    def _build_potentials(self) -> None:
        cfg = self.config
        self.potentials = PotentialFamily(
            cfg.num_potentials, cfg.latent_dim, cfg.potential_hidden, cfg.time_dim
        )

    @property
    def num_potentials(self) -> int:
        return self.config.num_potentials

    def _sequence(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, k = unpack_batch(batch)
        if not self.is_sequence(x) or x.shape[1] < 2:
            raise InputError(
                f"x: {self.name or type(self).__name__} trains on sequences "
                f"(B, T+1, *{list(self.input_shape)}) with T >= 1, got {list(x.shape)}"
            )
        return x, k

    def one_hot(self, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(k.long(), self.num_potentials).to(like.dtype)

    def flow_weights(self, x: torch.Tensor, k: torch.Tensor | None) -> torch.Tensor:
        k = _labels(k, x.shape[0], self.num_potentials, "k")
        return self.one_hot(k.to(x.device), x)

    def traverse(self, z0: torch.Tensor, weights: torch.Tensor | None, steps: int) -> torch.Tensor:
        """``z_t = z_{t-1} + sum_k w_k grad u^k(z_{t-1}, t)``: ``(steps+1, B, d)``.

        ``weights (B, K)``: one-hot selects a potential, several ones superpose them
        (Sec. 4.6.4); a ``(steps, B, K)`` tensor gives per-step weights (switching).
        """
        if weights is None:
            return super().traverse(z0, None, steps)
        path = [z0]
        z = z0
        for t in range(1, steps + 1):
            w = weights[t - 1] if weights.dim() == 3 else weights
            tt = z.new_full((z.shape[0],), float(t))
            step = potential_derivatives(
                self.potentials, z, tt, w, laplacian=None, create_graph=torch.is_grad_enabled()
            )
            z = z + step.grad_z
            path.append(z)
        return torch.stack(path)

    def sample_sequences(
        self,
        n: int,
        k: torch.Tensor | int,
        steps: int,
        *,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``n`` sequences from the model: ``z_0 ~ N(0, I)`` moved by potential ``k`` for
        ``steps`` steps and decoded (Eq. 4.19), ``(n, steps + 1, *input_shape)`` decoder means.

        ``k``: one label for all sequences or ``(n,)`` labels. This is the sequence model
        whose likelihood ``log-likelihood``'s ``per_sequence`` estimates.
        """
        param = next(self.parameters())
        device = device or param.device
        labels = torch.as_tensor(k, device=device).long().expand(n)
        if labels.min() < 0 or labels.max() >= self.num_potentials:
            raise InputError(
                f"k: labels must lie in [0, {self.num_potentials - 1}], got "
                f"{sorted(set(labels.tolist()))}"
            )
        z0 = torch.randn(n, self.latent_dim, device=device, dtype=param.dtype)
        with torch.enable_grad():
            path = self.traverse(z0, self.one_hot(labels, z0), steps)
        with torch.no_grad():
            return self.decode(path.detach()).transpose(0, 1)


class PDEVAE(_PotentialFlowVAE):
    """VAE trained with K wave-equation potential flows (thesis 000, Eq. 4.12-4.14).

    ``loss`` terms: ``elbo`` (per-frame negative ELBO), ``traj_recon`` (``-log p(x_t|z^_t)``
    of the frames decoded from the flowed codes, Eq. 4.13), ``l_z`` (Eq. 4.12), ``l_f`` (wave
    PINN, Eq. 4.7-4.8), ``l_u`` (initial condition, Eq. 4.8), ``l_k`` (potential-index
    cross-entropy with the encoder as classifier, Eq. 4.11).
    """

    Config = PDEVAEConfig
    source = "thesis 000 Sec. 4.5.1, Eq. 4.6-4.14"

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._build_potentials()
        self.log_c = nn.Parameter(torch.tensor(float(self.config.wave_speed)).log())
        self.index_head = nn.Linear(2 * self.latent_dim, self.num_potentials)

    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, k = self._sequence(batch)
        b, steps = x.shape[0], x.shape[1] - 1
        k = _labels(k, b, self.num_potentials, "k").to(x.device)
        w = self.one_hot(k, x)
        frames = self._frames(x)
        params = self.encode(frames)
        z = self.reparameterize(params)
        elbo = (-self.log_px_given_z(frames, z) + self.kl(params)).view(b, -1).sum(1).mean()
        mu = params[0].view(b, steps + 1, -1)
        c = self.log_c.exp()
        zhat = mu[:, 0]
        l_u = (
            potential_derivatives(self.potentials, zhat, zhat.new_zeros(b), w, laplacian=None)
            .grad_z.square()
            .sum(-1)
            .mean()
        )
        l_f = l_z = traj = 0.0
        hats = []
        for t in range(1, steps + 1):
            res, step = wave_residual(
                self.potentials,
                zhat,
                zhat.new_full((b,), float(t)),
                w,
                c,
                laplacian=self.config.laplacian,
                probes=self.config.hutchinson_probes,
            )
            l_f = l_f + res.square().mean()
            # Eq. 4.12: history term and next-update term.
            l_z = (
                l_z
                + (
                    (mu[:, t - 1] - zhat).square().sum(-1)
                    + (mu[:, t] - mu[:, t - 1] - step.grad_z).square().sum(-1)
                ).mean()
            )
            zhat = zhat + step.grad_z
            hats.append(zhat)
            traj = traj - self.log_px_given_z(x[:, t], zhat).mean()
        l_f = l_f / steps
        # Eq. 4.11: the encoder classifies the potential index from consecutive decoded pairs.
        decoded = self.decode(torch.stack([mu[:, 0], *hats], 1))
        feats = self.encode(self._frames(decoded))[0].view(b, steps + 1, -1)
        pairs = torch.cat([feats[:, :-1], feats[:, 1:]], -1)
        logits = self.index_head(pairs)
        l_k = nn.functional.cross_entropy(
            logits.reshape(-1, self.num_potentials), k.repeat_interleave(steps)
        )
        total = elbo + traj + l_z + l_f + l_u + l_k
        return {
            "loss": total,
            "elbo": elbo,
            "traj_recon": traj,
            "l_z": l_z,
            "l_f": l_f,
            "l_u": l_u,
            "l_k": l_k,
        }


class FFVAE(_PotentialFlowVAE):
    """Flow-factorized VAE (thesis 000, Sec. 4.6).

    ``loss`` terms: ``recon`` (``-sum_t log p(x_t|z_t)``), ``kl0`` (closed-form
    ``KL[q(z_0|x_0) || N(0, I)]``), ``kl_flow`` (one-sample Monte-Carlo estimate of the flow KL
    terms of Eq. 4.21 along the sampled path: with ``flow_kl="increment"`` the sum over steps
    of the change of ``log q_t - log p_t``, i.e. ``sum_t log|1 + Laplacian psi| - log|1 +
    Laplacian u^k|``; with ``"marginal"`` ``sum_t log q_t(z_t) - log p_t(z_t)``), ``hj``
    (Eq. 4.34) and, for weak supervision, ``kl_k`` (``KL[q(k|x) || p(k)]``, Eq. 4.23).
    ``-elbo = recon + kl0 + kl_flow (+ kl_k)``; ``loss = -elbo + hj_weight * hj``, all averaged
    over sequences.
    """

    Config = FFVAEConfig
    source = "thesis 000 Sec. 4.6, Eq. 4.16-4.34"

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        cfg = self.config
        self._build_potentials()
        self.forces = PotentialFamily(
            cfg.num_potentials,
            cfg.latent_dim,
            cfg.potential_hidden,
            cfg.time_dim,
            squared_negative=True,
        )
        if cfg.supervision == "weak":
            width = math.prod(cfg.input_shape) if cfg.k_encoder == "frames" else cfg.latent_dim
            self.k_features = nn.Sequential(nn.Linear(width, cfg.hidden), nn.ReLU())
            self.k_head = nn.Linear(cfg.hidden, cfg.num_potentials)

    # ----------------------------------------------------------------- q(k|x)
    def k_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(k|x)`` ``(B, K)`` of a sequence (weak mode, Eq. 4.22).

        Features are the mean over t of ``MLP(x_t - x_{t-1})`` (``k_encoder="frames"``) or of
        ``MLP(mu_t - mu_{t-1})`` with the encoder means (``"latent"``), for any length T.
        """
        b = x.shape[0]
        if self.config.k_encoder == "frames":
            steps = (x[:, 1:] - x[:, :-1]).reshape(b, x.shape[1] - 1, -1)
        else:
            mu = self.encode(self._frames(x))[0].view(b, x.shape[1], -1)
            steps = mu[:, 1:] - mu[:, :-1]
        return self.k_head(self.k_features(steps).mean(1))

    def flow_weights(self, x: torch.Tensor, k: torch.Tensor | None) -> torch.Tensor:
        """One-hot of the observed k (supervised); with weak supervision, of ``argmax
        q(k|x)`` or of ``argmax r(k|x)`` (option ``k_inference``)."""
        if self.config.supervision != "weak":
            return super().flow_weights(x, k)
        if self.config.k_inference == "responsibilities":
            with torch.enable_grad():  # the paths differentiate the potentials in z
                scores = self.k_responsibilities(x)
        else:
            scores = self.k_logits(x)
        return self.one_hot(scores.argmax(-1), x)

    @torch.no_grad()
    def k_responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """``r(k|x) (B, K)``: ``softmax_k sum_{t>=1} log p(x_t | z_t^k)`` with ``z^k`` the
        posterior mean of ``x_0`` moved by potential ``k`` alone (uniform ``p(k)``)."""
        b, steps = x.shape[0], x.shape[1] - 1
        num = self.num_potentials
        z0 = self.posterior_mean(x[:, 0]).repeat(num, 1)  # (K*B, d), k-major
        eye = torch.eye(num, dtype=z0.dtype, device=z0.device)
        weights = eye.repeat_interleave(b, dim=0)
        path = self.traverse(z0, weights, steps)[1:]  # (T, K*B, d)
        frames = x[:, 1:].transpose(0, 1).repeat(1, num, *([1] * (x.dim() - 2)))
        log_px = self.log_px_given_z(
            frames.reshape(-1, *self.input_shape), path.reshape(-1, z0.shape[-1])
        )
        return torch.softmax(log_px.view(steps, num, b).sum(0).transpose(0, 1), dim=-1)

    # ----------------------------------------------------------------- densities
    def _log_jacobian(self, grad_z: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log|1 + Laplacian u|`` (Eq. 4.25) or the exact ``log|det(I + Hessian u)|``."""
        cfg = self.config
        if cfg.density_update == "logdet":
            h = hessian(grad_z, z, create_graph=True)
            eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
            return torch.linalg.slogdet(eye + h).logabsdet
        if cfg.laplacian == "exact":
            lap = torch.diagonal(hessian(grad_z, z, create_graph=True), dim1=-2, dim2=-1).sum(-1)
        else:
            lap = hutchinson_laplacian(grad_z, z, probes=cfg.hutchinson_probes, create_graph=True)
        return torch.log(torch.abs(1.0 + lap))

    def _prior_log_jacobian(self, var: float, d: int) -> float:
        """Prior step with ``psi = -D log N(0, var I)``: ``Laplacian psi = D d / var``."""
        ratio = self.config.diffusion / var
        if self.config.density_update == "logdet":
            return d * math.log1p(ratio)
        return math.log1p(d * ratio)

    def posterior_flow(
        self,
        z0: torch.Tensor,
        logq0: torch.Tensor,
        logp0: torch.Tensor,
        weights: torch.Tensor,
        steps: int,
    ) -> dict[str, torch.Tensor]:
        """Evolve a posterior sample and both densities along the flow (Eq. 4.17, 4.25).

        Parameters
        ----------
        z0
            ``(B, d)`` sample of ``q(z_0|x_0)``.
        logq0, logp0
            ``(B,)`` ``log q(z_0|x_0)`` and ``log p(z_0)`` at ``z0``.
        weights
            ``(B, K)`` potential weights.
        steps
            T.

        Returns
        -------
        dict
            ``z (T+1, B, d)``, ``logq (T+1, B)``, ``logp (T+1, B)`` and ``hj (B,)``, the mean
            over t of the squared HJ residual (Eq. 4.34, first term).
        """
        d = z0.shape[-1]
        zs, logqs, logps = [z0], [logq0], [logp0]
        z, logq, logp, var = z0, logq0, logp0, 1.0
        hj = z0.new_zeros(z0.shape[0])
        for t in range(1, steps + 1):
            tt = z.new_full((z.shape[0],), float(t))
            step = potential_derivatives(self.potentials, z, tt, weights, laplacian=None)
            force = self.forces(z, tt, weights)
            hj = hj + hj_residual(step, force).square()
            logq = logq - self._log_jacobian(step.grad_z, z)
            logp = logp - self._prior_log_jacobian(var, d)
            var = self._diffused_variance(var)
            z = z + step.grad_z
            zs.append(z)
            logqs.append(logq)
            logps.append(logp)
        return {
            "z": torch.stack(zs),
            "logq": torch.stack(logqs),
            "logp": torch.stack(logps),
            "hj": hj / steps,
        }

    def _diffused_variance(self, var: float) -> float:
        """One prior step: ``N(0, var I)`` pushed by ``grad psi = D z / var`` (Eq. 4.17-4.18)."""
        return var * (1.0 + self.config.diffusion / var) ** 2

    def prior_variance(self, t: int) -> float:
        """Variance of the prior ``p_t(z) = N(0, var_t I)`` after ``t`` diffusion steps."""
        var = 1.0
        for _ in range(t):
            var = self._diffused_variance(var)
        return var

    def flow_proposal(
        self, x: torch.Tensor, k: torch.Tensor | None, samples: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples of the flowed posterior ``q_t`` of every frame, with exact log densities.

        ``z_0 ~ q(z_0|x_0)`` moved by ``z_t = z_{t-1} + grad u^k(z_{t-1}, t)`` (Eq. 4.19,
        4.24); ``log q_t`` is updated by the exact change of variables
        ``log|det(I + Hessian u^k)|`` (not the Laplacian approximation of Eq. 4.25, so that
        the density is exact and importance weights give a lower bound of ``log p(x_t)``), and
        ``log p_t(z_t)`` is the diffusion prior ``N(0, var_t I)`` of frame ``t`` (Eq. 4.18).
        This is the proposal of the paper's transformed-data likelihood ``log p(x_t)``
        (seed 004, Tables 1-2), here with ``K`` samples. Cost: ``d`` Hessian-vector products
        per step and sample (small latents).

        Parameters
        ----------
        x
            ``(B, T+1, *input_shape)`` sequences.
        k
            ``(B,)`` transformation labels (ignored with weak supervision, which uses
            ``argmax q(k|x)``).
        samples
            ``n``, samples per sequence.

        Returns
        -------
        tuple of torch.Tensor
            ``z (n, T+1, B, d)``, ``log q_t(z_t) (n, T+1, B)`` and ``log p_t(z_t) (n, T+1, B)``.
        """
        b, steps = x.shape[0], x.shape[1] - 1
        d = self.latent_dim
        weights = self.flow_weights(x, k).detach()
        q0 = self.posterior(x[:, 0])
        z0 = q0.sample((samples,))  # (n, B, d)
        log_q = q0.log_prob(z0).reshape(-1)
        w = weights.expand(samples, -1, -1).reshape(samples * b, -1)
        z = z0.reshape(samples * b, d)
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        zs, log_qs, log_ps = [z], [log_q], [log_normal_std(z)]
        for t in range(1, steps + 1):
            z = z.detach().requires_grad_(True)
            with torch.enable_grad():
                step = potential_derivatives(
                    self.potentials, z, z.new_full((z.shape[0],), float(t)), w, laplacian=None
                )
                h = hessian(step.grad_z, z, create_graph=False)
            log_q = log_q - torch.linalg.slogdet(eye + h.detach()).logabsdet
            z = (z + step.grad_z).detach()
            zs.append(z)
            log_qs.append(log_q)
            log_ps.append(gaussian_log_density(z, self.prior_variance(t)))
        shape = (steps + 1, samples, b)
        z_all = torch.stack(zs).view(*shape, d).transpose(0, 1)
        return (
            z_all,
            torch.stack(log_qs).view(shape).transpose(0, 1),
            torch.stack(log_ps).view(shape).transpose(0, 1),
        )

    # ----------------------------------------------------------------- loss
    def loss(self, batch: Any) -> dict[str, torch.Tensor]:
        x, k = self._sequence(batch)
        b, steps = x.shape[0], x.shape[1] - 1
        out: dict[str, torch.Tensor] = {}
        if self.config.supervision == "weak":
            logits = self.k_logits(x)
            weights = nn.functional.gumbel_softmax(
                logits, tau=self.config.gumbel_tau, hard=self.config.gumbel_hard
            )
            out["kl_k"] = kl_categorical_uniform(logits).mean()
            if self.config.k_amortisation > 0:
                r = self.k_responsibilities(x)
                out["k_match"] = -(r * torch.log_softmax(logits, -1)).sum(-1).mean()
        else:
            weights = self.one_hot(_labels(k, b, self.num_potentials, "k").to(x.device), x)
        mu, logvar = self.encode(x[:, 0])
        z0 = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        flow = self.posterior_flow(
            z0, log_normal_diag(z0, mu, logvar), log_normal_std(z0), weights, steps
        )
        recon = -self.log_px_given_z(x.transpose(0, 1), flow["z"]).sum(0).mean()
        kl0 = kl_diag_normal_std(mu, logvar).mean()
        ratio = flow["logq"] - flow["logp"]  # (T+1, B) log q_t - log p_t along the path
        if self.config.flow_kl == "increment":
            kl_flow = (ratio[-1] - ratio[0]).mean()  # sum_t of the per-step changes
        elif self.config.flow_kl == "prior":
            log_p = torch.stack(
                [
                    gaussian_log_density(flow["z"][t], self.prior_variance(t))
                    for t in range(1, steps + 1)
                ]
            )
            kl_flow = (flow["logq"][1:] - log_p).sum(0).mean()
        else:
            kl_flow = ratio[1:].sum(0).mean()
        ic = (
            potential_derivatives(self.potentials, z0, z0.new_zeros(b), weights, laplacian=None)
            .grad_z.square()
            .sum(-1)
        )
        hj = (flow["hj"] + ic).mean()
        neg_elbo = recon + kl0 + kl_flow + out.get("kl_k", 0.0)
        out.update(
            {
                "loss": neg_elbo
                + self.config.hj_weight * hj
                + self.config.k_amortisation * out.get("k_match", 0.0),
                "recon": recon,
                "kl0": kl0,
                "kl_flow": kl_flow,
                "hj": hj,
            }
        )
        return out
