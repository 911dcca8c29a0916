"""Optional compiled kernels: numba when it is installed (it comes with py-pde), and switching a path off.

The kernels of :mod:`~lipsurrogate.bounds._pair_kernel`, :mod:`~lipsurrogate.bounds._lp_kernel`,
:mod:`~lipsurrogate.bounds.backward` and the GroupSort pair layer of :mod:`~lipsurrogate.nn.activations`
are plain Python functions whose loops use :data:`prange`; :func:`parallel_kernel` compiles them.
Without numba every caller takes its torch or numpy path.
"""

from __future__ import annotations

import contextlib
from types import ModuleType

try:
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

HAVE_NUMBA = numba is not None
prange = numba.prange if HAVE_NUMBA else range
"""The loop over boxes or cells: parallel when compiled."""


def parallel_kernel(function):
    """``function`` compiled by numba (parallel loops, cached on disk, without the GIL); None without numba."""
    if not HAVE_NUMBA:  # pragma: no cover
        return None
    return numba.njit(parallel=True, cache=True, nogil=True)(function)


@contextlib.contextmanager
def flag_off(module: ModuleType, name: str):
    """Set ``module.<name>`` to False inside the block and restore its value afterwards, also on errors."""
    previous = getattr(module, name)
    setattr(module, name, False)
    try:
        yield
    finally:
        setattr(module, name, previous)
