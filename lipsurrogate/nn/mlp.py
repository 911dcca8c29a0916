r"""Lipschitz multilayer perceptrons with monotonic residuals and expressive heads.

The network computes, for an input :math:`x \in \mathbb{R}^d`,

.. math::

    z = (x - o) \odot a, \qquad
    g(z) = W_m \sigma(W_{m-1} \cdots \sigma(W_1 z + b_1) \cdots) + b_m,

with :math:`\sigma` a GroupSort (or ReLU) activation, the input offset :math:`o` and per-input
scale :math:`a` fixed (not trained), and the weights constrained so that
:math:`\prod_i \|W_i\| \le \lambda` (each layer gets :math:`\lambda^{1/m}`). Then, for inputs
whose partial derivatives are bounded in the chosen norm, :math:`|\partial g/\partial z_j|
\le \lambda` and so :math:`|\partial g / \partial x_j| \le \lambda |a_j|`: the per-input scale
gives each input its own slope bound.

Heads (``head=``):

``"lipschitz"``
    :math:`f = g` (every layer constrained).
``"free"``
    The last layer is an ordinary ``nn.Linear``; the hidden layers share :math:`\lambda`. The
    certified constant multiplies in the exact norm of the free layer.
``"scale"``
    :math:`f = s \odot g` with a trainable output scale :math:`s` (per output, or one scalar
    with ``scale_per_output=False``); the constant is multiplied by :math:`|s|`.
``"aux"``
    :math:`f = g \cdot h` with :math:`h` an auxiliary Lipschitz network of the same inputs. On a
    bounded domain, :math:`\mathrm{Lip}(gh) \le \mathrm{Lip}(g)\sup|h| + \mathrm{Lip}(h)\sup|g|`,
    so its certificate needs the domain (see :func:`lipsurrogate.bounds.lipschitz_bounds`).

Monotonic residual (Kitouni et al., Eq. 2.3): with ``monotonic`` a sequence of
:math:`s_j \in \{+1, 0, -1\}`, :math:`f = g(z) + \lambda \sum_j s_j z_j`. Since
:math:`|\partial g / \partial z_j| \le \lambda`, :math:`\partial f/\partial z_j \in [0, 2\lambda]`
for :math:`s_j = +1`, :math:`[-2\lambda, 0]` for :math:`s_j = -1` and :math:`[-\lambda, \lambda]`
otherwise: monotone by construction, everywhere, including far outside the data.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from .._validation import positive_float, positive_int
from ..exceptions import ConfigurationError
from .activations import ACTIVATIONS, make_activation
from .norms import ENFORCE_MODES, lipschitz_norm

__all__ = ["LipschitzMLP", "HEADS", "NETWORK_NORMS"]

HEADS = ("lipschitz", "free", "scale", "aux")
"""Output heads of :class:`LipschitzMLP` (see the module docstring)."""

NETWORK_NORMS = ("l1", "l1-column", "linf-row", "mixed", "spectral")
"""Norms a :class:`LipschitzMLP` accepts; ``"mixed"`` = ``"l1-linf"`` first, ``"linf-row"`` after.

``"l1-linf"`` alone is not among them: l1->l-inf norms do not compose from layer to layer, so
using it for every layer would not bound the product (certification would still be honest,
but the constant would not be lambda)."""


class LipschitzMLP(nn.Module):
    r"""A dense network whose Lipschitz constant is bounded by construction.

    Parameters
    ----------
    in_features, out_features : int
        Input and output dimensions.
    hidden : sequence of int
        Widths of the hidden layers (each divisible by ``group_size`` for GroupSort).
    lipschitz : float
        :math:`\lambda`, the bound on the product of the layer norms, spread evenly over the
        constrained layers. Nobody has to reason per layer.
    norm : str
        Weight norm: one of :data:`NETWORK_NORMS`, i.e. one kind of
        :data:`lipsurrogate.nn.norms.NORM_KINDS` for every layer, or ``"mixed"`` (the paper's
        scheme: ``"l1-linf"`` for the first layer, ``"linf-row"`` after it). The exact norms
        (all but ``"spectral"``) bound every partial derivative by :math:`\lambda`;
        ``"spectral"`` bounds the l2 gradient norm approximately while training (power
        iteration).
    norm_variant : {"clip", "rescale"}
        The two forms of Eq. 2.7, used only with ``norm="l1"``.
    enforce : {"reparametrize", "project"}
        Norms as parametrizations (gradients through the norm) or projection after each
        optimizer step (call :func:`lipsurrogate.nn.project_weights_`).
    activation : {"groupsort", "fullsort", "relu"}
        1-Lipschitz activation.
    group_size : int
        Units per GroupSort group.
    input_scale, input_offset : sequence of float, optional
        Fixed affine input map :math:`z = (x - o) \odot a`; ``input_scale`` sets per-input slope
        bounds :math:`\lambda |a_j|`.
    monotonic : sequence of {-1, 0, 1}, optional
        Per-input monotonicity constraints (Eq. 2.3). Needs ``head="lipschitz"`` and an l1-type
        norm (monotonicity must hold exactly, not up to a power-iteration estimate).
    head : {"lipschitz", "free", "scale", "aux"}
        Output head.
    scale_per_output : bool
        With ``head="scale"``: one scale per output (True) or one scalar.
    output_scale_init : float
        Initial value of the trainable output scale.
    aux_hidden : sequence of int
        Hidden widths of the auxiliary network of ``head="aux"``.
    aux_lipschitz : float
        :math:`\lambda` of the auxiliary network.
    seed : int, optional
        Seeds the initial weights (and power-iteration vectors) without touching torch's
        global generator.

    Attributes
    ----------
    config : dict
        The constructor arguments, JSON-serialisable; ``LipschitzMLP(**model.config)`` rebuilds
        the architecture (used by :func:`lipsurrogate.nn.save_model`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (128, 128, 128, 128),
        *,
        lipschitz: float = 1.0,
        norm: str = "l1-column",
        norm_variant: str = "clip",
        enforce: str = "reparametrize",
        activation: str = "groupsort",
        group_size: int = 2,
        input_scale: Sequence[float] | None = None,
        input_offset: Sequence[float] | None = None,
        monotonic: Sequence[int] | None = None,
        head: str = "lipschitz",
        scale_per_output: bool = True,
        output_scale_init: float = 1.0,
        aux_hidden: Sequence[int] = (32, 32),
        aux_lipschitz: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        in_features = positive_int("in_features", in_features)
        out_features = positive_int("out_features", out_features)
        hidden = [positive_int("hidden", h) for h in hidden]
        lipschitz = positive_float("lipschitz", lipschitz)
        if norm not in NETWORK_NORMS:
            raise ConfigurationError(f"'norm' must be one of {NETWORK_NORMS}. Got {norm!r} instead.")
        if enforce not in ENFORCE_MODES:
            raise ConfigurationError(f"'enforce' must be one of {ENFORCE_MODES}. Got {enforce!r} instead.")
        if activation not in ACTIVATIONS:
            raise ConfigurationError(f"'activation' must be one of {ACTIVATIONS}. Got {activation!r} instead.")
        if head not in HEADS:
            raise ConfigurationError(f"'head' must be one of {HEADS}. Got {head!r} instead.")
        if head == "free" and not hidden:
            raise ConfigurationError("head='free' needs at least one hidden layer to constrain.")

        self.config: dict[str, Any] = dict(
            in_features=in_features,
            out_features=out_features,
            hidden=list(hidden),
            lipschitz=lipschitz,
            norm=norm,
            norm_variant=norm_variant,
            enforce=enforce,
            activation=activation,
            group_size=group_size,
            input_scale=None if input_scale is None else [float(v) for v in input_scale],
            input_offset=None if input_offset is None else [float(v) for v in input_offset],
            monotonic=None if monotonic is None else [int(v) for v in monotonic],
            head=head,
            scale_per_output=bool(scale_per_output),
            output_scale_init=float(output_scale_init),
            aux_hidden=list(aux_hidden),
            aux_lipschitz=float(aux_lipschitz),
            seed=seed,
        )
        self.in_features = in_features
        self.out_features = out_features
        self.lipschitz = lipschitz
        self.head = head
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))

        self.register_buffer("input_scale", _input_vector("input_scale", input_scale, in_features, 1.0))
        self.register_buffer("input_offset", _input_vector("input_offset", input_offset, in_features, 0.0))
        if not bool(torch.all(torch.isfinite(self.input_scale))) or bool(torch.any(self.input_scale == 0)):
            raise ConfigurationError(f"'input_scale' must be finite and non-zero. Got {input_scale!r} instead.")
        self.register_buffer("monotonic", _monotonic_vector(monotonic, in_features))
        self.has_monotonic = monotonic is not None and bool(torch.any(self.monotonic != 0))
        if self.has_monotonic:
            if head != "lipschitz":
                raise ConfigurationError(
                    f"Monotonic constraints need head='lipschitz' (the residual of Eq. 2.3 dominates a "
                    f"gradient bounded by lambda). Got head={head!r}."
                )
            if norm == "spectral":
                raise ConfigurationError(
                    "Monotonic constraints need a norm enforced exactly (any but 'spectral'); "
                    "'spectral' uses a power-iteration estimate, so monotonicity would not be guaranteed."
                )

        activation_module = make_activation(activation, group_size)
        widths = [in_features, *hidden, out_features]
        constrained = len(widths) - 1 - (1 if head == "free" else 0)
        per_layer = lipschitz ** (1.0 / constrained)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = nn.Linear(n_in, n_out)
            _init_linear_(linear, generator)
            if i < constrained:
                kind = norm if norm != "mixed" else ("l1-linf" if i == 0 else "linf-row")
                lipschitz_norm(
                    linear, kind, per_layer, variant=norm_variant, enforce=enforce, generator=generator
                )
            layers.append(linear)
            if i < len(widths) - 2:
                if hasattr(activation_module, "check_width"):
                    activation_module.check_width(n_out)
                layers.append(activation_module)
        self.body = nn.Sequential(*layers)

        if head == "scale":
            shape = (out_features,) if scale_per_output else (1,)
            self.output_scale = nn.Parameter(torch.full(shape, float(output_scale_init)))
        if head == "aux":
            self.aux = LipschitzMLP(
                in_features,
                out_features,
                aux_hidden,
                lipschitz=aux_lipschitz,
                norm=norm,
                norm_variant=norm_variant,
                enforce=enforce,
                activation=activation,
                group_size=group_size,
                input_scale=input_scale,
                input_offset=input_offset,
                seed=None if seed is None else int(seed) + 1,
            )
            with torch.no_grad():  # start as g * 1: h's output bias at one
                self.aux.linears[-1].bias.fill_(1.0)

    @property
    def linears(self) -> list[nn.Linear]:
        """The linear layers of the body, first to last."""
        return [m for m in self.body if isinstance(m, nn.Linear)]

    @property
    def activation(self) -> nn.Module | None:
        """The activation module shared by all hidden layers (None without hidden layers)."""
        for m in self.body:
            if not isinstance(m, nn.Linear):
                return m
        return None

    def transform_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`z = (x - o) \\odot a`."""
        return (x - self.input_offset.to(x.dtype)) * self.input_scale.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ConfigurationError(
                f"Expected inputs with {self.in_features} features in the last dimension. "
                f"Got shape {tuple(x.shape)} instead."
            )
        z = self.transform_inputs(x)
        out = self.body(z)
        if self.head == "scale":
            out = out * self.output_scale
        elif self.head == "aux":
            out = out * self.aux(x)
        if self.has_monotonic:
            out = out + self.lipschitz * (z @ self.monotonic.to(z.dtype)).unsqueeze(-1)
        return out

    def extra_repr(self) -> str:
        return f"lipschitz={self.lipschitz:.6g}, head={self.head!r}"


def _input_vector(name: str, values: Sequence[float] | None, n: int, default: float) -> torch.Tensor:
    if values is None:
        return torch.full((n,), default)
    vec = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if vec.shape != (n,):
        raise ConfigurationError(
            f"'{name}' must have one entry per input ({n}). Got {len(vec)} entries instead."
        )
    if not bool(torch.all(torch.isfinite(vec))):
        raise ConfigurationError(f"'{name}' must be finite. Got {list(values)!r} instead.")
    return vec


def _monotonic_vector(monotonic: Sequence[int] | None, n: int) -> torch.Tensor:
    if monotonic is None:
        return torch.zeros(n)
    values = list(monotonic)
    if len(values) != n:
        raise ConfigurationError(
            f"'monotonic' must have one constraint per input ({n}). Got {len(values)} entries instead."
        )
    if any(v not in (-1, 0, 1) for v in values):
        raise ConfigurationError(
            f"'monotonic' entries must be +1 (increasing), -1 (decreasing) or 0 (free). Got {values!r} instead."
        )
    return torch.tensor(values, dtype=torch.float32)


@torch.no_grad()
def _init_linear_(linear: nn.Linear, generator: torch.Generator | None) -> None:
    """PyTorch's default initialisation, but drawn from ``generator`` when one is given."""
    bound = 1.0 / math.sqrt(linear.in_features)
    linear.weight.uniform_(-bound, bound, generator=generator)
    linear.bias.uniform_(-bound, bound, generator=generator)
