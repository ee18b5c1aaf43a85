"""The runtime layer: what every pipeline runs on, and what plugins may import.

- :mod:`~eigenflow.runtime.trainer`: the :class:`Trainer` (every training loop) and its
  :class:`TrainConfig`;
- :mod:`~eigenflow.runtime.checkpoints`: the last ``K`` checkpoints, atomic and verified,
  and model weights loaded with a clear error when they do not fit;
- :mod:`~eigenflow.runtime.devices`: the device a run uses, checked before anything is
  written;
- :mod:`~eigenflow.runtime.logging`: ``metrics.csv`` and TensorBoard;
- :mod:`~eigenflow.runtime.runs`: one run per output folder (resume, overwrite);
- :mod:`~eigenflow.runtime.build`: components from references and the model options the
  data implies;
- :mod:`~eigenflow.runtime.pipeline`: :class:`Pipeline` composition and validation.

Layer rule: ``core`` <- ``registry`` <- ``runtime`` <- ``plugins``; the runtime never imports
a plugin (it finds components through the registry).
"""

from .build import build_model, model_defaults_for, unpack_batch
from .checkpoints import CheckpointStore, load_model_state, load_model_weights
from .devices import RUN_DEVICES, resolve_device
from .logging import ScalarLog
from .penalties import WithPenalties
from .pipeline import Pipeline, Stage, load_spec
from .runs import prepare_run_folder
from .trainer import (
    BatchSource,
    CyclicBatches,
    DatasetBatches,
    RandomBatches,
    TrainConfig,
    Trainer,
    UpdatePhase,
    capture_rng,
    distributed_env,
    model_phases,
    restore_rng,
)

__all__ = [
    "RUN_DEVICES",
    "BatchSource",
    "CheckpointStore",
    "CyclicBatches",
    "DatasetBatches",
    "Pipeline",
    "RandomBatches",
    "ScalarLog",
    "Stage",
    "TrainConfig",
    "Trainer",
    "UpdatePhase",
    "WithPenalties",
    "build_model",
    "capture_rng",
    "distributed_env",
    "load_model_state",
    "load_model_weights",
    "load_spec",
    "model_defaults_for",
    "model_phases",
    "prepare_run_folder",
    "resolve_device",
    "restore_rng",
    "unpack_batch",
]
