"""Training a GAN (a registered ``model`` with the alternating update phases of the engine,
such as ``dcgan``) with a constraint on its generator, through the runtime's
:class:`~eigenflow.runtime.Trainer`; and the generator parts the geometry pipelines read.

The GAN is built by name (:func:`eigenflow.runtime.build_model`); it provides
``generator`` (``(B, d) -> (B, C, H, W)``), ``latent_dim``, ``update_phases()`` and
``loss(batch, phase=...)``, and optionally ``encode(x)`` (codes of images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.component import RunContext
from ...core.config import ComponentRef
from ...core.errors import ConfigError
from ...core.images import image_grid, write_png
from ...runtime import TrainConfig, Trainer, WithPenalties, build_model

__all__ = [
    "build_gan",
    "first_linear",
    "train_gan",
    "traversal_grid",
]


def first_linear(model: nn.Module) -> nn.Linear:
    """The generator's first linear map of the code: ``generator.first_linear`` when the
    model names it, else the first ``nn.Linear`` of the generator reading ``latent_dim``
    inputs (SeFa's ``A``, the layer the Householder projector replaces)."""
    generator = getattr(model, "generator", model)
    named = getattr(generator, "first_linear", None)
    if isinstance(named, nn.Linear):
        return named
    for module in generator.modules():
        if isinstance(module, nn.Linear) and module.in_features == int(model.latent_dim):
            return module
    raise ConfigError(
        f"model {type(model).__name__}: no linear layer of its generator reads the "
        f"{model.latent_dim}-d code"
    )


def build_gan(
    ref: ComponentRef, data: Any, state: dict[str, torch.Tensor] | None = None, **defaults: Any
) -> nn.Module:
    """The GAN ``ref`` names, shaped by ``data`` and ``defaults`` (the reference's options
    win), with the weights ``state`` when given."""
    model = build_model(ref, data, **defaults)
    for name in ("generator", "latent_dim", "update_phases"):
        if not hasattr(model, name):
            raise ConfigError(
                f"model {ref.name!r}: expected a GAN with 'generator', 'latent_dim' and "
                f"'update_phases' (e.g. 'dcgan'), it has no {name!r}"
            )
    if state is not None:
        model.load_state_dict(state)
    return model


def train_gan(
    model: nn.Module,
    data: Any,
    ctx: RunContext,
    tag: str,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    penalty: Any = None,
) -> dict[str, float]:
    """Train ``model`` for ``steps`` engine steps (one discriminator and one generator update
    each) in ``<out>/<tag>``; with ``penalty`` (an attached constraint with ``penalty()``)
    the generator's loss includes it. Returns the last logged terms."""
    trainee = model if penalty is None else WithPenalties(model, [penalty], phase="g")
    tcfg = TrainConfig.for_run(
        ctx,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        checkpoint_every=0,
        log_every=max(1, steps // 4),
    )
    trainer = Trainer(
        trainee, data, tcfg, out_dir=Path(ctx.out_dir) / tag, device=ctx.device, label=tag
    )
    trainer.fit()
    last = trainer.history[-1] if trainer.history else {}
    return {k: float(v) for k, v in last.items() if isinstance(v, int | float)}


@torch.no_grad()
def traversal_grid(
    generator: Any,
    traversal: Any,
    z0: torch.Tensor,
    count: int,
    steps: int,
    displacement: float,
    path: Path,
) -> list[str]:
    """Write ``path``: rows ``k < count`` show ``generator(z0 + s u_k)`` for ``steps + 1``
    values of ``s`` in ``[-displacement, displacement]`` (``u_k`` the traversal's unit
    direction at ``z0 (1, d)``)."""
    rows = []
    s = torch.linspace(-displacement, displacement, steps + 1, dtype=z0.dtype, device=z0.device)
    for k in range(count):
        with torch.enable_grad():
            first = traversal.traverse(z0, k, 1)
        u = (first[-1] - first[0]).detach().to(z0)
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rows.append(generator(z0 + s[:, None] * u))
    frames = torch.stack(rows)
    if frames.dim() != 5:
        return []
    write_png(path, image_grid(frames.float().cpu()))
    return [path.name]
