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
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import attrs
import pytest
import torch

from ..api import create, get
from ..api import list as list_names
from ..core.component import Component, Constraint
from ..core.config import describe_config
from ..core.errors import ConfigError, InputError, NotSupportedError
from ..core.kinds import kind_base
from ..core.solver import ENVELOPE_CONDS, Solver
from ..registry.registry import get_registries
from .matrices import random_spd, reference_sqrt_invsqrt, spd_from_eigenvalues
from .sync import record_host_syncs

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

    def test_error_envelope_holds(self, solver: Solver) -> None:
        """A stated ``error_envelope`` is well formed (one non-decreasing bound per condition
        number of ``ENVELOPE_CONDS``) and holds at ``n = 8`` on log-spaced spectra against
        float64 ``eigh``, for every (op, dtype) stated."""
        envelope = type(solver).error_envelope
        if not envelope:
            pytest.skip("this solver states no error envelope")
        mats = {c: random_spd(8, 2, cond=c, seed=round(math.log10(c))) for c in ENVELOPE_CONDS}
        for (op, dtype), bounds in envelope.items():
            assert op in ("sqrt", "invsqrt") and dtype in DTYPES
            assert len(bounds) == len(ENVELOPE_CONDS)
            assert all(a <= b for a, b in itertools.pairwise(bounds)), "bounds must not decrease"
            for cond, bound in zip(ENVELOPE_CONDS, bounds):
                A = mats[cond]
                ref = reference_sqrt_invsqrt(A)[0 if op == "sqrt" else 1]
                got = getattr(solver, op)(A.to(dtype))
                assert _rel_err(got, ref) <= bound, f"{op} {dtype} cond {cond:g}"

    def test_second_order_as_declared(self, solver: Solver) -> None:
        """``second_order = True``: ``gradgradcheck`` in float64 (the double backward against
        finite differences of the solver's own gradient) on a separated spectrum, for
        ``sqrt``, ``invsqrt`` and ``sqrt_invsqrt``. ``False``: a gradient taken with
        ``create_graph=True`` raises ``NotSupportedError`` naming the solver, while the
        ordinary gradient still works."""
        eig = torch.tensor([[0.6, 1.1, 1.9, 3.0]], dtype=torch.float64)
        base = spd_from_eigenvalues(eig, generator=torch.Generator().manual_seed(7))
        methods = ("sqrt", "invsqrt", "sqrt_invsqrt")
        if solver.second_order:
            for method in methods:
                fn = getattr(solver, method)
                X = base.clone().requires_grad_()
                assert torch.autograd.gradgradcheck(
                    lambda X: fn(0.5 * (X + X.mT), check=False),  # noqa: B023 - used at once
                    (X,),
                    eps=1e-6,
                    atol=1e-5,
                    rtol=1e-4,
                ), f"{method}: double backward disagrees with finite differences"
            return
        for method in methods:
            X = base.clone().requires_grad_()
            out = getattr(solver, method)(X)
            loss = sum(o.square().sum() for o in (out if isinstance(out, tuple) else (out,)))
            (plain,) = torch.autograd.grad(loss, X, retain_graph=True)
            assert torch.isfinite(plain).all()
            with pytest.raises(NotSupportedError) as info:
                torch.autograd.grad(loss, X, create_graph=True)
            assert repr(solver.name) in str(info.value) and "second_order" in str(info.value)

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

    # ------------------------------------------------------------------ torch.compile

    #: Upper bound on the CPU time of compiling and running one solver's forward+backward (a
    #: hang detector: tracing must never enter exact-arithmetic set-up code; issue 20). CPU
    #: time of the process, not wall-clock, so a machine shared with other jobs does not
    #: fail it.
    compile_seconds: ClassVar[float] = 30.0

    @staticmethod
    def _every_op_loss(solver: Solver, check: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """A scalar touching every method of ``solver`` (sqrt, invsqrt, sqrt_invsqrt, eigh when
        provided) with fixed weights, so each backward contributes."""
        gen = torch.Generator().manual_seed(11)
        W = torch.randn(4, 6, 6, dtype=torch.float64, generator=gen)

        def loss(A: torch.Tensor) -> torch.Tensor:
            w = W.to(A.dtype)
            total = (solver.sqrt(A, check=check) * w[0]).sum()
            total = total + (solver.invsqrt(A, check=check) * w[1]).sum()
            root, inv = solver.sqrt_invsqrt(A, check=check)
            total = total + (root * w[2]).sum() + (inv * w[3]).sum()
            if solver.provides_eigh:
                L, V = solver.eigh(A, check=check)
                total = total + L.square().sum() + (V * w[0]).square().sum()
            return total

        return loss

    def test_compiles_forward_and_backward(self, solver: Solver) -> None:
        """``torch.compile`` (backend ``aot_eager``, which traces the backward too) of every
        method on a gradient-requiring batch: whole-graph (``fullgraph=True``) unless the solver
        declares a ``trace_blocker``; done within :attr:`compile_seconds` of CPU time; the compiled
        gradient equals the eager one to 1e-6 relative."""
        torch._dynamo.reset()
        A = random_spd(6, 2, 2, cond=20.0, seed=12)
        loss = self._every_op_loss(solver, check=False)
        X = A.clone().requires_grad_()
        (eager,) = torch.autograd.grad(loss(X), X)
        fullgraph = solver.trace_blocker is None
        start, start_cpu = time.perf_counter(), time.process_time()
        compiled = torch.compile(loss, backend="aot_eager", fullgraph=fullgraph)
        (traced,) = torch.autograd.grad(compiled(X), X)
        cpu = time.process_time() - start_cpu
        wall = time.perf_counter() - start
        assert cpu < self.compile_seconds, (
            f"compiling took {cpu:.1f} s of CPU time ({wall:.1f} s wall-clock)"
        )
        rel = float(torch.linalg.vector_norm(traced - eager) / torch.linalg.vector_norm(eager))
        assert rel < 1e-6, f"compiled gradient differs from eager by {rel:.2e} (relative)"

    def test_no_host_sync_in_forward_and_backward(self, solver: Solver) -> None:
        """With ``check=False`` no method, forward or backward, reads a value on the host or
        runs a value-sized operator (:func:`eigenflow.testing.record_host_syncs`), unless the
        solver declares a ``trace_blocker``."""
        A = random_spd(6, 2, 2, cond=20.0, seed=12).requires_grad_()
        with record_host_syncs() as found:
            self._every_op_loss(solver, check=False)(A).backward()
        if solver.trace_blocker is None:
            assert not found, f"host synchronisation in the hot path: {sorted(set(found))}"

    def test_trace_blocker_is_declared_truthfully(self, solver: Solver) -> None:
        """A declared ``trace_blocker`` is real: ``fullgraph=True`` fails on it. (Solvers without
        one are traced whole by :meth:`test_compiles_forward_and_backward`.)"""
        if solver.trace_blocker is None:
            return
        torch._dynamo.reset()
        A = random_spd(6, 2, cond=20.0, seed=13)
        compiled = torch.compile(
            self._every_op_loss(solver, check=False), backend="aot_eager", fullgraph=True
        )
        with pytest.raises(Exception):  # noqa: B017 - any dynamo failure counts
            compiled(A)

    def test_checks_trace_and_raise_under_compile(self, solver: Solver) -> None:
        """With ``check=True`` the input checks run on the device under ``torch.compile``: a
        valid batch gives the eager result, a non-PSD one raises eigenflow's message."""
        torch._dynamo.reset()
        fullgraph = solver.trace_blocker is None
        compiled = torch.compile(
            lambda A: solver.sqrt(A, check=True), backend="aot_eager", fullgraph=fullgraph
        )
        A = random_spd(5, 2, cond=10.0, seed=14)
        torch.testing.assert_close(compiled(A), solver.sqrt(A), rtol=1e-9, atol=1e-12)
        bad = A.clone()
        bad[1] = -bad[1]
        with pytest.raises(RuntimeError, match="eigenflow InputError: A: expected positive"):
            compiled(bad)

    # ------------------------------------------------------------------ definiteness

    @pytest.mark.parametrize(
        "make",
        [
            lambda: torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64)),
            lambda: -2.0 * torch.eye(3, dtype=torch.float64),
            lambda: random_spd(6, 2, cond=10.0, seed=15) - 2.0 * torch.eye(6, dtype=torch.float64),
        ],
        ids=["indefinite-2x2", "negative-definite", "shifted-batch"],
    )
    def test_non_psd_input_is_a_clear_error(self, solver: Solver, make: Any) -> None:
        """sqrt/invsqrt/sqrt_invsqrt refuse matrices with a clearly negative eigenvalue, naming
        ``A`` and the smallest eigenvalue (computed independently here by ``eigvalsh``)."""
        A = make()
        lowest = float(torch.linalg.eigvalsh(A).min())
        for method in (solver.sqrt, solver.invsqrt, solver.sqrt_invsqrt):
            with pytest.raises(InputError) as info:
                method(A)
            message = str(info.value)
            assert message.startswith("A: expected positive semidefinite")
            assert f"{lowest:.4g}" in message, message

    def test_psd_boundary_is_accepted(self, solver: Solver) -> None:
        """Singular PSD input (rank-deficient covariances, formed with rounding-level negative
        eigenvalues, and the zero matrix) passes the definiteness check. (Whether the result
        is finite there is the solver's own accuracy envelope, not the check's.)"""
        gen = torch.Generator().manual_seed(16)
        X = torch.randn(2, 8, 3, dtype=torch.float64, generator=gen)
        A = torch.cat([X @ X.mT, torch.zeros(1, 8, 8, dtype=torch.float64)])
        for dtype in DTYPES:
            solver.sqrt(A.to(dtype))  # no InputError
        if solver.provides_eigh:
            L, _ = solver.eigh(-A)  # eigh has no definiteness requirement
            assert torch.isfinite(L).all()


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

    @pytest.mark.parametrize("mode", ["train", "eval"])
    def test_compiles_forward_and_backward(self, name: str, mode: str) -> None:
        """``torch.compile(fullgraph=True, backend="aot_eager")`` of the forward and backward on
        the layer's ``example_inputs``, in training and in evaluation mode (running statistics
        included): traced whole, gradients equal to eager to 1e-6 relative."""
        layer = create("layer", name)
        example = getattr(type(layer), "example_inputs", None)
        if example is None:
            pytest.fail(f"layer {name!r} needs example_inputs(dtype) for its conformance checks")
        getattr(layer, mode)()
        inputs = [x.requires_grad_() for x in example(torch.float64)]
        state = {k: v.clone() for k, v in layer.state_dict().items()}

        def loss(*xs: torch.Tensor) -> torch.Tensor:
            out = layer(*xs)
            outs = out if isinstance(out, tuple) else (out,)
            return sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in outs)

        eager = torch.autograd.grad(loss(*inputs), inputs)
        layer.load_state_dict(state)  # the same running statistics for the traced call
        torch._dynamo.reset()
        traced = torch.autograd.grad(
            torch.compile(loss, backend="aot_eager", fullgraph=True)(*inputs), inputs
        )
        for a, b in zip(traced, eager):
            rel = float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))
            assert rel < 1e-6, f"compiled gradient differs from eager by {rel:.2e}"


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
        from ..runtime import Pipeline

        cls = get("pipeline", name)
        assert _overrides(cls, kind_base("pipeline"), "run"), (
            f"pipeline {name!r} must implement run"
        )
        pipeline = Pipeline.from_config({"pipeline": name})
        assert [s.name for s in pipeline.stages] == [name], "the spec should build one stage"
