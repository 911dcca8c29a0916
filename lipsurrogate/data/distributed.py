r"""Generate large PDE families on Dask, written chunk by chunk into one NetCDF-4 file.

:func:`generate_family` is :func:`lipsurrogate.data.generators.heat2d` with ``samples=N`` for
families too large for one process: the samples are split into chunks, each chunk is one Dask
task that solves its samples with **one** compiled py-pde stepper (the same per-chunk code as
``heat2d(workers=...)``; a worker process keeps its stepper for the next chunk, so numba
compiles once per worker, not once per task), and the driver writes every finished chunk into
its slice of the output file.

Determinism
    The initial conditions and diffusivities are drawn on the driver, in sample order, from
    ``numpy.random.default_rng(seed)`` exactly as ``heat2d(samples=N, seed=seed)`` draws them;
    sample ``i`` therefore depends only on ``(seed, i)`` and the options, never on the chunk
    size, the number of workers or the order in which chunks finish. The finished file equals
    ``heat2d(samples=N, seed=seed, ...)`` (tested), plus the attributes ``samples_written``
    and ``family_request``.

Interruptions
    The file is written as ``<out>.partial`` and renamed onto ``out`` only after the last chunk,
    so a crashed run never leaves a file at ``out`` that looks complete. The partial file is a
    readable NetCDF file: its ``samples_written`` attribute counts the finished samples, and
    unfinished samples hold NaN. Running the same request again (``resume=True``, the default)
    solves only the missing chunks.

Schedulers
    ``scheduler=None`` starts a :class:`dask.distributed.LocalCluster` (worker processes, one
    thread each) and closes it afterwards; ``"tcp://host:8786"`` connects to a running Dask
    scheduler (whose workers must have lipsurrogate installed); a
    :class:`dask.distributed.Client` is used as it is and left open. Dask is the optional
    ``scale`` extra: ``pip install "lipsurrogate[scale]"``. See ``theory/scaling.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import xarray as xr

from .._dask import check_scheduler, dask_client
from .._validation import positive_int
from ..exceptions import ConfigurationError, DataSchemaError
from .dataset import SUFFIXES, check_attrs
from .generators import _coord, _HeatSolver, _provenance, heat_attrs, heat_plan

__all__ = ["generate_family", "FAMILY_PDES", "partial_path"]

FAMILY_PDES = ("heat2d", "heat2d-dirichlet")
"""PDEs that :func:`generate_family` can distribute (the others: :func:`~lipsurrogate.data.generate`)."""

_HEAT_OPTIONS = (
    "grid", "t_end", "frames", "diffusivity", "diffusivity_range", "diffusivities", "same_initial_condition",
    "n_modes", "k_max", "amplitude", "dt", "solver", "backend",
)

_ABS_MAX = "partial_abs_max_u"  # attribute of the partial file only

_SOLVER_CACHE: dict[tuple, _HeatSolver] = {}  # per worker process: the compiled stepper of the last setup


def partial_path(out: str | os.PathLike) -> Path:
    """The file that :func:`generate_family` writes while it runs (``<out>.partial``)."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


# -- the plan: everything heat2d decides before it solves, drawn in heat2d's order ---------------

def _heat_plan(boundary: str, samples: int | None, seed: int, options: dict) -> dict:
    """Jobs, solver setup and attributes of ``heat2d(samples=..., seed=..., **options)``.

    The draws, time step and backend come from :func:`~lipsurrogate.data.generators.heat_plan`,
    the function :func:`~lipsurrogate.data.generators.heat2d` itself uses, so the two agree
    (``tests/data/test_distributed.py`` checks the files are identical).
    """
    if samples is None and options.get("diffusivities") is None:
        raise ConfigurationError("generate_family needs 'samples' (an integer) or 'diffusivities'. Got neither.")
    try:
        plan = heat_plan(boundary, samples, seed, **options)
    except TypeError as err:  # an option heat2d does not know
        raise ConfigurationError(f"generate_family got an option heat2d does not take: {err}.") from None
    n, cells, length, times = plan["n"], plan["cells"], plan["length"], plan["times"]
    kappas, modes, solver, backend, dt_tau = plan["kappas"], plan["modes"], plan["solver"], plan["backend"], plan["dt_tau"]
    return {
        "n": n, "cells": cells, "length": length, "times": times, "kappas": kappas, "modes": modes,
        "setup": (boundary, cells, length, float(dt_tau), solver, backend),
        "jobs": [(m.to_json(), float(k)) for m, k in zip(modes, kappas)],
        "attrs": heat_attrs(boundary, length, solver, backend, seed),
    }


def _solve_chunk(setup: tuple, times: np.ndarray, start: int, jobs: list) -> tuple:
    """One Dask task: solve consecutive samples ``start, start + 1, ...`` with one stepper.

    The stepper is kept in the worker process for the next chunk with the same setup, so a
    numba compilation is paid once per worker.
    """
    solver = _SOLVER_CACHE.get(setup)
    if solver is None:
        _SOLVER_CACHE.clear()
        solver = _SOLVER_CACHE[setup] = _HeatSolver(*setup)
    results = [solver.solve(job, times) for job in jobs]
    frames = np.stack([r[0] for r in results])
    return start, frames, np.array([r[1] for r in results]), np.array([r[2] for r in results])


# -- the file ------------------------------------------------------------------------------------

def _skeleton(plan: dict, request: str) -> xr.Dataset:
    """Everything known before solving: coordinates, diffusivities, modes and attributes."""
    from pde import CartesianGrid

    n, cells, length = plan["n"], plan["cells"], plan["length"]
    axes = CartesianGrid([[0, length]] * 2, [cells] * 2).axes_coords
    modes = plan["modes"]
    k = max(len(m.cos) for m in modes)
    wave = np.zeros((n, k, 2), dtype=np.int64)
    cos, sin = np.zeros((n, k)), np.zeros((n, k))
    for i, m in enumerate(modes):
        wave[i, : len(m.cos)] = m.wavevectors
        cos[i, : len(m.cos)], sin[i, : len(m.sin)] = m.cos, m.sin
    attrs = _provenance(**plan["attrs"])
    attrs.update(mode_length=float(length), mode_boundary=plan["setup"][0], samples_written=0,
                 family_request=request)
    ds = xr.Dataset(
        {
            "diffusivity": ("sample", plan["kappas"], {"units": "1", "long_name": "diffusivity kappa"}),
            "mode_wavevector": (("sample", "mode", "component"), wave, {"long_name": "integer wave vector k"}),
            "mode_cos": (("sample", "mode"), cos, {"long_name": "cosine coefficient a_k"}),
            "mode_sin": (("sample", "mode"), sin, {"long_name": "sine coefficient b_k"}),
        },
        coords={
            "t": _coord("t", plan["times"], "time"),
            "x": _coord("x", np.asarray(axes[0]), "x"),
            "y": _coord("y", np.asarray(axes[1]), "y"),
            "sample": np.arange(n),
        },
        attrs=attrs,
    )
    check_attrs(ds)
    return ds


def _create(path: Path, plan: dict, request: str) -> None:
    """Write the skeleton, then add ``u`` and ``solver_error`` filled with NaN (unsolved)."""
    import h5netcdf

    _skeleton(plan, request).to_netcdf(path, engine="h5netcdf")
    nt, cells = len(plan["times"]), plan["cells"]
    with h5netcdf.File(path, "a") as f:
        # one HDF5 chunk per sample: reads by sample (streaming) and writes by task stay aligned
        u = f.create_variable("u", ("sample", "t", "x", "y"), np.float64, chunks=(1, nt, cells, cells),
                              fillvalue=np.nan)
        u.attrs.update({"units": "1", "long_name": "temperature u"})
        err = f.create_variable("solver_error", ("sample",), np.float64, fillvalue=np.nan)
        err.attrs["long_name"] = "exact max |u_pypde - u_exact| per sample"


def _done_samples(path: Path, request: str) -> np.ndarray | None:
    """Finished-sample mask of a partial file from the same request; None if it cannot be used."""
    import h5netcdf

    try:
        with h5netcdf.File(path, "r") as f:
            if f.attrs.get("family_request") != request or "solver_error" not in f.variables:
                raise ConfigurationError(
                    f"{path} was written by a different generate_family request; delete it or pass resume=False."
                )
            # solver_error is written after u, so a finite value marks a finished sample
            return np.isfinite(f.variables["solver_error"][...])
    except OSError:
        return None  # unreadable (killed while writing): start again


def _chunks(todo: np.ndarray, n: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        if todo[start:stop].any():
            yield start, stop


def _write_chunk(f, start: int, frames: np.ndarray, errors: np.ndarray) -> None:
    stop = start + len(errors)
    f.variables["u"][start:stop] = frames
    # the running max |u| (for the relative error) lives in the partial file only, so a resumed
    # run needs no pass over the samples already written
    f.attrs[_ABS_MAX] = max(float(f.attrs.get(_ABS_MAX, 0.0)), float(np.abs(frames).max()))
    f.variables["solver_error"][start:stop] = errors  # last: marks the samples finished
    f.flush()


def _finish(f) -> None:
    """Attributes that need every sample: the exact max error (relative to max |u|)."""
    emax = float(f.variables["solver_error"][...].max())
    scale = float(f.attrs[_ABS_MAX])
    del f.attrs[_ABS_MAX]
    f.attrs["solver_max_error"] = emax
    f.attrs["solver_max_error_relative"] = emax / scale if scale > 0 else 0.0


def generate_family(
    pde: str = "heat2d",
    *,
    samples: int | None = None,
    out: str | os.PathLike,
    chunk: int = 16,
    scheduler: Any = None,
    n_workers: int | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = True,
    overwrite: bool = False,
    max_in_flight: int | None = None,
    **options,
) -> Path:
    """Generate a family of ``samples`` trajectories on Dask into one NetCDF-4 file.

    Parameters
    ----------
    pde : {"heat2d", "heat2d-dirichlet"}
        The generator (see :data:`FAMILY_PDES`).
    samples : int
        Number of samples (initial conditions / diffusivities); may be omitted when
        ``diffusivities`` is given.
    out : path
        The output file (``.nc``, ``.h5``, ``.hdf5`` or ``.nc4``), readable by
        :func:`~lipsurrogate.data.load_dataset` and ``xarray.open_dataset(engine="h5netcdf")``.
    chunk : int
        Samples per Dask task, solved with one stepper. Larger chunks amortise task overhead;
        smaller ones balance load and lose less work on an interruption.
    scheduler : None, str or dask.distributed.Client
        ``None``: a local cluster of ``n_workers`` processes with one thread each, closed at the
        end. A string: the address of a running Dask scheduler (``"tcp://host:8786"``). A
        ``Client``: used as it is and left open.
    n_workers : int, optional
        Worker processes of the local cluster (default ``min(4, cpu count)``); only with
        ``scheduler=None``.
    seed : int
        Seeds the modes and diffusivities exactly as ``heat2d(samples=..., seed=seed)``.
    progress : bool
        A tqdm progress bar over samples.
    resume : bool
        Continue a ``<out>.partial`` file left by an interrupted run of the same request
        (``False``: start again).
    overwrite : bool
        Replace an existing ``out``; otherwise an existing file is an error.
    max_in_flight : int, optional
        Chunks submitted but not yet written (default twice the number of workers): bounds
        the memory that finished-but-unwritten results hold.
    **options
        Options of :func:`~lipsurrogate.data.generators.heat2d`: ``grid``, ``t_end``,
        ``frames``, ``diffusivity``, ``diffusivity_range``, ``diffusivities``,
        ``same_initial_condition``, ``n_modes``, ``k_max``, ``amplitude``, ``dt``, ``solver``,
        ``backend``.

    Returns
    -------
    pathlib.Path
        ``out``. Its attribute ``solver_max_error`` is **exact** (closed form), as in heat2d.

    Raises
    ------
    ImportError
        If Dask is not installed (the message names the ``scale`` extra).
    FileExistsError
        If ``out`` exists and ``overwrite`` is False.
    """
    if pde not in FAMILY_PDES:
        raise ConfigurationError(
            f"'pde' of generate_family must be one of {FAMILY_PDES}. Got {pde!r} instead; "
            "other PDEs are generated in one process with lipsurrogate.data.generators.generate()."
        )
    unknown = sorted(set(options) - set(_HEAT_OPTIONS))
    if unknown:
        raise ConfigurationError(f"Unknown option(s) {unknown} for {pde}; known: {list(_HEAT_OPTIONS)}.")
    out = Path(out)
    if out.suffix not in SUFFIXES:
        raise DataSchemaError(f"Dataset files must end in one of {SUFFIXES}. Got '{out.name}'.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"Refusing to overwrite the existing dataset {out}; pass overwrite=True.")
    chunk = positive_int("chunk", chunk)
    if n_workers is not None:
        positive_int("n_workers", n_workers)
    check_scheduler(scheduler)  # fail before any work when Dask is missing

    boundary = "periodic" if pde == "heat2d" else "dirichlet"
    plan = _heat_plan(boundary, samples, int(seed), options)
    n = plan["n"]
    request = json.dumps({"pde": pde, "samples": n, "seed": int(seed),
                          **{k: (list(v) if isinstance(v, (tuple, np.ndarray)) else v) for k, v in sorted(options.items())}},
                         default=float)
    part = partial_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_samples(part, request) if (resume and part.exists()) else None
    if done is None:
        part.unlink(missing_ok=True)
        _create(part, plan, request)
        done = np.zeros(n, dtype=bool)
    todo = _chunks(~done, n, chunk)

    import h5netcdf
    from tqdm.auto import tqdm

    inflight: set = set()
    with dask_client(scheduler, n_workers) as (client, as_completed):
        try:
            n_active = max(1, len(client.scheduler_info().get("workers", {})))
            window = positive_int("max_in_flight", max_in_flight) if max_in_flight is not None else 2 * n_active
            setup, times, jobs = plan["setup"], plan["times"], plan["jobs"]

            def submit(span):
                start, stop = span
                future = client.submit(_solve_chunk, setup, times, start, jobs[start:stop], pure=False)
                inflight.add(future)
                return future

            with h5netcdf.File(part, "a") as f, tqdm(total=n, initial=int(done.sum()), desc=pde,
                                                     disable=not progress, leave=False) as bar:
                queue = as_completed([submit(s) for _, s in zip(range(window), todo)])
                for future in queue:
                    start, frames, errors, _ = future.result()
                    inflight.discard(future)
                    future.release()
                    _write_chunk(f, start, frames, errors)
                    before = int(done.sum())
                    done[start : start + len(errors)] = True
                    f.attrs["samples_written"] = int(done.sum())
                    bar.update(int(done.sum()) - before)
                    following = next(todo, None)
                    if following is not None:
                        queue.add(submit(following))
                _finish(f)
                # the physical step: frame interval / substeps, the largest over samples (as heat2d)
                f.attrs["dt"] = _largest_dt(plan)
        finally:
            if inflight:  # interrupted: do not leave tasks running on a cluster that stays up
                client.cancel(list(inflight))
    os.chmod(part, 0o644)
    os.replace(part, out)
    return out


def _largest_dt(plan: dict) -> float:
    """The largest physical time step any sample used (what heat2d stores as ``dt``)."""
    import math

    times, dt_tau = plan["times"], plan["setup"][3]
    interval = float(times[1] - times[0])
    best = 0.0
    for kappa in np.unique(plan["kappas"]):
        n_sub = max(1, math.ceil(interval * kappa / dt_tau - 1e-9))
        best = max(best, (interval * kappa / n_sub) / kappa)
    return float(best)
