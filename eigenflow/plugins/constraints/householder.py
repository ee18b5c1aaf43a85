"""``householder``: the low-rank orthogonal projector ``U S V^T`` of thesis 000, Sec. 4.4
(Eq. 4.5, Theorems 5-6), as a ``torch.nn.utils.parametrize`` parametrization.

``U`` and ``V`` are products of Householder reflectors (Theorem 5) computed in compact WY form
(Theorem 6, :mod:`~eigenflow.plugins.constraints.householder_products`),
``S = diag(1, .., 1, 0, .., 0)`` with ``rank`` ones (Eq. 4.5), so
``weight = U[:, :N] V[:, :N]^T``. The learnable tensors are the reflector vectors
(``parametrizations.weight.original0`` for ``U``, ``original1`` for ``V``); they are what
``state_dict`` saves. Because each reflector normalises its vector, any gradient step keeps
``U`` and ``V`` orthogonal (Sec. 4.4.2, "Orthogonality Preservation").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ...core.config import config, integer, one_of, option, optional
from ...core.errors import ConfigError, NotSupportedError
from .householder_products import householder_columns, householder_vectors
from .weight import ParametrizationConstraint

__all__ = ["Householder", "HouseholderConfig", "HouseholderProjector"]


class HouseholderProjector(nn.Module):
    """Parametrization ``(u_vectors, v_vectors) -> U_N V_N^T`` of an ``(out, in, *kernel)`` weight.

    ``u_vectors`` is ``(out, out)`` (one reflector per row), ``v_vectors`` ``(in', in')`` with
    ``in' = in * prod(kernel)``; the buffers ``signs_u``, ``signs_v`` hold the fixed column signs
    that let the reflectors represent any orthogonal matrix (see
    :func:`eigenflow.plugins.constraints.householder_products.householder_vectors`).

    ``right_inverse(W)`` is the thesis's initialisation from a (pretrained) weight: the SVD
    ``W = U S V^T`` gives the nearest orthogonal matrix ``U V^T``, and ``U``, ``V`` are
    decomposed into reflectors by Householder QR. Assigning ``layer.weight = A`` does the same.

    It must be the only parametrization of its weight: its two tensors replace the weight,
    so it can neither follow another parametrization nor hand a single tensor to one after it.
    """

    constraint = "householder"

    def __init__(self, shape: torch.Size, rank: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.shape = tuple(shape)
        self.out_features = shape[0]
        self.in_features = math.prod(shape[1:])
        self.rank = rank
        self.register_buffer("signs_u", torch.ones(self.out_features, dtype=dtype, device=device))
        self.register_buffer("signs_v", torch.ones(self.in_features, dtype=dtype, device=device))

    def left(self, u_vectors: torch.Tensor) -> torch.Tensor:
        """``U[:, :rank]``, ``(out, rank)``."""
        return householder_columns(u_vectors, self.rank, self.signs_u)

    def right(self, v_vectors: torch.Tensor) -> torch.Tensor:
        """``V[:, :rank]``, ``(in', rank)``: the latent directions of the projector."""
        return householder_columns(v_vectors, self.rank, self.signs_v)

    def forward(self, u_vectors: torch.Tensor, v_vectors: torch.Tensor) -> torch.Tensor:
        W = self.left(u_vectors) @ self.right(v_vectors).mT  # U S V^T with S of Eq. 4.5
        return W.reshape(self.shape)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = weight.reshape(self.out_features, self.in_features)
        U, _, Vh = torch.linalg.svd(W, full_matrices=True)
        u_vectors, signs_u = householder_vectors(U)
        v_vectors, signs_v = householder_vectors(Vh.mT)
        self.signs_u.copy_(signs_u)
        self.signs_v.copy_(signs_v)
        return u_vectors, v_vectors

    @torch.no_grad()
    def randomize(self, u_vectors: torch.Tensor, v_vectors: torch.Tensor) -> None:
        """Random reflectors (standard normal vectors) and unit signs, in place."""
        u_vectors.normal_()
        v_vectors.normal_()
        self.signs_u.fill_(1.0)
        self.signs_v.fill_(1.0)


@config
class HouseholderConfig:
    """Options of ``householder`` (thesis 000, Sec. 4.4, Eq. 4.5, Theorems 5-6).

    The thesis keeps 10 of 512 directions in StyleGANs (rank 10) and initialises from the
    pretrained weight ("pretrained").
    """

    rank: int | None = option(
        10,
        validator=optional(integer(1)),
        help="number N of unit singular values in S (Eq. 4.5); None: min(out, in), i.e. the "
        "nearest orthogonal matrix",
    )
    init: str = option(
        "pretrained",
        validator=one_of(["pretrained", "random"]),
        help="'pretrained': reflectors of the existing weight's nearest orthogonal matrix "
        "(Sec. 4.4.2); 'random': standard normal reflector vectors",
    )


class Householder(ParametrizationConstraint):
    """Low-rank orthogonal projector ``weight = U S V^T`` with Householder ``U``, ``V``.

    Build the optimizer after ``attach`` (the learnable tensors are new). ``directions()``
    gives the ``N`` orthonormal latent directions (columns of ``V``), used by the traversal
    ``householder``.

    ``householder`` is the only parametrization of the weights it constrains: ``attach``
    refuses a weight that ``orth-weight`` or ``spectral-norm`` already parametrizes, those
    refuse a ``householder`` weight, and ``nog`` / ``olr`` refuse it too (its learnable
    tensors are reflector vectors, not a weight matrix), all with
    :class:`~eigenflow.NotSupportedError` at attach. Penalties (``orth-loss``) read
    ``layer.weight`` and combine with it.
    """

    Config = HouseholderConfig
    source = "000 (Song 2023), Sec. 4.4, Eq. 4.5, Theorems 5-6"
    exclusive = True

    def make_parametrization(self, module: nn.Module) -> nn.Module:
        weight = module.weight
        out, inp = weight.shape[0], math.prod(weight.shape[1:])
        rank = self.config.rank if self.config.rank is not None else min(out, inp)
        if rank > min(out, inp):
            raise ConfigError(
                f"option 'rank' = {rank} is invalid for {type(module).__name__} with a "
                f"{out} x {inp} weight: expected at most {min(out, inp)}"
            )
        return HouseholderProjector(weight.shape, rank, weight.dtype, weight.device)

    def attach(self, target: Any, optimizer: Any = None) -> Householder:
        super().attach(target, optimizer)
        if self.config.init == "random":
            for module, param, _ in self._attached:
                chain = module.parametrizations.weight
                param.randomize(chain.original0, chain.original1)
        return self

    def directions(self, layer: int = 0) -> torch.Tensor:
        """The ``N`` latent directions of constrained layer ``layer``: ``V[:, :N]``, ``(d, N)``.

        ``d`` is the weight's input size (``in * prod(kernel)``); the columns are orthonormal.
        """
        if not self._attached:
            raise NotSupportedError("householder is not attached to any layer")
        module, param, _ = self._attached[layer]
        with torch.no_grad():
            return param.right(module.parametrizations.weight.original1)
