"""Argument checks shared across the package, with scikit-learn style messages."""

from __future__ import annotations

import math
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["positive_int", "positive_float"]


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an integer >= 1 (bools refused), else raise ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"'{name}' must be a positive integer. Got {value!r} instead.")
    return value


def positive_float(name: str, value: Any) -> float:
    """Return ``float(value)`` if it is finite and > 0, else raise ConfigurationError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"'{name}' must be a positive number. Got {value!r} instead.") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigurationError(f"'{name}' must be a positive finite number. Got {value!r} instead.")
    return v
