"""Per-cell certificates on disk: ``certificate.nc`` (NetCDF-4 via :mod:`lipsurrogate.data.dataset`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from ..data.dataset import load_dataset, save_dataset
from ..exceptions import CertificationError
from .cells import CellCertificate

__all__ = ["save_cell_certificate", "load_cell_certificate"]


def save_cell_certificate(cert: CellCertificate, vertex_errors: np.ndarray, inputs: Sequence[str], path) -> Path:
    """Write the per-cell bounds, the naive bounds and the vertex errors (atomically)."""
    inputs = list(inputs)
    cell_dims = tuple(f"c{name}" for name in inputs)
    vertex_dims = tuple(f"v{name}" for name in inputs)
    ds = xr.Dataset(
        {"bound": (cell_dims, cert.per_cell, {"long_name": "certified per-cell bound on |f - u|"}),
         "naive_bound": (cell_dims, cert.naive, {"long_name": "naive per-cell bound"}),
         "vertex_error": (vertex_dims, vertex_errors, {"long_name": "f - u at the vertices (float64)"})},
        coords={dim: edge for dim, edge in zip(vertex_dims, cert.edges)},
        attrs={"kind": "certified upper bounds per cell", "lipschitz": json.dumps(cert.lipschitz.tolist()),
               "inputs": json.dumps(inputs), "method": cert.method},
    )
    return save_dataset(ds, path)


def load_cell_certificate(path) -> CellCertificate:
    """The per-cell certificate stored by :func:`save_cell_certificate`."""
    path = Path(path)
    if not path.is_file():
        raise CertificationError(f"{path} does not exist; run 'lipsurrogate certify RUN' first.")
    ds = load_dataset(path)
    inputs = json.loads(ds.attrs.get("inputs", '["x", "y", "t"]'))
    edges = [ds[f"v{name}"].values for name in inputs]
    lip = np.asarray(json.loads(ds.attrs["lipschitz"]))
    return CellCertificate(ds.bound.values, ds.naive_bound.values, edges, lip,
                           float(np.abs(ds.vertex_error).max()), method=ds.attrs.get("method", "exact"))
