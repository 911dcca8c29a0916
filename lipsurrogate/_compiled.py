"""Optional compiled kernels: numba when it is installed (it comes with py-pde), and switching a path off.

The kernels of :mod:`~lipsurrogate.bounds._pair_kernel`, :mod:`~lipsurrogate.bounds._lp_kernel`,
:mod:`~lipsurrogate.bounds.backward` and the GroupSort pair layer of :mod:`~lipsurrogate.nn.activations`
are plain Python functions whose loops use :data:`prange`; :func:`parallel_kernel` compiles them.
Without numba every caller takes its torch or numpy path.
"""

from __future__ import annotations

import contextlib
from types import ModuleType

import numpy as np

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


def magnitude_bits(dtype) -> tuple[type, np.signedinteger]:
    """The signed integer type of a float dtype's width and its mask of every bit but the sign:
    ``x.view(int_type) & mask`` are the bits of ``|x|`` (Note [row maxima on the bits] of
    :class:`~lipsurrogate.nn.GroupSort`)."""
    if np.dtype(dtype) == np.float32:
        return np.int32, np.int32(0x7FFFFFFF)
    if np.dtype(dtype) == np.float64:
        return np.int64, np.int64(0x7FFFFFFFFFFFFFFF)
    raise TypeError(f"Expected float32 or float64. Got {np.dtype(dtype)}.")


def abs_max_bits(bits, row, count, magnitude):  # pragma: no cover - inlined into the compiled kernels
    """The bit pattern of ``max_{j < count} |x_j|`` for row ``row`` of a 2-D array of floats given as
    signed-integer ``bits`` (``magnitude`` from :func:`magnitude_bits`): an integer maximum, which
    vectorises, and exactly the float maximum, NaN where the row has one (Note [row maxima on the
    bits] of :class:`~lipsurrogate.nn.GroupSort`).

    The row is indexed, not sliced: a slice taken inside a kernel loses its contiguity for numba,
    and the loop then runs scalar (7x slower in the GroupSort pass). numba inlines this function
    into kernels of other modules, whose disk caches do not see a change here: a change must also
    touch those modules."""
    top = bits[row, 0] & magnitude
    for j in range(1, count):
        v = bits[row, j] & magnitude
        top = v if v > top else top
    return top


if HAVE_NUMBA:
    abs_max_bits = numba.njit(inline="always", cache=True)(abs_max_bits)


@contextlib.contextmanager
def flag_off(module: ModuleType, name: str):
    """Set ``module.<name>`` to False inside the block and restore its value afterwards, also on errors."""
    previous = getattr(module, name)
    setattr(module, name, False)
    try:
        yield
    finally:
        setattr(module, name, previous)
