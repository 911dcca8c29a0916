"""glibc's malloc thresholds, for a process that allocates large short-lived arrays in loops.

The certifier and the chunked float64 evaluation allocate arrays of a few MiB per block, free
them, and allocate them again for the next block. glibc serves every allocation above
``M_MMAP_THRESHOLD`` (128 KiB to start, raised dynamically up to 32 MiB) with a fresh ``mmap``
and gives memory above ``M_TRIM_THRESHOLD`` back to the system when it is freed. Either way each
block's arrays arrive as new pages, and the kernel zeroes every page on first touch. Measured here
(2 cores, glibc 2.36): a float32 forward pass of the heat2d network over 549,153 points in
chunks of 8,192 took 1.4 to 2.3 times as long with the defaults as with the thresholds below
(four pairs of runs). On a whole heat2d certificate, which does more than such loops, the gain
was within this host's noise (26.4 s against 30.7 s, 18.8 s against 18.9 s, 19.8 s against
22.1 s: three pairs of runs, the same bound).

:func:`tune_malloc` fixes the thresholds at 64 MiB (mmap) and 256 MiB (trim). Up to 256 MiB of
freed memory then stay with the process for reuse. The ``lipsurrogate`` command calls it at
start-up. It is left alone where the environment already sets glibc's own variables
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``) or sets
``LIPSURROGATE_MALLOC=default``, and off glibc (another libc, macOS, Windows) it does nothing.
It never changes a result, only the time.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["tune_malloc", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 64 << 20
"""Allocations above this size (bytes) get their own mapping; below, the heap serves them."""

TRIM_THRESHOLD = 256 << 20
"""Free memory at the top of the heap above this size (bytes) goes back to the system."""

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc(environ: dict | None = None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); whether they were set.

    Parameters
    ----------
    environ : mapping, optional
        Looked up for the user's own settings (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if environ.get("LIPSURROGATE_MALLOC", "").strip().lower() == "default":
        return False
    if any(environ.get(name) for name in _USER_VARIABLES):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _glibc():
    """The C library when it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None.

    ``CDLL(None)`` is the process's own symbol namespace, which holds the C library it runs on; no
    search (``ctypes.util.find_library`` starts ``ldconfig``, 8 ms at every start-up here)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc
