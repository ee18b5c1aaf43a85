"""``frechet-distance``: the Fréchet distance between Gaussian fits of classifier features.

For feature sets with means ``mu_1, mu_2`` and covariances ``S_1, S_2``,

``FD = |mu_1 - mu_2|^2 + tr S_1 + tr S_2 - 2 tr (S_1^(1/2) S_2 S_1^(1/2))^(1/2)``

(the 2-Wasserstein distance between the two Gaussians, squared; Dowson and Landau 1982).
The product ``S_1^(1/2) S_2 S_1^(1/2)`` is symmetric positive semi-definite, so both square
roots are taken by an eigenflow solver (``svd`` by default: ``eigh`` with clamped
eigenvalues) in float64; its trace equals that of ``(S_1 S_2)^(1/2)`` in the usual formula.
With the default solver the distance matches scipy's ``sqrtm`` form to about 1e-10
(relative) for full-rank covariances; for singular ones the square roots of rounding-level
eigenvalues add up to about ``d sqrt(eps) |S|`` (1e-7 relative). Iterative solvers
(``mpa-lya``, ``ns``) are approximate: ``tr S_1 + tr S_2 - 2 tr(...)`` cancels, so their
relative error on the distance can reach 1e-3.

**This is not the FID** (the Fréchet Inception Distance of Heusel et al. 2017, the metric of
thesis 000, Tables 4.1-4.2). FID uses the pool features of an Inception-v3 network trained on
ImageNet; eigenflow downloads nothing at run time and ships no such weights, and Inception's
299-pixel colour features would say little about 28-64 pixel digits and sprites anyway. The
features here come from a small convolutional classifier trained locally on the same dataset
(its labels: the digit, or every discrete factor of dsprites / shapes3d-lite), so values are
comparable only between runs that use the same classifier (same dataset and options), never
with published FID numbers.

The classifier is trained once per dataset and options through the engine and cached under
``$EIGENFLOW_CACHE/feature-classifiers`` (default ``~/.cache/eigenflow``), outside the
repository.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from ...core.checks import check_tensor
from ...core.component import Metric
from ...core.config import (
    ComponentRef,
    boolean,
    component_option,
    config,
    floating,
    integer,
    option,
)
from ...core.errors import InputError
from ...core.io import atomic_torch_save, cache_folder, load_weights
from ...runtime import RandomBatches, TrainConfig, Trainer

__all__ = [
    "FeatureClassifier",
    "FrechetDistance",
    "FrechetDistanceConfig",
    "dataset_frames",
    "frechet_distance",
    "gaussian_statistics",
    "psd_sqrt",
    "train_feature_classifier",
]

#: bump when the classifier or its training changes, so stale cached weights are not used
_FORMAT = 1


# --------------------------------------------------------------------------- the distance


def psd_sqrt(A: torch.Tensor, solver: str | ComponentRef = "svd") -> torch.Tensor:
    """Square root of symmetric PSD ``A (..., d, d)`` in float64 by eigenflow solver
    ``solver`` (a name or a reference with options, built through the registry); ``A`` is
    symmetrised first."""
    A = A.to(torch.float64)
    A = 0.5 * (A + A.mT)
    return ComponentRef.coerce(solver, "solver").build().sqrt(A)


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` of ``features (N, d)``, in float64."""
    x = check_tensor(features, "features", min_dims=2).to(torch.float64)
    if x.dim() != 2 or x.shape[0] < 2:
        raise InputError(f"features: expected at least 2 rows (N, d), got {list(x.shape)}")
    mu = x.mean(0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu, 0.5 * (sigma + sigma.T)


def frechet_distance(
    mu1: torch.Tensor,
    sigma1: torch.Tensor,
    mu2: torch.Tensor,
    sigma2: torch.Tensor,
    solver: str | ComponentRef = "svd",
) -> torch.Tensor:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (a float64 scalar).

    Parameters
    ----------
    mu1, mu2
        Means ``(d,)``.
    sigma1, sigma2
        Symmetric PSD covariances ``(d, d)``.
    solver
        Registered solver for both matrix square roots (float64).
    """
    d = mu1.shape[-1]
    for name, v, shape in (
        ("mu1", mu1, (d,)),
        ("mu2", mu2, (d,)),
        ("sigma1", sigma1, (d, d)),
        ("sigma2", sigma2, (d, d)),
    ):
        if tuple(v.shape) != shape:
            raise InputError(f"{name}: expected shape {list(shape)}, got {list(v.shape)}")
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    s1, s2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    root1 = psd_sqrt(s1, solver)
    cross = psd_sqrt(root1 @ s2 @ root1, solver)
    return (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross.trace()


# --------------------------------------------------------------------------- the features


class FeatureClassifier(nn.Module):
    """A small ConvNet ``(B, C, H, W) -> features (B, feature_dim)`` with one linear head per
    label column (``heads``: the number of classes of each).

    Two stride-2 4x4 convolutions (``width``, ``2 width`` channels, ReLU), adaptive average
    pooling to 4x4, a linear layer to ``feature_dim`` (the features: its pre-activation),
    ReLU, the heads.
    """

    def __init__(self, channels: int, heads: list[int], width: int, feature_dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
        )
        self.heads = nn.ModuleList(nn.Linear(feature_dim, k) for k in heads)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = F.relu(self.body(x))
        return [head(h) for head in self.heads]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean cross-entropy over the label columns (the engine's objective)."""
        x, y = batch
        logits = self(x)
        ce = sum(F.cross_entropy(out, y[:, j]) for j, out in enumerate(logits)) / len(logits)
        return {"loss": ce}


def dataset_frames(dataset: Any, limit: int | None = None, seed: int = 0):
    """``(images (N, C, H, W), labels (N, L) int64)`` of a dataset's items, sequences
    flattened to frames; labels are ``classes`` (every discrete factor) or ``label``.
    With ``limit``, a random subset (seeded) of at most ``limit`` frames."""
    batch = dataset.batch() if callable(getattr(dataset, "batch", None)) else None
    if batch is None:
        batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    x = batch["x"]
    if "classes" in batch:
        y = batch["classes"]
    elif "label" in batch:
        y = batch["label"].unsqueeze(-1)
    else:
        raise InputError(
            f"dataset: the feature classifier needs 'classes' or 'label' in its items, got "
            f"keys {sorted(batch)!r}"
        )
    if x.dim() == 5:  # sequences (N, T, C, H, W): labels per frame or per sequence
        t = x.shape[1]
        y = y if y.dim() == 3 else y.unsqueeze(1).expand(-1, t, -1)
        x, y = x.flatten(0, 1), y.flatten(0, 1)
    if x.dim() != 4:
        raise InputError(f"dataset: expected images (N, C, H, W), got {list(x.shape)}")
    if limit is not None and len(x) > limit:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=gen)[:limit]
        x, y = x[idx], y[idx]
    return x.float(), y.long().reshape(len(y), -1)


def _split(ref: ComponentRef, split: str) -> ComponentRef:
    return attrs.evolve(ref, options={**dict(ref.options), "split": split})


def train_feature_classifier(
    dataset: ComponentRef, config: FrechetDistanceConfig
) -> tuple[FeatureClassifier, dict[str, Any]]:
    """Train the feature classifier on the ``train`` split of ``dataset`` through the engine
    and measure its accuracy per label column on the ``test`` split; returns the network
    (eval mode, CPU) and ``{"heads", "test_accuracy", "train_frames"}``."""
    x, y = dataset_frames(_split(dataset, "train").build("dataset"), config.train_items, 0)
    heads = [int(k) + 1 for k in y.amax(0).tolist()]
    torch.manual_seed(config.seed)
    net = FeatureClassifier(x.shape[1], heads, config.width, config.feature_dim)
    gen = torch.Generator().manual_seed(config.seed)
    Trainer(
        net,
        config=TrainConfig(
            steps=config.train_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            quiet=True,
            log_every=config.train_steps,
        ),
        batches=RandomBatches((x, y), config.batch_size, gen),
        device="cpu",
        label="feature classifier",
        local=True,
    ).fit()
    net.eval()
    xt, yt = dataset_frames(_split(dataset, "test").build("dataset"), config.real_items, 1)
    with torch.no_grad():
        logits = [torch.cat(c) for c in zip(*(net(b) for b in xt.split(256)))]
    accuracy = [float((out.argmax(1) == yt[:, j]).double().mean()) for j, out in enumerate(logits)]
    return net, {"heads": heads, "test_accuracy": accuracy, "train_frames": len(x)}


# --------------------------------------------------------------------------- the metric


@config
class FrechetDistanceConfig:
    """Options of ``frechet-distance``.

    The distance is the one FID uses (Heusel et al. 2017; thesis 000, Tables 4.1-4.2 report
    FID) in the features of a classifier trained here on ``dataset`` instead of Inception-v3
    (see the module docstring). Classifier sizes and training length are our choice for CPU
    training in well under a minute.
    """

    dataset: Any = component_option(
        "dataset",
        "digits-sequences",
        help="dataset the feature classifier is trained on (train split) and whose test "
        "split gives the real statistics",
    )
    feature_dim: int = option(64, validator=integer(2, 4096), help="feature size d")
    width: int = option(16, validator=integer(1, 1024), help="channels of the first conv")
    train_steps: int = option(400, validator=integer(1), help="classifier training steps")
    train_items: int = option(8000, validator=integer(2), help="training frames (at most)")
    batch_size: int = option(128, validator=integer(1), help="classifier batch size")
    lr: float = option(
        2e-3, validator=floating(0.0, 1.0, min_open=True), help="classifier learning rate"
    )
    real_items: int = option(
        2000, validator=integer(2), help="test-split frames of the real statistics (at most)"
    )
    solver: Any = component_option(
        "solver", "svd", help="eigenflow solver of the matrix square roots (run in float64)"
    )
    cache: bool = option(
        True, validator=boolean(), help="keep the trained classifier in the cache folder"
    )
    seed: int = option(0, validator=integer(0), help="seed of the classifier's training")


class FrechetDistance(Metric):
    """``metric(fake, real=None) -> float``: Fréchet distance between Gaussian fits of
    ``fake`` and ``real``.

    Inputs are images ``(N, C, H, W)`` in ``[0, 1]`` (mapped to classifier features) or
    features ``(N, d)`` used as given. ``real=None`` takes the dataset's test-split frames
    (``real_items`` of them). Not the Inception FID: see the module docstring.
    """

    Config = FrechetDistanceConfig
    source = "Fréchet distance of FID (thesis 000, Sec. 4.3.3) in local classifier features"

    def __init__(self, config: Any = None, **options: Any):
        super().__init__(config, **options)
        self._net: FeatureClassifier | None = None
        self.info: dict[str, Any] = {}
        self._real_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    # ----------------------------------------------------------------- classifier
    def cache_path(self):
        """Where the trained classifier of this config is kept."""
        cfg = self.config
        key = {
            "format": _FORMAT,
            "dataset": cfg.dataset.to_dict(),
            **{
                k: getattr(cfg, k)
                for k in ("feature_dim", "width", "train_steps", "train_items", "batch_size")
            },
            "lr": cfg.lr,
            "real_items": cfg.real_items,
            "seed": cfg.seed,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return cache_folder("feature-classifiers") / f"{cfg.dataset.name}-{digest}.pt"

    def classifier(self) -> FeatureClassifier:
        """The feature classifier (loaded from the cache, or trained and cached)."""
        if self._net is not None:
            return self._net
        cfg = self.config
        path = self.cache_path()
        if cfg.cache and path.exists():
            saved = load_weights(path)
            net = FeatureClassifier(
                int(saved["channels"]), list(saved["info"]["heads"]), cfg.width, cfg.feature_dim
            )
            net.load_state_dict(saved["state"])
            self.info = dict(saved["info"])
            net.eval()
        else:
            net, self.info = train_feature_classifier(cfg.dataset, cfg)
            if cfg.cache:
                channels = net.body[0].in_channels
                atomic_torch_save(
                    {"state": net.state_dict(), "info": self.info, "channels": channels}, path
                )
        self._net = net
        return net

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Classifier features ``(N, feature_dim)`` of ``images (N, C, H, W)`` (float64)."""
        x = check_tensor(images, "images", min_dims=4)
        if x.dim() != 4:
            raise InputError(f"images: expected (N, C, H, W), got {list(x.shape)}")
        net = self.classifier()
        expected = net.body[0].in_channels
        if x.shape[1] != expected:
            raise InputError(
                f"images: expected {expected} channels (the classifier's dataset), got "
                f"{list(x.shape)}"
            )
        x = x.detach().to("cpu", torch.float32)
        with torch.no_grad():
            return torch.cat([net.features(b) for b in x.split(256)]).to(torch.float64)

    def _as_features(self, value: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor) or value.dim() not in (2, 4):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise InputError(
                f"{name}: expected images (N, C, H, W) or features (N, d), got {shape}"
            )
        return self.features(value) if value.dim() == 4 else value.detach().to(torch.float64)

    def real_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of the features of the dataset's test-split frames."""
        if self._real_stats is None:
            test = _split(self.config.dataset, "test").build("dataset")
            x, _ = dataset_frames(test, self.config.real_items, 1)
            self._real_stats = gaussian_statistics(self.features(x))
        return self._real_stats

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> float:
        mu_f, s_f = gaussian_statistics(self._as_features(fake, "fake"))
        if real is None:
            mu_r, s_r = self.real_statistics()
        else:
            mu_r, s_r = gaussian_statistics(self._as_features(real, "real"))
        if mu_r.shape != mu_f.shape:
            raise InputError(
                f"real: features of size {mu_r.shape[0]} do not match fake's {mu_f.shape[0]}"
            )
        return float(frechet_distance(mu_f, s_f, mu_r, s_r, self.config.solver))

    @classmethod
    def example_inputs(cls) -> tuple[tuple[Any, ...], dict[str, Any]]:
        gen = torch.Generator().manual_seed(0)
        fake = torch.randn(40, 5, generator=gen, dtype=torch.float64)
        real = torch.randn(50, 5, generator=gen, dtype=torch.float64) * 1.5 + 0.3
        return (fake, real), {}
