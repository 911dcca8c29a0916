"""lipsurrogate: certified Lipschitz neural surrogates for PDE solvers.

The package follows the data flow of a fit::

    tasks (named recipes) -> data -> nn (models) -> train -> bounds (certificates) -> report

Subpackages and modules
-----------------------
data
    py-pde generators, PDEBench and HEPMASS loaders, trigger simulation, Dask families.
nn
    Lipschitz layers, weight norms, GroupSort, monotonic residual, heads, Fourier features,
    conditioning, DeepONet, save/load (safetensors + JSON).
train
    Training loop, losses, MDMM constraints, PINN residuals, the pair-stability penalty, balanced sampling, streaming, DDP.
bounds
    **Certified** Lipschitz constants from the weights (float64), float64 evaluation with error
    bounds, per-cell certificates, local constants, refinement, verification.
report
    Figures and HTML reports of run folders.
tasks
    Named recipes runnable with ``lipsurrogate fit TASK`` (``lipsurrogate tasks`` lists them).
estimators
    scikit-learn compatible :class:`LipschitzClassifier` and :class:`LipschitzRegressor`.
export
    Numpy and ONNX exports of trained networks, with the certificate in the metadata.
metrics
    Exact ROC/AUC, average precision, significance ratio, background-rate thresholds.

Top-level functions
-------------------
Certify any supported network against any reference (all numbers **certified** unless labelled)::

    cert = lipsurrogate.certify(model, reference, box, cells=32)   # -> Certificate
    check = lipsurrogate.verify(cert, model, reference)            # dense, random, adversarial

with ``reference`` one of :class:`MultilinearInterpolant` (a data grid, level 1),
:class:`HeatSolution` (closed-form heat modes, level 2) or :class:`FunctionReference` (a user's
callable with stated per-input Lipschitz constants: level 2 under the user's assumption).
:func:`fit_field` fits and certifies a surrogate of any gridded ``xarray`` field,
:func:`fit` runs a named task, :func:`load` opens a run folder as a :class:`Surrogate`, and
:func:`export_run` writes a run's network as ONNX or numpy.

Heavy dependencies (torch, py-pde) are imported on first use, so ``lipsurrogate --help`` is fast.
"""

from importlib import import_module

from ._version import __version__

_LAZY = {
    "LipschitzMLP": "lipsurrogate.nn",
    "GroupSort": "lipsurrogate.nn",
    "lipschitz_norm": "lipsurrogate.nn",
    "save_model": "lipsurrogate.nn",
    "load_model": "lipsurrogate.nn",
    "to_plain": "lipsurrogate.nn",
    "lipschitz_bounds": "lipsurrogate.bounds",
    "LipschitzBounds": "lipsurrogate.bounds",
    "certify": "lipsurrogate.bounds",
    "verify": "lipsurrogate.bounds",
    "Certificate": "lipsurrogate.bounds",
    "Reference": "lipsurrogate.bounds",
    "MultilinearInterpolant": "lipsurrogate.bounds",
    "HeatSolution": "lipsurrogate.bounds",
    "FunctionReference": "lipsurrogate.bounds",
    "fit": "lipsurrogate.pipeline",
    "fit_field": "lipsurrogate.pipeline",
    "export_run": "lipsurrogate.export",
    "export_onnx": "lipsurrogate.export",
    "load": "lipsurrogate.surrogate",
    "Surrogate": "lipsurrogate.surrogate",
    "LipschitzClassifier": "lipsurrogate.estimators",
    "LipschitzRegressor": "lipsurrogate.estimators",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in ("nn", "bounds", "train", "tasks", "data", "report", "estimators", "export", "metrics"):
        return import_module(f"lipsurrogate.{name}")
    raise AttributeError(f"module 'lipsurrogate' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
