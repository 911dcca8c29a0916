"""Unconstrained reference networks, for comparisons (they carry no useful certificate)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..exceptions import ConfigurationError
from .mlp import _init_linear_

__all__ = ["unconstrained_mlp", "INITS"]

INITS = ("torch", "he_uniform")
"""Weight initialisations of :func:`unconstrained_mlp`."""


def unconstrained_mlp(
    in_features: int,
    out_features: int = 1,
    hidden: Sequence[int] = (128, 128, 128, 128),
    *,
    dropout: float = 0.0,
    init: str = "torch",
    seed: int | None = None,
) -> nn.Sequential:
    """An ordinary ``nn.Linear`` + ReLU stack of the given widths, seeded like :class:`LipschitzMLP`.

    :func:`lipsurrogate.bounds.lipschitz_bounds` accepts it and returns the (usually huge)
    product-of-norms bound, which shows why such a network has no useful certificate.

    Parameters
    ----------
    in_features, out_features : int
    hidden : sequence of int
    dropout : float
        Dropout probability after every hidden ReLU (0: no dropout layers), active in training mode only.
    init : {"torch", "he_uniform"}
        ``"torch"``: PyTorch's default (weights and biases uniform in :math:`\\pm 1/\\sqrt{n_{in}}`);
        ``"he_uniform"``: weights uniform in :math:`\\pm\\sqrt{6 / n_{in}}` and zero biases (Keras'
        ``he_uniform``, the initialisation of the HEPMASS baseline of Anzalone et al.).
    seed : int, optional
    """
    if init not in INITS:
        raise ConfigurationError(f"'init' must be one of {INITS}. Got {init!r} instead.")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigurationError(f"'dropout' must lie in [0, 1). Got {dropout!r} instead.")
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    widths = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(n_in, n_out)
        if init == "torch":
            _init_linear_(linear, generator)
        else:
            with torch.no_grad():
                bound = (6.0 / n_in) ** 0.5
                linear.weight.uniform_(-bound, bound, generator=generator)
                linear.bias.zero_()
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
    return nn.Sequential(*layers)
