r"""ONNX export of a certified network: the exact saved effective weights as an ONNX graph.

A solver code in C++, Fortran or Julia runs the surrogate with ONNX Runtime and nothing else.
:func:`onnx_model` writes the network as the certifier sees it
(:func:`lipsurrogate.bounds.extract_chain`): optional Fourier features, the input map
:math:`z = (x - o) \odot a`, the affine layers with the network's own activation in between, the
output scale, auxiliary factor and monotonic residual. Nothing is re-trained, re-normalised or
fused: the weight tensors in the graph are the network's effective float32 weights (in a
float64 graph, the same numbers exactly, widened).

Graph interface
---------------
input ``points``
    float32, shape ``(n, d)``, columns in the order of the ``inputs`` metadata.
output ``values``
    shape ``(n,)``, float64 by default (``dtype="float32"`` for a float32 graph).

Activations map to exact ONNX operators: GroupSort on pairs (unit :math:`i` with unit
:math:`i + n/2`) to ``Split`` + ``Min``/``Max``, larger groups and the full sort to ``TopK``
(ascending), ReLU to ``Relu``, tanh to ``Tanh``.

What the certificate covers
---------------------------
The certified bound is about the network's exact values, :math:`|f - u| \le B` on the box.
A float64 graph computes :math:`f` with a relative rounding error of order
:math:`10^{-16} \cdot` (depth x width), far below any bound; a float32 graph adds float32
rounding, of order :math:`10^{-6} |f|`. Both figures are stated in the ``rounding`` metadata;
neither is inside :math:`B`.

``onnx`` is needed to build the graph (the ``export`` extra); running it needs only
``onnxruntime``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..exceptions import ConfigurationError

__all__ = ["onnx_model", "export_onnx", "ONNX_OPSET", "ROUNDING_NOTES"]

ONNX_OPSET = 17
"""The ONNX operator set of exported graphs (ONNX Runtime >= 1.12 runs it)."""

ROUNDING_NOTES = {
    "float64": "the graph computes in float64: relative rounding of order 1e-16 x depth x width, not included in "
               "the certified bound (which is about the exact values of these weights)",
    "float32": "the graph computes in float32: rounding of order 1e-6 x |values|, not included in the certified "
               "bound (which is about the exact values of these weights)",
}


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigurationError("ONNX export needs the 'onnx' package: pip install 'lipsurrogate[export]'.") from None
    return onnx


class _Graph:
    """Accumulates nodes and initializers; names are unique and readable."""

    def __init__(self, onnx, dtype: str) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.np_dtype = np.dtype(dtype)
        self.nodes: list = []
        self.initializers: list = []
        self._count: dict = {}

    def name(self, base: str) -> str:
        k = self._count.get(base, 0)
        self._count[base] = k + 1
        return f"{base}_{k}"

    def constant(self, base: str, array, dtype=None) -> str:
        name = self.name(base)
        array = np.asarray(array, dtype=self.np_dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list, base: str | None = None, outputs: int = 1, **attrs):
        names = [self.name(base or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if outputs == 1 else names


def _features(g: _Graph, features, x: str) -> str:
    freq = features.frequencies.detach().double().numpy()
    phase = g.op("MatMul", [x, g.constant("frequencies_t", freq.T)], "phase")
    parts = [g.op("Cos", [phase], "cos"), g.op("Sin", [phase], "sin")]
    keep = list(features.passthrough)
    if keep:
        picked = g.op("Gather", [x, g.constant("passthrough", keep, np.int64)], "passthrough", axis=1)
        offset = features.offset.double().numpy()[keep]
        scale = features.scale.double().numpy()[keep]
        shifted = g.op("Sub", [picked, g.constant("feature_offset", offset)])
        parts.append(g.op("Mul", [shifted, g.constant("feature_scale", scale)]))
    return g.op("Concat", parts, "features", axis=1)


def _activation(g: _Graph, activation, h: str, width: int) -> str:
    from torch import nn

    from ..nn.activations import GroupSort

    if isinstance(activation, nn.ReLU):
        return g.op("Relu", [h])
    if isinstance(activation, nn.Tanh):
        return g.op("Tanh", [h])
    if isinstance(activation, GroupSort):
        size = activation.group_size or width
        if width % size:
            raise ConfigurationError(f"GroupSort with group_size={size} on a layer of width {width}.")
        if size == 2:
            half = width // 2
            a, b = g.op("Split", [h, g.constant("halves", [half, half], np.int64)], "half", outputs=2, axis=1)
            return g.op("Concat", [g.op("Min", [a, b]), g.op("Max", [a, b])], "groupsort", axis=1)
        grouped = g.op("Reshape", [h, g.constant("groups", [-1, width // size, size], np.int64)])
        k = g.constant("group_size", [size], np.int64)
        values, _ = g.op("TopK", [grouped, k], "sorted", outputs=2, axis=-1, largest=0, sorted=1)
        return g.op("Reshape", [values, g.constant("width", [-1, width], np.int64)], "groupsort")
    raise ConfigurationError(f"No ONNX form for the activation {activation!r}.")


def _chain(g: _Graph, chain, x: str) -> str:
    z = g.op("Mul", [g.op("Sub", [x, g.constant("input_offset", chain.in_offset)]),
                     g.constant("input_scale", chain.in_scale)], "z")
    h = z
    last = len(chain.weights) - 1
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        h = g.op("Add", [g.op("MatMul", [h, g.constant(f"W{i}_t", w.T)]), g.constant(f"b{i}", b)], f"layer{i}")
        if i < last:
            h = _activation(g, chain.activation, h, w.shape[0])
    if chain.out_scale is not None:
        h = g.op("Mul", [h, g.constant("output_scale", chain.out_scale)], "scaled")
    if chain.aux is not None:
        h = g.op("Mul", [h, _chain(g, chain.aux, x)], "aux_product")
    if chain.residual is not None and np.any(chain.residual != 0):
        r = g.op("MatMul", [z, g.constant("residual", chain.residual[:, None])], "residual")
        h = g.op("Add", [h, r], "with_residual")
    return h


def onnx_model(model, *, metadata: dict | None = None, dtype: str = "float64", doc: str = ""):
    """The ONNX ``ModelProto`` of ``model`` (see the module docstring for its interface).

    Parameters
    ----------
    model : torch.nn.Module
        A network of :mod:`lipsurrogate.nn` with one output (with or without Fourier features),
        or an ``nn.Sequential`` that :func:`~lipsurrogate.bounds.extract_chain` accepts.
    metadata : dict, optional
        Stored as the model's ``metadata_props`` (strings as they are, other values as JSON).
    dtype : {"float64", "float32"}
        The precision the graph computes in (the input is float32 either way).
    """
    onnx = _require_onnx()
    from ..bounds.network import extract_chain
    from ..nn import FeatureLipschitzMLP, to_plain

    if dtype not in ROUNDING_NOTES:
        raise ConfigurationError(f"'dtype' must be 'float64' or 'float32'. Got {dtype!r}.")
    features = None
    if isinstance(model, FeatureLipschitzMLP):
        plain = to_plain(model)
        features, chain = plain.features, extract_chain(plain.net)
        d = features.in_features
    else:
        if hasattr(model, "config") and not getattr(model, "is_plain", False):
            model = to_plain(model)
        chain = extract_chain(model)
        d = chain.in_features
    if chain.out_features != 1:
        raise ConfigurationError(f"ONNX export is for single-output networks. Got {chain.out_features} outputs.")
    g = _Graph(onnx, dtype)
    x = "points"
    if dtype == "float64":
        x = g.op("Cast", ["points"], "points_f64", to=onnx.TensorProto.DOUBLE)
    if features is not None:
        x = _features(g, features, x)
    out = _chain(g, chain, x)
    g.op("Reshape", [out, g.constant("flat", [-1], np.int64)], "values")
    g.nodes[-1].output[0] = "values"
    elem = onnx.TensorProto.DOUBLE if dtype == "float64" else onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes, "lipsurrogate_surrogate",
        [onnx.helper.make_tensor_value_info("points", onnx.TensorProto.FLOAT, ["n", d])],
        [onnx.helper.make_tensor_value_info("values", elem, ["n"])],
        initializer=g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)],
                                   producer_name="lipsurrogate", doc_string=doc)
    proto.ir_version = 8  # readable by ONNX Runtime >= 1.10
    props = {"rounding": ROUNDING_NOTES[dtype], **(metadata or {})}
    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model, path: str | os.PathLike, *, metadata: dict | None = None, dtype: str = "float64",
                doc: str = "") -> Path:
    """Write :func:`onnx_model` of ``model`` to ``path`` atomically; returns the path."""
    proto = onnx_model(model, metadata=metadata, dtype=dtype, doc=doc)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return path
