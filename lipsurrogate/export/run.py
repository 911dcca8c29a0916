"""``lipsurrogate export RUN``: a run folder's certified network for codes outside Python.

The export carries the certificate with it: the certified global bound and its kind, the box,
the input names (the column order of ``points``), the statement level and its assumptions, and
the SHA-256 digests of the run's weights, model description and per-cell certificate, so a
solver code can check that the file it runs is the one that was certified.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._io import sha256_of
from .._version import __version__
from ..exceptions import ConfigurationError

__all__ = ["export_run", "certificate_metadata", "FORMATS"]

FORMATS = ("onnx", "numpy")
"""Export formats of :func:`export_run`."""


def certificate_metadata(run_dir: str | os.PathLike) -> dict:
    """What an export states about its certificate (values JSON-ready; the bound is **certified**)."""
    from ..bounds import Certificate

    run_dir = Path(run_dir)
    certificate = Certificate.load(run_dir)
    doc = certificate.document
    return {
        "lipsurrogate_version": __version__,
        "bound": float(doc["bound"]),
        "bound_kind": doc["bound_kind"],
        "box": certificate.box.tolist(),
        "inputs": list(certificate.inputs),
        "level": doc["level"],
        "reference": doc["reference"],
        "assumptions": list(doc.get("assumptions", [])),
        "run": run_dir.name,
        "sha256": {name: sha256_of(run_dir / name)
                   for name in ("model.safetensors", "model.json", "certificate.json", "certificate.nc")},
    }


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, fmt: str = "onnx", *,
               dtype: str | None = None) -> list[Path]:
    """Export the network of ``run_dir`` to ``out`` with its certificate; returns the written paths.

    Parameters
    ----------
    fmt : {"onnx", "numpy"}
        ``onnx``: one ``.onnx`` file (:func:`~lipsurrogate.export.onnx_graph.onnx_model`), the
        certificate in its metadata. ``numpy``: ``.npz`` + ``.json``
        (:func:`~lipsurrogate.export.numpy_mlp.export_numpy`), the certificate in the JSON.
    dtype : {"float64", "float32"}, optional
        Precision of the exported computation (default: float64 for ONNX, float32 for numpy).
    """
    from ..nn import load_model

    if fmt not in FORMATS:
        raise ConfigurationError(f"--format must be one of {FORMATS}. Got {fmt!r}.")
    run_dir = Path(run_dir)
    metadata = certificate_metadata(run_dir)
    model = load_model(run_dir / "model")
    if fmt == "onnx":
        from .onnx_graph import export_onnx

        doc = (f"lipsurrogate surrogate of run {run_dir.name}: certified |f - u| <= {metadata['bound']:.6g} on the "
               f"box {metadata['box']} (inputs {metadata['inputs']}); {metadata['level']}")
        return [export_onnx(model, out, metadata=metadata, dtype=dtype or "float64", doc=doc)]
    from .numpy_mlp import export_numpy

    return list(export_numpy(model, out, dtype=dtype or "float32", extra={"certificate": metadata}))
