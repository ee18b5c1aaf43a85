"""Building components from references, and the model options implied by the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from ..core.config import ComponentRef
from ..core.errors import InputError
from ..registry.registry import get_registries

__all__ = ["build_model", "model_defaults_for", "unpack_batch"]


def unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a batch into data ``x`` and the transformation label ``k`` (or ``None``)."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        x = next((batch[key] for key in ("x", "images", "image", "sequence") if key in batch), None)
        if x is None:
            raise InputError(f"batch: a dict batch needs an 'x' entry, got keys {sorted(batch)!r}")
        k = next((batch[key] for key in ("k", "transform") if key in batch), None)
        return x, k
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        k = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return batch[0], k
    raise InputError(f"batch: expected a tensor, a (x, k) tuple or a dict, got {type(batch)!r}")


def _is_sequence_dataset(dataset: Any) -> bool:
    return hasattr(dataset, "num_transforms")


def model_defaults_for(dataset: Any, model_cls: type) -> dict[str, Any]:
    """Model options implied by the data, limited to the options ``model_cls`` has:
    ``input_shape`` and, for flow models on sequence data, ``num_potentials``."""
    x, _ = unpack_batch(dataset[0])
    shape = tuple(x.shape[1:]) if _is_sequence_dataset(dataset) else tuple(x.shape)
    fields = attrs.fields_dict(model_cls.Config)
    out: dict[str, Any] = {}
    if "input_shape" in fields:
        out["input_shape"] = list(shape)
    if "num_potentials" in fields and _is_sequence_dataset(dataset):
        out["num_potentials"] = int(dataset.num_transforms)
    return out


def build_model(ref: ComponentRef, dataset: Any, **options: Any) -> Any:
    """The model ``ref`` names, with the options the data implies (:func:`model_defaults_for`),
    then ``options``, then the reference's own options (each overriding the one before)."""
    model_cls = get_registries()["model"].get(ref.name)
    return ref.build("model", **{**model_defaults_for(dataset, model_cls), **options})
