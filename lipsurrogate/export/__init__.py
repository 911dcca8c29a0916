"""Exports of trained networks for code outside PyTorch: numpy arrays and ONNX graphs.

Modules
-------
numpy_mlp
    ``.npz`` + ``.json`` of the effective weights and a numpy-only forward
    (:func:`export_numpy`, :func:`load_numpy`, :func:`numpy_forward`).
onnx_graph
    An ONNX graph of the exact effective weights, input ``points`` (n, d) float32
    (:func:`export_onnx`; needs the ``export`` extra).
run
    A run folder's network with its certificate in the metadata (:func:`export_run`, the
    ``lipsurrogate export`` command).

Importing this package imports numpy only; torch and onnx are imported by the functions
that need them.
"""

from .numpy_mlp import EXPORT_FORMAT, NumpyNetwork, export_numpy, fourier_features, load_numpy, numpy_forward
from .onnx_graph import ONNX_OPSET, export_onnx, onnx_model
from .run import FORMATS, certificate_metadata, export_run

__all__ = [
    "EXPORT_FORMAT", "NumpyNetwork", "export_numpy", "fourier_features", "load_numpy", "numpy_forward",
    "ONNX_OPSET", "export_onnx", "onnx_model", "FORMATS", "certificate_metadata", "export_run",
]
