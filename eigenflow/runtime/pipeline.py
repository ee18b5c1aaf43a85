"""``Pipeline.from_config``: validate a whole specification, then run it.

A specification is a dict, or a TOML or JSON file holding one, in one of two forms::

    # one registered pipeline with its options
    pipeline = "gcp"
    solver = "mpa-lya"          # a component by name ...
    steps = 100

    # several stages run in order
    seed = 0
    [[stages]]
    pipeline = "gcp"
    solver = { name = "mpa-lya", degree = 7 }   # ... or by name with options

Top-level keys ``seed``, ``device``, ``out``, ``resume``, ``overwrite`` and ``tensorboard`` set
the run; every other key of a stage is an option of that stage's pipeline. Every error in the
specification is reported at once, each with its path (``stages[1].solver: unknown solver
'mpa-lyaa'; did you mean 'mpa-lya'?``), including what the constructors of the referenced
solvers, layers, constraints, traversals and metrics refuse.

An output folder holds one run: :meth:`Pipeline.run` refuses a folder that already holds one
unless ``resume`` (continue it: the training stages load their newest usable checkpoint) or
``overwrite`` (delete the folder's contents first) is given (:mod:`eigenflow.runtime.runs`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from ..core.component import RunContext
from ..core.config import ComponentRef, validate_options
from ..core.errors import ConfigError, PipelineSpecError
from ..core.io import atomic_write_json
from ..registry.registry import get_registries, resolve_reference
from .devices import resolve_device
from .runs import prepare_run_folder
from .trainer import distributed_env

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["Pipeline", "Stage", "load_spec"]

RUN_KEYS = ("seed", "device", "out", "resume", "overwrite", "tensorboard")


def load_spec(source: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Read a specification from a dict or a ``.toml`` / ``.json`` file (data only)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r}: is a folder; expected a .toml or .json file")
    if not path.is_file():
        raise ConfigError(f"config: no such file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {str(path)!r}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it "
            "as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config {str(path)!r}: cannot be read ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
            if not isinstance(spec, dict):
                raise ConfigError(f"config {str(path)!r}: expected a JSON object at the top level")
            return spec
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"config {str(path)!r}: cannot parse: {exc}") from None
    raise ConfigError(f"config {str(path)!r}: expected a .toml or .json file")


@attrs.frozen
class Stage:
    """One validated stage: the pipeline class, its config and its path in the spec."""

    name: str
    cls: type
    config: Any
    path: str


class Pipeline:
    """A validated, runnable composition of registered pipelines.

    Build it with :meth:`from_config`; :meth:`run` executes the stages in order and returns
    the JSON-serialisable summary (also written to ``<out>/summary.json``).
    """

    def __init__(
        self,
        stages: list[Stage],
        *,
        seed: int = 0,
        device: str | None = None,
        out: str | None = None,
        resume: bool = False,
        overwrite: bool = False,
        tensorboard: bool = False,
        spec: dict[str, Any] | None = None,
    ):
        self.stages = stages
        self.seed = seed
        self.device = device
        self.out = out
        self.resume = resume
        self.overwrite = overwrite
        self.tensorboard = tensorboard
        self.spec = spec or {}

    @classmethod
    def from_config(
        cls, source: Mapping[str, Any] | str | os.PathLike, /, **overrides: Any
    ) -> Pipeline:
        """Validate ``source`` (dict or TOML/JSON path) and build the pipeline.

        ``overrides`` replace top-level keys (for the single-stage form, pipeline options); a
        dotted key (``"trainer.resume"``) sets an entry of a table. Raises
        :class:`~eigenflow.PipelineSpecError` listing every problem with its path.
        """
        spec = load_spec(source)
        errors: list[str] = []
        for key, value in overrides.items():
            _set_dotted(spec, key, value, errors)
        stage_specs = _stage_specs(spec, errors)
        run = _run_options(spec, errors)
        stages = []
        for path, stage_spec in stage_specs:
            stage = _validate_stage(stage_spec, path, errors)
            if stage is not None:
                stages.append(stage)
        if errors:
            raise PipelineSpecError(errors)
        for flag in ("resume", "overwrite"):  # a training stage's 'trainer.resume' is the run's
            if any(_trainer_option(stage.config, flag) for stage in stages):
                run[flag] = True
        if run.get("resume") and run.get("overwrite"):
            raise PipelineSpecError(["resume, overwrite: give one of them, not both"])
        return cls(stages, spec=spec, **run)

    def run(
        self,
        out: str | os.PathLike | None = None,
        device: str | None = None,
        *,
        quiet: bool = False,
        resume: bool | None = None,
        overwrite: bool | None = None,
    ) -> dict[str, Any]:
        """Run every stage; returns ``{"pipeline": ..., "stages": [...], "out": ...}``.

        A folder that already holds a run is refused (:class:`~eigenflow.RunFolderError`)
        unless ``resume`` or ``overwrite`` is true (here or in the specification). A device
        the runtime cannot run on (``"mps"``, ``"meta"``, ``"cuda"`` without CUDA, ...) is a
        :class:`~eigenflow.ConfigError` raised before the folder is touched
        (:func:`~eigenflow.runtime.resolve_device`). Under ``torchrun`` only rank 0 writes
        ``run.json`` and ``summary.json`` and prints.
        """
        device_obj = resolve_device(device or self.device, "device")
        out_dir = Path(out or self.out or _default_out_dir(self))
        resume = self.resume if resume is None else resume
        overwrite = self.overwrite if overwrite is None else overwrite
        rank, _ = distributed_env()
        record = {
            "seed": self.seed,
            "stages": [
                {"pipeline": s.name, **_jsonable(attrs.asdict(s.config, recurse=False))}
                for s in self.stages
            ],
        }
        if rank == 0:
            prepare_run_folder(out_dir, record, resume=resume, overwrite=overwrite)
        results = []
        for i, stage in enumerate(self.stages):
            stage_dir = out_dir if len(self.stages) == 1 else out_dir / f"{i:02d}-{stage.name}"
            stage_dir.mkdir(parents=True, exist_ok=True)
            ctx = RunContext(
                out_dir=stage_dir,
                device=device_obj,
                seed=self.seed,
                quiet=quiet or rank != 0,
                resume=resume,
                tensorboard=self.tensorboard,
            )
            torch.manual_seed(self.seed)
            ctx.log(f"[eigenflow] stage {i}: pipeline {stage.name!r} -> {stage_dir}")
            start = time.perf_counter()
            result = stage.cls(stage.config).run(ctx)
            results.append(
                {
                    "pipeline": stage.name,
                    "options": _jsonable(attrs.asdict(stage.config, recurse=False)),
                    "seconds": round(time.perf_counter() - start, 3),
                    "result": _jsonable(result),
                }
            )
        summary = {
            "out": str(out_dir),
            "device": str(device_obj),
            "seed": self.seed,
            "stages": results,
        }
        if rank == 0:
            atomic_write_json(out_dir / "summary.json", summary)
        return summary

    def __repr__(self) -> str:
        return f"Pipeline({[s.name for s in self.stages]})"


# --------------------------------------------------------------------------- validation


def _stage_specs(spec: dict[str, Any], errors: list[str]) -> list[tuple[str, dict[str, Any]]]:
    has_single, has_stages = "pipeline" in spec, "stages" in spec
    if has_single and has_stages:
        errors.append("pipeline: give either 'pipeline' (one stage) or 'stages', not both")
        return []
    if has_stages:
        stages = spec["stages"]
        if not isinstance(stages, list) or not stages:
            errors.append("stages: expected a non-empty list of tables")
            return []
        out = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, Mapping):
                errors.append(f"stages[{i}]: expected a table, got {stage!r}")
                continue
            out.append((f"stages[{i}].", dict(stage)))
        extra = sorted(set(spec) - {"stages", *RUN_KEYS})
        errors.extend(
            f"{k}: unknown top-level key (allowed: stages, {', '.join(RUN_KEYS)})" for k in extra
        )
        return out
    if has_single:
        return [("", {k: v for k, v in spec.items() if k not in RUN_KEYS})]
    errors.append("pipeline: missing; name a registered pipeline or give a 'stages' list")
    return []


def _validate_stage(stage: dict[str, Any], path: str, errors: list[str]) -> Stage | None:
    name = stage.pop("pipeline", None)
    registry = get_registries()["pipeline"]
    if not isinstance(name, str):
        errors.append(f"{path}pipeline: expected a pipeline name, got {name!r}")
        return None
    if name not in registry:
        errors.append(f"{path}pipeline: {registry.unknown_message(name)}")
        return None
    cls = registry.get(name)
    config, stage_errors = validate_options(
        cls.Config, stage, resolve_component=resolve_reference, path=path
    )
    errors.extend(stage_errors)
    return None if config is None else Stage(name, cls, config, path)


def _run_options(spec: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    run: dict[str, Any] = {}
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        errors.append(f"seed: expected a non-negative integer, got {seed!r}")
    else:
        run["seed"] = seed
    device = spec.get("device")
    if device is not None:
        try:
            torch.device(device)
            run["device"] = device
        except (RuntimeError, TypeError):
            errors.append(f"device: {device!r} is not a torch device (e.g. 'cpu', 'cuda:0')")
    out = spec.get("out")
    if out is not None and not isinstance(out, str):
        errors.append(f"out: expected a folder path, got {out!r}")
    elif out is not None:
        run["out"] = out
    for flag in ("resume", "overwrite", "tensorboard"):
        value = spec.get(flag, False)
        if not isinstance(value, bool):
            errors.append(f"{flag}: expected true or false, got {value!r}")
        else:
            run[flag] = value
    return run


def _set_dotted(spec: dict[str, Any], key: str, value: Any, errors: list[str]) -> None:
    """``spec[a][b] = value`` for the key ``"a.b"`` (tables made as needed)."""
    parts = key.split(".")
    if not all(parts):
        errors.append(f"{key}: expected a key or dotted path like 'trainer.lr'")
        return
    table = spec
    for i, part in enumerate(parts[:-1]):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            where = ".".join(parts[: i + 1])
            errors.append(f"{key}: {where} = {inner!r} is not a table, so it has no entries")
            return
        table[part] = inner = dict(inner)
        table = inner
    table[parts[-1]] = value


def _trainer_option(config: Any, name: str) -> Any:
    trainer = getattr(config, "trainer", None)
    return trainer.get(name) if isinstance(trainer, Mapping) else None


# --------------------------------------------------------------------------- helpers


def _default_out_dir(pipeline: Pipeline) -> Path:
    names = "+".join(s.name for s in pipeline.stages) or "run"
    return Path("eigenflow-runs") / f"{names}-{time.strftime('%Y%m%d-%H%M%S')}"


def _jsonable(value: Any) -> Any:
    """Convert configs, tensors, paths and references into JSON-serialisable data."""
    if isinstance(value, ComponentRef):
        return value.to_dict()
    if attrs.has(type(value)):
        return _jsonable(attrs.asdict(value, recurse=False))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value
