r"""Parametric (conditioned) Lipschitz networks: the conditioning mechanisms of Anzalone et al.

A network :math:`f(x; c)` of the inputs :math:`x` and a condition :math:`c` (a PDE parameter such
as the diffusivity, a particle mass). At a conditioning *site* with hidden activations :math:`h`:

=============  ==================================================  ==========================
mechanism      site output                                         maps
=============  ==================================================  ==========================
concat         :math:`[h, c]` (fed to the next layer)               --
bias           :math:`h + B c`                                      :math:`B`
scale          :math:`h \odot (1 + S c)`                            :math:`S`
affine         :math:`h \odot (1 + S c) + B c`                      :math:`S, B`
=============  ==================================================  ==========================

and the *position* says where: ``"begin"`` (the input of the first layer: for ``concat`` this is
the usual parametric network on :math:`[x, c]`; otherwise the first hidden pre-activation),
``"all"`` (every hidden layer) or ``"end"`` (the last hidden layer). The conditioning is applied
to the pre-activation of the hidden layer, and the condition enters through an affine
normalisation :math:`\tilde c = (c - c_0) s_c` to :math:`[-1, 1]` over ``cond_range``.

Weights carry the usual norm constraints (``linf-row``, :math:`\lambda^{1/m}` per layer) and the
maps :math:`B, S` the constraint :math:`\|\cdot\|_{\infty} \le` ``cond_strength``, so constants
stay controlled by construction. The *certified* constants, in :math:`x` and in :math:`c`, over a
box, come from interval propagation of values and derivatives through the actual float64 weights:
:func:`lipsurrogate.bounds.conditioned.conditioned_derivative_intervals`.

The model takes one tensor ``(n, in_features + cond_features)``: the condition is the last
``cond_features`` columns, so it trains with :func:`~lipsurrogate.train.train` unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..exceptions import ConfigurationError
from .activations import GroupSort
from .norms import lipschitz_norm

__all__ = ["MECHANISMS", "POSITIONS", "ConditionedLipschitzMLP"]

MECHANISMS = ("concat", "bias", "scale", "affine")
POSITIONS = ("begin", "all", "end")


class ConditionedLipschitzMLP(nn.Module):
    """A Lipschitz MLP conditioned on extra inputs (see the module docstring).

    Parameters
    ----------
    in_features, cond_features, out_features : int
    hidden : sequence of int
        Hidden widths (even, for GroupSort pairs).
    mechanism : {"concat", "bias", "scale", "affine"}
    position : {"begin", "all", "end"}
    cond_range : sequence of (low, high)
        The range of each condition input; it is mapped to [-1, 1].
    lipschitz : float
        :math:`\\lambda` of the trunk (``linf-row`` norms, spread over the layers).
    cond_strength : float
        Bound on the l-inf operator norm of each conditioning map.
    input_scale : sequence of float, optional
        Multiplies the inputs ``x`` (not the condition) before the first layer.
    seed : int, optional
    """

    def __init__(
        self,
        in_features: int,
        cond_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (64, 64),
        *,
        mechanism: str = "affine",
        position: str = "all",
        cond_range: Sequence[Sequence[float]] | None = None,
        lipschitz: float = 1.0,
        cond_strength: float = 1.0,
        input_scale: Sequence[float] | None = None,
        group_size: int = 2,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if mechanism not in MECHANISMS:
            raise ConfigurationError(f"Unknown conditioning mechanism {mechanism!r}; expected one of {MECHANISMS}.")
        if position not in POSITIONS:
            raise ConfigurationError(f"Unknown conditioning position {position!r}; expected one of {POSITIONS}.")
        if in_features < 1 or cond_features < 1 or not hidden:
            raise ConfigurationError("Need at least one input, one condition and one hidden layer.")
        if any(w % 2 for w in hidden):
            raise ConfigurationError(f"Hidden widths must be even (GroupSort pairs). Got {list(hidden)}.")
        cond_range = [[-1.0, 1.0]] * cond_features if cond_range is None else [list(map(float, r)) for r in cond_range]
        if len(cond_range) != cond_features or any(len(r) != 2 or not r[0] < r[1] for r in cond_range):
            raise ConfigurationError(f"'cond_range' needs {cond_features} (low, high) pairs with low < high. Got {cond_range}.")
        self.config: dict[str, Any] = dict(
            in_features=in_features, cond_features=cond_features, out_features=out_features, hidden=list(hidden),
            mechanism=mechanism, position=position, cond_range=cond_range, lipschitz=float(lipschitz),
            cond_strength=float(cond_strength), input_scale=None if input_scale is None else [float(v) for v in input_scale],
            group_size=group_size, seed=seed,
        )
        self.in_features, self.cond_features, self.out_features = in_features, cond_features, out_features
        self.mechanism, self.position = mechanism, position
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        lo = torch.tensor([r[0] for r in cond_range], dtype=torch.float32)
        hi = torch.tensor([r[1] for r in cond_range], dtype=torch.float32)
        self.register_buffer("cond_offset", (lo + hi) / 2)
        self.register_buffer("cond_scale", 2 / (hi - lo))
        scale = torch.ones(in_features) if input_scale is None else torch.as_tensor(input_scale, dtype=torch.float32)
        if scale.shape != (in_features,):
            raise ConfigurationError(f"'input_scale' needs {in_features} entries. Got {tuple(scale.shape)}.")
        self.register_buffer("input_scale", scale)

        n_layers = len(hidden) + 1
        per_layer = float(lipschitz) ** (1.0 / n_layers)
        self.sites = [i for i in range(len(hidden)) if position == "all" or (position == "begin" and i == 0)
                      or (position == "end" and i == len(hidden) - 1)]
        widths_in = [in_features, *hidden]
        self.linears = nn.ModuleList()
        for i, (a, b) in enumerate(zip(widths_in, [*hidden, out_features])):
            extra = cond_features if mechanism == "concat" and (i in self.sites if position != "end" else i - 1 in self.sites) else 0
            layer = nn.Linear(a + extra, b)
            _init(layer, generator)
            self.linears.append(lipschitz_norm(layer, "linf-row", per_layer))
        self.bias_maps = nn.ModuleDict()
        self.scale_maps = nn.ModuleDict()
        if mechanism != "concat":
            for i in self.sites:
                if mechanism in ("bias", "affine"):
                    self.bias_maps[str(i)] = self._map(cond_features, hidden[i], cond_strength, generator, zero=False)
                if mechanism in ("scale", "affine"):
                    self.scale_maps[str(i)] = self._map(cond_features, hidden[i], cond_strength, generator, zero=True)
        self.activation = GroupSort(group_size)

    @staticmethod
    def _map(cond: int, width: int, strength: float, generator, zero: bool) -> nn.Linear:
        layer = nn.Linear(cond, width, bias=False)
        with torch.no_grad():
            if zero:  # scaling starts at the identity, 1 + S c with S = 0 ... plus a little noise to break symmetry
                layer.weight.normal_(0.0, 0.01, generator=generator)
            else:
                layer.weight.normal_(0.0, 0.5 / cond, generator=generator)
        return lipschitz_norm(layer, "linf-row", strength)

    def plain_float64(self) -> "ConditionedLipschitzMLP":
        """A fresh copy with the constrained weights frozen (no parametrizations), in float64.

        It computes with exactly the float32 weights this model uses, in float64 arithmetic:
        the evaluation that :mod:`lipsurrogate.bounds.conditioned` certifies.
        """
        from .serialization import to_plain

        return to_plain(self).double()

    def split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, normalised condition)`` from the concatenated inputs."""
        if inputs.shape[-1] != self.in_features + self.cond_features:
            raise ConfigurationError(
                f"Expected inputs with {self.in_features} features plus {self.cond_features} condition(s) in the "
                f"last dimension. Got shape {tuple(inputs.shape)}."
            )
        x = inputs[..., : self.in_features] * self.input_scale
        c = (inputs[..., self.in_features :] - self.cond_offset) * self.cond_scale
        return x, c

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x, c = self.split(inputs)
        h = x
        n = len(self.linears)
        for i, layer in enumerate(self.linears):
            if self.mechanism == "concat" and (i in self.sites if self.position != "end" else i - 1 in self.sites):
                h = torch.cat([h, c], dim=-1)
            h = layer(h)
            if i == n - 1:
                break
            if i in self.sites and self.mechanism != "concat":
                if str(i) in self.scale_maps:
                    h = h * (1 + self.scale_maps[str(i)](c))
                if str(i) in self.bias_maps:
                    h = h + self.bias_maps[str(i)](c)
            h = self.activation(h)
        return h


def _init(layer: nn.Linear, generator) -> None:
    with torch.no_grad():
        bound = 1.0 / layer.in_features**0.5
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
