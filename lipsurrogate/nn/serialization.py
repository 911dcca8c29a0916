"""Export to plain modules, and safe save/load (safetensors weights + JSON architecture).

Nothing here unpickles: weights are read with :func:`safetensors.torch.load_file`, the
architecture from JSON, and a file that does not fit the architecture is rejected with the name
of the offending tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from .._io import atomic_path, read_json, write_json
from .._version import __version__
from ..exceptions import ModelFileError
from ._utils import eval_mode
from .conditioning import ConditionedLipschitzMLP
from .deeponet import LipschitzDeepONet
from .features import FeatureLipschitzMLP
from .mlp import LipschitzMLP

__all__ = ["to_plain", "plain_from_state", "save_model", "load_model", "FORMAT_VERSION"]

FORMAT_VERSION = 1
"""Version of the on-disk model format written by :func:`save_model`."""

_MODEL_CLASSES = {"LipschitzMLP": LipschitzMLP, "FeatureLipschitzMLP": FeatureLipschitzMLP,
                  "ConditionedLipschitzMLP": ConditionedLipschitzMLP, "LipschitzDeepONet": LipschitzDeepONet}


def to_plain(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` without weight parametrizations or projection constraints.

    The copy computes the same function as ``model`` in evaluation mode (the power-iteration
    vectors of spectral norms are frozen there) with ordinary ``nn.Parameter`` weights: the
    effective weights are copied into a freshly built network of the same architecture whose
    constraints were removed. Its Lipschitz constants are unchanged, and
    :func:`lipsurrogate.bounds.lipschitz_bounds` still certifies them from the weights. The copy
    is in evaluation mode.

    Note [why not deepcopy + remove_parametrizations]
        ``copy.deepcopy`` shares the dynamically created ``Parametrized*`` classes between the
        copy and the original, and ``remove_parametrizations`` deletes the property from that
        shared class, which breaks the original. Building a fresh network avoids it.
    """
    if not hasattr(model, "config") or type(model).__name__ not in _MODEL_CLASSES:
        raise ModelFileError(f"to_plain supports {sorted(_MODEL_CLASSES)}; got a {type(model).__name__}.")
    return plain_from_state(type(model), model.config, _effective_state(model))


def plain_from_state(cls: type, config: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    """A network ``cls(**config)`` without constraints, holding the tensors of ``state`` (evaluation mode)."""
    plain = cls(**config)
    for module in list(plain.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        if hasattr(module, "weight_constraint"):
            del module.weight_constraint
    plain.load_state_dict(state, strict=True)
    plain.is_plain = True
    return plain.eval()


def _effective_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with every parametrized tensor replaced by its value in evaluation mode."""
    state: dict[str, torch.Tensor] = {}
    with eval_mode(model), torch.no_grad():
        for prefix, module in model.named_modules():
            parts = prefix.split(".") if prefix else []
            if "parametrizations" in parts or "weight_constraint" in parts:
                continue
            key = (prefix + ".") if prefix else ""
            for name, tensor in list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False)
            ):
                state[key + name] = tensor.detach().clone()
            if parametrize.is_parametrized(module):
                for name in module.parametrizations.keys():
                    state[key + name] = getattr(module, name).detach().clone()
    return state


def _is_plain(model: nn.Module) -> bool:
    return bool(getattr(model, "is_plain", False))


def _stem(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def save_model(model: nn.Module, path: str | os.PathLike) -> tuple[Path, Path]:
    """Save ``model`` as ``<path>.safetensors`` (state dict) and ``<path>.json`` (architecture).

    Both files are written atomically. Returns the two paths.
    """
    name = type(model).__name__
    if name not in _MODEL_CLASSES or not hasattr(model, "config"):
        raise ModelFileError(
            f"save_model supports {sorted(_MODEL_CLASSES)}; got a {name}. Save other modules with "
            "safetensors.torch.save_file(module.state_dict(), ...)."
        )
    stem = _stem(path)
    weights_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    architecture = {
        "format_version": FORMAT_VERSION,
        "lipsurrogate_version": __version__,
        "class": name,
        "plain": _is_plain(model),
        "config": model.config,
    }
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"architecture": json.dumps(architecture)})
    write_json(json_path, architecture)
    return weights_path, json_path


def load_model(path: str | os.PathLike) -> nn.Module:
    """Load a model written by :func:`save_model` (no unpickling), in evaluation mode.

    Raises
    ------
    ModelFileError
        If a file is missing or unreadable, the architecture is unknown, or a tensor is missing,
        unexpected or of the wrong shape (the message names it).
    """
    stem = _stem(path)
    weights_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (weights_path, json_path):
        if not p.is_file():
            raise ModelFileError(f"Model file {p} does not exist.")
    try:
        architecture = read_json(json_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFileError(f"Architecture file {json_path} is not valid JSON: {err}") from None
    if not isinstance(architecture, dict) or architecture.get("class") not in _MODEL_CLASSES:
        raise ModelFileError(
            f"Architecture file {json_path} names no known model class "
            f"(expected 'class' in {sorted(_MODEL_CLASSES)}); got {architecture!r:.200}."
        )
    if architecture.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{json_path} has format_version {architecture.get('format_version')!r}; this version of "
            f"lipsurrogate reads format_version {FORMAT_VERSION}."
        )
    try:
        model = _MODEL_CLASSES[architecture["class"]](**architecture["config"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"The architecture in {json_path} cannot be built: {err}") from None
    if architecture.get("plain"):
        model = to_plain(model)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as err:
        raise ModelFileError(f"Weights file {weights_path} cannot be read: {err}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"Weights file {weights_path} does not fit the architecture in {json_path}: "
            f"missing tensors {missing}, unexpected tensors {unexpected}."
        )
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ModelFileError(
                f"Tensor '{key}' in {weights_path} has shape {tuple(tensor.shape)}; the architecture "
                f"in {json_path} expects {tuple(expected[key].shape)}."
            )
    model.load_state_dict(tensors, strict=True)
    return model.eval()
