"""Solver ``batched-ed``: the batch-efficient eigendecomposition of thesis 000, Sec. 3.4."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...core.checks import host_reads_allowed
from ...core.config import config, floating, integer, one_of, option, optional
from ...core.eigh_solver import EighSolver, eps_option
from ...core.errors import (
    ConvergenceError,
    ConvergenceWarning,
    EigenflowWarning,
    NotSupportedError,
    warn_at_caller,
)
from ...core.gradient_rules import PadeRule
from ...core.spectral import GradientRule, eigh_autograd, exact_rule
from . import torch_impl

__all__ = [
    "TRITON_AUTO_MAX_N",
    "TRITON_MAX_N",
    "BatchedEDConfig",
    "BatchedEDSolver",
    "ConvergenceError",
    "ConvergenceWarning",
]

#: Largest matrix size the fused Triton kernel handles (each matrix stays on chip).
TRITON_MAX_N = 64
#: Largest matrix size for which ``backend="auto"`` uses the kernel: the sizes whose
#: eigenvectors the first GPU run verified (``triton_impl``'s module docstring).
TRITON_AUTO_MAX_N = 32


@config
class BatchedEDConfig:
    """Options of ``batched-ed`` (thesis 000, Sec. 3.4, Eq. 3.19-3.46, Table 3.6).

    The thesis shrinks the active matrix when the last sub-diagonal falls below a threshold
    "e.g. 1e-5" (Sec. 3.4.4, Fig. 3.6); eigenflow's default ``tol`` is the working dtype's
    machine epsilon, relative to the neighbouring diagonal entries, which is what gives
    ``torch.linalg.eigh`` accuracy. The sweep cap (two QR steps a sweep) of ``15 n`` matches
    LAPACK ``steqr``'s 30 QR steps per eigenvalue; the thesis quotes about ``2 n`` iterations
    (Sec. 3.4.4). The backward defaults to SVD-Padé (Sec. 3.3.2) with ``svd-pade``'s defaults.
    """

    backend: str = option(
        "auto",
        validator=one_of(("auto", "torch", "triton")),
        help="'torch' (pure PyTorch, any device and size), 'triton' (fused kernel, CUDA or "
        "TRITON_INTERPRET=1, n <= 64) or 'auto' (triton on CUDA for n <= 32 when triton is "
        "installed, else torch: the first GPU run returned wrong eigenvectors from the kernel "
        "at n = 48 and 64, see docs/batched-ed.rst)",
    )
    backward: str = option(
        "pade",
        validator=one_of(("pade", "exact")),
        help="gradient rule of the backward: 'pade' (SVD-Padé, finite on repeated "
        "eigenvalues) or 'exact' (1/(lambda_j - lambda_i), Eq. 3.6)",
    )
    pade_degree: int = option(
        100,
        validator=integer(2, 400),
        help="total degree of the diagonal Padé approximant of the 'pade' backward",
    )
    pade_bound: float | None = option(
        None,
        validator=optional(floating(1e3, 1e300)),
        help="maximum of the Padé approximant of 1/(1-x) on [0, 1] (None: 1/eps of the dtype)",
    )
    tol: float | None = option(
        None,
        validator=optional(floating(0.0, 0.1, min_open=True)),
        help="deflation threshold: an off-diagonal |e_j| <= tol (|d_j| + |d_j+1|) is set to "
        "zero and the active block shrinks (None: the dtype's machine epsilon)",
    )
    max_sweeps_per_dim: int = option(
        15,
        validator=integer(1, 10_000),
        help="QR sweep cap per matrix size: at most max_sweeps_per_dim * n sweeps of two "
        "QR steps each",
    )
    shift: str = option(
        "double-wilkinson",
        validator=one_of(("double-wilkinson", "wilkinson")),
        help="'double-wilkinson': both eigenvalues of the trailing 2x2 block, one per QR "
        "step of a sweep (Eq. 3.36-3.37); 'wilkinson': the current Wilkinson shift each step",
    )
    on_failure: str = option(
        "raise",
        validator=one_of(("raise", "warn", "flag")),
        help="matrices that do not converge within the sweep cap: 'raise' ConvergenceError, "
        "'warn' (ConvergenceWarning) or 'flag' (only solver.last_converged)",
    )
    eps: float | None = eps_option()


class BatchedEDSolver(EighSolver):
    """Batched eigendecomposition by Householder tridiagonalisation and shifted QR.

    Forward (Sec. 3.4.3-3.4.4): ``n - 2`` Householder reflectors applied as symmetric rank-2
    updates (Eq. 3.22-3.23), eigenvector basis ``P`` in WY form (Theorem 2); then QR sweeps
    by Givens rotations with the double Wilkinson shift (Eq. 3.36-3.37), per-matrix deflation
    and progressive shrinkage of the active block (Eq. 3.38, Fig. 3.6), each rotation touching
    only its neighbourhood in ``T`` and two columns of the eigenvectors (Eq. 3.44). Returns
    what ``torch.linalg.eigh`` returns, to its accuracy, for any symmetric input.

    Backward: Eq. 3.6 with the SVD-Padé rule by default (``backward="pade"``) or the exact
    rule. ``sqrt``/``invsqrt`` come from the eigenpairs (Eq. 3.3).

    After each call, ``last_converged`` holds a bool tensor of the input's batch shape:
    whether each matrix converged within the sweep cap (see ``on_failure``), and
    ``last_qr_steps`` the number of batched QR steps taken (a 0-d device tensor after the
    Triton kernel, which decides convergence on the device: with ``on_failure="flag"`` a
    CUDA call reads nothing on the host; ``"raise"``/``"warn"`` read the flags once per call
    eagerly, and under ``torch.compile`` or CUDA-graph capture ``"raise"`` is a device-side
    assertion and ``"warn"`` only sets the flags).
    """

    Config = BatchedEDConfig
    source = "000 (Song 2023), Sec. 3.4, Eq. 3.19-3.46, Table 3.6"
    exact_gradient: ClassVar[bool] = False
    robust_gradient: ClassVar[bool] = True
    # Same backward as svd-pade (or svd with backward="exact"): see SVDPadeSolver.
    second_order: ClassVar[bool] = True
    forward_rtol: ClassVar[dict[torch.dtype, float]] = {torch.float32: 1e-4, torch.float64: 1e-11}
    trace_blocker: ClassVar[str | None] = (
        "the PyTorch implementation (CPU, and CUDA for n > 32 with backend='auto') reads the "
        "active block range of the QR sweeps on the host once per sweep, to stop when every "
        "matrix has converged; the Triton kernel (CUDA, n <= 64) decides convergence on the "
        "device"
    )
    # Stated forward error at cond <= 1e0, 1e1, ..., 1e6 (ENVELOPE_CONDS), n <= 128: twice the
    # maximum measured by benchmarks/matfn_envelope.py, rounded up (docs/matfn.rst).
    error_envelope: ClassVar[dict[tuple[str, torch.dtype], tuple[float, ...]]] = {
        ("sqrt", torch.float32): (2e-5, 2e-5, 2e-5, 2e-5, 2e-5, 1e-4, 2e-4),
        ("invsqrt", torch.float32): (2e-5, 2e-5, 2e-5, 5e-4, 5e-3, 5e-2, 5e-1),
        ("sqrt", torch.float64): (5e-14, 5e-14, 5e-14, 5e-14, 1e-13, 2e-13, 5e-13),
        ("invsqrt", torch.float64): (5e-14, 5e-14, 1e-13, 2e-12, 2e-11, 2e-10, 1e-9),
    }

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.last_converged: torch.Tensor | None = None
        self.last_qr_steps: int | torch.Tensor | None = None
        self._batch_shape: torch.Size = torch.Size()
        c = self.config
        # exact arithmetic at configuration time, never inside a traced region
        self._pade = PadeRule(c.pade_degree, c.pade_bound, c.eps) if c.backward == "pade" else None

    # ------------------------------------------------------------------ backward rule

    def gradient_rule(self, L: torch.Tensor) -> torch.Tensor:
        """``F`` of Eq. 3.6: SVD-Padé (default) or exact."""
        c = self.config
        if c.backward == "exact":
            return exact_rule(L)
        return self._pade(L)

    def _rule(self) -> GradientRule:
        return self.gradient_rule

    # ------------------------------------------------------------------ forward

    def backend_for(self, A: torch.Tensor) -> str:
        """The implementation used for ``A (B, n, n)``: ``"torch"`` or ``"triton"``."""
        choice = self.config.backend
        if choice == "auto":
            usable = A.is_cuda and A.shape[-1] <= TRITON_AUTO_MAX_N and _triton_available()
            usable = usable and not _TRITON_BROKEN
            return "triton" if usable else "torch"
        if choice == "triton" and A.shape[-1] > TRITON_MAX_N:
            raise NotSupportedError(
                f"backend 'triton' handles matrices up to {TRITON_MAX_N} x {TRITON_MAX_N}, "
                f"got n = {A.shape[-1]}; use backend 'torch' or 'auto'"
            )
        return choice

    def decompose(self, A: torch.Tensor) -> torch_impl.BatchedEighResult:
        """The raw forward on a flat batch ``(B, n, n)``, without autograd or checks."""
        c = self.config
        options = dict(tol=c.tol, max_sweeps_per_dim=c.max_sweeps_per_dim, shift=c.shift)
        backend = self.backend_for(A)
        if backend == "triton":
            triton_impl = _import_triton_impl()
            if self.config.backend == "triton":
                return triton_impl.batched_eigh(A, **options)
            try:
                return triton_impl.batched_eigh(A, **options)
            except Exception as err:  # 'auto': a kernel that fails to build must not stop users
                _TRITON_BROKEN.append(repr(err))
                warn_at_caller(
                    f"batched-ed: the Triton kernel failed ({err!r}); using the PyTorch "
                    "implementation from now on (set backend='triton' to see the error)",
                    EigenflowWarning,
                )
        return torch_impl.batched_eigh(A, **options)

    def _forward(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        result = self.decompose(A)
        self._report(result.converged)
        self.last_qr_steps = result.qr_steps
        return result.eigenvalues, result.eigenvectors

    def _report(self, converged: torch.Tensor) -> None:
        self.last_converged = converged.reshape(self._batch_shape)
        mode = self.config.on_failure
        if mode == "flag" or converged.numel() == 0:
            return
        if not host_reads_allowed(converged):
            # torch.compile / CUDA-graph capture: no host to count on; 'raise' becomes a
            # device-side assertion, 'warn' leaves the flags in last_converged
            if mode == "raise":
                torch._assert_async(
                    converged.all(),
                    "eigenflow ConvergenceError: batched-ed: a matrix did not converge within "
                    f"{self.config.max_sweeps_per_dim} * n QR sweeps",
                )
            return
        failed = int((~converged).sum())
        if failed == 0:
            return
        message = (
            f"batched-ed: {failed} of {converged.numel()} matrices did not converge within "
            f"{self.config.max_sweeps_per_dim} * n QR sweeps (solver.last_converged marks "
            "them); raise max_sweeps_per_dim or tol"
        )
        if mode == "raise":
            raise ConvergenceError(message)
        warn_at_caller(message, ConvergenceWarning)

    def _decompose(self, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return eigh_autograd(self._forward, A, self._rule())

    def _prepare(
        self, A: torch.Tensor, check: bool, psd: bool = False
    ) -> tuple[torch.Tensor, torch.Size]:
        flat, shape = super()._prepare(A, check, psd)
        self._batch_shape = shape[:-2]
        return flat, shape


_TRITON_BROKEN: list[str] = []


def _import_triton_impl():
    """The Triton module, imported on first use (Triton is an optional dependency)."""
    try:
        from . import triton_impl
    except ImportError as err:
        raise NotSupportedError(
            f"backend 'triton' needs the optional dependency triton ({err}); "
            "pip install triton, or use backend 'torch'"
        ) from err
    return triton_impl


def _triton_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None
