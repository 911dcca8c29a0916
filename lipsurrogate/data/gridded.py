"""Any gridded field as the certifier's input: a variable over 1 to 4 named axes, checked.

A user's own solver writes a NetCDF/HDF5 (or Zarr) file with a variable over dims of any names,
in any order, float32 or float64; :func:`open_gridded` opens it and :func:`gridded_field` turns
one variable into a :class:`GriddedField`: float64 values with axes in the order of the chosen
inputs, each axis strictly increasing. Everything that would make a certificate meaningless is
refused with a :class:`~lipsurrogate.exceptions.DataSchemaError` that says what was expected and
where the data differ: a missing variable (the ones there are listed), non-numeric values,
NaN/inf values (the first one's coordinates), non-monotone or repeated coordinates (the first bad
index), fewer than 2 points on an axis, more than 4 inputs, or extra dimensions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..exceptions import DataSchemaError

__all__ = ["GriddedField", "open_gridded", "gridded_field", "field_arrays", "MAX_INPUTS"]

MAX_INPUTS = 4
"""The certifier's exact per-cell program is enumerated for 1 to 4 inputs."""


@dataclass
class GriddedField:
    """One variable on a rectilinear grid, ready to certify against.

    Attributes
    ----------
    name : str
        The variable's name.
    inputs : list of str
        The axes, in the order of ``axes`` and of the values' dimensions (the network's columns).
    axes : list of ndarray
        Strictly increasing float64 coordinates per input.
    values : ndarray
        float64 values, dimensions in the order of ``inputs``.
    units : dict
        ``units`` attributes of the inputs and of the variable (``""`` where none).
    notes : list of str
        What was done to the data (flipped decreasing axes, coordinates taken as indices, ...).
    """

    name: str
    inputs: list
    axes: list
    values: np.ndarray
    units: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dataset(self, attrs: dict | None = None) -> xr.Dataset:
        """The field as a dataset (float64, increasing coordinates), as a run folder stores it."""
        coords = {name: (name, axis, {"units": self.units.get(name, "")}) for name, axis in zip(self.inputs, self.axes)}
        var = xr.DataArray(self.values, dims=self.inputs, coords=coords, name=self.name,
                           attrs={"units": self.units.get(self.name, "")})
        return var.to_dataset(name=self.name).assign_attrs(attrs or {})


def open_gridded(path: str | os.PathLike) -> xr.Dataset:
    """Open a NetCDF-4/HDF5 file (h5netcdf) or a Zarr store (when zarr is installed), lazily.

    Errors from the readers become one-line :class:`DataSchemaError` messages naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataSchemaError(f"The file {path} does not exist.")
    is_zarr = path.is_dir() or path.suffix == ".zarr"
    try:
        if is_zarr:
            try:
                import zarr  # noqa: F401
            except ImportError:
                raise DataSchemaError(f"{path} looks like a Zarr store, but zarr is not installed (pip install zarr).") from None
            return xr.open_zarr(path)
        return xr.open_dataset(path, engine="h5netcdf")
    except DataSchemaError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file, said in one line
        kind = "Zarr store" if is_zarr else "NetCDF-4/HDF5 file"
        raise DataSchemaError(f"{path} is not a readable {kind}: {type(err).__name__}: {err}".splitlines()[0]) from None


def _axis(name: str, var: xr.DataArray, notes: list) -> tuple[np.ndarray, bool]:
    """Float64 coordinates of dimension ``name`` (indices if it has none) and whether it decreases."""
    n = var.sizes[name]
    if n < 2:
        raise DataSchemaError(f"Axis '{name}' of '{var.name}' has {n} point(s); at least 2 are needed per input.")
    if name in var.coords:
        raw = np.asarray(var[name].values)
        if not (np.issubdtype(raw.dtype, np.number) and not np.issubdtype(raw.dtype, np.complexfloating)):
            raise DataSchemaError(f"Coordinate '{name}' has dtype {raw.dtype}; expected real numbers.")
        axis = raw.astype(np.float64)
    else:
        axis = np.arange(n, dtype=np.float64)
        notes.append(f"dimension '{name}' has no coordinate variable: its indices 0..{n - 1} are used")
    bad = np.flatnonzero(~np.isfinite(axis))
    if len(bad):
        raise DataSchemaError(f"Coordinate '{name}' is not finite at index {int(bad[0])} ({axis[bad[0]]}).")
    step = np.diff(axis)
    if np.any(step == 0):
        i = int(np.flatnonzero(step == 0)[0])
        raise DataSchemaError(f"Coordinate '{name}' repeats the value {axis[i]} at indices {i} and {i + 1}; "
                              "expected strictly monotone coordinates.")
    decreasing = bool(step[0] < 0)
    wrong = np.flatnonzero(step > 0) if decreasing else np.flatnonzero(step < 0)
    if len(wrong):
        i = int(wrong[0])
        raise DataSchemaError(f"Coordinate '{name}' is not monotone: {axis[i]} at index {i} is followed by "
                              f"{axis[i + 1]}; expected strictly increasing or strictly decreasing coordinates.")
    if decreasing:
        notes.append(f"axis '{name}' decreases in the file: it is reversed")
        axis = axis[::-1].copy()
    return axis, decreasing


def gridded_field(data, var: str | None = None, inputs: Sequence[str] | None = None) -> GriddedField:
    """Check one variable of a dataset (or a DataArray) and return it as a :class:`GriddedField`.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataArray
    var : str, optional
        The variable (required for a dataset with more than one data variable).
    inputs : sequence of str, optional
        The dimensions to use as inputs, in the order the network takes them; defaults to the
        variable's dimensions in file order. Other dimensions must have size 1.
    """
    if isinstance(data, xr.DataArray):
        array = data if data.name is not None else data.rename("u")
        if var is not None and var != array.name:
            raise DataSchemaError(f"The DataArray is named {array.name!r}, not {var!r}.")
    elif isinstance(data, xr.Dataset):
        names = [str(v) for v in data.data_vars]
        if var is None:
            if len(names) != 1:
                raise DataSchemaError(f"Choose the variable to fit (--var NAME); the file holds {names}.")
            var = names[0]
        if var not in data.data_vars:
            raise DataSchemaError(f"No variable {var!r} in the data; variables there: {names}.")
        array = data[var]
    else:
        raise DataSchemaError(f"Expected an xarray Dataset or DataArray. Got {type(data).__name__}.")
    name = str(array.name)
    dims = [str(d) for d in array.dims]
    chosen = list(dims if inputs is None else inputs)
    if len(set(chosen)) != len(chosen):
        raise DataSchemaError(f"Inputs must be distinct. Got {chosen}.")
    missing = [d for d in chosen if d not in dims]
    if missing:
        raise DataSchemaError(f"{missing} are not dimensions of '{name}'; its dimensions are {dims}.")
    if not 1 <= len(chosen) <= MAX_INPUTS:
        raise DataSchemaError(f"Expected 1 to {MAX_INPUTS} inputs; '{name}' would have {len(chosen)} ({chosen}). "
                              "Choose fewer with --inputs and select the others.")
    notes: list = []
    for d in dims:
        if d not in chosen:
            if array.sizes[d] != 1:
                raise DataSchemaError(f"Dimension '{d}' of '{name}' (size {array.sizes[d]}) is not an input; add it to "
                                      f"the inputs or select one value of it first (e.g. data.isel({d}=0)).")
            notes.append(f"dimension '{d}' of size 1 is dropped")
    array = array.squeeze([d for d in dims if d not in chosen], drop=True).transpose(*chosen)
    if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
        raise DataSchemaError(f"Variable '{name}' has dtype {array.dtype}; expected real numbers (float32 or float64).")
    axes, flips = [], []
    for d in chosen:
        axis, flip = _axis(d, array, notes)
        axes.append(axis)
        flips.append(flip)
    try:
        values = np.asarray(array.values, dtype=np.float64)
    except (OSError, ValueError, RuntimeError) as err:
        raise DataSchemaError(f"The values of '{name}' cannot be read: {err}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad.reshape(-1))[0]), values.shape)
        where = ", ".join(f"{d}={float(array[d].values[i]) if d in array.coords else i:.7g} (index {i})"
                          for d, i in zip(chosen, idx))
        raise DataSchemaError(f"'{name}' has {int(bad.sum())} NaN/inf value(s); the first at {where}.")
    for k, flip in enumerate(flips):
        if flip:
            values = np.flip(values, axis=k)
    units = {d: str(array[d].attrs.get("units", "")) if d in array.coords else "" for d in chosen}
    units[name] = str(array.attrs.get("units", ""))
    return GriddedField(name, chosen, axes, np.ascontiguousarray(values), units, notes)


def field_arrays(ds: xr.Dataset, name: str | None = None, inputs: Sequence[str] | None = None):
    """``(field name, input names, axes, values)`` of a run's dataset.

    With ``inputs`` given, exactly :func:`gridded_field`. Without, the layout of the generated
    PDEs and PDEBench samples: the first variable with a time axis (not a ``*_reference``), its
    space dimensions then ``t``.
    """
    if inputs is None:
        candidates = [v for v in ds.data_vars if not str(v).endswith("_reference") and "t" in ds[v].dims]
        if name is None:
            if not candidates:
                raise DataSchemaError(f"No field with a time axis in the dataset (variables: {list(ds.data_vars)}).")
            name = candidates[0]
        if name not in candidates:
            raise DataSchemaError(f"Field {name!r} not in the dataset; fields with a time axis: {candidates}.")
        space = [d for d in ds[name].dims if d != "t"]
        if "sample" in space or len(space) not in (1, 2):
            raise DataSchemaError(f"Expected a field over (t, x) or (t, x, y). Got dims {ds[name].dims}.")
        inputs = [*space, "t"]
    f = gridded_field(ds, name, inputs)
    return f.name, f.inputs, f.axes, f.values
