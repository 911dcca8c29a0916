"""Switching a module's compiled or optional path off for a ``with`` block (benchmarks and tests compare paths)."""

from __future__ import annotations

import contextlib
from types import ModuleType


@contextlib.contextmanager
def flag_off(module: ModuleType, name: str):
    """Set ``module.<name>`` to False inside the block and restore its value afterwards, also on errors."""
    previous = getattr(module, name)
    setattr(module, name, False)
    try:
        yield
    finally:
        setattr(module, name, previous)
