"""Thread counts: from the cores this process may use, the environment, and the size of the work.

Several processes that each start one thread per core of the machine *oversubscribe* it: the
OpenMP workers of torch spin while they wait for each other, so three concurrent runs on two
cores were measured 33 times slower instead of three (issue 17). The rules here:

* :func:`available_cores` is what the process may actually run on: its CPU affinity mask,
  capped by a cgroup CPU quota (containers, ``docker --cpus``, batch schedulers).
* :func:`default_threads` respects ``LIPSURROGATE_THREADS``, then ``OMP_NUM_THREADS``, and is
  otherwise :func:`available_cores`.
* :func:`configure_threads` applies the count to torch and numba (py-pde's kernels); the
  ``lipsurrogate`` command calls it once at start-up.
* :func:`threads_for_load` is what a stage (training, certification) uses when no count is
  given: the explicit count if the environment sets one, else the available cores minus those
  that other processes keep busy *now* (the runnable count of ``/proc/loadavg``, less this
  process's own runnable threads), at least 1. Three concurrent runs on two cores then train on
  one thread each and slow down in proportion to the load (``benchmarks/bench_concurrency.py``).
* :func:`torch_threads` limits torch for one block of work and restores the count after it.
* :func:`numpy_blas_threads` limits numpy's BLAS pool (OpenBLAS, MKL) for a block; the
  certifier runs with one BLAS thread and :func:`configure_threads` sets one for the process.
  numpy's products here are small (a few columns), torch does the large ones, and two pools
  that spin while they wait on the same two cores made a float64 pass over 549k points up to
  three times slower (``theory/lipschitz-networks.md`` section 4); the heat2d certificate took
  32.1 s instead of 36.9 s with one BLAS thread, the same bound (one pair of runs).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path
from typing import Iterator

from .exceptions import ConfigurationError

__all__ = ["available_cores", "default_threads", "configure_threads", "threads_for_load", "busy_cores",
           "torch_threads", "numpy_blas_threads", "one_numpy_blas_thread"]

THREAD_VARIABLES = ("LIPSURROGATE_THREADS", "OMP_NUM_THREADS")
"""Environment variables that set the thread count, first match wins."""


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if unlimited."""
    try:
        text = (root / "cpu.max").read_text().split()
        if len(text) == 2 and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def available_cores() -> int:
    """Number of CPU cores this process may run on (affinity mask, capped by a cgroup quota; >= 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit - 1e-9)))
    return max(1, cores)


def _explicit_threads(environ: dict | None) -> int | None:
    """The count set by the first of :data:`THREAD_VARIABLES` present (the first entry of a list), or None."""
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            try:
                n = int(value.split(",")[0].strip())
            except ValueError:
                n = 0
            if n < 1:
                raise ConfigurationError(f"The environment variable {name} must be a positive integer. Got {value!r}.")
            return n
    return None


def default_threads(environ: dict | None = None) -> int:
    """Threads to use: ``LIPSURROGATE_THREADS``, else ``OMP_NUM_THREADS``, else :func:`available_cores`.

    An explicit count is honoured as given (also above the core count: the user asked for it).
    ``OMP_NUM_THREADS`` may be a list (nested levels); its first entry counts.
    """
    explicit = _explicit_threads(environ)
    return available_cores() if explicit is None else explicit


def _own_runnable(task_dir: Path) -> int:
    """Threads of this process in state R (running or runnable), from ``/proc/self/task/*/stat``."""
    count = 0
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return 1
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        if stat[stat.rindex(")") + 2:].startswith("R"):
            count += 1
    return max(1, count)


def busy_cores(loadavg: Path = Path("/proc/loadavg"), task_dir: Path = Path("/proc/self/task"),
               reads: int = 5, pause: float = 2e-3) -> int:
    """Tasks of *other* processes that are runnable now (0 where the kernel does not say).

    The fourth field of ``/proc/loadavg`` is ``runnable/total`` scheduling entities, an
    instantaneous count (not the 1-minute average), which includes this process's running
    threads; those are subtracted. The smallest of ``reads`` readings ``pause`` seconds apart is
    returned, so that a short-lived process (a shell command, a kernel worker) does not count: a
    competing computation stays runnable. An **estimate** of the competing load, read when a
    stage starts and again during long ones.
    """
    import time

    busy = None
    for i in range(max(1, reads)):
        if i:
            time.sleep(pause)
        try:
            runnable = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        now = max(0, runnable - _own_runnable(task_dir))
        busy = now if busy is None else min(busy, now)
        if busy == 0:
            break
    return busy


def threads_for_load(environ: dict | None = None, *, cores: int | None = None, busy: int | None = None) -> int:
    """Threads for a stage: the environment's explicit count, else free cores now (>= 1).

    Parameters
    ----------
    environ : mapping, optional
        Looked up for ``LIPSURROGATE_THREADS`` / ``OMP_NUM_THREADS`` (default ``os.environ``); an
        explicit count wins.
    cores, busy : int, optional
        :func:`available_cores` and :func:`busy_cores` by default (given in tests).
    """
    explicit = _explicit_threads(environ)
    if explicit is not None:
        return explicit
    cores = available_cores() if cores is None else int(cores)
    busy = busy_cores() if busy is None else int(busy)
    return max(1, cores - busy)


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads (and numba's, where numba is loaded) to ``n`` or :func:`default_threads`.

    numpy's BLAS pool gets one thread (see the module docstring).

    numba fixes its pool size when it is first imported, from ``NUMBA_NUM_THREADS``; that variable
    is set here when numba is not loaded yet, and :func:`numba.set_num_threads` is used when it is
    (it can only lower the count below the pool size). Returns the count.
    """
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ConfigurationError(f"The thread count must be >= 1. Got {n}.")
    import torch

    torch.set_num_threads(n)
    _limit_numpy_blas(1)
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    else:
        with contextlib.suppress(Exception):  # numba without threading layers: leave it
            numba.set_num_threads(min(n, int(numba.config.NUMBA_NUM_THREADS)))
    return n


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after it.

    ``None`` leaves the count alone. For networks of a few thousand weights the per-op
    parallelism costs more than it saves, and two threads on a shared 2-core machine can make a
    training step 10-40 times slower than one.
    """
    if n is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _limit_numpy_blas(n: int):
    """Limit the BLAS libraries that numpy loaded to ``n`` threads; returns the limiter (it can restore them)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n), user_api="blas")


@contextlib.contextmanager
def numpy_blas_threads(n: int | None = 1) -> Iterator[None]:
    """Run the block with numpy's BLAS pool limited to ``n`` threads, restored after it (None: no change)."""
    if n is None:
        yield
        return
    limiter = _limit_numpy_blas(n)
    try:
        yield
    finally:
        limiter.restore_original_limits()


def one_numpy_blas_thread(function):
    """Decorator: ``function`` runs inside ``numpy_blas_threads(1)`` (the certifier's entry points)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with numpy_blas_threads(1):
            return function(*args, **kwargs)

    return wrapper
