"""torch.compile: solvers, the functional API and the input checks inside traced code.

Every registered solver's compile check runs in the conformance suite
(``SolverConformance.test_compiles_forward_and_backward``); these tests cover the API entry
points, the reproducer of issue 20, the device-side checks, and show that the whole-graph check
can fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch

import eigenflow as ef
from eigenflow.api import _run_at_trace_time
from eigenflow.core.checks import check_symmetric, psd_tolerance
from eigenflow.core.errors import InputError
from eigenflow.core.solver import Solver
from eigenflow.testing import SolverConformance, random_spd, spd_from_eigenvalues


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def test_svd_pade_compiles_on_gradient_requiring_input() -> None:
    """Issue 20's reproducer: it hung in tracing the exact Padé derivation."""
    torch._dynamo.reset()
    s = ef.create("solver", "svd-pade")
    X = torch.randn(4, 8, 20, generator=torch.Generator().manual_seed(0))
    A = X @ X.mT / 20
    f = torch.compile(lambda M: s.sqrt(M, check=False).square().sum(), backend="eager")
    leaf = A.clone().requires_grad_(True)
    start = time.process_time()
    (traced,) = torch.autograd.grad(f(leaf), leaf)
    assert time.process_time() - start < 30.0  # CPU seconds: a busy machine does not fail it
    (eager,) = torch.autograd.grad(s.sqrt(leaf, check=False).square().sum(), leaf)
    assert _rel(traced, eager) < 1e-6


def test_api_functions_trace_in_a_fresh_process() -> None:
    """``ef.matrix_sqrt``/``matrix_invsqrt``/``eigh`` inside a compiled function, in a process
    whose registry is not yet discovered and whose solvers are not yet built (discovery takes a
    lock; building derives Padé coefficients), with ``fullgraph=True``."""
    script = textwrap.dedent(
        """
        import torch, eigenflow as ef
        X = torch.randn(3, 6, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        A = (X @ X.mT / 12).requires_grad_()
        def f(M):
            # a list option (as the docs write degrees) must hit the solver cache too
            r = ef.matrix_sqrt(M, method="mpa-lya", check=False, degree=[4, 4])
            i = ef.matrix_invsqrt(M, method="svd-pade", check=False, degree=40)
            L, _ = ef.eigh(M, method="svd-pade", check=False, degree=40)
            return r.sum() + i.sum() + L.sum()
        g_c, = torch.autograd.grad(torch.compile(f, backend="aot_eager", fullgraph=True)(A), A)
        g_e, = torch.autograd.grad(f(A), A)
        print(float((g_c - g_e).norm() / g_e.norm()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-6


def test_list_and_tuple_options_share_one_cached_solver() -> None:
    """``degree=[6, 6]`` was unhashable: every call built the solver afresh (about a second,
    the exact Padé derivation) and could not be traced."""
    from eigenflow import api

    first = api._solver("mpa-lya", {"degree": [6, 6], "lya_iters": 3})
    assert api._solver("mpa-lya", {"lya_iters": 3, "degree": (6, 6)}) is first
    assert first.config.degree == (6, 6)


def test_trace_time_marker_is_torchs() -> None:
    """eigenflow marks its solver look-up the way ``torch.compiler.assume_constant_result``
    does (without importing dynamo at import time); fails if torch changes the marker."""

    def reference() -> int:
        return 0

    def ours() -> int:
        return 0

    marked = torch.compiler.assume_constant_result(reference)
    ours = _run_at_trace_time(ours)
    theirs = {k: v for k, v in vars(marked).items() if not k.startswith("__")}
    assert theirs and theirs == {k: v for k, v in vars(ours).items() if not k.startswith("__")}


class _SyncingSolver(Solver):
    """A solver whose forward reads a value on the host (what the whole-graph check catches)."""

    class Config:  # not an attrs class: this solver is never registered
        pass

    def __init__(self) -> None:
        self.config = None

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = A.diagonal(dim1=-2, dim2=-1).mean().item()  # host synchronisation
        L, V = torch.linalg.eigh(A / scale)
        root = (V * L.clamp_min(0).sqrt().unsqueeze(-2)) @ V.mT
        inv = (V * L.clamp_min(1e-12).rsqrt().unsqueeze(-2)) @ V.mT
        return root * scale**0.5, inv * scale**-0.5


def test_sync_check_catches_a_host_sync() -> None:
    """The conformance check that every solver passes fails on a ``.item()`` in a forward."""
    with pytest.raises(AssertionError, match="_local_scalar_dense"):
        SolverConformance().test_no_host_sync_in_forward_and_backward(_SyncingSolver())


class _BranchingSolver(_SyncingSolver):
    """A solver that branches on a tensor's value (what whole-graph tracing catches)."""

    def _sqrt_invsqrt(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if (A.diagonal(dim1=-2, dim2=-1) > 0).all():
            A = A * 1.0
        return super()._sqrt_invsqrt(A.detach() + 0.0 * A)


def test_whole_graph_check_catches_a_value_branch() -> None:
    with pytest.raises(Exception, match=r"data-dependent|Data-dependent|branch|Unsupported"):
        SolverConformance().test_compiles_forward_and_backward(_BranchingSolver())


def test_record_host_syncs_sees_item_and_value_sized_ops() -> None:
    from eigenflow.testing import record_host_syncs

    x = torch.tensor([0.0, 2.0, 0.0, 3.0])
    with record_host_syncs() as found:
        x.sum().item()
        x.nonzero()
        x[x > 1]
        x * 2
        x[torch.tensor([0, 3])] * 2  # integer indexing does not synchronise
    assert found == ["_local_scalar_dense", "nonzero", "index (boolean mask)"]


# --------------------------------------------------------------------------- device checks


def _with_lowest(relative: float, n: int = 6) -> torch.Tensor:
    """SPD-like matrix whose smallest eigenvalue is ``relative * ||A||_F`` (exactly)."""
    eig = torch.linspace(1.0, 3.0, n, dtype=torch.float64)
    eig[0] = 0.0
    A = spd_from_eigenvalues(eig[None], generator=torch.Generator().manual_seed(3))
    norm = torch.linalg.matrix_norm(A)
    return A + relative * norm * torch.eye(n, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psd_tolerance_boundary(dtype: torch.dtype) -> None:
    """Smallest eigenvalue -t/4 ||A||_F passes; -4t ||A||_F fails (t = 100 n eps)."""
    t = psd_tolerance(dtype, 6)
    check_symmetric(_with_lowest(-t / 4).to(dtype), "A", psd=True)
    with pytest.raises(InputError, match="A: expected positive semidefinite"):
        check_symmetric(_with_lowest(-4 * t).to(dtype), "A", psd=True)
    check_symmetric(_with_lowest(-4 * t).to(dtype), "A")  # psd not asked for


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (
            lambda A: A.index_put(
                (torch.tensor(0), torch.tensor(1)), torch.tensor(5.0, dtype=A.dtype)
            ),
            "symm",
        ),
        (lambda A: A * torch.tensor(float("nan")), "NaN"),
    ],
    ids=["asymmetric", "nan"],
)
def test_checks_raise_under_compile(make, fragment: str) -> None:
    torch._dynamo.reset()
    f = torch.compile(lambda A: ef.matrix_sqrt(A, method="ns"), backend="aot_eager", fullgraph=True)
    A = random_spd(4, cond=5.0, seed=2)
    torch.testing.assert_close(f(A), ef.matrix_sqrt(A, method="ns"))
    with pytest.raises(RuntimeError, match=f"eigenflow InputError: A: .*{fragment}"):
        f(make(A))


def test_eager_checks_read_the_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eagerly, the value checks (finite, symmetric, PSD) cost one host read together."""
    reads = []
    original = torch.Tensor.tolist

    def counting(self: torch.Tensor):
        reads.append(self.shape)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    ef.matrix_sqrt(random_spd(5, 3, cond=5.0, seed=4), method="ns")
    assert len(reads) == 1


def test_shape_errors_under_compile_are_eigenflow_errors() -> None:
    """Structural checks run at trace time: the default ``torch.compile`` (graph breaks
    allowed) re-raises eigenflow's own ``InputError``; ``fullgraph=True`` reports it inside
    dynamo's error with the same message."""
    torch._dynamo.reset()
    bad = torch.ones(3, 4, dtype=torch.float64)
    f = torch.compile(lambda A: ef.matrix_sqrt(A, method="ns"), backend="aot_eager")
    with pytest.raises(InputError, match="A: expected square matrices"):
        f(bad)
    strict = torch.compile(
        lambda A: ef.matrix_sqrt(A, method="ns"), backend="aot_eager", fullgraph=True
    )
    with pytest.raises(Exception, match="A: expected square matrices"):
        strict(bad)


# --------------------------------------------------------------------------- constraints

# How each built-in constraint is used in a training step: options, and whether its target is
# a generator (latent codes in) or a layer.
CONSTRAINT_SETUPS = {
    "householder": {"rank": 4},
    "jacobian-alignment": {},
    "nog": {},
    "olr": {"apply_as": "grad-scale"},  # "lr" writes Python floats into the optimiser
    "orth-loss": {},
    "orth-weight": {},
    "spectral-norm": {},
}


def test_every_builtin_constraint_has_a_compile_setup() -> None:
    assert set(ef.list("constraint")) >= set(CONSTRAINT_SETUPS)
    builtin = {
        n
        for n in ef.list("constraint")
        if ef.get("constraint", n).__module__.startswith("eigenflow.")
    }
    assert builtin <= set(CONSTRAINT_SETUPS)


@pytest.mark.parametrize("name", sorted(CONSTRAINT_SETUPS))
def test_constraint_training_step_traces_whole(name: str) -> None:
    """The hot path of each constraint (a parametrised forward and its backward, a penalty, a
    gradient rewrite before the optimiser step) under ``torch.compile(fullgraph=True)``, with the
    eager step's gradients to 1e-6 relative."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    model = model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    target = model if name == "jacobian-alignment" else model[0]
    constraint = ef.create("constraint", name, **CONSTRAINT_SETUPS[name])
    constraint.attach(target, optimizer=opt)
    x = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = model(x).square().mean()
        penalty = constraint.penalty(x) if name == "jacobian-alignment" else constraint.penalty()
        return loss if penalty is None else loss + penalty

    def gradients(fn) -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(2)  # the same random probes (jacobian-alignment) in both runs
        fn(x).backward()
        if hasattr(constraint, "apply"):
            apply = (
                constraint.apply
                if fn is step
                else torch.compile(constraint.apply, backend="aot_eager", fullgraph=True)
            )
            apply()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    state = {k: v.clone() for k, v in model.state_dict().items()}  # power-iteration buffers too
    eager = gradients(step)
    model.load_state_dict(state)
    traced = gradients(torch.compile(step, backend="aot_eager", fullgraph=True))
    assert len(traced) == len(eager) > 0
    for a, b in zip(traced, eager):
        assert _rel(a, b) < 1e-6


# --------------------------------------------------------------------------- CUDA graphs

# Solvers whose forward and backward are matrix products and elementwise operations only (the
# eigh-based ones call cuSOLVER's eigh, which cannot be captured).
CAPTURABLE = ("mpa-lya", "mtp-lya", "ns", "ns-lya")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("check", [False, True], ids=["unchecked", "checked"])
@pytest.mark.parametrize("name", CAPTURABLE)
def test_cuda_graph_capture_and_replay_equal_eager(name: str, check: bool) -> None:
    """Forward and backward captured in one CUDA graph (checks as device assertions when
    ``check=True``), replayed on new input: equal to the eager result."""
    solver = ef.create("solver", name)
    A = random_spd(32, 16, cond=100.0, seed=21).float().cuda()
    static = A.clone().requires_grad_()
    weights = torch.randn_like(A)
    for _ in range(3):  # warm-up on a side stream, as torch.cuda.graph requires
        (solver.sqrt(static, check=check) * weights).sum().backward()
    static.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        root = solver.sqrt(static, check=check)
        (grad,) = torch.autograd.grad((root * weights).sum(), static)
    new = random_spd(32, 16, cond=30.0, seed=22).float().cuda()
    static.data.copy_(new)
    graph.replay()
    leaf = new.clone().requires_grad_()
    eager_root = solver.sqrt(leaf, check=check)
    (eager_grad,) = torch.autograd.grad((eager_root * weights).sum(), leaf)
    torch.cuda.synchronize()
    assert _rel(root, eager_root) < 1e-5
    assert _rel(grad, eager_grad) < 1e-4
