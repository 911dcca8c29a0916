"""Where training runs: ``train(device=...)``, or a ``training_device(...)`` block around a whole task.

Training is ordinary float32 optimisation and runs wherever torch runs; the trained weights
come back to the CPU, where the certificate is computed from them in float64 (its rounding
proofs are written for that evaluation: ``theory/lipschitz-networks.md`` section 4). A task run
through :func:`lipsurrogate.pipeline.fit` (``lipsurrogate fit TASK --device cuda``) trains every
network inside such a block.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

from ..exceptions import ConfigurationError

__all__ = ["resolve_device", "training_device", "current_device"]

_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("lipsurrogate_training_device",
                                                                              default=None)


def resolve_device(name) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when torch sees one, else CPU) or a torch.device.

    Raises
    ------
    ConfigurationError
        For a name torch does not know, or a CUDA device that this torch build or machine does
        not have (the message says which).
    """
    if isinstance(name, torch.device):
        device = name
    else:
        text = str(name).strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except (RuntimeError, TypeError):
            raise ConfigurationError(f"'device' must be 'cpu', 'cuda', 'cuda:N' or 'auto'. Got {name!r}.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigurationError(f"Training on {device} was asked for, but torch {torch.__version__} ({build}) "
                                     "sees no CUDA device on this machine. Use --device cpu (or 'auto').")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigurationError(f"{device} was asked for, but this machine has {torch.cuda.device_count()} "
                                     "CUDA device(s).")
    elif device.type != "cpu":
        raise ConfigurationError(f"'device' must be a CPU or CUDA device. Got {name!r}.")
    return device


@contextlib.contextmanager
def training_device(name) -> Iterator[torch.device | None]:
    """Inside the block, :func:`~lipsurrogate.train.train` without ``device`` trains on ``name`` (None: no change)."""
    device = None if name is None else resolve_device(name)
    token = _DEVICE.set(device)
    try:
        yield device
    finally:
        _DEVICE.reset(token)


def current_device() -> torch.device | None:
    """The device of the innermost :func:`training_device` block, or None outside one."""
    return _DEVICE.get()
