"""Input checks at the public boundary, with uniform messages.

Shape and dtype are checked on the host (they are static). The value checks (finite,
symmetric, positive semidefinite) run as device computations, and how a failure surfaces
depends on where the call runs (:func:`host_reads_allowed`):

- eager, not capturing a CUDA graph: the flags of all value checks are read in one
  host-device synchronisation, and a failure raises :class:`~eigenflow.InputError` naming the
  argument and, for definiteness, the smallest eigenvalue;
- inside ``torch.compile`` (any backend) or while a CUDA graph is captured: no host read; the
  checks become ``torch._assert_async`` in the graph. A failure raises, when the graph runs, a
  ``RuntimeError`` whose message starts ``"eigenflow InputError: A: ..."`` on the CPU, and a
  device-side assertion on CUDA (which ends the CUDA context, as every device assertion does).
  Never a silent NaN.

Hot paths that must not pay for the checks pass ``check=False``.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import InputError
from .scaling import peak_magnitude

__all__ = [
    "FLOAT_DTYPES",
    "check_square",
    "check_symmetric",
    "check_tensor",
    "host_reads_allowed",
    "psd_tolerance",
    "symmetry_tolerance",
]

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(
    value: Any, name: str, *, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES, min_dims: int = 0
) -> torch.Tensor:
    """Check that ``value`` is a tensor of an allowed dtype with at least ``min_dims`` dims."""
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in dtypes:
        allowed = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise InputError(
            f"{name}: expected dtype {allowed}, got {str(value.dtype).replace('torch.', '')}"
        )
    if value.dim() < min_dims:
        raise InputError(
            f"{name}: expected at least {min_dims} dimensions, got {value.dim()} "
            f"(shape {tuple(value.shape)})"
        )
    return value


def check_square(value: Any, name: str) -> torch.Tensor:
    """Check for a floating tensor of shape ``(..., n, n)`` with ``n >= 1``."""
    A = check_tensor(value, name, min_dims=2)
    if A.shape[-1] != A.shape[-2]:
        raise InputError(
            f"{name}: expected square matrices of shape (..., n, n), got shape {tuple(A.shape)}"
        )
    if A.shape[-1] == 0:
        raise InputError(f"{name}: expected matrices of size n >= 1, got shape {tuple(A.shape)}")
    return A


def symmetry_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance on ``max|A - A^T| / max|A|`` accepted as symmetric."""
    return 1000.0 * torch.finfo(dtype).eps


def psd_tolerance(dtype: torch.dtype, n: int) -> float:
    """Relative tolerance ``t``: ``A`` counts as positive semidefinite when its smallest
    eigenvalue is at least ``-t ||A||_F``; ``t = 100 n eps`` (rounding in forming a covariance
    ``X X^T / N`` moves eigenvalues by about ``n eps ||A||``)."""
    return 100.0 * n * torch.finfo(dtype).eps


def host_reads_allowed(A: torch.Tensor) -> bool:
    """Whether a check may read a device flag on the host: not while ``torch.compile`` traces,
    and not while a CUDA graph is being captured on the current stream."""
    if torch.compiler.is_compiling():
        return False
    return not (A.is_cuda and torch.cuda.is_current_stream_capturing())


def _unit_scaled(A: torch.Tensor) -> torch.Tensor:
    """``A / max|A|`` per matrix (the zero matrix unchanged): the value checks are invariant
    to scale, and on the scaled matrix no sum of squares, difference or Cholesky pivot can
    overflow or underflow however large or small the entries are."""
    peak = peak_magnitude(A).nan_to_num(0.0, 0.0, 0.0)
    return A / peak.clamp_min(torch.finfo(A.dtype).tiny)


def _relative_asymmetry(A: torch.Tensor) -> torch.Tensor:
    """``max|A - A^T| / max|A|`` per matrix of the unit-scaled ``A``, NaN-free (shape
    ``A.shape[:-2]``)."""
    return (A - A.mT).abs().amax(dim=(-2, -1)).nan_to_num(nan=0.0)


def _psd_flags(A: torch.Tensor) -> torch.Tensor:
    """Per matrix, whether ``A + t ||A||_F I`` has a Cholesky factor (``t``:
    :func:`psd_tolerance`; ``A`` unit-scaled): true exactly for smallest eigenvalues above
    ``-t ||A||_F``, up to the rounding of the factorisation (``~ n eps ||A||``, a hundredth of
    the shift). ``n^3/3`` flops, no host synchronisation (``cholesky_ex`` reports failure on
    the device)."""
    n = A.shape[-1]
    norm = torch.linalg.matrix_norm(A).nan_to_num(0.0, 0.0, 0.0)
    shift = (psd_tolerance(A.dtype, n) * norm).clamp_min(torch.finfo(A.dtype).tiny)  # 0 is PSD
    shifted = A + shift[..., None, None] * torch.eye(n, dtype=A.dtype, device=A.device)
    info = torch.linalg.cholesky_ex(shifted.nan_to_num(0.0, 0.0, 0.0)).info
    return info == 0


def _smallest_eigenvalue_message(A: torch.Tensor, name: str, bad: torch.Tensor) -> str:
    """The message for matrices that are not PSD (cold path: one eigvalsh of the first)."""
    first = int(bad.nonzero()[0].item()) if bad.dim() > 0 and bad.numel() > 1 else 0
    M = A.reshape(-1, *A.shape[-2:])[first].detach().double()
    lam = torch.linalg.eigvalsh((M + M.mT) / 2)
    where = f" (matrix {first} of the flattened batch)" if A.dim() > 2 else ""
    tol = psd_tolerance(A.dtype, A.shape[-1])
    return (
        f"{name}: expected positive semidefinite matrices, got smallest eigenvalue "
        f"{lam[0].item():.4g} against largest {lam[-1].item():.4g}{where}; the matrix square "
        f"root and inverse square root need lambda_min >= -{tol:.1g} ||{name}||_F. Shift or "
        "clamp the spectrum first (e.g. add a multiple of the identity), or call eigh"
    )


def check_symmetric(value: Any, name: str = "A", *, psd: bool = False) -> torch.Tensor:
    """Check for finite symmetric matrices ``(..., n, n)`` of dtype float32 or float64.

    Symmetry is accepted within :func:`symmetry_tolerance` relative to the largest entry of
    each matrix. With ``psd=True`` the matrices must also be positive semidefinite within
    :func:`psd_tolerance` (a shifted Cholesky factorisation on the device). Eager: one host
    synchronisation for all flags and an :class:`~eigenflow.InputError`; under
    ``torch.compile`` or CUDA-graph capture: device-side assertions (module docstring).
    """
    A = check_square(value, name)
    if A.numel() == 0:
        return A
    tol = symmetry_tolerance(A.dtype)
    finite = torch.isfinite(A).all()
    unit = _unit_scaled(A)
    asym = _relative_asymmetry(unit)
    psd_ok = _psd_flags(unit) if psd else None
    if not host_reads_allowed(A):
        _assert_on_device(name, finite, asym, tol, psd_ok)
        return A
    flags = [finite.to(A.dtype), asym.amax()]
    if psd_ok is not None:
        flags.append(psd_ok.all().to(A.dtype))
    values = torch.stack(flags).tolist()  # the one host synchronisation
    if not values[0]:
        raise InputError(f"{name}: contains NaN or infinite entries")
    if values[1] > tol:
        raise InputError(
            f"{name}: expected symmetric matrices, got max|A - A^T|/max|A| = {values[1]:.3g} "
            f"(tolerance {tol:.1g}); symmetrise with (A + A.mT) / 2 or pass check=False"
        )
    if psd_ok is not None and not values[2]:
        raise InputError(_smallest_eigenvalue_message(A, name, ~psd_ok))
    return A


def _assert_on_device(
    name: str,
    finite: torch.Tensor,
    asym: torch.Tensor,
    tol: float,
    psd_ok: torch.Tensor | None,
) -> None:
    """The value checks as device-side assertions (traced and captured; no host read)."""
    prefix = f"eigenflow InputError: {name}: "
    torch._assert_async(finite, prefix + "contains NaN or infinite entries")
    torch._assert_async(
        (asym <= tol).all(),
        prefix + f"expected symmetric matrices (max|A - A^T|/max|A| <= {tol:.1g}); symmetrise "
        "with (A + A.mT) / 2 or pass check=False",
    )
    if psd_ok is not None:
        torch._assert_async(
            psd_ok.all(),
            prefix + "expected positive semidefinite matrices (a Cholesky factorisation of "
            "A + t ||A||_F I failed, t = 100 n eps); the matrix square root and inverse square "
            "root need lambda_min >= -t ||A||_F",
        )
