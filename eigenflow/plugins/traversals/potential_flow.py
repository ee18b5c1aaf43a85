"""Traversals ``potential-flow`` (thesis 000, Sec. 4.5.1, Eq. 4.6-4.11) and ``linear`` (the
learned-linear-direction baseline of Table 4.9), trained against a frozen generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ...core.component import FitContext, Traversal
from ...core.config import boolean, config, floating, integer, one_of, option
from ...core.potentials import PotentialFamily, potential_derivatives, wave_residual
from ...runtime import CyclicBatches, TrainConfig, Trainer
from .common import check_index, check_latents, require_fitted

__all__ = [
    "LinearDirections",
    "LinearDirectionsConfig",
    "PotentialFlow",
    "PotentialFlowConfig",
    "jacobian_vector_product",
]

Generator = Callable[[torch.Tensor], torch.Tensor]


def jacobian_vector_product(generator: Generator, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``J_G(z) v`` flattened to ``(B, P)``, differentiable with respect to ``v`` (the
    double-backward trick: ``J v = d/du <J^T u, v>``)."""
    z = z.detach().requires_grad_(True)
    y = generator(z).flatten(1)
    u = torch.zeros_like(y, requires_grad=True)
    (jt_u,) = torch.autograd.grad(y, z, u, create_graph=True)
    (jv,) = torch.autograd.grad(jt_u, u, v, create_graph=True)
    return jv


class PairClassifier(nn.Module):
    """The auxiliary classifier ``C(x_t; x_{t+1})`` of Eq. 4.11: an MLP on the two flattened
    outputs, predicting which of K paths joins them."""

    def __init__(self, features: int, num_classes: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_a.flatten(1), x_b.flatten(1)], dim=-1))


@contextmanager
def frozen(module: Any) -> Iterator[None]:
    """Freeze a module's parameters for the duration (the generator is not trained)."""
    params = [p for p in getattr(module, "parameters", lambda: [])() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def output_size(
    generator: Generator, latent_dim: int, device: torch.device, dtype: torch.dtype
) -> int:
    """Number of output entries of one sample of ``generator``."""
    with frozen(generator), torch.no_grad():
        return generator(torch.zeros(1, latent_dim, device=device, dtype=dtype)).numel()


class _Objective(nn.Module):
    """``loss()`` = ``sum(weights[name] * term)`` of ``step_losses()``, over ``parameters``."""

    def __init__(
        self,
        parameters: list[torch.Tensor],
        step_losses: Callable[[], dict[str, torch.Tensor]],
        weights: dict[str, float],
    ):
        super().__init__()
        for p in parameters:  # the very tensors step_losses uses, not copies
            if not isinstance(p, nn.Parameter):
                raise TypeError(f"optimise: expected nn.Parameter, got {type(p).__name__}")
        self.params = nn.ParameterList(parameters)
        self.step_losses, self.weights = step_losses, weights

    def loss(self, _batch: Any) -> dict[str, torch.Tensor]:
        losses = self.step_losses()
        total = sum(self.weights[name] * value for name, value in losses.items())
        return {"loss": total, **losses}


def optimise(
    generator: Any,
    parameters: list[torch.Tensor],
    lr: float,
    steps: int,
    step_losses: Callable[[], dict[str, torch.Tensor]],
    weights: dict[str, float],
) -> list[dict[str, float]]:
    """Adam on ``sum(weights[name] * loss)`` of ``step_losses()`` for ``steps`` steps with the
    generator frozen, by the runtime's :class:`~eigenflow.runtime.Trainer` (in memory, this
    process only); stops on a non-finite term. Returns the loss terms per step."""
    names: list[str] = []
    history: list[dict[str, float]] = []

    def record(_step: int, terms: dict[str, torch.Tensor]) -> None:
        history.append({name: float(terms[name]) for name in names})

    def tracked() -> dict[str, torch.Tensor]:
        losses = step_losses()
        names[:] = list(losses)
        return losses

    objective = _Objective(parameters, tracked, weights)
    trainer = Trainer(
        objective,
        config=TrainConfig(steps=steps, lr=lr, log_every=steps, quiet=True),
        batches=CyclicBatches([None]),
        on_step=record,
        local=True,
    )
    with frozen(generator):
        trainer.fit()
    return history


@config
class PotentialFlowConfig:
    """Options of ``potential-flow`` (thesis 000, Sec. 4.5.1-4.5.2). Loss weights are 1 as in
    Eq. 4.14; the wave speed ``c`` is learnable and starts at 1; the MLP has a sinusoidal time
    embedding and tanh layers (Sec. 4.5.2). Sizes and the training budget are eigenflow's
    defaults for small generators."""

    num_potentials: int = option(8, validator=integer(1), help="number K of potentials")
    timesteps: int = option(10, validator=integer(2), help="trajectory length T")
    hidden: int = option(64, validator=integer(1), help="hidden width of each potential MLP")
    time_dim: int = option(32, validator=integer(4), help="size of the time embedding (even)")
    train_steps: int = option(400, validator=integer(1), help="optimisation steps of fit")
    batch_size: int = option(32, validator=integer(1), help="latent codes per step")
    lr: float = option(1e-3, validator=floating(0.0, min_open=True), help="Adam learning rate")
    wave_weight: float = option(1.0, validator=floating(0.0), help="weight of L_f (Eq. 4.8)")
    init_weight: float = option(1.0, validator=floating(0.0), help="weight of L_u (Eq. 4.8)")
    jvp_weight: float = option(1.0, validator=floating(0.0), help="weight of L_J (Eq. 4.10)")
    index_weight: float = option(1.0, validator=floating(0.0), help="weight of L_k (Eq. 4.11)")
    jvp_normalized: bool = option(
        True,
        validator=boolean(),
        help="L_J on the unit direction grad u / ||grad u|| (bounded); False: Eq. 4.10 as "
        "written (unbounded below, needs a small jvp_weight)",
    )
    laplacian: str = option(
        "hutchinson",
        validator=one_of(["exact", "hutchinson"]),
        help="Laplacian in the wave residual: Hutchinson's unbiased estimator (one probe; about "
        "9x faster to train at d=6) or exact (d Hessian-vector products)",
    )
    classifier_hidden: int = option(128, validator=integer(1), help="hidden width of C")
    seed: int = option(0, validator=integer(0), help="seed of the initialisation and sampling")


class PotentialFlow(Traversal):
    """K latent potentials ``u^k(z, t)``; a path follows ``z_t = z_{t-1} + grad u^k(z_{t-1},
    t-1)`` (Eq. 4.6).

    ``fit(generator, latent_dim)`` trains the potentials, the wave speed ``c`` and the
    potential-index classifier against the frozen generator with the sampling strategy of
    Sec. 4.5.1 (random ``k``, random ``t``, codes from the prior ``N(0, I)``) and the loss
    ``L_u + L_f + L_J + L_k`` (Eq. 4.14, pre-trained-generator terms). ``history`` holds the
    loss terms per step. ``traverse(z0, k, steps, step_size)`` scales each update by
    ``step_size`` (1 is Eq. 4.6).
    """

    Config = PotentialFlowConfig
    source = "000 (Song 2023), Sec. 4.5.1, Eq. 4.6-4.11, 4.14"

    def __init__(self, config: PotentialFlowConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.field: PotentialFamily | None = None
        self.c: nn.Parameter | None = None
        self.classifier: PairClassifier | None = None
        self.history: list[dict[str, float]] = []

    @property
    def num_directions(self) -> int:
        """K, the number of paths."""
        return self.config.num_potentials

    def _build(
        self, latent_dim: int, features: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.field = PotentialFamily(cfg.num_potentials, latent_dim, cfg.hidden, cfg.time_dim).to(
            device, dtype
        )
        self.c = nn.Parameter(torch.ones((), device=device, dtype=dtype))
        self.classifier = PairClassifier(features, cfg.num_potentials, cfg.classifier_hidden).to(
            device, dtype
        )

    def fit_context(self, ctx: FitContext) -> PotentialFlow:
        """Fit on ``ctx.generator`` with ``ctx.latent_dim`` on ``ctx.device``."""
        return self.fit(ctx.generator, ctx.latent_dim, device=ctx.device)

    def fit(
        self,
        generator: Generator,
        latent_dim: int,
        *,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> PotentialFlow:
        """Train against the frozen ``generator`` (``(B, latent_dim) -> (B, ...)``)."""
        cfg = self.config
        device = torch.device(device or "cpu")
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self._build(latent_dim, output_size(generator, latent_dim, device, dtype), device, dtype)
        params = [*self.field.parameters(), self.c, *self.classifier.parameters()]
        weights = {
            "l_u": cfg.init_weight,
            "l_f": cfg.wave_weight,
            "l_j": cfg.jvp_weight,
            "l_k": cfg.index_weight,
        }
        self.history = optimise(
            generator,
            params,
            cfg.lr,
            cfg.train_steps,
            lambda: self._losses(generator, latent_dim, gen, device, dtype),
            weights,
        )
        return self

    def _one_hot(self, k: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return nn.functional.one_hot(k, self.config.num_potentials).to(dtype)

    def _losses(
        self,
        generator: Generator,
        latent_dim: int,
        gen: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        B, T = cfg.batch_size, cfg.timesteps
        z = torch.randn(B, latent_dim, generator=gen, dtype=dtype).to(device)
        k = torch.randint(cfg.num_potentials, (B,), generator=gen).to(device)
        t_pick = torch.randint(T - 1, (B,), generator=gen).to(device)
        w = self._one_hot(k, dtype)
        wave, z_t, z_next = [], z, None
        points = [z]
        for t in range(T - 1):  # roll the flow out over the trajectory (Eq. 4.6)
            times = torch.full((B,), float(t), device=device, dtype=dtype)
            residual, step = wave_residual(
                self.field, points[-1], times, w, self.c, laplacian=cfg.laplacian
            )
            wave.append(residual.square().mean())
            points.append(points[-1] + step.grad_z)
        stacked = torch.stack(points)  # (T, B, d)
        rows = torch.arange(B, device=device)
        z_t, z_next = stacked[t_pick, rows], stacked[t_pick + 1, rows]
        l_f = torch.stack(wave).mean()
        first = potential_derivatives(
            self.field, z, torch.zeros(B, device=device, dtype=dtype), w, laplacian=None
        )
        l_u = first.grad_z.square().sum(-1).mean()
        direction = z_next - z_t  # = grad u^k(z_t, t)
        if cfg.jvp_normalized:
            direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        l_j = -jacobian_vector_product(generator, z_t, direction).square().sum(-1).mean()
        logits = self.classifier(generator(z_t), generator(z_next))
        l_k = nn.functional.cross_entropy(logits, k)
        return {"l_u": l_u, "l_f": l_f, "l_j": l_j, "l_k": l_k}

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int | None = None, step_size: float = 1.0
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` along potential ``k`` (default ``steps = T - 1``)."""
        require_fitted(self.field, "potential-flow", "traverse")
        check_index(k, self.config.num_potentials, "potential-flow")
        z = check_latents(z0, self.field.latent_dim).detach()
        steps = self.config.timesteps - 1 if steps is None else steps
        w = self._one_hot(torch.full((z.shape[0],), k, device=z.device), z.dtype)
        path = [z]
        for t in range(steps):
            times = torch.full((z.shape[0],), float(t), device=z.device, dtype=z.dtype)
            grad = potential_derivatives(
                self.field, path[-1], times, w, laplacian=None, create_graph=False
            ).grad_z
            path.append(path[-1] + step_size * grad)
        return torch.stack(path)


@config
class LinearDirectionsConfig:
    """Options of ``linear`` (thesis 000, Table 4.9 "Ours (Linear)": learned linear
    directions with the same classifier and Jacobian objectives as ``potential-flow``)."""

    num_directions: int = option(8, validator=integer(1), help="number K of directions")
    timesteps: int = option(10, validator=integer(2), help="trajectory length T")
    step: float = option(
        0.3, validator=floating(0.0, min_open=True), help="latent distance of one step"
    )
    train_steps: int = option(400, validator=integer(1), help="optimisation steps of fit")
    batch_size: int = option(32, validator=integer(1), help="latent codes per step")
    lr: float = option(1e-3, validator=floating(0.0, min_open=True), help="Adam learning rate")
    jvp_weight: float = option(1.0, validator=floating(0.0), help="weight of L_J (Eq. 4.10)")
    index_weight: float = option(1.0, validator=floating(0.0), help="weight of L_k (Eq. 4.11)")
    classifier_hidden: int = option(128, validator=integer(1), help="hidden width of C")
    seed: int = option(0, validator=integer(0), help="seed of the initialisation and sampling")


class LinearDirections(Traversal):
    """K learned unit directions ``d_k``; a path is ``z_t = z_0 + t * step * d_k`` (the
    controlled baseline of potential flows). Trained with the potential-index classifier loss
    (Eq. 4.11) and the normalised Jacobian term (Eq. 4.10) against the frozen generator."""

    Config = LinearDirectionsConfig
    source = "000 (Song 2023), Sec. 4.5.2, Table 4.9 (linear baseline)"

    def __init__(self, config: LinearDirectionsConfig | None = None, **options: Any):
        super().__init__(config, **options)
        self.raw: nn.Parameter | None = None
        self.classifier: PairClassifier | None = None
        self.history: list[dict[str, float]] = []

    @property
    def num_directions(self) -> int:
        """K, the number of paths."""
        return self.config.num_directions

    @property
    def directions(self) -> torch.Tensor:
        """``(d, K)`` unit directions."""
        require_fitted(self.raw, "linear", "directions")
        with torch.no_grad():
            return (self.raw / self.raw.norm(dim=0, keepdim=True)).detach()

    def fit_context(self, ctx: FitContext) -> LinearDirections:
        """Fit on ``ctx.generator`` with ``ctx.latent_dim`` on ``ctx.device``."""
        return self.fit(ctx.generator, ctx.latent_dim, device=ctx.device)

    def fit(
        self,
        generator: Generator,
        latent_dim: int,
        *,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> LinearDirections:
        """Train the directions and the classifier against the frozen ``generator``."""
        cfg = self.config
        device = torch.device(device or "cpu")
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        features = output_size(generator, latent_dim, device, dtype)
        self.raw = nn.Parameter(
            torch.randn(latent_dim, cfg.num_directions, device=device, dtype=dtype)
        )
        self.classifier = PairClassifier(features, cfg.num_directions, cfg.classifier_hidden).to(
            device, dtype
        )

        def step_losses() -> dict[str, torch.Tensor]:
            B = cfg.batch_size
            z0 = torch.randn(B, latent_dim, generator=gen, dtype=dtype).to(device)
            k = torch.randint(cfg.num_directions, (B,), generator=gen).to(device)
            t = torch.randint(cfg.timesteps - 1, (B, 1), generator=gen).to(device)
            d_k = (self.raw / self.raw.norm(dim=0, keepdim=True)).mT[k]  # (B, d)
            z_t = z0 + t.to(dtype) * cfg.step * d_k
            z_next = z_t + cfg.step * d_k
            l_j = -jacobian_vector_product(generator, z_t, d_k).square().sum(-1).mean()
            l_k = nn.functional.cross_entropy(self.classifier(generator(z_t), generator(z_next)), k)
            return {"l_j": l_j, "l_k": l_k}

        self.history = optimise(
            generator,
            [self.raw, *self.classifier.parameters()],
            cfg.lr,
            cfg.train_steps,
            step_losses,
            {"l_j": cfg.jvp_weight, "l_k": cfg.index_weight},
        )
        return self

    def traverse(
        self, z0: torch.Tensor, k: int, steps: int | None = None, step_size: float | None = None
    ) -> torch.Tensor:
        """Path ``(steps+1, B, d)`` along direction ``k`` (defaults: T - 1 steps of ``step``)."""
        directions = self.directions
        check_index(k, directions.shape[1], "linear")
        z = check_latents(z0, directions.shape[0])
        steps = self.config.timesteps - 1 if steps is None else steps
        size = self.config.step if step_size is None else step_size
        t = torch.arange(steps + 1, dtype=z.dtype, device=z.device) * size
        return z.unsqueeze(0) + t[:, None, None] * directions[:, k].to(z)[None, None, :]
