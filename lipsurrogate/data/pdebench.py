"""Read PDEBench HDF5 files into the package's xarray format, lazily.

Only the requested samples are read (h5py slices the file), so a single sample of a 47 GB file
costs one sample's worth of memory. Shapes always come from the file. Layouts (from the
PDEBench data sets; the loader was written from these descriptions, not from PDEBench's code):

==============  ==========================================================================
layout          keys and shapes
==============  ==========================================================================
``tensor``      ``tensor`` (N, nt, nx[, ny]); ``x-coordinate`` (nx), [``y-coordinate``],
                ``t-coordinate`` (nt or nt + 1): 1D advection, Burgers, reaction-diffusion
``cfd``         ``density``, ``pressure``, ``Vx`` [, ``Vy``, ``Vz``] each (N, nt, x...);
                coordinates as above; no ``tensor``
``darcy``       ``tensor`` (N, 1, nx, ny) = the solution u; ``nu`` (N, nx, ny) = the
                coefficient a(x); ``x-coordinate``, ``y-coordinate``
``per-seed``    groups ``0000``, ``0001``, ... each with ``data`` (nt, x..., channels) and
                ``grid/x`` [``grid/y``] ``grid/t``; ``attrs["config"]`` (YAML text)
==============  ==========================================================================

Known traps, handled here and tested:

* ``t-coordinate`` with one entry more than there are frames (1D flat files): frames are taken
  at the first ``nt`` times and the dataset says so in ``time_coordinate_note``;
* the 2D diffusion-reaction file stores space as (y, x): it is transposed to (x, y);
* files that match no layout raise :class:`~lipsurrogate.exceptions.DataSchemaError` naming the
  file, the keys found and the layouts expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from ..exceptions import DataSchemaError

__all__ = ["PDEBenchFile", "open_pdebench", "load_pdebench", "LAYOUTS"]

LAYOUTS = {
    "tensor": "'tensor' (N, nt, nx[, ny]) with 'x-coordinate', 't-coordinate'",
    "cfd": "'density', 'pressure', 'Vx'[, 'Vy', 'Vz'] (N, nt, x...) with coordinates",
    "darcy": "'tensor' (N, 1, nx, ny) and 'nu' (N, nx, ny) with 'x-coordinate', 'y-coordinate'",
    "per-seed": "groups '0000', '0001', ... each with 'data' (nt, x..., channels) and 'grid/x', 'grid/t'",
}
_CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")
_SPACE = ("x", "y", "z")
_SEED_GROUP = re.compile(r"^\d{4}$")


class PDEBenchFile:
    """An open PDEBench file; read samples with :meth:`sample` or :meth:`to_dataset`.

    Use as a context manager (or call :meth:`close`).

    Attributes
    ----------
    layout : str
        One of :data:`LAYOUTS`.
    n_samples : int
    fields : list of str
        Field names the samples carry.
    """

    def __init__(self, path: str | os.PathLike, spatial_order: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise DataSchemaError(f"PDEBench file {self.path} does not exist.")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataSchemaError(f"{self.path} is not a readable HDF5 file (truncated or foreign?): {err}") from None
        if spatial_order not in (None, "xy", "yx"):
            raise DataSchemaError(f"'spatial_order' must be 'xy', 'yx' or None. Got {spatial_order!r}.")
        self._spatial_order = spatial_order
        try:
            self._detect()
        except DataSchemaError:
            self.close()
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:  # h5py on corrupted metadata
            self.close()
            raise DataSchemaError(_one_line(f"{self.path}: the HDF5 metadata cannot be read ({type(err).__name__}: "
                                            f"{err})")) from None

    # -- layout ---------------------------------------------------------------------------------
    def _fail(self, why: str) -> DataSchemaError:
        keys = sorted(self._file.keys())[:20]
        expected = "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
        return DataSchemaError(f"{self.path}: {why}. Keys found: {keys}. Layouts expected: {expected}.")

    def _detect(self) -> None:
        keys = set(self._file.keys())
        groups = sorted(k for k in keys if _SEED_GROUP.match(k))
        if "tensor" in keys and "nu" in keys:
            self.layout = "darcy"
            tensor, nu = self._file["tensor"], self._file["nu"]
            if tensor.ndim != 4 or tensor.shape[1] != 1 or nu.shape != (tensor.shape[0], *tensor.shape[2:]):
                raise self._fail(f"Darcy layout with 'tensor' {tensor.shape} and 'nu' {nu.shape}")
            self.n_samples, self.fields = tensor.shape[0], ["u", "a"]
        elif "tensor" in keys:
            self.layout = "tensor"
            tensor = self._file["tensor"]
            if tensor.ndim not in (3, 4):
                raise self._fail(f"'tensor' has shape {tensor.shape}, expected (N, nt, nx[, ny])")
            self.n_samples, self.fields = tensor.shape[0], ["u"]
        elif "density" in keys:
            self.layout = "cfd"
            self.fields = [f for f in _CFD_FIELDS if f in keys]
            shapes = {f: self._file[f].shape for f in self.fields}
            if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) < 3:
                raise self._fail(f"CFD fields with shapes {shapes}, expected equal shapes (N, nt, x...)")
            self.n_samples = shapes["density"][0]
        elif groups and all(isinstance(self._file[g], _h5group()) and "data" in self._file[g] for g in groups):
            self.layout = "per-seed"
            self._groups = groups
            self.n_samples = len(groups)
            data = self._file[groups[0]]["data"]
            if data.ndim < 3:
                raise self._fail(f"group {groups[0]} has 'data' of shape {data.shape}, expected (nt, x..., channels)")
            channels = data.shape[-1]
            self.fields = ["u", "v"][:channels] if channels <= 2 else [f"c{i}" for i in range(channels)]
        else:
            raise self._fail("no known PDEBench layout")

    # -- coordinates ----------------------------------------------------------------------------
    def _flat_coords(self, space_shape: tuple[int, ...], nt: int | None) -> tuple[dict, dict]:
        coords, notes = {}, {}
        for axis, n in zip(_SPACE, space_shape):
            key = f"{axis}-coordinate"
            values = self._file[key][...] if key in self._file else None
            if values is None:
                raise self._fail(f"missing '{key}' for a field with spatial shape {space_shape}")
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if len(values) != n:
                raise self._fail(f"'{key}' has {len(values)} entries but the field has {n} points on that axis")
            coords[axis] = values
        if nt is not None:
            coords["t"], notes = self._time(self._file["t-coordinate"][...] if "t-coordinate" in self._file else None, nt)
        return coords, notes

    def _time(self, t, nt: int) -> tuple[np.ndarray, dict]:
        if t is None:
            raise self._fail(f"missing the time coordinate for {nt} frames")
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if len(t) == nt:
            return t, {}
        if len(t) == nt + 1:
            return t[:nt], {
                "time_coordinate_note": f"the file has {nt + 1} time coordinates for {nt} frames; "
                "frames were assigned the first {nt} (the last coordinate was dropped)".replace("{nt}", str(nt))
            }
        raise self._fail(f"the time coordinate has {len(t)} entries for {nt} frames (expected {nt} or {nt + 1})")

    # -- reading --------------------------------------------------------------------------------
    def _read(self, index: int) -> tuple[dict, dict, dict]:
        """Variables (name -> (dims, array)), coordinates and notes of sample ``index``."""
        if not (isinstance(index, (int, np.integer)) and 0 <= index < self.n_samples):
            raise DataSchemaError(f"{self.path} has {self.n_samples} samples; got sample={index!r}.")
        index = int(index)
        if self.layout == "tensor":
            data = self._file["tensor"][index]  # (nt, x...)
            coords, notes = self._flat_coords(data.shape[1:], data.shape[0])
            dims = ("t", *_SPACE[: data.ndim - 1])
            return {"u": (dims, data)}, coords, notes
        if self.layout == "cfd":
            arrays = {f: self._file[f][index] for f in self.fields}
            shape = arrays["density"].shape
            coords, notes = self._flat_coords(shape[1:], shape[0])
            dims = ("t", *_SPACE[: len(shape) - 1])
            return {f: (dims, a) for f, a in arrays.items()}, coords, notes
        if self.layout == "darcy":
            u = self._file["tensor"][index, 0]
            a = self._file["nu"][index]
            coords, notes = self._flat_coords(u.shape, None)
            return {"u": (("x", "y"), u), "a": (("x", "y"), a)}, coords, notes
        group = self._file[self._groups[index]]
        data = group["data"][...]  # (nt, space..., channels)
        n_space = data.ndim - 2
        order = self._order(n_space)
        names = [order[i] for i in range(n_space)]
        coords = {}
        for axis in names:
            key = f"grid/{axis}"
            if key not in group:
                raise self._fail(f"group {self._groups[index]} lacks '{key}'")
            coords[axis] = np.asarray(group[key][...], dtype=np.float64).reshape(-1)
        for axis, n in zip(names, data.shape[1:-1]):
            if len(coords[axis]) != n:
                raise self._fail(f"'grid/{axis}' has {len(coords[axis])} entries; 'data' has {n} on that axis")
        coords["t"], notes = self._time(group["grid/t"][...] if "grid/t" in group else None, data.shape[0])
        variables = {}
        for c, name in enumerate(self.fields):
            variables[name] = (("t", *names), data[..., c])
        config = group.attrs.get("config")
        if config is not None:
            notes["config"] = config.decode() if isinstance(config, bytes) else str(config)
        if n_space == 2 and order[:2] == ("y", "x"):
            notes["spatial_order_note"] = "the file stores space as (y, x); transposed to (x, y)"
        return variables, coords, notes

    def _order(self, n_space: int) -> tuple[str, ...]:
        if n_space == 2:
            yx = self._spatial_order == "yx" or (self._spatial_order is None and "diff-react" in self.path.name)
            return ("y", "x") if yx else ("x", "y")
        return _SPACE[:n_space]

    def sample(self, index: int = 0, field: str | None = None) -> xr.Dataset:
        """One sample as a Dataset (only that sample is read from disk), checked.

        Refused with a :class:`DataSchemaError` that names the file, the dataset and the first bad
        index: unreadable bytes, non-numeric values, NaN/inf values, and coordinates that are not
        finite or not strictly increasing.
        """
        try:
            variables, coords, notes = self._read(index)
        except DataSchemaError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:  # h5py: corrupted chunks, filters
            raise DataSchemaError(_one_line(f"{self.path}: sample {index} cannot be read ({type(err).__name__}: "
                                            f"{err})")) from None
        self._check(index, variables, coords)
        if field is not None:
            if field not in variables:
                raise DataSchemaError(f"{self.path} has fields {sorted(variables)}; got field={field!r}.")
            variables = {field: variables[field]}
        ds = xr.Dataset(
            {k: (dims, np.asarray(v), {"units": "1", "long_name": k}) for k, (dims, v) in variables.items()},
            coords={k: (k, v, {"units": "1", "long_name": "time" if k == "t" else k}) for k, v in coords.items()},
            attrs=self._attrs(notes) | {"sample_index": int(index)},
        )
        canonical = [d for d in ("t", "x", "y", "z") if d in ds.dims]
        return ds.transpose(*canonical)

    def _check(self, index: int, variables: dict, coords: dict) -> None:
        for axis, values in coords.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise DataSchemaError(f"{self.path}: coordinate '{axis}' of sample {index} is not finite at index "
                                      f"{int(bad[0])} ({values[bad[0]]}).")
            step = np.flatnonzero(np.diff(values) <= 0)
            if len(step):
                i = int(step[0])
                raise DataSchemaError(f"{self.path}: coordinate '{axis}' of sample {index} is not strictly increasing "
                                      f"at index {i} ({values[i]} then {values[i + 1]}).")
        for name, (_, array) in variables.items():
            array = np.asarray(array)
            if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
                raise DataSchemaError(f"{self.path}: field '{name}' of sample {index} has dtype {array.dtype}; expected "
                                      "real numbers.")
            bad = ~np.isfinite(array)
            if bad.any():
                first = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad.reshape(-1))[0]), array.shape))
                raise DataSchemaError(f"{self.path}: field '{name}' of sample {index} has {int(bad.sum())} NaN/inf "
                                      f"value(s); the first at index {first}.")

    def to_dataset(self, samples=None, field: str | None = None) -> xr.Dataset:
        """Several samples (``None``: all; an int count; or a sequence of indices) with a ``sample`` dim."""
        if samples is None:
            indices = range(self.n_samples)
        elif isinstance(samples, (int, np.integer)):
            indices = range(min(int(samples), self.n_samples))
        else:
            indices = list(samples)
        indices = list(indices)
        if not indices:
            raise DataSchemaError("No samples selected.")
        parts = [self.sample(i, field) for i in indices]
        ds = xr.concat(parts, dim="sample", coords="minimal", compat="override", combine_attrs="override")
        ds = ds.assign_coords(sample=("sample", np.asarray(indices), {"long_name": "sample index in the file"}))
        ds.attrs.pop("sample_index", None)
        return ds

    def _attrs(self, notes: dict) -> dict:
        attrs = {
            "source": "PDEBench",
            "source_file": self.path.name,
            "layout": self.layout,
            "n_samples_in_file": int(self.n_samples),
            "grid_points": "as stored in the file",
        }
        attrs.update({k: str(v) for k, v in notes.items()})
        return attrs

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "PDEBenchFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PDEBenchFile({str(self.path)!r}, layout={self.layout!r}, n_samples={self.n_samples}, fields={self.fields})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _h5group():
    import h5py

    return h5py.Group


def open_pdebench(path: str | os.PathLike, spatial_order: str | None = None) -> PDEBenchFile:
    """Open a PDEBench file (see the module docstring); nothing is read until asked."""
    return PDEBenchFile(path, spatial_order)


def load_pdebench(path: str | os.PathLike, sample=0, field: str | None = None, spatial_order: str | None = None) -> xr.Dataset:
    """Read ``sample`` (an index, or ``"all"``/a list for a family) of a PDEBench file as a Dataset."""
    with open_pdebench(path, spatial_order) as f:
        if isinstance(sample, (int, np.integer)):
            return f.sample(int(sample), field)
        return f.to_dataset(None if sample == "all" else sample, field)
