"""Metric ``path-length``: a perceptual-path-length style smoothness score of traversal
directions, the "perceptual interpretable path length" (PIPL) of thesis 000, Sec. 4.4.3
(Tables 4.5-4.6), measured in pixel space or in the feature space of a given map.

Definition. For a traversal with ``K`` directions, codes ``z_0 ~ N(0, I)``, a direction
``k`` (every direction gets the same number of samples) and ``t ~ U[0, 1]``:

- ``u_k(z_0)`` is the traversal's unit direction at ``z_0``: the first step of
  ``traverse(z_0, k, 1)`` normalised to length 1 (for linear traversals such as ``sefa``,
  ``householder`` or ``hessian-metric`` the column ``k`` of ``directions``);
- ``z_t = z_0 + t D u_k(z_0)``: a point of the edit of length ``D`` (``displacement``, the
  same "editing strength" for every method, as the thesis sets it equal to SeFa's);
- ``PL = E[ ||phi(G(z_t + eps u)) - phi(G(z_t))||^2 / (P eps^2) ]``, with ``phi`` the
  feature map (identity: pixels), ``P`` the number of features and ``eps = 1e-4``.

It follows the perceptual path length of Karras et al. (2019) (a finite difference of an
image distance at ``eps = 1e-4`` divided by ``eps^2``), with the thesis's change from random
interpolations to moves along interpretable directions. Lower is smoother. As ``eps -> 0``
the summand is ``u^T H(z_t) u / P`` with ``H = J^T J`` the metric tensor of ``phi o G``
(seed 003, Eq. 3-4): the path length is the metric's mean speed along the direction.

This is **not** StyleGAN's PPL: that one uses the LPIPS distance (features of an
ImageNet-trained VGG network) on face images, slerp interpolation between random codes, and
crops; eigenflow downloads nothing, so its distance is the mean squared difference of pixels
or of the features of a network trained locally (pass ``feature_map``). Numbers are not
comparable with the thesis's PIPL values, only the ordering of methods on one generator.

``path_length`` grows with how much a direction changes the image at all. Two scale-free
companions are reported with it:

- ``random_path_length`` is the same quantity along uniformly random unit directions at the
  same points, and ``relative = path_length / random_path_length`` (seed 003, Sec. 4: a random
  direction's speed is the mean of the metric's eigenvalues, App. A.6);
- ``path_ratio`` is, per direction, ``E[speed^2] / E[chord^2]`` with
  ``chord^2 = ||phi(G(z_0 + D u)) - phi(G(z_0))||^2 / (P D^2)``, the squared mean speed
  of the whole edit: 1 when the image moves at constant speed on a straight line, larger when
  the edit is uneven or curved (the mean of ``speed^2`` over ``t`` is at least the squared
  chord over ``D`` by Cauchy-Schwarz). It measures the smoothness of an edit regardless of
  its size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ...core.component import Metric
from ...core.config import config, floating, integer, option, optional
from ...core.directions import num_directions as count_directions
from ...core.errors import InputError

__all__ = [
    "PathLength",
    "PathLengthConfig",
    "chord_speeds",
    "direction_path_lengths",
    "unit_directions",
]

Map = Callable[[torch.Tensor], torch.Tensor]


def unit_directions(traversal: Any, z0: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, d)`` unit vectors: the first step of ``traversal.traverse(z0, k, 1)``
    normalised (the traversal's local direction ``k`` at each code)."""
    with torch.enable_grad():
        path = traversal.traverse(z0, k, 1)
    step = (path[-1] - path[0]).detach().to(z0)
    norm = step.norm(dim=-1, keepdim=True)
    if bool((norm <= 0).any()):
        raise InputError(f"traversal: direction {k} does not move the code (zero step)")
    return step / norm


@torch.no_grad()
def chord_speeds(
    generator: Map,
    z0: torch.Tensor,
    u: torch.Tensor,
    displacement: float,
    feature_map: Map | None = None,
) -> torch.Tensor:
    """Per-sample ``||phi(G(z_0 + D u)) - phi(G(z_0))||^2 / (P D^2)``: the squared mean speed
    of the whole edit ``(B,)`` float64."""
    phi = generator if feature_map is None else (lambda z: feature_map(generator(z)))
    a = phi(z0).flatten(1).to(torch.float64)
    b = phi(z0 + displacement * u).flatten(1).to(torch.float64)
    return (b - a).square().mean(1) / displacement**2


@torch.no_grad()
def direction_path_lengths(
    generator: Map,
    z0: torch.Tensor,
    u: torch.Tensor,
    t: torch.Tensor,
    displacement: float,
    eps: float,
    feature_map: Map | None = None,
) -> torch.Tensor:
    """Per-sample ``||phi(G(z_t + eps u)) - phi(G(z_t))||^2 / (P eps^2)`` with
    ``z_t = z_0 + t D u``.

    Parameters
    ----------
    generator
        ``(B, d) -> (B, ...)``.
    z0, u
        ``(B, d)`` start codes and unit directions.
    t
        ``(B,)`` positions along the edit, in [0, 1].
    displacement, eps
        ``D`` and the finite-difference step.
    feature_map
        ``(B, ...) -> (B, ...)`` applied to the generator's output (None: pixels).

    Returns
    -------
    torch.Tensor
        ``(B,)`` float64.
    """
    phi = generator if feature_map is None else (lambda z: feature_map(generator(z)))
    zt = z0 + (t * displacement)[:, None] * u
    a = phi(zt).flatten(1).to(torch.float64)
    b = phi(zt + eps * u).flatten(1).to(torch.float64)
    return (b - a).square().mean(1) / eps**2


@config
class PathLengthConfig:
    """Options of ``path-length`` (thesis 000, Sec. 4.4.3, PIPL; Karras et al. (2019)'s
    ``eps = 1e-4``; the displacement matches ``vp-score``'s)."""

    num_samples: int = option(
        512, validator=integer(1), help="samples per direction (codes z_0 and positions t)"
    )
    displacement: float = option(
        2.0,
        validator=floating(0.0, min_open=True),
        help="length D of the edit in latent units (the editing strength, equal for all)",
    )
    eps: float = option(1e-4, validator=floating(0.0, min_open=True), help="finite-difference step")
    num_directions: int | None = option(
        None,
        validator=optional(integer(1)),
        help="score the first K directions (None: all of the traversal's)",
    )
    chunk: int = option(256, validator=integer(1), help="codes per generator call")
    seed: int = option(0, validator=integer(0), help="seed of the codes, positions, directions")


def _parameter_dtype(generator: Any) -> torch.dtype:
    """The dtype of a module's first floating parameter (float32 for other callables)."""
    params = getattr(generator, "parameters", None)
    if callable(params):
        for p in params():
            if p.is_floating_point():
                return p.dtype
    return torch.float32


class PathLength(Metric):
    """Perceptual-path-length style score of a traversal's directions (module docstring).

    ``compute(generator, traversal, latent_dim, feature_map=None, device=None, dtype=None)``
    (codes in ``dtype``, default the generator's parameter dtype or float32) returns
    ``path_length`` (mean over directions; lower is smoother), ``std`` (over directions),
    ``per_direction`` (list), ``random_path_length``, ``relative``, ``path_ratio`` (mean over
    directions, at least about 1; lower is a more even edit) and
    ``path_ratio_per_direction``.
    """

    Config: ClassVar[type] = PathLengthConfig
    source = "000 (Song 2023), Sec. 4.4.3, Tables 4.5-4.6 (PIPL); Karras et al. (2019)"

    def compute(
        self,
        generator: Map,
        traversal: Any,
        latent_dim: int,
        feature_map: Map | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> dict[str, Any]:
        cfg = self.config
        dtype = dtype or _parameter_dtype(generator)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise InputError(f"latent_dim: expected a positive integer, got {latent_dim!r}")
        K = count_directions(traversal)
        if cfg.num_directions is not None:
            K = min(K, cfg.num_directions)
        gen = torch.Generator().manual_seed(cfg.seed)
        dev = torch.device(device or "cpu")
        per_direction, random_lengths, ratios = [], [], []
        for k in range(K):
            z0 = torch.randn(cfg.num_samples, latent_dim, generator=gen).to(dev, dtype)
            t = torch.rand(cfg.num_samples, generator=gen).to(dev, dtype)
            v = torch.randn(cfg.num_samples, latent_dim, generator=gen).to(dev, dtype)
            v = v / v.norm(dim=-1, keepdim=True)
            lengths, rand, chords = [], [], []
            for rows in torch.arange(cfg.num_samples).split(cfg.chunk):
                u = unit_directions(traversal, z0[rows], k)
                args = (cfg.displacement, cfg.eps, feature_map)
                lengths.append(direction_path_lengths(generator, z0[rows], u, t[rows], *args))
                rand.append(direction_path_lengths(generator, z0[rows], v[rows], t[rows], *args))
                chords.append(chord_speeds(generator, z0[rows], u, cfg.displacement, feature_map))
            per_direction.append(torch.cat(lengths).mean())
            random_lengths.append(torch.cat(rand).mean())
            chord = torch.cat(chords).mean()
            ratios.append(
                per_direction[-1] / chord if float(chord) > 0 else chord.new_tensor(float("nan"))
            )
        pl = torch.stack(per_direction)
        rnd = torch.stack(random_lengths).mean()
        return {
            "path_length": float(pl.mean()),
            "std": float(pl.std()) if K > 1 else 0.0,
            "per_direction": pl.tolist(),
            "random_path_length": float(rnd),
            "relative": float(pl.mean() / rnd) if float(rnd) > 0 else float("nan"),
            "path_ratio": float(torch.stack(ratios).mean()),
            "path_ratio_per_direction": torch.stack(ratios).tolist(),
        }

    @classmethod
    def example_inputs(cls) -> tuple[tuple, dict]:
        """A linear generator ``R^3 -> R^6`` and a traversal along its first two axes."""
        weight = torch.tensor([[1.0, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
        return (lambda z: z @ weight.T, _AxisTraversal(3, 2), 3), {}


class _AxisTraversal:
    """Straight paths along the first ``K`` coordinate axes (an example traversal)."""

    def __init__(self, d: int, K: int):
        self.directions = torch.eye(d)[:, :K]

    def traverse(self, z0: torch.Tensor, k: int, steps: int = 1, step_size: float = 0.5):
        t = torch.arange(steps + 1, dtype=z0.dtype) * step_size
        return z0[None] + t[:, None, None] * self.directions[:, k].to(z0)
