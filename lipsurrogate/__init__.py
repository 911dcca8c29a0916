"""lipsurrogate: certified Lipschitz neural surrogates for PDE solvers.

The package follows the data flow of a fit::

    tasks (named recipes) -> data -> nn (models) -> train -> bounds (certificates) -> report

Subpackages
-----------
nn
    Lipschitz layers, weight norms, GroupSort, monotonic residual, heads, save/load.
train
    Training loop and losses (temperature BCE, hinge, dynamic hinge).
bounds
    Certified Lipschitz constants from the weights (float64), float64 evaluation with error bounds.
tasks
    Named recipes runnable with ``lipsurrogate fit TASK`` (the paper's toy problems so far).

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
    "load": "lipsurrogate.surrogate",
    "Surrogate": "lipsurrogate.surrogate",
    "LipschitzClassifier": "lipsurrogate.estimators",
    "LipschitzRegressor": "lipsurrogate.estimators",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in ("nn", "bounds", "train", "tasks", "data", "report"):
        return import_module(f"lipsurrogate.{name}")
    raise AttributeError(f"module 'lipsurrogate' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
