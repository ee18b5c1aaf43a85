"""The training engine every training pipeline uses.

:class:`Trainer` runs ``model.loss(batch)`` (a dict whose ``"loss"`` entry is the total)
for a fixed number of optimiser steps, configured by :class:`TrainConfig`:

- batches are drawn by a deterministic sampler: step ``s`` of epoch ``e`` takes a slice of a
  permutation seeded by ``(seed, e)``, so a resumed run sees exactly the batches the
  uninterrupted run would;
- progress lines (step, loss terms, steps per second) go to stderr on rank 0;
- ``eval_fn(model, step) -> dict`` runs every ``eval_every`` steps; scalars are logged, and
  ``(N, C, H, W)`` tensors are logged as image grids when TensorBoard is available;
- scalars go to TensorBoard (``torch.utils.tensorboard`` with ``tensorboard`` installed) or,
  otherwise, to ``<out_dir>/metrics.csv`` (columns ``step, name, value``);
- checkpoints (``<out_dir>/checkpoint.pt``) are written atomically with the model, optimiser,
  scheduler and gradient-scaler states, the RNG states (torch, numpy, python, CUDA; one set per
  process under DDP) and the step, and loaded with ``weights_only=True``; ``resume=True``
  continues bit-for-bit on the same device;
- a NaN or infinite loss term (or gradient norm) stops training with
  :class:`~eigenflow.NonFiniteLossError` naming the term; the last good checkpoint is kept;
- optional gradient clipping by global norm, and mixed precision on CUDA (``amp="bf16"`` or
  ``"fp16"`` with a gradient scaler; a no-op on CPU);
- launched by ``torchrun`` (``WORLD_SIZE > 1``), the model is wrapped in
  ``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA) and each process takes
  ``batch_size / world_size`` items of the same global batch.
"""

from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .core.config import boolean, config, floating, integer, one_of, option, optional
from .core.errors import ConfigError, NonFiniteLossError
from .core.io import atomic_torch_save, load_weights

__all__ = ["TrainConfig", "Trainer", "capture_rng", "distributed_env", "restore_rng"]

CHECKPOINT_NAME = "checkpoint.pt"


@config
class TrainConfig:
    """Options of the training engine (engineering defaults; no source equation)."""

    steps: int = option(1000, validator=integer(1), help="optimiser steps")
    batch_size: int = option(
        64, validator=integer(1), help="global batch size (split evenly across DDP processes)"
    )
    lr: float = option(1e-3, validator=floating(0.0, min_open=True), help="learning rate")
    weight_decay: float = option(0.0, validator=floating(0.0), help="weight decay")
    optimizer: str = option("adam", validator=one_of(["adam", "adamw", "sgd"]), help="optimiser")
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
    seed: int = option(0, validator=integer(0), help="seed of the batch order")
    resume: bool = option(
        False, validator=boolean(), help="continue from <out_dir>/checkpoint.pt when it exists"
    )
    tensorboard: bool = option(
        True, validator=boolean(), help="log to TensorBoard when it is installed (else CSV)"
    )
    quiet: bool = option(False, validator=boolean(), help="no progress lines")


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

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


# --------------------------------------------------------------------------- logging


class _ScalarLog:
    """TensorBoard when available and wanted, else a CSV file ``step,name,value``."""

    def __init__(self, out_dir: Path, use_tensorboard: bool, active: bool):
        self.active = active
        self.writer = None
        self.csv_path = out_dir / "metrics.csv"
        if not active:
            return
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
            except ImportError:
                self.writer = None
        if self.writer is None and not self.csv_path.exists():
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            with self.csv_path.open("w", newline="") as fh:
                csv.writer(fh).writerow(["step", "name", "value"])

    @property
    def backend(self) -> str:
        return "tensorboard" if self.writer is not None else "csv"

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if not self.active:
            return
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
            return
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            for name, value in values.items():
                writer.writerow([step, name, f"{value:.8g}"])

    def images(self, step: int, name: str, images: torch.Tensor) -> None:
        """Log ``(N, C, H, W)`` images in ``[0, 1]`` (TensorBoard only; the CSV log keeps
        scalars)."""
        if self.active and self.writer is not None:
            self.writer.add_images(name, images.detach().float().clamp(0, 1).cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --------------------------------------------------------------------------- helpers


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _BatchOrder:
    """Global batch ``s``: a slice of the permutation of epoch ``s // batches_per_epoch``."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int):
        if batch_size % world:
            raise ConfigError(
                f"option 'batch_size' = {batch_size} is invalid: expected a multiple of the "
                f"{world} distributed processes"
            )
        if n < batch_size:
            raise ConfigError(
                f"option 'batch_size' = {batch_size} is invalid: the dataset has only {n} items"
            )
        self.n, self.batch, self.seed = n, batch_size, seed
        self.rank, self.local = rank, batch_size // world
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> list[int]:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=gen), epoch
        start = pos * self.batch + self.rank * self.local
        return self._perm[start : start + self.local].tolist()


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` (with ``loss(batch) -> dict``) on ``dataset``.

    Parameters
    ----------
    model
        An ``nn.Module`` with ``loss(batch) -> {"loss": total, **terms}``.
    dataset
        A map-style dataset; items are collated with ``torch.utils.data.default_collate``.
    config
        A :class:`TrainConfig` (or keyword options).
    out_dir
        Folder for the checkpoint and the logs.
    device
        Where to train (default: the model's device).
    eval_fn
        Optional ``eval_fn(model, step) -> dict`` of floats (logged as scalars) and image
        tensors ``(N, C, H, W)`` (logged as grids with TensorBoard).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: torch.utils.data.Dataset,
        config: TrainConfig | None = None,
        *,
        out_dir: str | os.PathLike,
        device: torch.device | str | None = None,
        eval_fn: Callable[[torch.nn.Module, int], Mapping[str, Any]] | None = None,
        **options: Any,
    ):
        if config is None:
            config = TrainConfig(**options)
        elif options:
            import attrs

            config = attrs.evolve(config, **options)
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.rank, self.world = _init_distributed(self.device)
        self.model = model.to(self.device)
        self.dataset = dataset
        self.eval_fn = eval_fn
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.last_checkpoint_step: int | None = None
        wrapper = _LossModule(self.model)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapper = nn.parallel.DistributedDataParallel(wrapper, device_ids=ids)
        self.wrapper = wrapper
        self.optimizer = _build_optimizer(config, self.model.parameters())
        self.scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.steps)
            if config.scheduler == "cosine"
            else None
        )
        self.use_amp = config.amp != "none" and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and config.amp == "fp16")
        self.order = _BatchOrder(
            len(dataset), config.batch_size, config.seed, self.rank, self.world
        )

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: model, optimiser, scheduler, scaler, RNG, step."""
        rng = capture_rng()
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(gathered, rng)
            rng_all = gathered
        else:
            rng_all = [rng]
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng_all,
            "world_size": self.world,
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint.pt`` atomically (rank 0 writes; every rank's RNG is kept)."""
        state = self.state_dict()
        if self.rank == 0:
            atomic_torch_save(state, self.checkpoint_path)
        self.last_checkpoint_step = self.step
        return self.checkpoint_path if self.rank == 0 else None

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> int:
        """Restore a checkpoint (``weights_only=True``); returns its step."""
        state = load_weights(path or self.checkpoint_path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        restore_rng(_cpu_rng(rngs[self.rank] if self.rank < len(rngs) else rngs[0]))
        self.step = int(state["step"])
        self.last_checkpoint_step = self.step
        return self.step

    # ----------------------------------------------------------------- loop
    def _batch(self, step: int) -> Any:
        items = [self.dataset[i] for i in self.order.indices(step)]
        return _to_device(torch.utils.data.default_collate(items), self.device)

    def _check_finite(
        self, terms: Mapping[str, torch.Tensor], grad_norm: torch.Tensor | None
    ) -> None:
        names = list(terms)
        parts = [terms[n].detach().float().reshape(1) for n in names]
        if grad_norm is not None:
            names.append("grad_norm")
            parts.append(grad_norm.detach().float().reshape(1))
        values = torch.cat(parts)
        finite = torch.isfinite(values)
        flag = finite.all().to(torch.int32)
        if self.world > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        if bool(flag):  # one host sync per step: the engine must know when to stop
            return
        bad = [f"{n} = {float(v)}" for n, v, ok in zip(names, values.cpu(), finite.cpu()) if not ok]
        where = (
            f"the last good checkpoint is {self.checkpoint_path} (step {self.last_checkpoint_step})"
            if self.last_checkpoint_step is not None
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: non-finite loss term(s) "
            f"{', '.join(bad) or '(another process)'}; {where}"
        )

    def train_step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One optimiser step on ``batch``; returns the detached loss terms."""
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

    def evaluate(self, log: _ScalarLog) -> dict[str, Any]:
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

    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train until ``config.steps`` (or stop early after step ``until``, writing a
        checkpoint, as an interruption would); returns a summary (final terms, timings,
        paths)."""
        cfg = self.config
        stop = cfg.steps if until is None else min(until, cfg.steps)
        if cfg.resume and self.checkpoint_path.exists():
            self.load_checkpoint()
            self._say(f"[train] resumed from {self.checkpoint_path} at step {self.step}")
        log = _ScalarLog(self.out_dir, cfg.tensorboard, active=self.rank == 0)
        start, start_step = time.perf_counter(), self.step
        window_t, window_s = start, self.step
        sums: dict[str, torch.Tensor] = {}
        try:
            while self.step < stop:
                terms = self.train_step(self._batch(self.step))
                self.step += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.float()
                if self.step % cfg.log_every == 0 or self.step == stop:
                    n = self.step - window_s
                    means = {k: float(v) / n for k, v in sums.items()}
                    now = time.perf_counter()
                    rate = n / max(now - window_t, 1e-9)
                    self.history.append({"step": self.step, **means, "steps_per_s": rate})
                    log.scalars(self.step, {f"train/{k}": v for k, v in means.items()})
                    self._progress(means, rate)
                    sums, window_t, window_s = {}, now, self.step
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < stop:
                    self.evaluate(log)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            if self.last_checkpoint_step != self.step:
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
            "checkpoint": str(self.checkpoint_path),
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
            f"[train] [{bar}] {self.step}/{self.config.steps} loss {means['loss']:.5g} "
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
