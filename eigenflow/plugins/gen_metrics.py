"""Metrics for generative models: ``equivariance-error`` (thesis 000, Eq. 4.15),
``log-likelihood`` (importance-weighted estimate), ``dto`` (seed 002, Eq. 3.25),
``disentanglement-score`` (seed 002, Eq. 3.32-3.37) and ``mig`` (seed 002, Eq. 2.8).

Model protocol (what the model-based metrics call; eigenflow's VAE family provides it):

- ``posterior(x) -> torch.distributions.Distribution`` with batch shape ``(B,)`` and event
  shape ``(d,)`` (``sample``, ``log_prob``); or else ``encode(x) -> (mu, logvar)`` for a
  diagonal Gaussian ``q(z|x)``;
- ``log_px_given_z(x, z) -> (..., B)``: ``log p(x|z)`` summed over data dimensions, for
  ``x (B, *shape)`` and ``z (..., B, d)`` whose leading dimensions broadcast;
- optional ``log_prior(z) -> (...)``; the default prior is ``N(0, I)``;
- ``posterior_mean(x) -> (B, d)`` (else the first output of ``encode``);
- ``traverse(z0, weights, steps) -> (steps + 1, B, d)``, ``flow_weights(x, k)`` and
  ``decode(z) -> (..., *shape)`` for latent paths, or ``predict_sequence(x, k)`` returning the
  decoded path ``(B, T + 1, *shape)`` directly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from ..core.checks import check_tensor
from ..core.component import Metric
from ..core.config import boolean, config, floating, integer, one_of, option
from ..core.errors import InputError, NotSupportedError
from ..registry import hookimpl

__all__ = [
    "MIG",
    "DisentanglementScore",
    "DtO",
    "EquivarianceError",
    "LogLikelihood",
    "closest_signed_permutation",
    "decoder_jacobians",
    "discrete_mutual_information",
    "distance_to_orthogonality",
    "flow_importance_weighted_log_likelihood",
    "flow_sequence_log_likelihood",
    "image_equivariance_error",
    "importance_weighted_log_likelihood",
    "knn_predict_1d",
    "latent_equivariance_error",
    "mig_score",
]


def _floats(values: dict[str, Any]) -> dict[str, float]:
    """One host transfer for a dict of 0-d tensors (metrics report Python floats)."""
    keys = list(values)
    numbers = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64).cpu() for k in keys]
    ).tolist()
    return dict(zip(keys, numbers))


# =========================================================================== equivariance


def image_equivariance_error(
    x: torch.Tensor, predicted: torch.Tensor, *, include_start: bool = False
) -> torch.Tensor:
    """Per-sequence ``sum_t |x_t - x^_t|`` (thesis 000, Eq. 4.15).

    Parameters
    ----------
    x, predicted
        ``(B, T+1, *shape)`` true sequences and the decoded latent paths.
    include_start
        Also count frame 0 (the reconstruction of the start); Eq. 4.15 sums ``t = 1..T``.

    Returns
    -------
    torch.Tensor
        ``(B,)`` absolute errors summed over frames and elements.
    """
    if x.shape != predicted.shape:
        raise InputError(
            f"predicted: expected the shape of x {list(x.shape)}, got {list(predicted.shape)}"
        )
    if x.dim() < 3:
        raise InputError(f"x: expected sequences (B, T+1, *shape), got {list(x.shape)}")
    start = 0 if include_start else 1
    return (x[:, start:] - predicted[:, start:]).abs().flatten(1).sum(-1)


def latent_equivariance_error(
    z_true: torch.Tensor, z_path: torch.Tensor, *, include_start: bool = False
) -> torch.Tensor:
    """Per-sequence ``sum_t |Encode(x_t) - z_t|`` (the latent variant, thesis 000 Sec. 4.6.3).

    ``z_true`` and ``z_path`` are ``(B, T+1, d)``; returns ``(B,)``.
    """
    return image_equivariance_error(z_true, z_path, include_start=include_start)


def _posterior_mean(model: Any, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "posterior_mean"):
        return model.posterior_mean(x)
    out = model.encode(x)
    return out[0] if isinstance(out, tuple | list) else out


def _latent_path(model: Any, x: torch.Tensor, k: torch.Tensor | None, zero: bool) -> torch.Tensor:
    """``(B, T+1, d)`` path from the posterior mean of ``x[:, 0]``."""
    z0 = _posterior_mean(model, x[:, 0])
    steps = x.shape[1] - 1
    if zero:
        return z0.unsqueeze(1).expand(-1, steps + 1, -1)
    weights = model.flow_weights(x, k) if hasattr(model, "flow_weights") else None
    return model.traverse(z0, weights, steps).transpose(0, 1)


@config
class EquivarianceErrorConfig:
    """Options of ``equivariance-error`` (thesis 000, Eq. 4.15 and Sec. 4.6.3)."""

    variant: str = option(
        "image",
        help="'image': sum_t |x_t - Decode(z_t)| (Eq. 4.15); 'latent': sum_t |Encode(x_t) - z_t|.",
        validator=one_of(("image", "latent")),
    )
    latent_operator: str = option(
        "model",
        help="'model': the model's latent flow (traverse / predict_sequence); "
        "'zero': z_t = z_0 (the paper's vanilla-VAE baseline).",
        validator=one_of(("model", "zero")),
    )
    include_start: bool = option(
        False, help="Also count frame 0 (Eq. 4.15 sums t = 1..T).", validator=boolean()
    )


class EquivarianceError(Metric):
    """Equivariance error of a latent flow (thesis 000, Eq. 4.15).

    ``E_k = sum_{t=1}^{T} |x_t - Decode(z_t)|`` with ``z_0`` the posterior mean of ``x_0`` and
    ``z_t`` the model's latent path; absolute errors are summed over frames and elements and
    averaged over sequences. The ``latent`` variant measures ``sum_t |Encode(x_t) - z_t|``.

    Call as ``metric(x, predicted)`` with ``(B, T+1, *shape)`` tensors (image variant only),
    or ``metric(x, model=model, k=k)`` (see the module docstring for the model protocol),
    optionally with ``z_path (B, T+1, d)`` to give the path explicitly. Returns
    ``equivariance_error`` (mean over sequences), ``std``, ``count`` and, with labels ``k``,
    ``k<j>`` the mean over sequences of transformation ``j``.
    """

    Config: ClassVar[type] = EquivarianceErrorConfig
    source = "thesis 000 Eq. 4.15, Sec. 4.6.3; seed 004 Tables 1-2"

    @torch.no_grad()
    def per_sequence(
        self,
        x: torch.Tensor,
        predicted: torch.Tensor | None = None,
        *,
        model: Any = None,
        k: torch.Tensor | None = None,
        z_path: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The error of each sequence, ``(B,)``."""
        cfg = self.config
        x = check_tensor(x, "x", min_dims=3)
        zero = cfg.latent_operator == "zero"
        if cfg.variant == "image":
            if predicted is None:
                if model is None:
                    raise InputError("equivariance-error: give `predicted` frames or a `model`")
                if z_path is not None or zero or not hasattr(model, "predict_sequence"):
                    path = z_path if z_path is not None else _latent_path(model, x, k, zero)
                    predicted = model.decode(path)
                else:
                    predicted = model.predict_sequence(x, k)
            return image_equivariance_error(x, predicted, include_start=cfg.include_start)
        if model is None:
            raise InputError("equivariance-error: the latent variant needs a `model` to encode")
        frames = x.reshape(-1, *x.shape[2:])
        z_true = _posterior_mean(model, frames).reshape(x.shape[0], x.shape[1], -1)
        path = z_path if z_path is not None else _latent_path(model, x, k, zero)
        return latent_equivariance_error(z_true, path, include_start=cfg.include_start)

    def compute(
        self,
        x: torch.Tensor,
        predicted: torch.Tensor | None = None,
        *,
        model: Any = None,
        k: torch.Tensor | None = None,
        z_path: torch.Tensor | None = None,
    ) -> dict[str, float]:
        errors = self.per_sequence(x, predicted, model=model, k=k, z_path=z_path)
        values: dict[str, Any] = {
            "equivariance_error": errors.mean(),
            "std": errors.std() if len(errors) > 1 else errors.new_zeros(()),
            "count": torch.tensor(float(len(errors))),
        }
        if k is not None:
            k = torch.as_tensor(k, device=errors.device).reshape(-1).long()
            counts = torch.bincount(k)
            sums = torch.bincount(k, weights=errors.to(torch.float64))
            for j in range(len(counts)):
                values[f"k{j}"] = sums[j] / counts[j].clamp_min(1)
        out = _floats(values)
        out["count"] = int(out["count"])
        return out

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(4, 3, 1, 5, 5, generator=g)
        return (x, x + 0.1), {}


# =========================================================================== log-likelihood


def _posterior(model: Any, x: torch.Tensor) -> torch.distributions.Distribution:
    if hasattr(model, "posterior"):
        return model.posterior(x)
    if not hasattr(model, "encode"):
        raise InputError("log-likelihood: the model needs `posterior(x)` or `encode(x)`")
    mu, logvar = model.encode(x)[:2]
    return torch.distributions.Independent(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), 1
    )


def _log_prior(model: Any, z: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "log_prior"):
        return model.log_prior(z)
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))


@torch.no_grad()
def importance_weighted_log_likelihood(
    model: Any, x: torch.Tensor, samples: int, chunk: int
) -> torch.Tensor:
    """``log (1/K) sum_i p(x|z_i) p(z_i) / q(z_i|x)`` with ``z_i ~ q(z|x)`` (Burda et al.).

    A lower bound of ``log p(x)`` that tightens as ``K = samples`` grows (consistent as
    ``K -> infinity``).

    Parameters
    ----------
    model
        Provides ``posterior`` (or ``encode``), ``log_px_given_z`` and optionally
        ``log_prior`` (module docstring).
    x
        ``(B, *shape)`` data.
    samples, chunk
        ``K`` and how many samples are evaluated at once.

    Returns
    -------
    torch.Tensor
        ``(B,)`` estimates of ``log p(x)``.
    """
    q = _posterior(model, x)
    parts = []
    for start in range(0, samples, chunk):
        z = q.sample((min(chunk, samples - start),))  # (n, B, d)
        parts.append(model.log_px_given_z(x, z) + _log_prior(model, z) - q.log_prob(z))
    return torch.logsumexp(torch.cat(parts), dim=0) - math.log(samples)


def flow_importance_weighted_log_likelihood(
    model: Any, x: torch.Tensor, k: torch.Tensor | None, samples: int, chunk: int
) -> torch.Tensor:
    """``log p(x_t)`` of every frame of sequences, importance-weighted with the model's
    flowed posterior ``q_t`` as the proposal (seed 004, Tables 1-2: ``log p(x_t)``).

    ``log (1/K) sum_i p(x_t|z_t^i) p_t(z_t^i) / q_t(z_t^i)`` where ``z_t^i`` is the sample
    ``z_0^i ~ q(z_0|x_0)`` moved along the latent flow, from ``model.flow_proposal(x, k, n)
    -> (z (n, T+1, B, d), log q (n, T+1, B), log p (n, T+1, B))``. With exact densities this
    is a lower bound of ``log p(x_t)`` under the model, like the per-frame estimate.

    Returns
    -------
    torch.Tensor
        ``(B, T+1)`` estimates.
    """
    parts = []
    for start in range(0, samples, chunk):
        z, log_q, log_p = model.flow_proposal(x, k, min(chunk, samples - start))
        log_px = torch.stack(
            [model.log_px_given_z(x[:, t], z[:, t]) for t in range(x.shape[1])], dim=1
        )
        parts.append(log_px + log_p - log_q)
    return (torch.logsumexp(torch.cat(parts), dim=0) - math.log(samples)).transpose(0, 1)


@torch.no_grad()
def flow_sequence_log_likelihood(
    model: Any, x: torch.Tensor, k: torch.Tensor | None, samples: int, chunk: int
) -> torch.Tensor:
    """``log p(x_0, ..., x_T)`` of whole sequences under a latent-flow model's generative
    process, importance-weighted with ``K = samples`` draws of ``q(z_0|x_0)``.

    The sequence model is the one the flow model generates from (thesis 000, Eq. 4.16-4.19):
    ``k ~ p(k)`` uniform, ``z_0 ~ N(0, I)``, ``z_t = z_{t-1} + grad u^k(z_{t-1}, t)``,
    ``x_t ~ p(x_t|z_t)``. Given ``k`` the path is a function of ``z_0``, so
    ``p(x_0..T|k) = E_{q(z_0|x_0)}[N(z_0) prod_t p(x_t|z_t) / q(z_0|x_0)]`` and the estimate
    ``log (1/K) sum_i N(z_0^i) prod_t p(x_t|z_t^i) / q(z_0^i|x_0)`` is a lower bound of it
    (Burda et al.). With ``k=None`` the label is marginalised exactly over the K potentials,
    ``log p(x_0..T) = log (1/K) sum_k p(x_0..T|k)``, each term estimated with its own
    ``samples`` draws; with ``k`` given the result is ``log p(x_0..T|k)``.

    Parameters
    ----------
    model
        Provides ``posterior``, ``traverse``, ``num_potentials`` and ``log_px_given_z``.
    x
        ``(B, T+1, *shape)`` sequences.
    k
        ``(B,)`` labels, or ``None`` to marginalise over them.
    samples, chunk
        ``K`` and how many samples are evaluated at once.

    Returns
    -------
    torch.Tensor
        ``(B,)`` estimates, in nats per sequence.
    """
    b, steps = x.shape[0], x.shape[1] - 1
    num = model.num_potentials
    labels = range(num) if k is None else [None]
    q = _posterior(model, x[:, 0])
    per_label = []
    for label in labels:
        if label is None:
            weights = torch.nn.functional.one_hot(k.long(), num).to(x.dtype)
        else:
            weights = x.new_zeros(b, num)
            weights[:, label] = 1.0
        parts = []
        for start in range(0, samples, chunk):
            n = min(chunk, samples - start)
            z0 = q.sample((n,))  # (n, B, d)
            with torch.enable_grad():  # the path differentiates the potentials in z
                path = model.traverse(z0.reshape(n * b, -1), weights.repeat(n, 1), steps)
            path = path.detach().view(steps + 1, n, b, -1)
            log_px = sum(model.log_px_given_z(x[:, t], path[t]) for t in range(steps + 1))
            parts.append(log_px + _log_prior(model, z0) - q.log_prob(z0))
        per_label.append(torch.logsumexp(torch.cat(parts), dim=0) - math.log(samples))
    return torch.logsumexp(torch.stack(per_label), dim=0) - math.log(len(per_label))


@contextlib.contextmanager
def _seeded_eval(model: Any, x: torch.Tensor, seed: int) -> Iterator[None]:
    """Eval mode and a seeded, forked RNG (on ``x``'s device) for the body; restored after."""
    training = getattr(model, "training", None)
    if training is not None:
        model.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        if training is not None:
            model.train(training)


@config
class LogLikelihoodConfig:
    """Options of ``log-likelihood`` (importance-weighted estimate, thesis 000 Table 4.10 and
    seed 004 Tables 1-2 report ``log p(x)``)."""

    samples: int = option(
        1000, help="Importance samples K per data point.", validator=integer(minimum=1)
    )
    chunk: int = option(
        100, help="Samples evaluated together (memory vs speed).", validator=integer(minimum=1)
    )
    batch_size: int = option(256, help="Data points per model call.", validator=integer(minimum=1))
    seed: int = option(0, help="Seed of the importance samples.", validator=integer(minimum=0))


class LogLikelihood(Metric):
    """Importance-weighted estimate of ``log p(x)`` with ``K`` samples from ``q(z|x)``.

    ``metric(model, x)`` with ``x (N, *shape)`` (flatten sequences to frames first); the
    model follows the protocol in the module docstring. Returns ``log_likelihood`` (mean over
    the data), ``stderr`` (standard error of that mean over data points) and ``count``. The
    model is put in eval mode for the call and restored after; sampling is seeded.
    """

    Config: ClassVar[type] = LogLikelihoodConfig
    source = "Burda et al. 2016 (IWAE bound); thesis 000 Table 4.10; seed 004 Tables 1-2"

    def per_item(self, model: Any, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` estimates of ``log p(x_n)``."""
        cfg = self.config
        x = check_tensor(
            x, "x", dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64), min_dims=1
        )
        with _seeded_eval(model, x, cfg.seed):
            parts = [
                importance_weighted_log_likelihood(model, xb, cfg.samples, cfg.chunk)
                for xb in x.split(cfg.batch_size)
            ]
        return torch.cat(parts)

    def per_frame(self, model: Any, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T+1)`` estimates of ``log p(x_t)`` for sequences ``x (B, T+1, *shape)``.

        Models with a latent flow (``flow_proposal``, e.g. ``ffvae``) use their flowed
        posterior as the proposal (:func:`flow_importance_weighted_log_likelihood`); other
        models use ``q(z|x_t)`` of each frame (:meth:`per_item`).
        """
        x = check_tensor(
            x, "x", dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64), min_dims=3
        )
        if not hasattr(model, "flow_proposal"):
            return self.per_item(model, x.reshape(-1, *x.shape[2:])).view(x.shape[0], x.shape[1])
        return self._over_sequences(flow_importance_weighted_log_likelihood, model, x, k)

    def per_sequence(
        self, model: Any, x: torch.Tensor, k: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B,)`` estimates of ``log p(x_0, ..., x_T)`` for sequences ``x (B, T+1, *shape)``.

        Models with a latent flow (``traverse`` and ``num_potentials > 0``, e.g. ``ffvae``,
        ``pde-vae``) use their sequence model (:func:`flow_sequence_log_likelihood`; ``k=None``
        marginalises the transformation). Models without one generate frames independently,
        so their sequence log-likelihood is ``sum_t log p(x_t)`` (:meth:`per_item`).
        """
        x = check_tensor(
            x, "x", dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64), min_dims=3
        )
        if not getattr(model, "num_potentials", 0):
            return self.per_item(model, x.reshape(-1, *x.shape[2:])).view(x.shape[0], -1).sum(1)
        return self._over_sequences(flow_sequence_log_likelihood, model, x, k)

    def _over_sequences(
        self, estimate: Callable, model: Any, x: torch.Tensor, k: torch.Tensor | None
    ) -> torch.Tensor:
        """``estimate(model, x, k, samples, chunk)`` over batches of whole sequences (about
        ``batch_size`` frames each), seeded and in eval mode, concatenated."""
        cfg = self.config
        size = max(cfg.batch_size // x.shape[1], 1)
        with _seeded_eval(model, x, cfg.seed):
            parts = [
                estimate(model, xb, None if k is None else kb, cfg.samples, cfg.chunk)
                for xb, kb in zip(x.split(size), (x if k is None else k).split(size))
            ]
        return torch.cat(parts)

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """A small untrained ``vae`` (inputs of size 5, 2 latents) and 4 data points."""
        from ..registry.registry import get_registries

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = get_registries()["model"].create("vae", input_shape=[5], latent_dim=2, hidden=8)
            x = torch.rand(4, 5)
        return (model, x), {}

    def compute(self, model: Any, x: torch.Tensor) -> dict[str, float]:
        ll = self.per_item(model, x).to(torch.float64)
        stderr = ll.std() / math.sqrt(len(ll)) if len(ll) > 1 else ll.new_zeros(())
        out = _floats({"log_likelihood": ll.mean(), "stderr": stderr})
        out["count"] = len(ll)
        return out


# =========================================================================== DtO


def closest_signed_permutation(V: torch.Tensor) -> torch.Tensor:
    """The signed permutation ``P`` minimising ``sum_ij |V_ij - P_ij|`` (seed 002 Sec. 3.2.6).

    Choosing ``P_ij = s`` (``s = +-1``) instead of 0 changes the L1 distance by
    ``|V_ij - s| - |V_ij|``, smallest for ``s = sign(V_ij)``: ``|1 - |V_ij|| - |V_ij|``. So the
    mixed-integer program of Eq. 3.26-3.29 is exactly the linear assignment problem with that
    cost, solved by ``scipy.optimize.linear_sum_assignment`` (one call per matrix, on CPU).

    Parameters
    ----------
    V
        ``(..., d, d)`` matrices.

    Returns
    -------
    torch.Tensor
        ``(..., d, d)`` signed permutation matrices, dtype and device of ``V``.
    """
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:  # pragma: no cover - scipy is installed with the test extra
        raise NotSupportedError(
            "metric 'dto' needs the package scipy (`pip install scipy`) for the assignment problem"
        ) from exc
    V = check_tensor(V, "V", min_dims=2)
    if V.shape[-1] != V.shape[-2]:
        raise InputError(f"V: expected square matrices (..., d, d), got {list(V.shape)}")
    A = V.detach().abs()
    cost = ((1.0 - A).abs() - A).reshape(-1, *V.shape[-2:]).cpu().double().numpy()
    cols = torch.empty(cost.shape[0], V.shape[-1], dtype=torch.long)
    for b, c in enumerate(cost):  # scipy solves one assignment problem at a time
        cols[b] = torch.from_numpy(linear_sum_assignment(c)[1])  # column of each row
    one_hot = torch.nn.functional.one_hot(cols, V.shape[-1])  # (B, d, d): [row, column]
    chosen = one_hot.reshape(V.shape).to(device=V.device, dtype=torch.bool)
    sign = torch.where(V.detach() < 0, -1.0, 1.0).to(V.dtype)
    return torch.where(chosen, sign, torch.zeros_like(sign))


def distance_to_orthogonality(V: torch.Tensor) -> torch.Tensor:
    """``||V - P(V)||_F`` per matrix ``(..., d, d) -> (...)`` (seed 002, Eq. 3.25)."""
    return torch.linalg.matrix_norm(V - closest_signed_permutation(V))


def decoder_jacobians(
    decoder: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor
) -> torch.Tensor:
    """Jacobians of ``decoder`` at each row of ``z (N, d)``: ``(N, D, d)``, ``D`` the
    flattened output size. Forward mode, one JVP per latent coordinate; assumes the decoder
    treats rows independently (no batch statistics)."""
    z = check_tensor(z, "z", min_dims=2)
    columns = []
    for j in range(z.shape[-1]):
        tangent = torch.zeros_like(z)
        tangent[..., j] = 1.0
        _, jvp = torch.func.jvp(decoder, (z,), (tangent,))
        columns.append(jvp.reshape(z.shape[0], -1))
    return torch.stack(columns, dim=-1)


@config
class DtOConfig:
    """Options of ``dto`` (seed 002, Eq. 3.25)."""


class DtO(Metric):
    """Distance to Orthogonality (seed 002, Sec. 3.2.6, Eq. 3.25).

    ``DtO = (1/N) sum_i ||V_i - P(V_i)||_F`` where ``J_i = U_i S_i V_i^T`` is the SVD of the
    decoder Jacobian at sample ``i`` and ``P(V_i)`` the signed permutation closest to ``V_i``
    in the L1 sense, found exactly as an assignment problem (needs scipy at run time).

    Call ``metric(jacobians)`` with ``(N, D, d)`` Jacobians (``D >= d``), or
    ``metric(decoder=f, z=z)`` to compute them by forward mode at ``z (N, d)``. Returns
    ``dto`` (the mean) and ``std`` over samples.
    """

    Config: ClassVar[type] = DtOConfig
    source = "seed 002 Sec. 3.2.6, Eq. 3.25-3.29"

    def per_sample(
        self,
        jacobians: torch.Tensor | None = None,
        *,
        decoder: Callable | None = None,
        z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N,)`` distances ``||V_i - P(V_i)||_F``."""
        if jacobians is None:
            if decoder is None or z is None:
                raise InputError("dto: give `jacobians` or both `decoder` and `z`")
            jacobians = decoder_jacobians(decoder, z)
        J = check_tensor(jacobians, "jacobians", min_dims=3)
        if J.shape[-2] < J.shape[-1]:
            raise InputError(f"jacobians: expected (N, D, d) with D >= d, got {list(J.shape)}")
        V = torch.linalg.svd(J.detach(), full_matrices=False)[2].mT
        return distance_to_orthogonality(V)

    def compute(
        self,
        jacobians: torch.Tensor | None = None,
        *,
        decoder: Callable | None = None,
        z: torch.Tensor | None = None,
    ) -> dict[str, float]:
        d = self.per_sample(jacobians, decoder=decoder, z=z)
        return _floats({"dto": d.mean(), "std": d.std() if len(d) > 1 else d.new_zeros(())})

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(0)
        return (torch.randn(4, 6, 3, dtype=torch.float64, generator=g),), {}


# =========================================================================== disentanglement


def _check_codes(z: Any, factors: Any) -> tuple[torch.Tensor, torch.Tensor]:
    z = check_tensor(z, "z", min_dims=2)
    if not isinstance(factors, torch.Tensor):
        raise InputError(f"factors: expected a torch.Tensor, got {type(factors).__name__}")
    if z.dim() != 2 or factors.dim() != 2 or z.shape[0] != factors.shape[0]:
        raise InputError(
            f"z, factors: expected (N, d) and (N, n_factors), got "
            f"{list(z.shape)} and {list(factors.shape)}"
        )
    if z.shape[1] < 2:
        raise InputError(f"z: needs at least 2 latent coordinates, got {z.shape[1]}")
    return z, factors


def _discrete_mask(factors: torch.Tensor, discrete: Sequence[bool] | None) -> list[bool]:
    if discrete is None:
        is_int = not (factors.is_floating_point() or factors.is_complex())
        return [is_int] * factors.shape[1]
    if len(discrete) != factors.shape[1]:
        raise InputError(f"discrete: expected {factors.shape[1]} flags, got {len(discrete)}")
    return [bool(v) for v in discrete]


def knn_predict_1d(
    train_x: torch.Tensor, train_y: torch.Tensor, query: torch.Tensor, k: int, *, classify: bool
) -> torch.Tensor:
    """k-nearest-neighbour prediction from one input coordinate, batched over coordinates.

    The inputs are scalars, so the ``k`` nearest training points of a query lie among the
    ``2k`` sorted neighbours around its insertion point: one sort and one ``searchsorted``
    instead of all pairwise distances.

    Parameters
    ----------
    train_x
        ``(d, n)`` training inputs (one row per latent coordinate).
    train_y
        ``(n,)`` targets (class indices when ``classify``).
    query
        ``(d, m)`` query inputs.
    k
        Neighbours (``k <= n``).
    classify
        Majority vote (smallest class on ties) instead of the mean.

    Returns
    -------
    torch.Tensor
        ``(d, m)`` predictions.
    """
    n = train_x.shape[-1]
    k = min(k, n)
    width = min(2 * k, n)
    sorted_x, order = torch.sort(train_x, dim=-1)
    pos = torch.searchsorted(sorted_x, query.contiguous())
    start = (pos - k).clamp(0, n - width)
    window = start.unsqueeze(-1) + torch.arange(width, device=train_x.device)  # (d, m, w)
    cand_x = torch.gather(sorted_x.unsqueeze(1).expand(-1, query.shape[1], -1), 2, window)
    nearest = (cand_x - query.unsqueeze(-1)).abs().topk(k, dim=-1, largest=False).indices
    rows = torch.gather(window, 2, nearest)
    idx = torch.gather(order.unsqueeze(1).expand(-1, query.shape[1], -1), 2, rows)
    neighbours = train_y[idx]  # (d, m, k)
    if classify:
        return torch.mode(neighbours, dim=-1).values
    return neighbours.to(torch.float64).mean(-1)


@config
class DisentanglementScoreConfig:
    """Options of ``disentanglement-score`` (seed 002, Eq. 3.32-3.37: k-NN with k = 5,
    trained on 80 % of the data and evaluated on the remaining 20 %)."""

    neighbours: int = option(
        5, help="k of the k-nearest-neighbour predictors.", validator=integer(minimum=1)
    )
    train_fraction: float = option(
        0.8,
        help="Fraction of the samples the predictors are fit on; the rest evaluates them.",
        validator=floating(0.0, 1.0, min_open=True, max_open=True),
    )
    seed: int = option(0, help="Seed of the train/evaluation split.", validator=integer(minimum=0))


class DisentanglementScore(Metric):
    """Disentanglement Score with k-NN predictors (seed 002, Eq. 3.32-3.37).

    For factor ``w_i`` and latent ``z_j``, ``A_ij`` is how well a k-NN predictor fit on
    ``z_j`` predicts ``w_i`` beyond the best constant predictor; ``DS = (1/n_w) sum_i
    (A_i,m(i) - A_i,s(i)) / M_i`` with ``m(i)``, ``s(i)`` the best and second best latent.
    Regression (continuous factors, Eq. 3.37): ``A_ij = std(w_i) - rmse_ij``, ``M_i =
    std(w_i)``. Classification (discrete factors): ``A_ij = acc_ij - acc_const`` and ``M_i =
    1 - acc_const`` with ``acc_const`` the majority-class accuracy, the analogue of the
    regression case that keeps each term in [0, 1] as the thesis requires (taking Eq. 3.37's
    ``A = acc``, ``M = acc_const`` literally gives terms above 1). ``A`` is clipped to
    ``[0, M_i]``: a predictor worse than the constant one carries no information.

    ``metric(z, factors, discrete=None)``: ``z (N, d)`` codes, ``factors (N, n_w)``;
    ``discrete`` flags per factor (default: integer factor tensors are discrete). Returns
    ``disentanglement_score`` and ``factor<i>`` per factor.
    """

    Config: ClassVar[type] = DisentanglementScoreConfig
    source = "seed 002 Sec. 3.3.1, Eq. 3.32-3.37"

    @torch.no_grad()
    def per_factor(
        self, z: torch.Tensor, factors: torch.Tensor, discrete: Sequence[bool] | None = None
    ) -> torch.Tensor:
        """``(n_w,)`` terms ``(A_i,m(i) - A_i,s(i)) / M_i``."""
        cfg = self.config
        z, factors = _check_codes(z, factors)
        flags = _discrete_mask(factors, discrete)
        n = z.shape[0]
        g = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(n, generator=g).to(z.device)
        n_train = round(cfg.train_fraction * n)
        if n_train < 1 or n - n_train < 2:
            raise InputError(
                f"z: {n} samples are too few to split {cfg.train_fraction} / "
                f"{1 - cfg.train_fraction:.2g}"
            )
        tr, te = perm[:n_train], perm[n_train:]
        zt = z.to(torch.float64).T
        terms = []
        for i, is_discrete in enumerate(flags):
            w = factors[:, i]
            if is_discrete:
                labels = torch.unique(w, return_inverse=True)[1]
                pred = knn_predict_1d(
                    zt[:, tr], labels[tr], zt[:, te], cfg.neighbours, classify=True
                )
                acc = (pred == labels[te]).to(torch.float64).mean(-1)  # (d,)
                majority = torch.bincount(labels[tr]).argmax()
                acc_const = (labels[te] == majority).to(torch.float64).mean()
                A, M = acc - acc_const, 1.0 - acc_const
            else:
                w = w.to(torch.float64)
                pred = knn_predict_1d(zt[:, tr], w[tr], zt[:, te], cfg.neighbours, classify=False)
                rmse = (pred - w[te]).square().mean(-1).sqrt()
                M = w[te].std(correction=0)
                A = M - rmse
            A = torch.minimum(A.clamp_min(0.0), M)
            top2 = A.topk(2).values
            terms.append(torch.where(M > 0, (top2[0] - top2[1]) / M, torch.nan))
        return torch.stack(terms)

    def compute(
        self, z: torch.Tensor, factors: torch.Tensor, discrete: Sequence[bool] | None = None
    ) -> dict[str, float]:
        terms = self.per_factor(z, factors, discrete)
        values = {"disentanglement_score": terms.nanmean()}
        values.update({f"factor{i}": t for i, t in enumerate(terms)})
        return _floats(values)

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(0)
        w = torch.rand(200, 2, generator=g)
        return (torch.cat([w, torch.randn(200, 1, generator=g)], 1), w), {}


def _bin_indices(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width histogram bins of each column of ``values (N, c)``: ``(N, c)`` in
    ``0..bins-1``."""
    lo, hi = values.amin(0), values.amax(0)
    scaled = (values - lo) / (hi - lo).clamp_min(torch.finfo(values.dtype).tiny)
    return (scaled * bins).long().clamp(0, bins - 1)


def discrete_mutual_information(a: torch.Tensor, b: torch.Tensor, na: int, nb: int) -> torch.Tensor:
    """Plug-in mutual information (nats) between discrete codes.

    ``a (N, p)`` with values in ``0..na-1`` and ``b (N,)`` in ``0..nb-1``; returns ``(p,)``
    ``I(a_j; b)`` from the joint histogram.
    """
    N = a.shape[0]
    joint = (
        torch.einsum(
            "npa,nb->pab",
            torch.nn.functional.one_hot(a, na).to(torch.float64),
            torch.nn.functional.one_hot(b, nb).to(torch.float64),
        )
        / N
    )
    pa = joint.sum(-1, keepdim=True)
    pb = joint.sum(-2, keepdim=True)
    ratio = joint / (pa * pb).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(joint > 0, joint * ratio.clamp_min(1e-300).log(), 0.0).sum((-2, -1))


def mig_score(
    z: torch.Tensor, factors: torch.Tensor, discrete: Sequence[bool] | None, bins: int
) -> torch.Tensor:
    """Per-factor mutual information gaps ``(max_k I - second I) / H(w_i)`` ``(n_w,)``."""
    z, factors = _check_codes(z, factors)
    flags = _discrete_mask(factors, discrete)
    zb = _bin_indices(z.to(torch.float64), bins)
    gaps = []
    for i, is_discrete in enumerate(flags):
        w = factors[:, i]
        if is_discrete:
            wb = torch.unique(w, return_inverse=True)[1]
        else:
            wb = _bin_indices(w.to(torch.float64)[:, None], bins)[:, 0]
        nw = int(wb.max()) + 1
        mi = discrete_mutual_information(zb, wb, bins, nw)
        pw = torch.bincount(wb, minlength=nw).to(torch.float64) / len(wb)
        entropy = -(torch.where(pw > 0, pw * pw.clamp_min(1e-300).log(), 0.0)).sum()
        top2 = mi.topk(2).values
        gaps.append(torch.where(entropy > 0, (top2[0] - top2[1]) / entropy, torch.nan))
    return torch.stack(gaps)


@config
class MIGConfig:
    """Options of ``mig`` (seed 002, Eq. 2.8; Chen et al. 2018)."""

    bins: int = option(
        20,
        help="Equal-width bins used to discretise each latent coordinate (and continuous factors).",
        validator=integer(minimum=2),
    )


class MIG(Metric):
    """Mutual Information Gap (seed 002, Eq. 2.8 and 3.35-3.36).

    ``MIG = (1/n_w) sum_i (I(w_i; z_m) - I(w_i; z_s)) / H(w_i)`` with ``z_m``, ``z_s`` the
    latents sharing the most and second most information with ``w_i``. Latents (and
    continuous factors) are discretised into ``bins`` equal-width bins and the information
    is the plug-in estimate from the joint histogram.

    ``metric(z, factors, discrete=None)`` as for ``disentanglement-score``. Returns ``mig``
    and ``factor<i>``; factors with zero entropy are left out of the mean.
    """

    Config: ClassVar[type] = MIGConfig
    source = "seed 002 Eq. 2.8, 3.35-3.36 (Chen et al. 2018)"

    @torch.no_grad()
    def compute(
        self, z: torch.Tensor, factors: torch.Tensor, discrete: Sequence[bool] | None = None
    ) -> dict[str, float]:
        gaps = mig_score(z, factors, discrete, self.config.bins)
        values = {"mig": gaps.nanmean()}
        values.update({f"factor{i}": g for i, g in enumerate(gaps)})
        return _floats(values)

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        g = torch.Generator().manual_seed(0)
        w = torch.randint(0, 4, (300, 2), generator=g)
        return (torch.cat([w.double(), torch.randn(300, 1, generator=g)], 1), w), {}


@hookimpl
def eigenflow_register(registry):
    """Registers the generative-model metrics."""
    registry.add("metric", EquivarianceError, name="equivariance-error")
    registry.add("metric", LogLikelihood, name="log-likelihood")
    registry.add("metric", DtO, name="dto")
    registry.add("metric", DisentanglementScore, name="disentanglement-score")
    registry.add("metric", MIG, name="mig")
