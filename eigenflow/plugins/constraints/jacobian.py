"""``jacobian-alignment``: the spectral regulariser of seed 001 (Ramesh, Choi, LeCun), Alg. 2-3.

It aligns the top-``k`` eigenvectors of the generator's normal Jacobian ``M_z = J^T J`` with
the first ``k`` latent axes: the eigenvectors are estimated by ``T`` masked simultaneous power
iterations on Jacobian-vector products (Alg. 2), and the penalty is
``sum(S_k A o V o V)`` (Alg. 3, Eq. 10-13) with ``S_k`` of Eq. 12 (``-1`` at ``(j, j)``, ``+1``
elsewhere) and the column weights ``A = diag(alpha (k, .., 1))``, ``alpha = 2 / (k (k + 1))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...core.component import Constraint
from ...core.config import boolean, config, floating, integer, option, optional
from ...core.errors import InputError, NotSupportedError
from ...core.jacobian import leading_eigenpairs, normal_jacobian_mv

__all__ = ["JacobianAlignment", "JacobianAlignmentConfig", "alignment_signs"]


def alignment_signs(
    m: int, k: int, reweight: bool, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``S_k`` of Eq. 12, ``(m, k)``, with the column weights of Alg. 3 lines 5-7 if asked."""
    S = torch.ones(m, k, dtype=dtype, device=device)
    idx = torch.arange(k, device=device)
    S[idx, idx] = -1.0
    if reweight:
        alpha = 2.0 / (k * (k + 1))
        S = S * (alpha * torch.arange(k, 0, -1, device=device, dtype=dtype))
    return S


@config
class JacobianAlignmentConfig:
    """Options of ``jacobian-alignment`` (seed 001, Alg. 2-3; Fig. 5 uses k = 8, T = 8,
    lambda = 0.1; Alg. 2 uses eps = 1e-8)."""

    k: int = option(8, validator=integer(1), help="number of leading eigenvectors to align")
    iters: int = option(8, validator=integer(1, 1000), help="power iterations T (Alg. 2)")
    weight: float = option(0.1, validator=floating(0.0), help="penalty weight lambda")
    reweight: bool = option(
        True,
        validator=boolean(),
        help="weight column j by alpha (k - j + 1) to align leading eigenvectors first (Eq. 13)",
    )
    eps: float = option(1e-8, validator=floating(0.0), help="norm guard of Alg. 2")
    latent_dim: int | None = option(
        None,
        validator=optional(integer(1)),
        help="latent size m, needed when penalty() samples the codes itself",
    )
    batch_size: int = option(
        32, validator=integer(1), help="codes z ~ N(0, I) drawn when penalty() gets none"
    )


class JacobianAlignment(Constraint):
    """Alignment penalty for a generator ``G: (B, m) -> (B, ...)`` (seed 001, Alg. 3).

    ``attach(generator)``, then add ``penalty(z)`` to the generator loss. The generator must
    process samples independently (it is run once on each code repeated ``k`` times).
    ``last_eigenvalues`` / ``last_eigenvectors`` hold Alg. 2's estimates of the last call.
    """

    Config = JacobianAlignmentConfig
    source = "001 (Ramesh et al.), Alg. 2-3, Eq. 8-13"
    order = 5

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self.generator: nn.Module | None = None
        self.last_eigenvalues: torch.Tensor | None = None
        self.last_eigenvectors: torch.Tensor | None = None

    def attach(self, target: nn.Module, optimizer: Any = None) -> JacobianAlignment:
        """Use ``target`` (a callable ``nn.Module``) as the generator."""
        if not isinstance(target, nn.Module):
            raise InputError(
                f"target: expected the generator as an nn.Module, got {type(target).__name__}"
            )
        self.generator = target
        return self

    def detach(self) -> None:
        self.generator = None

    def _codes(self, z: torch.Tensor | None) -> torch.Tensor:
        if z is not None:
            if not isinstance(z, torch.Tensor) or z.dim() != 2:
                raise InputError(
                    f"z: expected latent codes of shape (B, m), got "
                    f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
                )
            return z
        if self.config.latent_dim is None:
            raise NotSupportedError(
                "jacobian-alignment: pass z to penalty() or set the option latent_dim"
            )
        param = next(self.generator.parameters(), None)
        kwargs = {} if param is None else {"dtype": param.dtype, "device": param.device}
        return torch.randn(self.config.batch_size, self.config.latent_dim, **kwargs)

    def penalty(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """``lambda * mean_z sum(S_k A o V o V)`` (Alg. 3), differentiable in the generator.

        Parameters
        ----------
        z
            ``(B, m)`` latent codes; drawn from ``N(0, I)`` when omitted.
        """
        if self.generator is None:
            raise NotSupportedError("jacobian-alignment is not attached to a generator")
        cfg = self.config
        z = self._codes(z)
        B, m = z.shape
        if cfg.k > m:
            raise InputError(f"z: latent size {m} is smaller than k = {cfg.k}")
        mv = normal_jacobian_mv(self.generator, z, cfg.k)
        V0 = torch.randint(0, 2, (B, m, cfg.k), device=z.device).to(z.dtype) * 2 - 1  # Rademacher
        lam, V = leading_eigenpairs(mv, V0, cfg.iters, masked=True, eps=cfg.eps)
        self.last_eigenvalues, self.last_eigenvectors = lam.detach(), V.detach()
        S = alignment_signs(m, cfg.k, cfg.reweight, dtype=z.dtype, device=z.device)
        return cfg.weight * (S * V * V).sum(dim=(-2, -1)).mean()
