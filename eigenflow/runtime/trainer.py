"""The training engine every training pipeline uses.

:class:`Trainer` runs ``model.loss(batch)`` (a dict whose ``"loss"`` entry is the total)
for a fixed number of optimiser steps, configured by :class:`TrainConfig`:

- batches are drawn by a deterministic sampler: step ``s`` of epoch ``e`` takes a slice of a
  permutation seeded by ``(seed, e)``, so a resumed run sees exactly the batches the
  uninterrupted run would; a pipeline may pass its own ``batches`` (any
  ``batch(step)``, with ``state_dict``/``load_state_dict`` when it keeps a state);
- progress lines (step, loss terms, steps per second) go to stderr on rank 0;
- ``eval_fn(model, step) -> dict`` runs every ``eval_every`` steps; ``on_step(step, terms)``
  runs after every update;
- scalars go to ``<out_dir>/metrics.csv`` (columns ``step, name, value``) and, with
  ``tensorboard=True``, to TensorBoard event files (:mod:`eigenflow.runtime.logging`);
- the last ``keep_checkpoints`` checkpoints are kept (:mod:`eigenflow.runtime.checkpoints`),
  written atomically with ``fsync``, verified by a digest on load, with the model, optimiser,
  scheduler and gradient-scaler states, the RNG states (one set per process under DDP), the
  step and the options; ``resume=True`` continues bit-for-bit on the same device, applying a
  changed ``lr`` or ``steps`` and refusing changes of the options that fix the run;
- a NaN or infinite loss term (or gradient norm) stops training with
  :class:`~eigenflow.NonFiniteLossError` naming the term; the checkpoint it leaves is the last
  state whose loss was finite, taken before the update that diverged;
- optional gradient clipping by global norm, and mixed precision on CUDA (``amp="bf16"`` or
  ``"fp16"`` with a gradient scaler; a no-op on CPU);
- a model may declare alternating updates (a GAN's discriminator and generator steps) with
  ``update_phases() -> [UpdatePhase(name, params, ...)]`` and ``loss(batch, phase=name)``:
  one engine step then runs every phase in order, each with its own optimiser (and
  scheduler), only that phase's parameters trainable, its own gradient clipping and finite
  checks; logged terms are ``<phase>_<term>`` and ``loss`` is the sum of the phase losses
  (see :class:`UpdatePhase`);
- launched by ``torchrun`` (``WORLD_SIZE > 1``), the model is wrapped in
  ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), each process takes
  ``batch_size / world_size`` items of the same global batch, logged values are averaged
  over the processes, and only rank 0 writes files and prints.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np
import torch
from torch import nn

from ..core.config import boolean, config, floating, integer, one_of, option, optional
from ..core.errors import CheckpointError, ConfigError, NonFiniteLossError
from .checkpoints import CHECKPOINT_NAME, CheckpointStore, load_model_state
from .logging import ScalarLog

__all__ = [
    "CHECKPOINT_NAME",
    "RESUMABLE_OPTIONS",
    "BatchSource",
    "CyclicBatches",
    "DatasetBatches",
    "RandomBatches",
    "TrainConfig",
    "Trainer",
    "UpdatePhase",
    "capture_rng",
    "distributed_env",
    "model_phases",
    "restore_rng",
]

#: Largest learning rate accepted per optimiser: Adam's step moves every weight by about
#: ``lr``, so above 1 it leaves any weight scale at once; SGD's step is ``lr`` times the
#: gradient, and 10 still allows the deliberately divergent runs the engine is tested with.
MAX_LR = {"adam": 1.0, "adamw": 1.0, "sgd": 10.0}

#: Options a resumed run may change (applied on resume); any other changed option is refused.
RESUMABLE_OPTIONS = frozenset(
    {
        "steps",
        "lr",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "resume",
        "overwrite",
        "tensorboard",
        "quiet",
        "grad_clip",
    }
)


@config
class TrainConfig:
    """Options of the training engine (engineering defaults; no source equation)."""

    steps: int = option(1000, validator=integer(1), help="optimiser steps")
    batch_size: int = option(
        64, validator=integer(1), help="global batch size (split evenly across DDP processes)"
    )
    lr: float = option(
        1e-3,
        validator=floating(0.0, min_open=True),
        help="learning rate (at most 1 for adam/adamw, 10 for sgd)",
    )
    weight_decay: float = option(0.0, validator=floating(0.0, 1.0), help="weight decay")
    optimizer: str = option("adam", validator=one_of(["adam", "adamw", "sgd"]), help="optimiser")
    momentum: float = option(
        0.9, validator=floating(0.0, 1.0, max_open=True), help="momentum of 'sgd'"
    )
    scheduler: str = option(
        "none", validator=one_of(["none", "cosine"]), help="learning-rate schedule over 'steps'"
    )
    grad_clip: float | None = option(
        None,
        validator=optional(floating(0.0, min_open=True)),
        help="clip the global gradient norm to this value (none: no clipping)",
    )
    amp: str = option(
        "none",
        validator=one_of(["none", "bf16", "fp16"]),
        help="mixed precision on CUDA (ignored on CPU)",
    )
    log_every: int = option(50, validator=integer(1), help="steps between progress lines")
    eval_every: int = option(
        0, validator=integer(0), help="steps between evaluation callbacks (0: only at the end)"
    )
    checkpoint_every: int = option(
        500, validator=integer(0), help="steps between checkpoints (0: only at the end)"
    )
    keep_checkpoints: int = option(
        2, validator=integer(1), help="checkpoints kept, the newest first"
    )
    seed: int = option(0, validator=integer(0), help="seed of the batch order")
    resume: bool = option(
        False,
        validator=boolean(),
        help="continue from the newest usable checkpoint in the run folder",
    )
    overwrite: bool = option(
        False,
        validator=boolean(),
        help="start afresh in a run folder that already holds checkpoints (they are replaced)",
    )
    tensorboard: bool = option(
        False,
        validator=boolean(),
        help="also log to TensorBoard (needs: pip install 'eigenflow[tensorboard]')",
    )
    quiet: bool = option(False, validator=boolean(), help="no progress lines")

    @classmethod
    def for_run(cls, ctx: Any, **options: Any) -> TrainConfig:
        """``options`` plus what the pipeline's run context sets: ``seed``, ``quiet``,
        ``resume`` and ``tensorboard`` (``options`` may override ``seed``)."""
        run = {"seed": ctx.seed, "quiet": ctx.quiet, "resume": ctx.resume}
        return cls(**{**run, "tensorboard": ctx.tensorboard, **options})

    def __attrs_post_init__(self) -> None:
        top = MAX_LR[self.optimizer]
        if self.lr > top:
            raise ConfigError(
                f"option 'lr' = {self.lr!r} is invalid: expected at most {top} for optimizer "
                f"{self.optimizer!r}"
            )
        if self.resume and self.overwrite:
            raise ConfigError("options 'resume' and 'overwrite' exclude each other; give one")


class BatchSource(Protocol):
    """What a trainer draws its batches from: ``batch(step)``; a source that keeps a state
    (a generator) also has ``state_dict()`` and ``load_state_dict(state)`` so resume sees
    the same batches."""

    def batch(self, step: int) -> Any: ...


def _param_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return tuple(value)


@attrs.frozen
class UpdatePhase:
    """One update of an alternating training step (e.g. a GAN's discriminator step, then its
    generator step).

    A model declares its phases with ``update_phases() -> list[UpdatePhase]`` (in the order
    they run) and computes each phase's objective with ``loss(batch, phase=name)``, a dict
    whose ``"loss"`` entry is what that phase's optimiser minimises. The :class:`Trainer`
    builds one optimiser (and scheduler) per phase from its :class:`TrainConfig`, with the
    learning rate ``lr * lr_scale`` and, for Adam/AdamW, ``betas`` when given; during a
    phase only its parameters require gradients.

    Attributes
    ----------
    name
        Lowercase name of the phase, unique in the model (``"d"``, ``"g"``); prefixes the
        logged terms (``d_loss``).
    params
        The parameters this phase updates (disjoint from the other phases').
    lr_scale
        Factor on the configured learning rate (two time-scale updates).
    betas
        Adam's ``(beta1, beta2)`` for this phase (``None``: torch's default).
    """

    name: str
    params: tuple[torch.Tensor, ...] = attrs.field(converter=_param_tuple)
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None


def model_phases(model: nn.Module) -> list[UpdatePhase] | None:
    """The alternating updates ``model`` declares (``None`` for a one-optimiser model),
    checked: unique names, at least one parameter each, no parameter in two phases."""
    declare = getattr(model, "update_phases", None)
    if not callable(declare):
        return None
    phases = list(declare())
    if not phases or not all(isinstance(p, UpdatePhase) for p in phases):
        raise ConfigError(
            f"{type(model).__name__}.update_phases() must return a non-empty list of "
            f"UpdatePhase, got {phases!r}"
        )
    names = [p.name for p in phases]
    if len(set(names)) != len(names) or not all(n and n.islower() for n in names):
        raise ConfigError(
            f"{type(model).__name__}.update_phases(): expected unique lowercase phase names, "
            f"got {names!r}"
        )
    seen: set[int] = set()
    for phase in phases:
        ids = {id(p) for p in phase.params}
        if not ids:
            raise ConfigError(f"update phase {phase.name!r} has no parameters")
        if ids & seen:
            raise ConfigError(
                f"update phase {phase.name!r} shares parameters with an earlier phase; "
                "each parameter belongs to one phase"
            )
        seen |= ids
    return phases


# --------------------------------------------------------------------------- RNG states


def capture_rng() -> dict[str, Any]:
    """Every RNG state as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore the states saved by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - the global state
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- distributed


def distributed_env() -> tuple[int, int]:
    """``(rank, world_size)`` from the ``torchrun`` environment (``(0, 1)`` when absent)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world = distributed_env()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    return rank, world


class _LossModule(nn.Module):
    """Wraps ``model.loss`` as ``forward`` so DistributedDataParallel sees the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any, phase: str | None = None) -> dict[str, torch.Tensor]:
        if phase is None:
            return self.model.loss(batch)
        return self.model.loss(batch, phase=phase)


# --------------------------------------------------------------------------- helpers


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _clone(value: Any) -> Any:
    """A deep copy of a state dict (tensors cloned, containers rebuilt)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clone(v) for v in value)
    return value


def _build_optimizer(
    cfg: TrainConfig, params: Any, phase: UpdatePhase | None = None
) -> torch.optim.Optimizer:
    lr = cfg.lr * (phase.lr_scale if phase is not None else 1.0)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    extra = {"betas": tuple(phase.betas)} if phase is not None and phase.betas else {}
    return cls(params, lr=lr, weight_decay=cfg.weight_decay, **extra)


class _TrainableOnly:
    """Within the block only ``keep`` (of ``params``) require gradients; restored after."""

    def __init__(self, params: list[nn.Parameter], keep: tuple[nn.Parameter, ...]):
        keep_ids = {id(p) for p in keep}
        self.frozen = [p for p in params if p.requires_grad and id(p) not in keep_ids]

    def __enter__(self) -> None:
        for p in self.frozen:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.frozen:
            p.requires_grad_(True)


class DatasetBatches:
    """Global batch ``s``: a slice of the permutation of epoch ``s // batches_per_epoch``,
    collated and moved to ``device``; each DDP process takes its share of the slice."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        device: torch.device | None = None,
    ):
        n = len(dataset)
        if batch_size % world:
            raise ConfigError(
                f"option 'batch_size' = {batch_size} is invalid: expected a multiple of the "
                f"{world} distributed processes"
            )
        if n < batch_size:
            raise ConfigError(
                f"option 'batch_size' = {batch_size} is invalid: the dataset has only {n} items"
            )
        self.dataset, self.device = dataset, device or torch.device("cpu")
        self.n, self.size, self.seed = n, batch_size, seed
        self.rank, self.local = rank, batch_size // world
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> list[int]:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=gen), epoch
        start = pos * self.size + self.rank * self.local
        return self._perm[start : start + self.local].tolist()

    def batch(self, step: int) -> Any:
        items = [self.dataset[i] for i in self.indices(step)]
        return _to_device(torch.utils.data.default_collate(items), self.device)


class CyclicBatches:
    """A batch source cycling through a fixed list: step ``s`` gets ``items[s % len(items)]``
    (epochs over fixed mini-batches; ``[None]`` for an objective that samples its own
    inputs)."""

    def __init__(self, items: list[Any]):
        if not items:
            raise ConfigError("CyclicBatches: expected at least one batch")
        self.items = list(items)

    def batch(self, step: int) -> Any:
        return self.items[step % len(self.items)]


class RandomBatches:
    """A batch source: ``batch_size`` rows of the tensors ``data`` (indexed alike), drawn with
    replacement by ``gen``; its state is the generator's, so resume draws the same batches."""

    def __init__(self, data: tuple[torch.Tensor, ...], batch_size: int, gen: torch.Generator):
        self.data, self.gen = data, gen
        self.size = min(batch_size, len(data[-1]))

    def batch(self, step: int) -> tuple[torch.Tensor, ...]:
        n = len(self.data[-1])
        idx = torch.randint(n, (self.size,), generator=self.gen).to(self.data[0].device)
        return tuple(t[idx] for t in self.data)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(state["generator"].cpu())


# --------------------------------------------------------------------------- trainer


class _Diverged(Exception):
    """A non-finite loss term (``at="loss"``) or gradient norm (``at="grad"``); ``first``:
    found before any update of the step (in its first phase)."""

    def __init__(self, at: str, bad: list[str], first: bool = True):
        super().__init__(at)
        self.at, self.bad, self.first = at, bad, first


class Trainer:
    """Trains ``model`` (with ``loss(batch) -> dict``) on ``dataset`` or on ``batches``.

    Parameters
    ----------
    model
        An ``nn.Module`` with ``loss(batch) -> {"loss": total, **terms}``.
    dataset
        A map-style dataset; items are collated with ``torch.utils.data.default_collate``
        and drawn by :class:`DatasetBatches`. Not needed when ``batches`` is given.
    config
        A :class:`TrainConfig` (or keyword options).
    out_dir
        The run folder for the checkpoints and the logs; ``None`` writes nothing (a fit
        inside a component).
    device
        Where to train (default: the model's device).
    eval_fn
        Optional ``eval_fn(model, step) -> dict`` of floats (logged as scalars) and image
        tensors ``(N, C, H, W)`` (logged as grids with TensorBoard).
    batches
        Optional :class:`BatchSource`: ``batches.batch(step)`` is the batch of ``step``.
    on_step
        Optional ``on_step(step, terms)`` called after every update with the detached loss
        terms (``step`` counts the updates done).
    label
        The tag of the progress lines (``[train] [###...] 20/100 loss ...``).
    local
        Train in this process only, even under ``torchrun`` (a fit inside a component, which
        every process runs alike): no DistributedDataParallel, no collectives.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: torch.utils.data.Dataset | None = None,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike | None = None,
        device: torch.device | str | None = None,
        eval_fn: Callable[[nn.Module, int], Mapping[str, Any]] | None = None,
        batches: BatchSource | None = None,
        on_step: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
        label: str = "train",
        local: bool = False,
        **options: Any,
    ):
        if config is None:
            config = TrainConfig(**options)
        elif options:
            config = attrs.evolve(config, **options)
        self.config = config
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.rank, self.world = (0, 1) if local else _init_distributed(self.device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.eval_fn = eval_fn
        self.on_step = on_step
        self.label = label
        self.step = 0
        #: per-step records of the pipeline (plain data, e.g. from ``on_step``); saved with
        #: every checkpoint and restored on resume, so a resumed run reports its whole history
        self.records: list[dict[str, Any]] = []
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.store = (
            None if self.out_dir is None else CheckpointStore(self.out_dir, config.keep_checkpoints)
        )
        self.checkpoint_path = None if self.store is None else self.store.path(0)
        self.last_checkpoint_step: int | None = None
        self.resumed_from: Path | None = None
        #: the model's alternating updates (:class:`UpdatePhase`), ``None`` for one optimiser
        self.phases = model_phases(self.model)
        wrapper = _LossModule(self.model)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapper = nn.parallel.DistributedDataParallel(
                wrapper, device_ids=ids, find_unused_parameters=self.phases is not None
            )
        self.wrapper = wrapper
        if self.phases is None:
            self.optimizers = {"": _build_optimizer(config, self.model.parameters())}
        else:
            self.optimizers = {p.name: _build_optimizer(config, p.params, p) for p in self.phases}
        self.schedulers = {
            name: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
            for name, opt in self.optimizers.items()
            if config.scheduler == "cosine"
        }
        self.use_amp = config.amp != "none" and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and config.amp == "fp16")
        if batches is None:
            if dataset is None:
                raise ConfigError("Trainer: give a dataset or a batch source ('batches')")
            batches = DatasetBatches(
                dataset, config.batch_size, config.seed, self.rank, self.world, self.device
            )
        self.batches = batches
        self._good: dict[str, Any] | None = None  # the last state whose loss was finite

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of a one-optimiser model (``optimizers[name]`` for phased ones)."""
        if self.phases is not None:
            raise ConfigError(
                f"Trainer.optimizer: the model has update phases "
                f"{[p.name for p in self.phases]!r}; use Trainer.optimizers[name]"
            )
        return self.optimizers[""]

    @property
    def scheduler(self) -> Any:
        """The scheduler of a one-optimiser model (``None`` without one)."""
        if self.phases is not None:
            raise ConfigError("Trainer.scheduler: the model has update phases; use schedulers")
        return self.schedulers.get("")

    def _phase_lr(self, name: str) -> float:
        scale = next((p.lr_scale for p in self.phases or [] if p.name == name), 1.0)
        return self.config.lr * scale

    def _optimizer_states(self) -> Any:
        if self.phases is None:
            return self.optimizer.state_dict()
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def _scheduler_states(self) -> Any:
        if not self.schedulers:
            return None
        if self.phases is None:
            return self.schedulers[""].state_dict()
        return {name: sch.state_dict() for name, sch in self.schedulers.items()}

    def _load_optimizer_states(self, state: Mapping[str, Any], where: Path) -> None:
        saved, saved_sched = state["optimizer"], state.get("scheduler")
        if self.phases is None:
            saved, saved_sched = {"": saved}, {"": saved_sched}
        elif not isinstance(saved, Mapping) or set(saved) != set(self.optimizers):
            raise CheckpointError(
                f"checkpoint {str(where)!r} does not fit the model: its optimiser states are "
                f"not those of the update phases {sorted(self.optimizers)!r}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved[name])
            sched = self.schedulers.get(name)
            if sched is not None and saved_sched is not None and saved_sched.get(name):
                sched.load_state_dict(saved_sched[name])

    # ----------------------------------------------------------------- checkpoints
    def _local_state(self) -> dict[str, Any]:
        """This process's state at the current step (tensors shared with the live objects)."""
        source = getattr(self.batches, "state_dict", None)
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self._optimizer_states(),
            "scheduler": self._scheduler_states(),
            "scaler": self.scaler.state_dict(),
            "batches": source() if callable(source) else None,
            "records": list(self.records),
            "rng": capture_rng(),
        }

    def _with_all_rngs(self, local: dict[str, Any]) -> dict[str, Any]:
        rng = local["rng"]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        config = attrs.asdict(self.config)
        return {**local, "rng": rngs, "world_size": self.world, "config": config}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: model, optimiser, scheduler, scaler, batch source,
        RNG states of every process, step and options."""
        return self._with_all_rngs(self._local_state())

    def _write(self, local: dict[str, Any]) -> Path | None:
        state = self._with_all_rngs(local)  # a collective: every rank takes part
        if self.store is None or self.rank != 0:
            return None
        return self.store.save(state)

    def save_checkpoint(self) -> Path | None:
        """Write the current state as the newest checkpoint (rank 0 writes; every rank's RNG
        states are kept; the last ``keep_checkpoints`` are kept)."""
        path = self._write(self._local_state())
        self.last_checkpoint_step = self.step
        return path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> int:
        """Restore the newest usable checkpoint of the run folder (or ``path``), verified;
        returns its step. A changed ``lr`` or ``steps`` is applied; other changed options
        are refused."""
        from .checkpoints import read_checkpoint

        if path is not None:
            where = Path(path)
            state = read_checkpoint(where, map_location=self.device)
        elif self.store is not None:
            state, where = self.store.load(map_location=self.device)
        else:
            raise ConfigError("Trainer.load_checkpoint: no run folder (out_dir) and no path")
        self._check_resumable(state, where)
        load_model_state(self.model, state["model"], where)
        self._load_optimizer_states(state, where)
        self.scaler.load_state_dict(state["scaler"])
        loader = getattr(self.batches, "load_state_dict", None)
        if callable(loader) and state.get("batches") is not None:
            loader(state["batches"])
        rngs = state["rng"]
        restore_rng(_cpu_rng(rngs[self.rank] if self.rank < len(rngs) else rngs[0]))
        self.records[:] = state.get("records") or []
        self.step = int(state["step"])
        self.last_checkpoint_step = self.step
        self._apply_resumable_options()
        self.resumed_from = where
        return self.step

    def _check_resumable(self, state: Mapping[str, Any], where: Path) -> None:
        saved = state.get("config") or {}
        now = attrs.asdict(self.config)
        changed = [
            f"{k} {saved[k]!r} -> {now[k]!r}"
            for k in sorted(saved)
            if k in now and k not in RESUMABLE_OPTIONS and saved[k] != now[k]
        ]
        if changed:
            raise ConfigError(
                f"cannot resume from {str(where)!r}: options changed since the checkpoint that "
                f"a resumed run cannot change: {', '.join(changed)} (changeable on resume: "
                f"{', '.join(sorted(RESUMABLE_OPTIONS))}); keep them, or start afresh with "
                "overwrite"
            )

    def _apply_resumable_options(self) -> None:
        """The checkpoint's optimiser and scheduler carry the old ``lr`` and ``steps``: use the
        configured ones from here on."""
        cfg = self.config
        for name, optimizer in self.optimizers.items():
            lr = self._phase_lr(name)
            scheduler = self.schedulers.get(name)
            if scheduler is None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
                continue
            scheduler.T_max = cfg.steps
            scheduler.base_lrs = [lr for _ in optimizer.param_groups]
            eta_min = scheduler.eta_min
            cosine = (1 + math.cos(math.pi * min(self.step, cfg.steps) / cfg.steps)) / 2
            for group in optimizer.param_groups:
                group["initial_lr"] = lr
                group["lr"] = eta_min + (lr - eta_min) * cosine

    def _prepare_run_folder(self) -> None:
        """Refuse a folder holding another run's checkpoints unless resuming or overwriting."""
        if self.store is None:
            return
        existing = self.store.paths() if self.rank == 0 else []
        if self.config.resume:
            if existing or (self.rank != 0 and self.store.exists()):
                self.load_checkpoint()
                self._say(f"[{self.label}] resumed from {self.resumed_from} at step {self.step}")
            return
        if existing and not self.config.overwrite:
            from ..core.errors import RunFolderError

            raise RunFolderError(
                f"run folder {str(self.out_dir)!r} already holds a run "
                f"({', '.join(p.name for p in existing)}); resume it (resume=true, eigenflow "
                "run --resume) or replace it (overwrite=true, --overwrite), or choose another "
                "folder"
            )
        for path in existing:
            path.unlink()

    # ----------------------------------------------------------------- loop
    def _check_finite(
        self,
        terms: Mapping[str, torch.Tensor],
        grad_norm: torch.Tensor | None,
        prefix: str = "",
        first: bool = True,
    ) -> None:
        names = [prefix + n for n in terms]
        parts = [terms[n].detach().float().reshape(1) for n in terms]
        if grad_norm is not None:
            names.append(prefix + "grad_norm")
            parts.append(grad_norm.detach().float().reshape(1))
        values = torch.cat(parts)
        finite = torch.isfinite(values)
        flag = finite.all().to(torch.int32)
        if self.world > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        if bool(flag):  # one host sync per step: the engine must know when to stop
            return
        bad = [f"{n} = {float(v)}" for n, v, ok in zip(names, values.cpu(), finite.cpu()) if not ok]
        raise _Diverged("grad" if grad_norm is not None else "loss", bad, first)

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One optimiser step on ``batch`` (one step of every update phase, in order, for a
        phased model); returns the detached loss terms."""
        if self.phases is not None:
            return self._phased_step(batch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            terms = self.wrapper(batch)
        if "loss" not in terms:
            raise ConfigError("model.loss(batch) must return a dict with a 'loss' entry")
        self._check_finite(terms, None)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not self.scaler.is_enabled():  # fp16 skips steps with inf gradients by design
            self._check_finite({}, grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        out = {k: v.detach() for k, v in terms.items()}
        out["grad_norm"] = grad_norm.detach()
        return out

    def _phase_update(self, batch: Any, phase: UpdatePhase, first: bool) -> dict[str, torch.Tensor]:
        """One update of ``phase``: its loss, backward with only its parameters trainable,
        clipping, finite checks, its optimiser's step."""
        optimizer = self.optimizers[phase.name]
        optimizer.zero_grad(set_to_none=True)
        prefix = f"{phase.name}_"
        with _TrainableOnly(list(self.model.parameters()), phase.params):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                terms = self.wrapper(batch, phase.name)
            if "loss" not in terms:
                raise ConfigError(
                    f"model.loss(batch, phase={phase.name!r}) must return a dict with a 'loss' "
                    "entry"
                )
            self._check_finite(terms, None, prefix, first)
            self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = nn.utils.clip_grad_norm_(phase.params, max_norm)
        if not self.scaler.is_enabled():
            self._check_finite({}, grad_norm, prefix, first)
        self.scaler.step(optimizer)
        out = {prefix + k: v.detach() for k, v in terms.items()}
        out[prefix + "grad_norm"] = grad_norm.detach()
        return out

    def _phased_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One update of every phase in order; ``loss`` is the sum of the phase losses."""
        self.model.train()
        out: dict[str, torch.Tensor] = {}
        for i, phase in enumerate(self.phases or []):
            out.update(self._phase_update(batch, phase, first=i == 0))
        self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()
        total = sum(out[f"{p.name}_loss"] for p in self.phases or [])
        return {"loss": total, **out}

    def _guarded_step(self) -> dict[str, torch.Tensor]:
        """One step that keeps, in memory, the last state whose loss was finite (taken
        before its update) and writes it when the loss diverges."""
        snapshot = _clone(self._local_state()) if self.store is not None else None
        try:
            terms = self.train_step(self.batches.batch(self.step))
        except _Diverged as diverged:
            # the state before this step had finite terms only when the first check that
            # failed was the first phase's gradient norm (its loss was finite)
            keep = snapshot if diverged.at == "grad" and diverged.first else self._good
            self._stop(diverged, keep)
        self._good = snapshot
        return terms

    def _stop(self, diverged: _Diverged, keep: dict[str, Any] | None) -> None:
        what = "gradient norm" if diverged.at == "grad" else "loss term(s)"
        found = ", ".join(diverged.bad) or "(on another process)"
        if self.store is None:
            where = "nothing is written (no run folder)"
        elif keep is None:
            where = "no state of this run had a finite loss, so no checkpoint was written"
        else:
            path = self._write(keep)
            self.last_checkpoint_step = keep["step"]
            shown = path if path is not None else self.checkpoint_path
            where = (
                f"the checkpoint {shown} (step {keep['step']}) is the last state whose loss was "
                "finite, from before the update that diverged; resume it with a smaller lr"
            )
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: non-finite {what} {found}; {where}"
        )

    def evaluate(self, log: ScalarLog) -> dict[str, Any]:
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            result = dict(self.eval_fn(self.model, self.step))
        scalars = {
            f"eval/{k}": float(v)
            for k, v in result.items()
            if isinstance(v, int | float) or (isinstance(v, torch.Tensor) and v.numel() == 1)
        }
        log.scalars(self.step, scalars)
        for k, v in result.items():
            if isinstance(v, torch.Tensor) and v.dim() == 4:
                log.images(self.step, f"eval/{k}", v)
        record = {"step": self.step, **{k[5:]: v for k, v in scalars.items()}}
        self.eval_history.append(record)
        return record

    def _window_means(self, sums: Mapping[str, torch.Tensor], n: int) -> dict[str, float]:
        """Mean of each term over the last ``n`` steps, averaged over the DDP processes."""
        names = list(sums)
        totals = torch.stack([sums[k].float().reshape(()) for k in names])
        if self.world > 1:
            torch.distributed.all_reduce(totals, op=torch.distributed.ReduceOp.SUM)
        means = [v / n for v in totals.cpu().tolist()]  # in double, as one process logs
        if self.world > 1:
            means = [v / self.world for v in means]
        return dict(zip(names, means))

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` (or stop early after step ``until``, writing a
        checkpoint, as an interruption would); returns a summary (final terms, timings,
        paths)."""
        cfg = self.config
        stop = cfg.steps if until is None else min(until, cfg.steps)
        self._prepare_run_folder()
        log = ScalarLog(
            self.out_dir,
            cfg.tensorboard,
            active=self.rank == 0,
            resume_from=self.step if self.resumed_from is not None else None,
        )
        start, start_step = time.perf_counter(), self.step
        window_t, window_s = start, self.step
        sums: dict[str, torch.Tensor] = {}
        try:
            while self.step < stop:
                terms = self._guarded_step()
                self.step += 1
                if self.on_step is not None:
                    self.on_step(self.step, terms)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.float()
                if self.step % cfg.log_every == 0 or self.step == stop:
                    means = self._window_means(sums, self.step - window_s)
                    now = time.perf_counter()
                    rate = (self.step - window_s) / max(now - window_t, 1e-9)
                    self.history.append({"step": self.step, **means, "steps_per_s": rate})
                    log.scalars(self.step, {f"train/{k}": v for k, v in means.items()})
                    self._progress(means, rate)
                    sums, window_t, window_s = {}, now, self.step
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < stop:
                    self.evaluate(log)
                if self.store is not None and cfg.checkpoint_every:
                    if self.step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
            if self.store is not None and self.last_checkpoint_step != self.step:
                self.save_checkpoint()
            final_eval = self.evaluate(log)
        finally:
            log.close()
        elapsed = time.perf_counter() - start
        return {
            "steps": self.step,
            "seconds": round(elapsed, 3),
            "steps_per_s": (self.step - start_step) / max(elapsed, 1e-9),
            "final": self.history[-1] if self.history else {},
            "eval": final_eval,
            "checkpoint": None if self.checkpoint_path is None else str(self.checkpoint_path),
            "log": log.backend,
        }

    # ----------------------------------------------------------------- output
    def _say(self, message: str) -> None:
        if self.rank == 0 and not self.config.quiet:
            print(message, file=sys.stderr, flush=True)

    def _progress(self, means: Mapping[str, float], rate: float) -> None:
        width = 20
        done = int(width * self.step / self.config.steps)
        bar = "#" * done + "." * (width - done)
        terms = " ".join(f"{k} {v:.4g}" for k, v in means.items() if k != "loss")
        self._say(
            f"[{self.label}] [{bar}] {self.step}/{self.config.steps} loss {means['loss']:.5g} "
            f"({terms}) {rate:.2f} it/s"
        )


def _cpu_rng(state: Mapping[str, Any]) -> dict[str, Any]:
    """RNG states must be CPU byte tensors whatever ``map_location`` did."""
    out = dict(state)
    out["torch"] = state["torch"].cpu()
    out["cuda"] = [s.cpu() for s in state["cuda"]]
    out["numpy"] = {**state["numpy"], "keys": state["numpy"]["keys"].cpu()}
    out["python"] = {**state["python"], "state": state["python"]["state"].cpu()}
    return out
