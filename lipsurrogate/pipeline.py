"""``fit(task)``: run a named task into an atomically written run folder.

The stages (data -> model -> training -> bounds -> verification -> report) live in the task
recipes and the subpackages; this module only names the folder, seeds, records the environment
and config, and makes the folder appear only when the run succeeded.
"""

from __future__ import annotations

import time
from pathlib import Path

from ._io import atomic_directory, write_json
from .environment import environment
from .tasks import get_task

__all__ = ["fit", "fit_field", "default_run_dir"]


def default_run_dir(task: str, root: str | Path = "runs") -> Path:
    """``runs/<task>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{task}-{stamp}"
    k = 1
    while path.exists():
        path = Path(root) / f"{task}-{stamp}-{k}"
        k += 1
    return path


def fit(
    task: str,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    dataset=None,
    device=None,
    **options,
) -> dict:
    """Run ``task`` and return its summary (with ``run_dir`` and a printable ``text``).

    ``options`` go to the task (e.g. ``grid=32, steps=1000`` for heat2d); a task refuses
    options it does not know. ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``) is where its
    networks train (:func:`~lipsurrogate.train.device.training_device`); certificates are
    computed on the CPU in float64 either way; ``training.json`` records the device. The run folder appears only when every stage
    succeeded.
    """
    from .train.device import training_device

    run = get_task(task)
    run_dir = Path(out) if out is not None else default_run_dir(task)
    start = time.perf_counter()
    with atomic_directory(run_dir, overwrite=overwrite) as tmp:
        write_json(tmp / "config.json", {"task": task, "seed": seed, "quick": quick, **options})
        write_json(tmp / "environment.json", environment())
        extra = {} if dataset is None else {"dataset": dataset}
        with training_device(device):
            summary = run(tmp, seed=seed, quick=quick, progress=progress, **extra, **options)
        summary["seconds"] = time.perf_counter() - start
        write_json(tmp / "summary.json", {k: v for k, v in summary.items() if k != "text"})
    summary["run_dir"] = str(run_dir)
    return summary


def fit_field(
    data,
    inputs=None,
    out: str | Path | None = None,
    *,
    var: str | None = None,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    **options,
):
    """Fit and certify a surrogate of a gridded field; returns the :class:`~lipsurrogate.Surrogate`.

    The Python form of ``lipsurrogate fit field FILE``: a level-1 certificate, i.e. a **certified**
    bound on :math:`\\max |f - I u|` over the data's box, with :math:`I u` the multilinear
    interpolant of the data (nothing is assumed about the field between grid points; the
    verification also reports a labelled *estimate* of the distance to the true field).

    Parameters
    ----------
    data : xarray.DataArray, xarray.Dataset or path
        The field: 1 to 4 dimensions with coordinates (any names, any order, float32 or float64).
        A path is opened as ``fit field`` opens files (NetCDF/HDF5, Zarr).
    inputs : sequence of str or str, optional
        The dimensions to use as inputs, in the order :meth:`Surrogate.predict` takes its columns;
        default: the variable's dimensions in their order.
    out : path, optional
        Run folder (default ``runs/field-TIMESTAMP``); it appears only when the run succeeded.
    var : str, optional
        The variable to fit, for a dataset with several.
    seed, quick, progress, overwrite, **options
        As for :func:`fit` (``steps``, ``hidden``, ``harmonics``, ``passthrough``, ...).

    Returns
    -------
    Surrogate
        ``predict(points, with_bound=True)`` gives values and per-point certified bounds;
        ``inputs`` names the columns.
    """
    import os

    import xarray as xr

    from .surrogate import load

    if isinstance(inputs, str):
        inputs = [v.strip() for v in inputs.split(",") if v.strip()]
    if isinstance(data, (str, os.PathLike)):
        summary = fit("field", out=out, seed=seed, quick=quick, progress=progress, overwrite=overwrite,
                      file=str(data), var=var, inputs=inputs, **options)
    else:
        if not isinstance(data, (xr.DataArray, xr.Dataset)):
            from .exceptions import DataSchemaError

            raise DataSchemaError(f"fit_field expects an xarray DataArray or Dataset (or a path). Got {type(data).__name__}.")
        summary = fit("field", out=out, seed=seed, quick=quick, progress=progress, overwrite=overwrite,
                      dataset=data, var=var, inputs=None if inputs is None else list(inputs), **options)
    return load(summary["run_dir"])
