"""Lipschitz network building blocks (Kitouni, Nolte & Williams, "Robust and Provably Monotonic
Networks").

Modules
-------
norms
    Weight norms as parametrizations or projections (Eq. 2.7, Eq. 2.8, row-wise, spectral).
activations
    GroupSort and full sort, 1-Lipschitz in every l_p norm.
mlp
    :class:`LipschitzMLP`: per-input scaling, monotonic residual (Eq. 2.3), free / scale / aux heads.
serialization
    Export to plain modules, safe save/load (safetensors + JSON).
"""

from .activations import ACTIVATIONS, GroupSort, make_activation
from .baselines import unconstrained_mlp
from .conditioning import MECHANISMS, POSITIONS, ConditionedLipschitzMLP
from .deeponet import LipschitzDeepONet, train_deeponet
from .features import FeatureLipschitzMLP, FourierFeatures
from .mlp import HEADS, NETWORK_NORMS, LipschitzMLP
from .norms import (
    ENFORCE_MODES,
    NORM_KINDS,
    ColumnL1Norm,
    ColumnMaxNorm,
    L1Norm,
    OperatorNormConstraint,
    RowLinfNorm,
    SpectralNorm,
    WeightedRowNorm,
    lipschitz_norm,
    project_weights_,
    register_projection,
    weight_constraint,
)
from .serialization import load_model, save_model, to_plain

__all__ = [
    "ConditionedLipschitzMLP",
    "LipschitzDeepONet",
    "train_deeponet",
    "MECHANISMS",
    "POSITIONS",
    "ACTIVATIONS",
    "ENFORCE_MODES",
    "HEADS",
    "NETWORK_NORMS",
    "NORM_KINDS",
    "ColumnL1Norm",
    "FeatureLipschitzMLP",
    "FourierFeatures",
    "ColumnMaxNorm",
    "GroupSort",
    "L1Norm",
    "LipschitzMLP",
    "OperatorNormConstraint",
    "RowLinfNorm",
    "SpectralNorm",
    "WeightedRowNorm",
    "lipschitz_norm",
    "load_model",
    "make_activation",
    "project_weights_",
    "register_projection",
    "save_model",
    "to_plain",
    "unconstrained_mlp",
    "weight_constraint",
]
