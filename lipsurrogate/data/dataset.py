"""The one in-memory format (an :class:`xarray.Dataset`) and its HDF5/NetCDF files.

Conventions
-----------
* Fields are data variables with dimensions such as ``(t, x, y)`` or ``(sample, t, x)``;
  coordinates carry ``units`` and ``long_name`` attributes.
* Dataset attributes describe provenance: ``pde``, ``equation``, parameters, ``boundary``,
  ``solver``, ``dt``, ``seed``, ``source`` and package versions. Structured attributes
  (dicts, lists of dicts) are stored as JSON text, because NetCDF attributes are flat.
* Files are NetCDF-4 (HDF5 underneath) written with the ``h5netcdf`` engine; ``.nc``, ``.h5``
  and ``.hdf5`` are all accepted. Writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from .._io import atomic_path
from ..exceptions import DataSchemaError

__all__ = ["save_dataset", "load_dataset", "SUFFIXES", "check_attrs"]

SUFFIXES = (".nc", ".h5", ".hdf5", ".nc4")
"""File name endings that :func:`save_dataset` writes (all NetCDF-4 / HDF5)."""

_ALLOWED = (str, int, float, np.integer, np.floating, np.ndarray, list, tuple)


def check_attrs(ds: xr.Dataset) -> None:
    """Raise DataSchemaError if an attribute cannot be stored in a NetCDF file."""
    owners = [("dataset", ds.attrs)] + [(f"variable '{k}'", v.attrs) for k, v in ds.variables.items()]
    for owner, attrs in owners:
        for key, value in attrs.items():
            if isinstance(value, bool) or value is None or not isinstance(value, _ALLOWED):
                raise DataSchemaError(
                    f"Attribute '{key}' of {owner} has type {type(value).__name__}, which NetCDF cannot "
                    "store; use str, a number or a numeric array (JSON text for structures)."
                )


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` (NetCDF-4 via h5netcdf), atomically."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise DataSchemaError(f"Dataset files must end in one of {SUFFIXES}. Got '{path.name}'.")
    check_attrs(ds)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    return path


def load_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Read a dataset written by :func:`save_dataset` into memory."""
    path = Path(path)
    if not path.is_file():
        raise DataSchemaError(f"Dataset file {path} does not exist.")
    try:
        return xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError) as err:
        raise DataSchemaError(f"{path} is not a readable NetCDF-4/HDF5 dataset: {err}") from None
