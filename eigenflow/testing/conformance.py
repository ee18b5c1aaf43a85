"""Conformance tests every registered plugin runs, one class per kind.

Plugin authors subclass a class and name their distribution (every component of that kind
it registers is tested) or their components; the tests run under pytest::

    from eigenflow.testing import SolverConformance

    class TestMySolver(SolverConformance):
        distribution = "my-package"     # and/or names = ("my-solver",)

With neither, every registered component of the kind is tested. A run that finds nothing to
test fails (it cannot pass empty), and so does a component whose name another plugin also
claims. What each kind needs is listed in the docs (``writing-a-plugin``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import pytest
import torch

from ..api import create, get
from ..api import list as list_names
from ..core.component import Component, Constraint, kind_base
from ..core.config import describe_config
from ..core.errors import ConfigError, InputError, NotSupportedError
from ..core.solver import Solver
from ..registry.registry import get_registries
from .matrices import random_spd, reference_sqrt_invsqrt, spd_from_eigenvalues

__all__ = [
    "ComponentConformance",
    "ConstraintConformance",
    "DatasetConformance",
    "LayerConformance",
    "MetricConformance",
    "ModelConformance",
    "PipelineConformance",
    "SolverConformance",
    "TraversalConformance",
]

DTYPES = (torch.float32, torch.float64)


def _rel_err(X: torch.Tensor, ref: torch.Tensor) -> float:
    X, ref = X.to(torch.float64), ref.to(torch.float64)
    return float(torch.linalg.matrix_norm(X - ref).max() / torch.linalg.matrix_norm(ref).min())


class _Nothing(str):
    """The parameter of a conformance class that found no component to test."""

    reason: str = ""


def _nothing(reason: str) -> _Nothing:
    value = _Nothing("nothing-to-test")
    value.reason = reason
    return value


class ComponentConformance:
    """What every component promises: registration under its own name, a frozen documented
    config, clear errors for unknown options. Subclasses set ``kind``; users set
    ``distribution`` (test every component of the kind it registers), ``names`` (test these),
    or both (the names must come from that distribution)."""

    kind: ClassVar[str] = ""
    names: ClassVar[Sequence[str]] = ()
    distribution: ClassVar[str | None] = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", self._names_to_test())

    def _names_to_test(self) -> list[str]:
        if self.names:
            return list(self.names)
        registry = get_registries()[self.kind]
        names = list_names(self.kind)
        if self.distribution is not None:
            names = [n for n in names if registry.entry(n).distribution == self.distribution]
        if names:
            return names
        where = f" by distribution {self.distribution!r}" if self.distribution else ""
        skipped = "; ".join(str(p) for p in registry.problems)
        return [
            _nothing(
                f"{type(self).__name__}: no {self.kind} is registered{where}, so there is "
                "nothing to test; set names = (...) to your plugin's names or "
                "distribution = '...' to its distribution"
                + (f" (skipped plugins: {skipped})" if skipped else "")
            )
        ]

    @pytest.fixture(autouse=True)
    def _something_to_test(self, request: Any) -> None:
        """Fail (not pass, not skip) when the class found no component to test."""
        name = (
            request.node.callspec.params.get("name") if hasattr(request.node, "callspec") else None
        )
        if isinstance(name, _Nothing):
            pytest.fail(name.reason, pytrace=False)

    def test_registered_under_its_own_name(self, name: str) -> None:
        """The name is registered (a skipped plugin's name fails with the reason): by this
        class's ``distribution`` when set, else with no other plugin claiming it too."""
        registry = get_registries()[self.kind]
        entry = registry.entry(name)  # UnknownNameError names the skipped plugin providing it
        if self.distribution is not None:
            assert entry.distribution == self.distribution, (
                f"{self.kind} {name!r} is registered by {entry.plugin} (from "
                f"{entry.distribution}), not by {self.distribution}: the name is taken, pick "
                "another one"
            )
        if self.distribution is not None:
            return  # the name is this distribution's: a rival that lost fails its own suite
        rivals = [p for p in registry.problems if (self.kind, name) in p.provides]
        assert not rivals, (
            f"{self.kind} {name!r} is claimed by more than one plugin: registered by "
            f"{entry.plugin} (from {entry.distribution}); also "
            + "; ".join(str(p) for p in rivals)
            + ". Names are global: pick one no other plugin uses (a prefix such as your "
            "package's name helps)"
        )

    def test_registered_class(self, name: str) -> None:
        """The class derives from its kind's base, carries its name and a docstring."""
        cls = get(self.kind, name)
        assert issubclass(cls, kind_base(self.kind)), f"{name} must derive from its kind's base"
        assert issubclass(cls, Component), f"{name} must derive from eigenflow.core.Component"
        assert cls.name == name, f"{cls.__qualname__}.name is {cls.name!r}, registered as {name!r}"
        assert inspect.getdoc(cls), f"{self.kind} {name!r} needs a docstring"

    def test_config_is_frozen_and_documented(self, name: str) -> None:
        """``Config`` is a frozen attrs class and every option has help text."""
        cls = get(self.kind, name)
        assert attrs.has(cls.Config), f"{name}: Config must be an attrs class"
        fields = attrs.fields(cls.Config)
        if fields and all(f.default is not attrs.NOTHING for f in fields):
            with pytest.raises(attrs.exceptions.FrozenInstanceError):
                setattr(cls.Config(), fields[0].name, None)
        for row in describe_config(cls.Config):
            assert row["help"], f"option {row['name']!r} of {name!r} needs help text"

    def test_unknown_option_is_a_clear_error(self, name: str) -> None:
        """An unknown option is a ConfigError naming the component and the option."""
        with pytest.raises(ConfigError) as info:
            create(self.kind, name, not_an_option_xyz=1)
        message = str(info.value)
        assert name in message and "not_an_option_xyz" in message and "unknown option" in message, (
            f"the error should name {name!r}, the option and say 'unknown option': {message!r}"
        )


class SolverConformance(ComponentConformance):
    """Solvers: shapes with several batch dimensions, float32/float64, accuracy on
    well-conditioned input, bad inputs, empty batches, eigh when provided, gradcheck when the
    gradient is exact, finite gradients on repeated eigenvalues when robust."""

    kind = "solver"

    @pytest.fixture
    def solver(self, name: str) -> Solver:
        return create("solver", name)

    @pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
    def test_batched_shapes_and_accuracy(self, solver: Solver, dtype: torch.dtype) -> None:
        """Shapes and dtypes kept with two batch dimensions; sqrt and invsqrt within
        ``10 * forward_rtol`` of a float64 eigh reference for n = 1, 3, 8."""
        for n in (1, 3, 8):
            A64 = random_spd(n, 2, 3, cond=10.0, seed=n)
            A = A64.to(dtype)
            root, inv = solver.sqrt_invsqrt(A)
            assert root.shape == A.shape and inv.shape == A.shape, f"shape changed for n={n}"
            assert root.dtype == dtype and inv.dtype == dtype, f"dtype changed for n={n}"
            ref_root, ref_inv = reference_sqrt_invsqrt(A64)
            tol = 10 * solver.forward_rtol[dtype]
            assert _rel_err(root, ref_root) < tol, f"sqrt error too large for n={n}"
            assert _rel_err(inv, ref_inv) < tol, f"invsqrt error too large for n={n}"
            assert _rel_err(solver.sqrt(A), ref_root) < tol, f"sqrt() differs for n={n}"
            assert _rel_err(solver.invsqrt(A), ref_inv) < tol, f"invsqrt() differs for n={n}"

    def test_each_matrix_is_normalised_alone(self, solver: Solver) -> None:
        """A matrix's result does not depend on the other matrices of its batch."""
        small = random_spd(6, 1, cond=5.0, seed=1, scale=1e-3)
        large = random_spd(6, 1, cond=5.0, seed=2, scale=1e3)
        together = solver.sqrt(torch.cat([small, large]))
        alone = torch.cat([solver.sqrt(small), solver.sqrt(large)])
        torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-12)

    def test_empty_batch(self, solver: Solver) -> None:
        """An empty batch ``(0, 4, 4)`` gives empty results of the same shape."""
        A = torch.empty(0, 4, 4, dtype=torch.float64)
        assert solver.sqrt(A).shape == (0, 4, 4), "sqrt of an empty batch"
        assert solver.invsqrt(A).shape == (0, 4, 4), "invsqrt of an empty batch"

    @pytest.mark.parametrize(
        ("bad", "fragment"),
        [
            (lambda: torch.ones(3, 4, dtype=torch.float64), "square"),
            (lambda: torch.ones(3, dtype=torch.float64), "dimensions"),
            (lambda: torch.arange(9.0, dtype=torch.float64).reshape(3, 3), "symmetric"),
            (lambda: torch.full((2, 2), float("nan"), dtype=torch.float64), "NaN"),
            (lambda: torch.eye(3, dtype=torch.int64), "dtype"),
            (lambda: [[1.0, 0.0], [0.0, 1.0]], "torch.Tensor"),
        ],
        ids=["non-square", "1-d", "non-symmetric", "non-finite", "integer", "not-a-tensor"],
    )
    def test_bad_input_is_a_clear_error(self, solver: Solver, bad: Any, fragment: str) -> None:
        """A bad input is an InputError whose message starts with ``A:`` and names the
        problem."""
        for method in (solver.sqrt, solver.invsqrt, solver.sqrt_invsqrt):
            with pytest.raises(InputError) as info:
                method(bad())
            assert str(info.value).startswith("A:") and fragment in str(info.value), (
                f"{method.__name__}: expected 'A: ...{fragment}...', got {str(info.value)!r}"
            )

    def test_eigh_or_clear_refusal(self, solver: Solver) -> None:
        """With ``provides_eigh``, eigh matches torch.linalg.eigvalsh with orthonormal
        eigenvectors that reconstruct A; otherwise it raises NotSupportedError."""
        A = random_spd(5, 2, cond=50.0, seed=3) - 0.1 * torch.eye(5, dtype=torch.float64)
        if not solver.provides_eigh:
            with pytest.raises(NotSupportedError):
                solver.eigh(A)
            return
        L, V = solver.eigh(A)
        ref = torch.linalg.eigvalsh(A)
        torch.testing.assert_close(L, ref, rtol=1e-10, atol=1e-12)
        eye = torch.eye(5, dtype=A.dtype)
        torch.testing.assert_close(V.mT @ V, eye.expand_as(V), rtol=0, atol=1e-10)
        torch.testing.assert_close((V * L.unsqueeze(-2)) @ V.mT, A, rtol=0, atol=1e-10)

    def test_gradients_are_finite(self, solver: Solver) -> None:
        """Gradients of sqrt and invsqrt are finite on a condition number 100 input."""
        A = random_spd(6, 3, cond=100.0, seed=4).requires_grad_()
        root, inv = solver.sqrt_invsqrt(A)
        (root.sum() + inv.sum()).backward()
        assert torch.isfinite(A.grad).all(), "non-finite gradient"

    def test_gradcheck_when_exact(self, solver: Solver) -> None:
        """With ``exact_gradient``, sqrt and invsqrt pass float64 gradcheck."""
        if not solver.exact_gradient:
            pytest.skip("this solver does not claim exact gradients")
        eig = torch.tensor([[0.6, 1.1, 1.9, 3.0]], dtype=torch.float64)
        base = spd_from_eigenvalues(eig, generator=torch.Generator().manual_seed(5))
        X = base.clone().requires_grad_()
        G = torch.randn(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))

        def loss_sqrt(X: torch.Tensor) -> torch.Tensor:
            return (solver.sqrt(0.5 * (X + X.mT), check=False) * G).sum()

        def loss_invsqrt(X: torch.Tensor) -> torch.Tensor:
            return (solver.invsqrt(0.5 * (X + X.mT), check=False) * G).sum()

        assert torch.autograd.gradcheck(loss_sqrt, (X,), eps=1e-6, atol=1e-6, rtol=1e-5)
        assert torch.autograd.gradcheck(loss_invsqrt, (X,), eps=1e-6, atol=1e-6, rtol=1e-5)

    def test_robust_gradient_on_repeated_eigenvalues(self, solver: Solver) -> None:
        """With ``robust_gradient``, gradients stay finite on repeated eigenvalues."""
        if not solver.robust_gradient:
            pytest.skip("this solver does not claim robust gradients")
        eig = torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0]], dtype=torch.float64)
        for A in (torch.eye(5, dtype=torch.float64)[None], spd_from_eigenvalues(eig)):
            for dtype in DTYPES:
                X = A.to(dtype).requires_grad_()
                root, inv = solver.sqrt_invsqrt(X)
                (root.square().sum() + inv.sum()).backward()
                assert torch.isfinite(X.grad).all(), f"non-finite gradient in {dtype}"


LAYER_INPUTS_HELP = (
    "add a classmethod to the layer class:\n\n"
    "    @classmethod\n"
    "    def example_inputs(cls, dtype=torch.float32) -> tuple[torch.Tensor, ...]:\n"
    "        return (torch.randn(2, 8, 5, 5, dtype=dtype),)  # what forward() takes\n\n"
    "(see 'What the conformance suite needs' in the plugin guide)"
)


class LayerConformance(ComponentConformance):
    """Layers: an ``nn.Module`` built from defaults that provides ``example_inputs(dtype)``;
    forward and backward on them give finite results."""

    kind = "layer"

    def test_module_and_forward(self, name: str) -> None:
        """Forward and backward on the layer's example inputs are finite."""
        layer = create("layer", name)
        assert isinstance(layer, torch.nn.Module), f"layer {name!r} must be a torch.nn.Module"
        if not _overrides(type(layer), kind_base("layer"), "example_inputs"):
            pytest.fail(f"layer {name!r} has no example inputs: {LAYER_INPUTS_HELP}", pytrace=False)
        inputs = [x.requires_grad_() for x in type(layer).example_inputs(torch.float64)]
        out = layer(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        assert all(torch.isfinite(o).all() for o in outs), f"layer {name!r}: non-finite output"
        sum(o.sum() for o in outs).backward()
        assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in inputs), (
            f"layer {name!r}: missing or non-finite input gradient"
        )


def _overrides(cls: type, base: type, method: str) -> bool:
    """Whether ``cls`` defines its own ``method`` (a function, classmethod or staticmethod)."""

    def function(obj: Any) -> Any:
        return getattr(obj, "__func__", obj)  # classmethods are bound anew at each access

    return function(getattr(cls, method)) is not function(getattr(base, method))


METRIC_INPUTS_HELP = (
    "add a classmethod to the metric class returning small valid inputs as (args, kwargs), "
    "the way the metric is called, metric(*args, **kwargs):\n\n"
    "    @classmethod\n"
    "    def example_inputs(cls) -> tuple[tuple, dict]:\n"
    "        A = 4.0 * torch.eye(3, dtype=torch.float64)\n"
    "        return (2.0 * torch.eye(3, dtype=torch.float64), A), {}\n\n"
    "(see 'What the conformance suite needs' in the plugin guide)"
)


def _numbers(value: Any) -> list[float]:
    """The numbers in a metric's result (nested lists and dicts allowed); a value of another
    type raises ``TypeError``."""
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is a bool, not a number")
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    raise TypeError(f"{type(value).__name__} {value!r} is not a number (convert with float())")


class MetricConformance(ComponentConformance):
    """Metrics: ``compute`` implemented, ``example_inputs()`` provided, and the metric
    computed on them gives finite numbers (a float, or a dict of floats, ints and lists of
    them)."""

    kind = "metric"

    def test_compute_implemented(self, name: str) -> None:
        """The class overrides ``Metric.compute``."""
        cls = get("metric", name)
        assert _overrides(cls, kind_base("metric"), "compute"), (
            f"metric {name!r} must implement compute(...)"
        )

    def test_example_inputs_provided(self, name: str) -> None:
        """The class overrides ``Metric.example_inputs`` (without them nothing can be run)."""
        cls = get("metric", name)
        if not _overrides(cls, kind_base("metric"), "example_inputs"):
            pytest.fail(
                f"metric {name!r} has no example inputs: {METRIC_INPUTS_HELP}", pytrace=False
            )

    def test_computes_finite_numbers_on_example_inputs(self, name: str) -> None:
        """``metric(*args, **kwargs)`` on the example inputs returns finite numbers."""
        cls = get("metric", name)
        if not _overrides(cls, kind_base("metric"), "example_inputs"):
            pytest.fail(
                f"metric {name!r} has no example inputs: {METRIC_INPUTS_HELP}", pytrace=False
            )
        example = cls.example_inputs()
        assert isinstance(example, tuple) and len(example) == 2, (
            f"metric {name!r}: example_inputs() must return (args, kwargs), got {example!r}"
        )
        args, kwargs = example
        value = create("metric", name)(*args, **kwargs)
        try:
            numbers = _numbers(value)
        except TypeError as exc:
            pytest.fail(f"metric {name!r} returned a non-number: {exc}", pytrace=False)
        assert numbers, f"metric {name!r} returned no number: {value!r}"
        assert all(math.isfinite(x) for x in numbers), (
            f"metric {name!r} returned a non-finite number on its example inputs: {value!r}"
        )


class ConstraintConformance(ComponentConformance):
    """Constraints: ``attach`` and ``detach`` implemented."""

    kind = "constraint"

    def test_attach_detach_implemented(self, name: str) -> None:
        """The class overrides ``attach`` and ``detach``."""
        cls = get("constraint", name)
        assert _overrides(cls, Constraint, "attach") and _overrides(cls, Constraint, "detach"), (
            f"constraint {name!r} must implement attach(target) and detach()"
        )


class TraversalConformance(ComponentConformance):
    """Traversals: ``fit`` and ``traverse`` implemented."""

    kind = "traversal"

    def test_methods_implemented(self, name: str) -> None:
        """The class has ``fit`` and ``traverse``."""
        cls = get("traversal", name)
        for method in ("fit", "traverse"):
            assert callable(getattr(cls, method, None)), f"traversal {name!r} lacks {method}"


class ModelConformance(ComponentConformance):
    """Models: ``loss``, ``encode`` and ``decode`` implemented."""

    kind = "model"

    def test_methods_implemented(self, name: str) -> None:
        """The class has ``loss``, ``encode`` and ``decode``."""
        cls = get("model", name)
        for method in ("loss", "encode", "decode"):
            assert callable(getattr(cls, method, None)), f"{name} lacks {method}"


class DatasetConformance(ComponentConformance):
    """Datasets: a ``torch.utils.data.Dataset`` with ``__len__`` and ``__getitem__``."""

    kind = "dataset"

    def test_dataset_protocol(self, name: str) -> None:
        """A ``torch.utils.data.Dataset`` with ``__getitem__`` and ``__len__``."""
        cls = get("dataset", name)
        assert issubclass(cls, torch.utils.data.Dataset), f"dataset {name!r} must be a Dataset"
        assert _overrides(cls, torch.utils.data.Dataset, "__getitem__"), (
            f"dataset {name!r} must implement __getitem__"
        )
        assert callable(getattr(cls, "__len__", None)), f"dataset {name!r} must implement __len__"


class PipelineConformance(ComponentConformance):
    """Pipelines: ``run`` implemented and the default spec validates."""

    kind = "pipeline"

    def test_default_spec_validates(self, name: str) -> None:
        """``run`` is implemented and ``{"pipeline": name}`` validates with the defaults."""
        from ..pipeline import Pipeline

        cls = get("pipeline", name)
        assert _overrides(cls, kind_base("pipeline"), "run"), (
            f"pipeline {name!r} must implement run"
        )
        pipeline = Pipeline.from_config({"pipeline": name})
        assert [s.name for s in pipeline.stages] == [name], "the spec should build one stage"
