"""The base every plugin class derives from, and the interface of each component kind."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from .config import validate_options
from .errors import ConfigError, EigenflowWarning, NotSupportedError
from .progress import Progress

__all__ = [
    "Component",
    "Constraint",
    "Dataset",
    "FitContext",
    "Layer",
    "Metric",
    "Model",
    "PipelineBase",
    "RunContext",
    "Traversal",
]


@attrs.frozen
class _NoOptions:
    """A config with no options."""


class Component:
    """Base of every plugin class.

    Subclasses set ``Config`` (an ``attrs`` config class made with
    :func:`eigenflow.core.config.config`) and ``source`` (the document and equations the
    component implements). ``name`` is set when the class is registered.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    Config: ClassVar[type] = _NoOptions

    config: Any

    @classmethod
    def make_config(cls, config: Any = None, options: Mapping[str, Any] | None = None) -> Any:
        """Return ``config`` or build one from keyword ``options`` (validated)."""
        options = dict(options or {})
        if config is not None:
            if options:
                config = attrs.evolve(config, **options)
            if not isinstance(config, cls.Config):
                raise ConfigError(
                    f"{cls.kind} {cls.name or cls.__name__!r}: expected a {cls.Config.__name__} "
                    f"config, got {type(config).__name__}"
                )
            return config
        built, errors = validate_options(cls.Config, options)
        if errors:
            owner = f"{cls.kind} {cls.name or cls.__name__!r}"
            raise ConfigError(f"{owner}: " + "; ".join(errors))
        return built


class Layer(Component, nn.Module):
    """A meta-layer (``nn.Module``) built around a solver chosen by name."""

    kind = "layer"

    @classmethod
    def example_inputs(cls, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        """Small valid inputs of ``forward`` in ``dtype``, for tests and documentation.

        Every layer overrides this: the conformance suite
        (:class:`~eigenflow.testing.conformance.LayerConformance`) runs forward and backward on
        them and fails without them.

        Raises
        ------
        NotSupportedError
            In the base class (the layer does not provide example inputs).
        """
        raise NotSupportedError(f"layer {cls.name or cls.__name__!r} has no example inputs")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(getattr(self, "config", None), "graph", False):
            return self._graphed_call(*args, **kwargs)
        return super().__call__(*args, **kwargs)

    def _graphed_call(self, *args: Any, **kwargs: Any) -> Any:
        """``forward`` compiled with ``mode="reduce-overhead"`` (CUDA graphs) on CUDA input;
        eager, after a one-time :class:`~eigenflow.EigenflowWarning`, otherwise."""
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if not any(t.is_cuda for t in tensors):
            if not self.__dict__.get("_graph_notice_given", False):
                self.__dict__["_graph_notice_given"] = True
                device = tensors[0].device.type if tensors else "this device"
                warnings.warn(
                    f"layer {self.name!r}: graph=True captures CUDA graphs for CUDA input; "
                    f"running eagerly on {device}",
                    EigenflowWarning,
                    stacklevel=3,
                )
            return super().__call__(*args, **kwargs)
        compiled = self.__dict__.get("_graphed_forward")
        if compiled is None:
            compiled = torch.compile(self.forward, mode="reduce-overhead", fullgraph=True)
            self.__dict__["_graphed_forward"] = compiled
        return compiled(*args, **kwargs)


class Metric(Component):
    """A measurement: ``metric(...) -> float | dict``; the inputs are documented per metric."""

    kind = "metric"

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    def __call__(self, *args: Any, **kwargs: Any) -> float | dict[str, Any]:
        return self.compute(*args, **kwargs)

    def compute(self, *args: Any, **kwargs: Any) -> float | dict[str, Any]:
        """Compute the metric (subclasses implement this)."""
        raise NotImplementedError  # pragma: no cover - abstract

    @classmethod
    def example_inputs(cls) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Small valid inputs ``(args, kwargs)`` for ``metric(*args, **kwargs)``.

        Every metric overrides this: the conformance suite
        (:class:`~eigenflow.testing.conformance.MetricConformance`) computes the metric on them
        (it must return finite numbers) and fails without them.

        Raises
        ------
        NotSupportedError
            In the base class (the metric does not provide example inputs).
        """
        raise NotSupportedError(f"metric {cls.name or cls.__name__!r} has no example inputs")


class Constraint(Component):
    """Attaches to a module or parameter and changes its gradient, learning rate,
    parametrization, or adds a penalty; ``detach`` restores the target."""

    kind = "constraint"

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    def attach(self, target: nn.Module | nn.Parameter) -> Constraint:  # pragma: no cover
        raise NotImplementedError

    def detach(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def penalty(self) -> torch.Tensor | None:
        """An added loss term, or ``None`` when the constraint adds none."""
        return None


@attrs.frozen(kw_only=True)
class FitContext:
    """What a traversal may be fitted on: the typed argument of :meth:`Traversal.fit_context`.

    Parameters
    ----------
    generator
        ``generator(z) -> x``: the decoder, latent codes ``(N, d)`` to outputs ``(N, ...)``.
    latent_dim
        ``d``.
    z
        Latent codes ``(N, d)`` at which local quantities (Jacobians, metrics) are taken.
    layer_or_weight
        The first linear layer reading the code, or its weight ``(out, d)`` (SeFa's ``A``).
    model
        The whole model (``None`` when only a generator is given).
    constraint
        An attached constraint that carries directions (e.g. ``householder``), or ``None``.
    device
        Where to fit.
    seed
        The run's seed.
    """

    generator: Any
    latent_dim: int
    z: torch.Tensor
    layer_or_weight: Any = None
    model: Any = None
    constraint: Any = None
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    seed: int = 0

    def require(self, field: str, traversal: str) -> Any:
        """``getattr(self, field)``, or a :class:`~eigenflow.core.errors.ConfigError` saying
        that ``traversal`` needs it and the caller did not give it."""
        value = getattr(self, field)
        if value is None:
            raise ConfigError(
                f"traversal {traversal!r}: fitting needs {field!r}, which this fit context "
                "does not carry"
            )
        return value


class Traversal(Component):
    """Finds directions or paths in a latent space: ``fit``, ``directions``, ``traverse``.

    ``fit(...)`` takes what the method itself needs; :meth:`fit_context` fits from a
    :class:`FitContext`, the one call a pipeline makes for every traversal.
    """

    kind = "traversal"

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    def fit_context(self, ctx: FitContext) -> Traversal:  # pragma: no cover - abstract
        """Fit from ``ctx`` (each traversal picks the fields it needs); returns ``self``."""
        raise NotSupportedError(
            f"traversal {self.name or type(self).__name__!r} does not implement "
            "fit_context(ctx: FitContext); pipelines fit traversals through it"
        )


class Model(Component, nn.Module):
    """A trainable model with ``loss(batch) -> dict`` (key ``loss`` is the total)."""

    kind = "model"


class Dataset(Component, torch.utils.data.Dataset):
    """A dataset generated or shipped locally (nothing is downloaded at run time)."""

    kind = "dataset"


@attrs.define
class RunContext:
    """What a running pipeline receives: output folder, device, seed and a progress logger.

    Progress goes to standard error (standard output is for results), and not at all with
    ``quiet``.
    """

    out_dir: Path
    device: torch.device
    seed: int = 0
    quiet: bool = False
    #: continue the run in ``out_dir`` (training stages load their newest usable checkpoint)
    resume: bool = False
    #: training stages also log to TensorBoard
    tensorboard: bool = False

    def log(self, message: str) -> None:
        """Print a progress line to standard error unless ``quiet``."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def progress(self, total: int, desc: str) -> Progress:
        """A :class:`~eigenflow.core.progress.Progress` of ``total`` steps: a tqdm bar on a
        terminal when tqdm is installed, a line every fifth of the run otherwise."""
        return Progress(total, desc, quiet=self.quiet)


class PipelineBase(Component):
    """A named, validated composition of components that runs end to end.

    ``run(ctx)`` returns a JSON-serialisable summary and may write files to ``ctx.out_dir``.
    """

    kind = "pipeline"

    def __init__(self, config: Any = None, **options: Any):
        self.config = self.make_config(config, options)

    def run(self, ctx: RunContext) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
