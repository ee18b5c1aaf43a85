"""The device a run uses: checked before anything is written.

:func:`resolve_device` is what :meth:`~eigenflow.runtime.Pipeline.run` and ``eigenflow run``
call: a device the runtime cannot run on (``"foo"``, ``"mps"``, ``"meta"``, ``"cpu:1"``,
``"cuda"`` without CUDA, a GPU index past the last) is a :class:`~eigenflow.ConfigError`
naming it and what is allowed, raised before the run folder is made.
"""

from __future__ import annotations

import torch

from ..core.errors import ConfigError, did_you_mean

__all__ = ["RUN_DEVICES", "resolve_device"]

#: The devices the runtime runs pipelines on (for messages and ``--help``).
RUN_DEVICES = "cpu, cuda, cuda:N for GPU N"


def resolve_device(device: str | torch.device | None, what: str = "device") -> torch.device:
    """The :class:`torch.device` a run uses, refusing one it cannot run on.

    Parameters
    ----------
    device
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (or a :class:`torch.device`); ``None`` for
        ``cuda`` when available, else ``cpu``.
    what
        Where ``device`` came from, for the message (``"device"``, ``"--device"``).

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    ConfigError
        ``device`` is not one the runtime runs on, or names a GPU this machine lacks.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parsed = _parse(device)
    if parsed is None or not _runs_on(parsed):
        raise ConfigError(
            f"{what}: {_shown(device)} is not a device eigenflow runs on{_hint(device)} "
            f"(allowed: {RUN_DEVICES}; leave it out for cuda when available, else cpu)"
        )
    if parsed.type == "cuda":
        _check_gpu(parsed, device, what)
    return parsed


def _parse(device: str | torch.device) -> torch.device | None:
    """``torch.device(device)``, or ``None`` when torch does not read it as a device."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return None


def _runs_on(device: torch.device) -> bool:
    """Whether the runtime runs on ``device``'s type: ``cuda``, and ``cpu`` (index 0 or none)."""
    return device.type == "cuda" or (device.type == "cpu" and device.index in (None, 0))


def _shown(device: str | torch.device) -> str:
    """``device`` as a quoted name in a message (``'mps'``)."""
    return repr(str(device)) if isinstance(device, torch.device) else repr(device)


def _hint(device: str | torch.device) -> str:
    """``"; did you mean 'cuda:1'?"`` for a close device name, else ``""``."""
    text = str(device)
    if text.lower().startswith("gpu"):  # closest() would say 'cpu'
        return f"; did you mean {'cuda' + text[3:]!r}?"
    return did_you_mean(text, ("cpu", "cuda", "cuda:0"))


def _check_gpu(parsed: torch.device, device: str | torch.device, what: str) -> None:
    """Refuse ``cuda`` without CUDA, and a GPU index past the last."""
    if not torch.cuda.is_available():
        raise ConfigError(
            f"{what}: {_shown(device)} requested but CUDA is not available here (allowed here: cpu)"
        )
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(
            f"{what}: {_shown(device)} requested but this machine has {count} GPU(s) "
            f"(allowed: cpu, cuda, cuda:0 to cuda:{count - 1})"
        )
