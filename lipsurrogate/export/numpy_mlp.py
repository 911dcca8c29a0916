r"""Dependency-free export of a Lipschitz network: numpy arrays and a tiny forward.

A trigger (or any code that cannot link PyTorch) needs only the weights and a few lines of
numpy. :func:`export_numpy` writes

* ``<stem>.npz`` -- the effective weights (``W0, b0, W1, b1, ...``), the fixed input map
  (``input_offset``, ``input_scale``) and the monotonic residual vector ``residual`` (all
  float32 or float64 as requested), loadable with ``numpy.load(..., allow_pickle=False)``; for
  a :class:`~lipsurrogate.nn.FeatureLipschitzMLP` also its Fourier features
  (``feature_frequencies`` :math:`\Omega`, ``feature_passthrough`` indices :math:`P`,
  ``feature_offset``, ``feature_scale``), applied first:
  :math:`x \mapsto [\cos(\Omega x), \sin(\Omega x), (x_P - o_P) \odot s_P]`;
* ``<stem>.json`` -- the activation, its group size, the output head, the dtype and the
  version stamp.

:func:`numpy_forward` (numpy only) evaluates

.. math::

    z = (x - o) \odot a, \quad h_0 = z, \quad h_i = \sigma(W_i h_{i-1} + b_i), \quad
    f = W_m h_{m-1} + b_m + r \cdot z,

with :math:`\sigma` GroupSort on pairs (unit :math:`i` with unit :math:`i + n/2`, the pairing of
:class:`lipsurrogate.nn.GroupSort`), a full sort or ReLU, and :math:`r` the residual
:math:`\lambda s` of Eq. 2.3. It uses exact ``minimum``/``maximum``, so it computes the same
function as the network; in float32 it agrees with the torch model up to float32 rounding (a
few ulps of the output, measured in the tests), in float64 with :func:`lipsurrogate.bounds.
evaluate_float64` to rounding. Only the ``"lipschitz"`` and ``"free"`` heads (no trainable
output scale or auxiliary network) are exported; the certificate of the exported function is
the one :func:`lipsurrogate.bounds.lipschitz_bounds` computed from the same weights.

This module imports nothing but numpy at import time; :func:`export_numpy` imports torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._io import atomic_path, write_json
from .._version import __version__
from ..exceptions import ConfigurationError, ModelFileError

__all__ = ["export_numpy", "load_numpy", "numpy_forward", "fourier_features", "NumpyNetwork", "EXPORT_FORMAT"]

EXPORT_FORMAT = "lipsurrogate-numpy-mlp/1"
"""Format stamp written into the JSON file."""


def numpy_forward(params: dict, x: np.ndarray, activation: str = "groupsort", group_size: int = 2,
                  chunk: int = 4096) -> np.ndarray:
    """Evaluate an exported network at ``x`` (shape (n, in)) with numpy only; returns (n, out).

    ``params`` holds ``input_offset``, ``input_scale``, ``residual`` and ``W0, b0, ..., W{m-1},
    b{m-1}`` as written by :func:`export_numpy`. Computation happens in the dtype of the weights.

    Note [features-major chunks]
        The candidates are processed ``chunk`` at a time with features along the first axis
        (``W @ H``): the two halves of a GroupSort pair are then contiguous rows, min/max run in
        place without a concatenation, and each block stays in cache. On one thread this is
        about 5x faster than the row-major form for a 4-20-20-20-1 network (measured by
        ``benchmarks/bench_trigger.py``); the arithmetic is the same.
    """
    dtype = params["W0"].dtype
    x = np.asarray(x, dtype=dtype)
    if "feature_frequencies" in params:
        x = fourier_features(params, x)
    m = sum(1 for k in params if k.startswith("W"))
    weights = [params[f"W{i}"] for i in range(m)]
    biases = [params[f"b{i}"][:, None] for i in range(m)]
    offset = params["input_offset"][:, None]
    scale = params["input_scale"][:, None]
    residual = params["residual"]
    has_residual = bool(np.any(residual != 0))
    n = len(x)
    out = np.empty((weights[-1].shape[0], n), dtype=dtype)
    xt = np.ascontiguousarray(x.T)
    for s in range(0, n, chunk):
        z = (xt[:, s : s + chunk] - offset) * scale
        h = z
        for i in range(m):
            y = weights[i] @ h
            y += biases[i]
            if i < m - 1:
                y = _activation(y, activation, group_size)
            h = y
        if has_residual:
            h += residual @ z
        out[:, s : s + chunk] = h
    return out.T


def fourier_features(params: dict, x: np.ndarray) -> np.ndarray:
    """The features of :class:`lipsurrogate.nn.FourierFeatures`: cos, sin of the phases, then the passed-through inputs."""
    phase = x @ params["feature_frequencies"].T
    keep = params["feature_passthrough"]
    rest = (x[:, keep] - params["feature_offset"][keep]) * params["feature_scale"][keep]
    return np.concatenate([np.cos(phase), np.sin(phase), rest], axis=1)


def _activation(y: np.ndarray, activation: str, group_size: int) -> np.ndarray:
    """The activation on a features-major block ``y`` (units, candidates)."""
    if activation == "groupsort" and group_size == 2:
        # unit i pairs with unit i + n/2 (lipsurrogate.nn.GroupSort's pairing)
        k = y.shape[0] // 2
        a, b = y[:k], y[k:]
        low = np.minimum(a, b)
        np.maximum(a, b, out=b)
        a[...] = low
        return y
    if activation == "relu":
        return np.maximum(y, 0, out=y)
    if activation == "fullsort":
        return np.sort(y, axis=0)
    if activation == "groupsort":  # contiguous groups of group_size units
        units, cols = y.shape
        return np.sort(y.reshape(units // group_size, group_size, cols), axis=1).reshape(units, cols)
    raise ConfigurationError(f"Unknown activation {activation!r} in an exported network.")


class NumpyNetwork:
    """An exported network: ``net(x)`` evaluates :func:`numpy_forward` (numpy only).

    Attributes
    ----------
    params : dict of ndarray
        The arrays of the ``.npz`` file.
    meta : dict
        The JSON metadata (activation, group size, dtype, source configuration).
    """

    def __init__(self, params: dict, meta: dict) -> None:
        self.params = params
        self.meta = meta
        first = params.get("feature_frequencies", params["W0"])
        self.in_features = int(first.shape[1])
        self.out_features = int(params[f"W{self._depth - 1}"].shape[0])

    @property
    def _depth(self) -> int:
        return sum(1 for k in self.params if k.startswith("W"))

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ConfigurationError(
                f"Expected inputs of shape (n, {self.in_features}). Got {x.shape} instead."
            )
        return numpy_forward(self.params, x, self.meta["activation"], int(self.meta["group_size"] or 0))


def export_numpy(model, path: str | os.PathLike, dtype: str = "float32",
                 extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``model`` as ``<path>.npz`` + ``<path>.json``.

    ``model`` is a :class:`~lipsurrogate.nn.LipschitzMLP` or a
    :class:`~lipsurrogate.nn.FeatureLipschitzMLP`. The effective (parametrized) weights in
    evaluation mode are written, so the export computes the trained function. ``extra`` (JSON)
    goes into the metadata, e.g. the certificate of a run. Returns the two paths (both written
    atomically).
    """
    import torch

    from ..nn import FeatureLipschitzMLP, LipschitzMLP, to_plain

    features = None
    if isinstance(model, FeatureLipschitzMLP):
        plain_features = to_plain(model)
        features, model = plain_features.features, plain_features.net
    if not isinstance(model, LipschitzMLP):
        raise ConfigurationError(f"export_numpy expects a LipschitzMLP or a FeatureLipschitzMLP. "
                                 f"Got a {type(model).__name__} instead.")
    if model.head not in ("lipschitz", "free"):
        raise ConfigurationError(
            f"export_numpy supports the 'lipschitz' and 'free' heads. Got head={model.head!r}."
        )
    if dtype not in ("float32", "float64"):
        raise ConfigurationError(f"'dtype' must be 'float32' or 'float64'. Got {dtype!r} instead.")
    plain = to_plain(model)
    np_dtype = np.dtype(dtype)
    with torch.no_grad():
        arrays = {
            "input_offset": plain.input_offset.double().numpy(),
            "input_scale": plain.input_scale.double().numpy(),
            "residual": (plain.lipschitz * plain.monotonic.double()).numpy(),
        }
        for i, linear in enumerate(plain.linears):
            arrays[f"W{i}"] = linear.weight.double().numpy()
            arrays[f"b{i}"] = linear.bias.double().numpy()
        if features is not None:
            arrays["feature_frequencies"] = features.frequencies.double().numpy()
            arrays["feature_offset"] = features.offset.double().numpy()
            arrays["feature_scale"] = features.scale.double().numpy()
    arrays = {k: np.ascontiguousarray(v.astype(np_dtype)) for k, v in arrays.items()}
    if features is not None:
        arrays["feature_passthrough"] = np.asarray(features.passthrough, dtype=np.int64)
    config = model.config
    meta = {
        "format": EXPORT_FORMAT,
        "lipsurrogate_version": __version__,
        "dtype": dtype,
        "activation": config["activation"],
        "group_size": config["group_size"] if config["activation"] == "groupsort" else None,
        "in_features": model.in_features if features is None else features.in_features,
        "features": "fourier" if features is not None else None,
        "out_features": model.out_features,
        "layers": len(plain.linears),
        "source_config": config,
        **(extra or {}),
    }
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_json(json_path, meta)
    return npz_path, json_path


def load_numpy(path: str | os.PathLike) -> NumpyNetwork:
    """Load an export of :func:`export_numpy` (``allow_pickle=False``; numpy only)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".npz", ".json") else path
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    for p in (npz_path, json_path):
        if not p.is_file():
            raise ModelFileError(f"Exported model file {p} does not exist.")
    try:
        meta = json.loads(json_path.read_text())
    except ValueError as err:
        raise ModelFileError(f"{json_path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ModelFileError(f"{json_path} is not a {EXPORT_FORMAT} export (format {meta.get('format')!r}).")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            params = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ModelFileError(f"{npz_path} cannot be read: {err}") from None
    depth = int(meta["layers"])
    expected = {"input_offset", "input_scale", "residual", *(f"{c}{i}" for i in range(depth) for c in "Wb")}
    if meta.get("features") == "fourier":
        expected |= {"feature_frequencies", "feature_passthrough", "feature_offset", "feature_scale"}
    if set(params) != expected:
        raise ModelFileError(
            f"{npz_path} does not fit {json_path}: missing {sorted(expected - set(params))}, "
            f"unexpected {sorted(set(params) - expected)}."
        )
    return NumpyNetwork(params, meta)
