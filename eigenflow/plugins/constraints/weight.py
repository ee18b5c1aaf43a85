"""Constraints on the weight itself: ``spectral-norm`` (Eq. 3.50), ``orth-loss`` (Eq. 3.51) and
``orth-weight`` (Eq. 3.52) of thesis 000, Sec. 3.5.4.

``spectral-norm`` and ``orth-weight`` are ``torch.nn.utils.parametrize`` parametrizations:
``layer.weight`` is always the constrained matrix, the optimizer updates the unconstrained
``layer.parametrizations.weight.original``, and ``nog``/``olr`` act on that parameter's gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...core.component import Constraint
from ...core.config import config, floating, integer, one_of, option
from ...core.errors import NotSupportedError
from ...core.polar import orthogonality_error
from ._targets import (
    Slot,
    as_matrix,
    layer_name,
    parametrization_names,
    resolve_slots,
    undo_on_error,
    weight_shape,
)

__all__ = [
    "OrthLoss",
    "OrthLossConfig",
    "OrthWeight",
    "OrthWeightConfig",
    "ParametrizationConstraint",
    "SkewExponential",
    "SpectralNorm",
    "SpectralNormConfig",
    "SpectralNormalize",
    "remove_parametrization",
]


def remove_parametrization(module: nn.Module, param: nn.Module, restore: bool) -> None:
    """Remove the parametrization ``param`` from ``module.weight``.

    Alone on the weight it is removed with ``leave_parametrized=not restore``; among others it
    is dropped from the chain (possible when it keeps the original tensor, i.e. has no
    ``right_inverse`` of its own or is not first).
    """
    chain = module.parametrizations.weight
    index = next(i for i, p in enumerate(chain) if p is param)
    if len(chain) == 1:
        # several original tensors (householder) cannot be un-parametrized in place: the
        # caller puts the pre-attach parameter back itself
        single = hasattr(chain, "original")
        leave = not (restore and single)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=leave)
        return
    if index == 0 and hasattr(param, "right_inverse"):
        raise NotSupportedError(
            f"{type(param).__name__} is the first of several parametrizations of "
            f"{type(module).__name__}.weight: detach the others first"
        )
    del chain[index]


class ParametrizationConstraint(Constraint):
    """A constraint that registers one parametrization per constrained weight.

    Parametrizations of one weight compose in the order they were attached (``torch``'s
    parametrization chain), except that an ``exclusive`` one (``householder``) must be the
    weight's only parametrization.
    """

    order = 0
    #: whether this parametrization must be alone on its weight (it owns the weight's tensors)
    exclusive = False

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._attached: list[tuple[nn.Module, nn.Module, nn.Parameter]] = []

    def make_parametrization(self, module: nn.Module) -> nn.Module:  # pragma: no cover
        raise NotImplementedError

    def attach(self, target: Any, optimizer: Any = None) -> ParametrizationConstraint:
        """Parametrize the weight of ``target`` (a layer or a list of layers).

        All or nothing: if one layer of a list cannot be parametrized, the layers done so far
        are restored (as by ``detach(restore=True)``) before the error is raised.
        ``optimizer`` is accepted for a uniform signature and not used: build the optimizer
        after ``attach``, from ``model.parameters()``, so it holds the new parameters.

        Raises
        ------
        NotSupportedError
            If already attached; if a layer is not a module with a ``weight``; or if the
            weight already has a parametrization it cannot be combined with (``householder``
            owns its weight's tensors, so it is never combined with another
            parametrization, in either order).
        """
        if self._attached:
            raise NotSupportedError(f"constraint {self.name!r} is already attached; detach first")
        slots = resolve_slots(target)
        modules = [slot.require_module(self.name) for slot in slots]
        for module in modules:
            self._check_composable(module)
        with undo_on_error(lambda: self.detach(restore=True)):
            for module in modules:
                original = module._parameters.get("weight")
                if original is None:
                    original = module.parametrizations.weight.original
                param = self.make_parametrization(module)
                parametrize.register_parametrization(module, "weight", param)
                self._attached.append((module, param, original))
        return self

    def _check_composable(self, module: nn.Module) -> None:
        """Refuse a weight whose existing parametrizations this one cannot join."""
        existing = parametrization_names(module)
        if not existing:
            return
        single = hasattr(module.parametrizations.weight, "original")
        if self.exclusive or not single:
            names = " + ".join(repr(n) for n in existing)
            alone = self.name if self.exclusive else existing[0]
            raise NotSupportedError(
                f"constraint {self.name!r} cannot be combined with {names} on "
                f"{layer_name(module)}.weight {weight_shape(module)}: {alone!r} must "
                "be the only parametrization of a weight (its learnable tensors replace the "
                "weight). Detach the other constraint first, or constrain another layer"
            )

    def detach(self, restore: bool = False) -> None:
        """Remove the parametrizations.

        Parameters
        ----------
        restore
            ``False``: ``layer.weight`` becomes a plain parameter holding the current
            constrained weight. ``True``: the weight parameter from before ``attach`` is put
            back (same object; for ``orth-weight`` and ``spectral-norm`` it holds the trained
            unconstrained values, for ``householder`` the values at attach time).
        """
        for module, param, original in reversed(self._attached):
            remove_parametrization(module, param, restore)
            if restore and not parametrize.is_parametrized(module, "weight"):
                if module.weight is not original:
                    del module.weight
                    module.weight = original
        self._attached = []

    @property
    def parametrizations(self) -> list[nn.Module]:
        """The registered parametrization modules, one per constrained weight."""
        return [p for _, p, _ in self._attached]


# --------------------------------------------------------------------------- spectral norm


class SpectralNormalize(nn.Module):
    """``W / sigma_max(W)`` (Eq. 3.50) with ``W`` viewed as ``(out, in*kernel)``.

    ``method='exact'`` uses the largest singular value (differentiable through the SVD);
    ``method='power'`` keeps a left singular vector estimate ``u`` as a buffer and runs
    ``power_iters`` power iterations per training-mode forward (Miyato et al.), with
    ``sigma = u^T W v`` differentiated through ``W`` only. Eval mode reuses ``u`` as it is.

    Parameters
    ----------
    weight
        The weight to be normalised (its shape, dtype and device; its values for the warm-up).
    method
        ``"power"`` or ``"exact"``.
    power_iters
        Power iterations per training-mode forward.
    eps
        Guard of the norms and of ``sigma``.
    warmup_iters
        Power iterations run once here, on ``weight``, from the random start vector, so that
        ``u`` is already a good estimate before the first forward (in eval mode too).
        ``torch.nn.utils.parametrizations.spectral_norm`` does the same with 15 iterations
        when it registers; ``0`` leaves ``u`` random. Ignored by ``method='exact'``.
    """

    constraint = "spectral-norm"

    def __init__(
        self,
        weight: torch.Tensor,
        method: str,
        power_iters: int,
        eps: float,
        warmup_iters: int = 15,
    ):
        super().__init__()
        self.method, self.power_iters, self.eps = method, power_iters, eps
        W = as_matrix(weight.detach())
        u = torch.randn(W.shape[0], dtype=W.dtype, device=W.device)
        u = u / torch.linalg.vector_norm(u).clamp_min(eps)
        if method == "power":
            u = self._power_iterations(W, u, warmup_iters)
        self.register_buffer("u", u)

    def _power_iterations(self, W: torch.Tensor, u: torch.Tensor, iters: int) -> torch.Tensor:
        """``iters`` steps ``v = W^T u / ||.||``, ``u = W v / ||.||`` from ``u`` (no grad)."""
        with torch.no_grad():
            for _ in range(iters):
                v = W.mT @ u
                v = v / torch.linalg.vector_norm(v).clamp_min(self.eps)
                u = W @ v
                u = u / torch.linalg.vector_norm(u).clamp_min(self.eps)
        return u

    def sigma(self, W: torch.Tensor) -> torch.Tensor:
        if self.method == "exact":
            return torch.linalg.matrix_norm(W, ord=2)
        if self.training:
            with torch.no_grad():
                self.u.copy_(self._power_iterations(W, self.u, self.power_iters))
        u = self.u.clone()
        v = W.mT @ u
        v = v / torch.linalg.vector_norm(v).clamp_min(self.eps)
        return u @ W @ v.detach()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        W = as_matrix(weight)
        return weight / self.sigma(W).clamp_min(self.eps)


@config
class SpectralNormConfig:
    """Options of ``spectral-norm`` (thesis 000, Sec. 3.5.4, Eq. 3.50; Miyato et al. for the
    power iteration, one iteration per step by default).

    ``warmup_iters = 15`` is what ``torch.nn.utils.parametrizations.spectral_norm`` runs when
    it registers, so that the normalised weight is right from the first forward, eval mode
    included (without it, a random start vector under-estimates ``sigma_max``).
    """

    method: str = option(
        "power",
        validator=one_of(["power", "exact"]),
        help="sigma_max by 'power' iteration (persistent vector) or 'exact' SVD",
    )
    power_iters: int = option(1, validator=integer(1, 100), help="power iterations per forward")
    eps: float = option(1e-12, validator=floating(0.0, min_open=True), help="norm guard")
    warmup_iters: int = option(
        15,
        validator=integer(0, 1000),
        help="power iterations run once at attach, on the weight as it is then (torch's "
        "spectral_norm runs 15); 0: start from a random vector",
    )


class SpectralNorm(ParametrizationConstraint):
    """Spectral normalisation ``W / sigma_max(W)`` as a parametrization (Eq. 3.50)."""

    Config = SpectralNormConfig
    source = "000 (Song 2023), Sec. 3.5.4, Eq. 3.50"

    def make_parametrization(self, module: nn.Module) -> nn.Module:
        cfg = self.config
        return SpectralNormalize(
            module.weight, cfg.method, cfg.power_iters, cfg.eps, warmup_iters=cfg.warmup_iters
        )


# --------------------------------------------------------------------------- orthogonal weight


class SkewExponential(nn.Module):
    """``exp(A - A^T)`` (Eq. 3.52): an orthogonal weight from an unconstrained one.

    A rectangular ``(out, in*kernel)`` weight is zero-padded to ``n x n``, ``n = max(out, in)``,
    and the ``out x in`` top-left block of the orthogonal ``exp`` is kept (orthonormal rows or
    columns). The right inverse is the identity (as in the thesis, the existing weight is the
    argument of the exponential), so assigning ``layer.weight = A`` stores ``A``.
    """

    constraint = "orth-weight"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        W = as_matrix(weight)
        out, inp = W.shape
        n = max(out, inp)
        A = torch.nn.functional.pad(W, (0, n - inp, 0, n - out))
        Q = torch.linalg.matrix_exp(A - A.mT)
        return Q[:out, :inp].reshape(weight.shape)


@config
class OrthWeightConfig:
    """Options of ``orth-weight`` (thesis 000, Sec. 3.5.4, Eq. 3.52): none."""


class OrthWeight(ParametrizationConstraint):
    """Hard orthogonality ``W = exp(A - A^T)`` as a parametrization (Eq. 3.52)."""

    Config = OrthWeightConfig
    source = "000 (Song 2023), Sec. 3.5.4, Eq. 3.52"

    def make_parametrization(self, module: nn.Module) -> nn.Module:
        return SkewExponential()


# --------------------------------------------------------------------------- orthogonal loss


@config
class OrthLossConfig:
    """Options of ``orth-loss`` (thesis 000, Sec. 3.5.4, Eq. 3.51).

    The thesis adds ``||W W^T - I||_F`` without stating a weight; the default 1 is that
    unweighted penalty.
    """

    weight: float = option(1.0, validator=floating(0.0), help="multiplier of the penalty")


class OrthLoss(Constraint):
    """Soft orthogonality: ``penalty() = weight * sum_l ||W_l W_l^T - I||_F`` (Eq. 3.51).

    ``W^T W`` is used for tall weights; conv weights are ``(out, in*kernel)``. Add the penalty
    to the loss before ``backward()``.
    """

    Config = OrthLossConfig
    source = "000 (Song 2023), Sec. 3.5.4, Eq. 3.51"
    order = 5

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._slots: list[Slot] = []

    def attach(self, target: Any, optimizer: Any = None) -> OrthLoss:
        """Record the weights to penalise (``optimizer`` is not used)."""
        if self._slots:
            raise NotSupportedError(f"constraint {self.name!r} is already attached; detach first")
        self._slots = resolve_slots(target)
        return self

    def detach(self) -> None:
        self._slots = []

    def penalty(self) -> torch.Tensor:
        if not self._slots:
            raise NotSupportedError("orth-loss is not attached to any weight")
        total = sum(orthogonality_error(as_matrix(s.weight())) for s in self._slots)
        return self.config.weight * total
