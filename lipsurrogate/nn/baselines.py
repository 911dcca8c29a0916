"""Unconstrained reference networks, for comparisons (they carry no useful certificate)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .mlp import _init_linear_

__all__ = ["unconstrained_mlp"]


def unconstrained_mlp(
    in_features: int, out_features: int = 1, hidden: Sequence[int] = (128, 128, 128, 128), *, seed: int | None = None
) -> nn.Sequential:
    """An ordinary ``nn.Linear`` + ReLU stack of the given widths, seeded like :class:`LipschitzMLP`.

    :func:`lipsurrogate.bounds.lipschitz_bounds` accepts it and returns the (usually huge)
    product-of-norms bound, which shows why such a network has no useful certificate.
    """
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    widths = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(n_in, n_out)
        _init_linear_(linear, generator)
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
