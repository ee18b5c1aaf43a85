"""Moved to :mod:`eigenflow.runtime.trainer`; this name stays importable for existing code."""

from .runtime.trainer import (
    CHECKPOINT_NAME,
    TrainConfig,
    Trainer,
    capture_rng,
    distributed_env,
    restore_rng,
)

__all__ = [
    "CHECKPOINT_NAME",
    "TrainConfig",
    "Trainer",
    "capture_rng",
    "distributed_env",
    "restore_rng",
]
