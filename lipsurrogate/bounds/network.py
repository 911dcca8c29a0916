r"""Certified Lipschitz constants of networks, computed from the actual weights in float64.

For a chain :math:`f = W_m \sigma(\cdots \sigma(W_1 z + b_1) \cdots) + b_m` with activations that
are 1-Lipschitz in :math:`\ell_p` for :math:`p \in \{1, 2, \infty\}` (GroupSort, full sort,
ReLU), and any of these intermediate norms :math:`\|\cdot\|_p`,

.. math::

    \Big|\frac{\partial f_k}{\partial z_j}\Big| \le
    \|W_m^\top e_k\|_{p^*} \Big(\prod_{i=2}^{m-1} \|W_i\|_{p \to p}\Big) \|W_1 e_j\|_p ,

where :math:`p^*` is the dual exponent. Each choice of :math:`p` gives an upper bound, so their
minimum is one too. Per-input bounds are therefore available whatever norm the network was
trained with (certificates.md section 3). Rows and columns are the natural "per-input" and
"per-output" factors: for ``l1-column`` networks the :math:`p = 1` chain gives exactly the
column sums the norm constrains.

All norms are computed in float64 from the float32 (or float64) weights the network uses and
multiplied by a rounding margin :math:`1 + \gamma` with
:math:`\gamma = (10 \sum_i (n_i + n_{i-1}) + 100)\,u`, :math:`u = 2^{-53}`, which dominates the
accumulated relative error of the sums, products and the SVD (LAPACK's computed singular values
are within :math:`p(n) u \|W\|_2`). The result is a **certified upper bound**, never an estimate.
Only :func:`empirical_lipschitz` returns an estimate (a lower bound from sampled gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .._compiled import HAVE_NUMBA, abs_max_bits, magnitude_bits, parallel_kernel
from .._compiled import prange as _prange
from ..exceptions import CertificationError
from ..nn._utils import eval_mode
from ..nn.activations import GroupSort, pair_sort_with_abs_max_, row_abs_max
from ..nn.features import FeatureLipschitzMLP
from ..nn.mlp import LipschitzMLP

__all__ = [
    "LinearChain",
    "LipschitzBounds",
    "extract_chain",
    "lipschitz_bounds",
    "empirical_lipschitz",
    "evaluate_float64",
]

_U = 2.0**-53  # unit roundoff of float64

ROWS_PER_BLOCK = 8192
"""Points that :func:`evaluate_float64` carries through all layers at once. A block's hidden vectors
(8 MiB at 128 units) are read by the activation pass right after the matrix product wrote them.
65,536 rows at a time (64 MiB) took 1.3 to 1.7 times as long for the same arithmetic
(``benchmarks/results/certify.md``)."""


@dataclass
class LinearChain:
    r"""A network written out in float64 for certification.

    ``f(x) = out_scale * (W_m act(... act(W_1 z + b_1) ...) + b_m) + residual . z`` with
    ``z = (x - in_offset) * in_scale``; ``aux`` (another chain) multiplies the output.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: nn.Module | None
    in_scale: np.ndarray
    in_offset: np.ndarray
    out_scale: np.ndarray | None = None
    residual: np.ndarray | None = None
    aux: "LinearChain | None" = None
    input_jacobian: np.ndarray | None = None  # (features, inputs): bounds on |d phi_i / d x_j|
    feature_map: object = None  # x -> (phi(x), rounding-error bound), float64

    @property
    def in_features(self) -> int:
        """Number of inputs of the chain."""
        if self.input_jacobian is not None:
            return self.input_jacobian.shape[1]
        return self.weights[0].shape[1]

    @property
    def out_features(self) -> int:
        """Number of outputs of the chain."""
        return self.weights[-1].shape[0]

    def margin(self) -> float:
        """The relative rounding margin :math:`1 + \\gamma` of the module docstring."""
        n = sum(w.shape[0] + w.shape[1] for w in self.weights)
        return 1.0 + (10.0 * n + 100.0) * _U


@dataclass(frozen=True)
class LipschitzBounds:
    r"""Certified Lipschitz constants of a network (all numbers are **certified upper bounds**).

    Attributes
    ----------
    partial_lower, partial_upper : ndarray, shape (out, in)
        Certified interval :math:`[\ell_{kj}, u_{kj}]` containing
        :math:`\partial f_k / \partial x_j` wherever it exists (and every difference quotient
        along axis :math:`j`). For monotonic inputs the interval lies on one side of zero.
    per_input : ndarray, shape (out, in)
        :math:`\max(|\ell_{kj}|, |u_{kj}|)`: a bound on :math:`|\partial f_k / \partial x_j|`, i.e.
        :math:`|f_k(x) - f_k(y)| \le \sum_j L_{kj} |x_j - y_j|`.
    l1, l2, linf : ndarray, shape (out,)
        Lipschitz constants of each output with respect to the :math:`\ell_1`, :math:`\ell_2`
        and :math:`\ell_\infty` norms of the input.
    norm : str
        The norm the network was built with ("l1" for the l1-type weight norms, "l2" for
        spectral); :attr:`global_constant` reports the constant in that norm.
    domain : ndarray or None
        ``(in, 2)`` box on which the bounds hold (needed by the ``aux`` head); None means all of
        :math:`\mathbb{R}^d`.
    method : str
        How the numbers were obtained.
    """

    partial_lower: np.ndarray
    partial_upper: np.ndarray
    per_input: np.ndarray
    l1: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    norm: str
    domain: np.ndarray | None
    method: str
    kind: str = field(default="certified upper bound")

    @property
    def global_constant(self) -> np.ndarray:
        """Per-output Lipschitz constant in the network's own norm (certified)."""
        return self.l2 if self.norm == "l2" else self.l1

    def to_dict(self) -> dict:
        """JSON-ready summary, with the kind of each number stated."""
        return {
            "kind": self.kind,
            "norm": self.norm,
            "global_constant": self.global_constant.tolist(),
            "per_input": self.per_input.tolist(),
            "partial_lower": self.partial_lower.tolist(),
            "partial_upper": self.partial_upper.tolist(),
            "l1": self.l1.tolist(),
            "l2": self.l2.tolist(),
            "linf": self.linf.tolist(),
            "domain": None if self.domain is None else self.domain.tolist(),
            "method": self.method,
        }


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()


def extract_chain(model: nn.Module) -> LinearChain:
    """Write ``model`` out as a float64 :class:`LinearChain` (in evaluation mode, no side effects).

    Supports :class:`~lipsurrogate.nn.LipschitzMLP` (every head, parametrized or plain) and
    ``nn.Sequential`` stacks of ``nn.Linear`` with one 1-Lipschitz activation (GroupSort, ReLU or
    Tanh) in between, e.g. a network trained elsewhere; any other layer is refused with an error
    that names it.
    """
    with eval_mode(model), torch.no_grad():
        if isinstance(model, FeatureLipschitzMLP):
            chain = extract_chain(model.net)
            chain.input_jacobian = model.features.jacobian_bound()
            chain.feature_map = model.features.evaluate_float64
            return chain
        if isinstance(model, LipschitzMLP):
            linears = model.linears
            chain = LinearChain(
                weights=[_f64(l.weight) for l in linears],
                biases=[_f64(l.bias) for l in linears],
                activation=model.activation,
                in_scale=_f64(model.input_scale),
                in_offset=_f64(model.input_offset),
            )
            if model.head == "scale":
                scale = _f64(model.output_scale)
                chain.out_scale = np.broadcast_to(scale, (model.out_features,)).copy()
            if model.head == "aux":
                chain.aux = extract_chain(model.aux)
            if model.has_monotonic:
                chain.residual = model.lipschitz * _f64(model.monotonic)
            return chain
        if isinstance(model, nn.Sequential):
            return _chain_from_sequential(model)
    hints = {
        "LipschitzDeepONet": " A DeepONet is certified per input function: certify model.specialise(sensors), "
                             "an ordinary network with the same values.",
        "ConditionedLipschitzMLP": " Its certified constants come from lipsurrogate.bounds.conditioned_constants "
                                   "(interval propagation through the conditioning).",
    }
    raise CertificationError(
        f"Cannot certify a {type(model).__name__}: expected a network of lipsurrogate.nn or an nn.Sequential of "
        f"nn.Linear layers with GroupSort/ReLU/Tanh activations.{hints.get(type(model).__name__, '')}"
    )


def _chain_from_sequential(model: nn.Sequential) -> LinearChain:
    weights, biases, activation = [], [], None
    expect_linear = True
    for index, module in enumerate(model):
        if isinstance(module, nn.Linear):
            if not expect_linear:
                raise CertificationError("Two linear layers in a row: merge them or add an activation.")
            weights.append(_f64(module.weight))
            biases.append(_f64(module.bias) if module.bias is not None else np.zeros(module.out_features))
            expect_linear = False
        elif isinstance(module, (GroupSort, nn.ReLU, nn.Tanh)):
            if expect_linear:
                raise CertificationError(f"Layer {index} ({type(module).__name__}): an activation must follow a linear layer.")
            if activation is not None and repr(activation) != repr(module):
                raise CertificationError(f"Layer {index} ({module!r}): all activations of a certified chain must be "
                                         f"the same (the first was {activation!r}).")
            activation = module
            expect_linear = True
        elif isinstance(module, (nn.Identity, nn.Dropout)):
            continue  # the identity in evaluation mode, where the network is certified
        else:
            raise CertificationError(
                f"Cannot certify layer {index} ({type(module).__name__}): supported are nn.Linear and the "
                "1-Lipschitz activations GroupSort, nn.ReLU and nn.Tanh (nn.Dropout and nn.Identity are skipped)."
            )
    if not weights or expect_linear:
        raise CertificationError("A certified chain must start and end with nn.Linear.")
    n = weights[0].shape[1]
    return LinearChain(weights, biases, activation, np.ones(n), np.zeros(n))


# -- norms --------------------------------------------------------------------------------------

def _op_norm(w: np.ndarray, p: float) -> float:
    if p == 1:
        return float(np.abs(w).sum(axis=0).max())
    if p == np.inf:
        return float(np.abs(w).sum(axis=1).max())
    return float(np.linalg.svd(w, compute_uv=False)[0])


def _column_norms(w: np.ndarray, p: float) -> np.ndarray:
    return np.linalg.norm(w, ord=p, axis=0)


def _dual(p: float) -> float:
    return {1: np.inf, 2: 2, np.inf: 1}[p]


def _first_matrix(chain: LinearChain) -> np.ndarray:
    """The first layer as seen from the outer inputs x.

    ``W_1 diag(in_scale)``, or ``|W_1| J`` when the inputs reach the network through features
    with slope bounds ``J``: componentwise, |W_1 (d phi / d x_j)| <= |W_1| J[:, j], so every
    vector norm of the derivative is bounded by the same norm of that column.
    """
    first = chain.weights[0] * chain.in_scale[None, :]
    if chain.input_jacobian is not None:
        first = np.abs(first) @ chain.input_jacobian
    return first


def _body_partials(chain: LinearChain) -> np.ndarray:
    """Certified bounds on |d g_k / d x_j| for the body g (no scale, residual or aux)."""
    ws = chain.weights
    first_matrix = _first_matrix(chain)
    if len(ws) == 1:
        return np.abs(first_matrix) * chain.margin()
    best = None
    for p in (1, 2, np.inf):
        first = _column_norms(first_matrix, p)  # (in,)
        middle = float(np.prod([_op_norm(w, p) for w in ws[1:-1]])) if len(ws) > 2 else 1.0
        last = np.linalg.norm(ws[-1], ord=_dual(p), axis=1)  # (out,)
        bound = np.outer(last, first) * middle
        best = bound if best is None else np.minimum(best, bound)
    return best * chain.margin()


def _body_l2(chain: LinearChain) -> np.ndarray:
    """Certified l2 Lipschitz constants (per output) of the body composed with the input scale."""
    ws = chain.weights
    first = _first_matrix(chain)
    if len(ws) == 1:
        return np.linalg.norm(first, axis=1) * chain.margin()
    middle = float(np.prod([_op_norm(w, 2) for w in ws[1:-1]])) if len(ws) > 2 else 1.0
    return np.linalg.norm(ws[-1], axis=1) * middle * _op_norm(first, 2) * chain.margin()


def _scale_interval(lo: np.ndarray, hi: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = lo * s, hi * s
    return np.minimum(a, b), np.maximum(a, b)


def lipschitz_bounds(
    model: nn.Module, domain: Sequence[Sequence[float]] | np.ndarray | None = None
) -> LipschitzBounds:
    """Certified Lipschitz constants of ``model`` from its actual weights, in float64.

    Parameters
    ----------
    model : LipschitzMLP or nn.Sequential
        The network, certified as it computes in evaluation mode.
    domain : array-like of shape (in_features, 2), optional
        Box of inputs on which the bounds must hold. Required for the ``aux`` head, whose
        product rule needs :math:`\\sup|g|` and :math:`\\sup|h|` on the box.

    Returns
    -------
    LipschitzBounds
        Certified upper bounds (never estimates): per-input partial-derivative intervals and the
        global constants in the l1, l2 and l-inf input norms.
    """
    chain = extract_chain(model)
    box = None if domain is None else _check_domain(domain, chain.in_features)
    lo, hi = _chain_partials(chain, box)
    per_input = np.maximum(np.abs(lo), np.abs(hi))
    l2 = np.linalg.norm(per_input, axis=1)
    if chain.aux is None:
        body_l2 = _body_l2(chain)
        if chain.out_scale is not None:
            body_l2 = body_l2 * np.abs(chain.out_scale)
        if chain.residual is not None:
            body_l2 = body_l2 + np.linalg.norm(chain.residual * chain.in_scale) * chain.margin()
        l2 = np.minimum(l2, body_l2)
    norm = "l2" if _uses_spectral(model) else "l1"
    method = (
        "float64 products of layer norms (min over l1, l2, l-inf chains), per-input columns and "
        "per-output rows, times a rounding margin"
    )
    if chain.residual is not None:
        method += "; monotonic residual interval [rho - L_g, rho + L_g]"
    if chain.aux is not None:
        method += "; aux head: product rule with sup|g|, sup|h| on the domain box"
    return LipschitzBounds(
        partial_lower=lo,
        partial_upper=hi,
        per_input=per_input,
        l1=per_input.max(axis=1),
        l2=l2,
        linf=per_input.sum(axis=1),
        norm=norm,
        domain=box,
        method=method,
    )


def _uses_spectral(model: nn.Module) -> bool:
    return getattr(model, "config", {}).get("norm") == "spectral"


def _check_domain(domain, n: int) -> np.ndarray:
    box = np.asarray(domain, dtype=np.float64)
    if box.shape != (n, 2) or not np.all(np.isfinite(box)) or np.any(box[:, 1] < box[:, 0]):
        raise CertificationError(
            f"'domain' must be a finite box of shape ({n}, 2) with low <= high. Got {box.tolist()!r}."
        )
    return box


def _chain_partials(chain: LinearChain, box: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Certified interval for d f_k / d x_j of the whole chain (with heads)."""
    g = _body_partials(chain)  # w.r.t. x
    lo, hi = -g, g
    if chain.out_scale is not None:
        lo, hi = _scale_interval(lo, hi, chain.out_scale[:, None] * chain.margin())
    if chain.aux is not None:
        if box is None:
            raise CertificationError(
                "The 'aux' head multiplies two networks; its Lipschitz constant exists only on a "
                "bounded domain. Pass domain=[[low, high], ...] (one row per input)."
            )
        gx = g
        h_lo, h_hi = _chain_partials(chain.aux, box)
        hx = np.maximum(np.abs(h_lo), np.abs(h_hi))
        body_only = LinearChain(chain.weights, chain.biases, chain.activation, chain.in_scale, chain.in_offset)
        sup_g = _sup_abs(body_only, gx, box)
        sup_h = _sup_abs(chain.aux, hx, box)
        bound = (sup_g[:, None] * hx + sup_h[:, None] * gx) * chain.margin()
        return -bound, bound
    if chain.residual is not None:
        rho = (chain.residual * chain.in_scale)[None, :]
        lo = lo + rho - np.abs(rho) * 4 * _U
        hi = hi + rho + np.abs(rho) * 4 * _U
    return lo, hi


def _sup_abs(chain: LinearChain, partials_x: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Certified sup over the box of |f_k|: |f(centre)| + rounding + sum_j L_kj * halfwidth_j."""
    centre = box.mean(axis=1)
    value, err = evaluate_float64(chain, centre[None, :])
    half = (box[:, 1] - box[:, 0]) / 2
    return (np.abs(value[0]) + err[0] + partials_x @ half) * chain.margin()


# -- float64 evaluation with a rounding-error bound ----------------------------------------------

def _gamma(n: int) -> float:
    return n * _U / (1 - n * _U)


def _up(x: float, k: int = 4) -> float:
    """``x`` (non-negative, computed with at most ``k`` roundings) inflated to an upper bound."""
    return float(x) * (1.0 + 2 * k * _U) + 2.0**-1074


@dataclass(frozen=True)
class _LayerConstants:
    """Per-layer scalars of the fast rounding bound (each rounded upwards)."""

    weight: torch.Tensor  # (out, in) float64
    bias: torch.Tensor  # (out,)
    row_sums: np.ndarray  # (out,) upper bounds on sum_i |W_oi|
    row_max: float  # upper bound on max_o sum_i |W_oi|  (= ||W||_inf)
    bias_max: float  # max |b|
    gamma: float  # upper bound on gamma_{n+1} = (n+1) u / (1 - (n+1) u)
    underflow: float  # (n + 1) * 2^-1074: the absolute error gradual underflow can add


def _layer_constants(w: np.ndarray, b: np.ndarray) -> _LayerConstants:
    n = w.shape[1]
    if (n + 1) * _U >= 0.01:
        raise CertificationError(f"Layers of {n} inputs are too wide for the float64 rounding bound.")
    rows = np.abs(w).sum(axis=1) * (1.0 + 2 * (n + 1) * _U)  # a sum of n non-negative terms: <= gamma_n relative
    return _LayerConstants(
        weight=torch.from_numpy(np.ascontiguousarray(w)), bias=torch.from_numpy(np.ascontiguousarray(b)),
        row_sums=rows, row_max=_up(rows.max(initial=0.0)), bias_max=float(np.abs(b).max(initial=0.0)),
        gamma=_up(_gamma(n + 1)), underflow=(n + 1) * 2.0**-1074)


def _chain_constants(chain: LinearChain) -> list[_LayerConstants]:
    key = tuple(id(w) for w in chain.weights) + tuple(id(b) for b in chain.biases)
    cached = getattr(chain, "_fast_constants", None)
    if cached is None or cached[0] != key:
        cached = (key, [_layer_constants(w, b) for w, b in zip(chain.weights, chain.biases)])
        chain._fast_constants = cached
    return cached[1]


def evaluate_float64(chain: LinearChain, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Evaluate ``chain`` at ``x`` (shape (n, in)) in float64 with a bound on the rounding error.

    Returns ``(values, errors)``, both (n, out): the float64 result and a **certified bound** on
    its distance to the exact-arithmetic value of the network with these weights.

    Every affine layer is one float64 matrix product (BLAS through torch); the rounding is
    bounded a priori, per point, in the :math:`\ell_\infty` norm of the hidden vector
    (``theory/lipschitz-networks.md`` section 4): with :math:`\epsilon` a bound on the error of
    the layer's input :math:`h`, :math:`R = \|W\|_\infty` (largest row sum of :math:`|W|`),
    :math:`B = \max|b|` and :math:`m = \max_i |\hat h_i|`,

    .. math::

        \|\mathrm{fl}(W \hat h + b) - (W h + b)\|_\infty \le R\, \epsilon
        + \gamma_{n+1} (R\, m + B) + (n + 1)\, 2^{-1074},

    from Higham's :math:`|\mathrm{fl}(Wx + b) - (Wx + b)| \le \gamma_{n+1}(|W||x| + |b|)` (any
    summation order, with fused multiply-adds too; the last term covers gradual underflow).
    GroupSort and ReLU are evaluated exactly and are 1-Lipschitz in :math:`\ell_\infty`, so
    :math:`\epsilon` passes through them. The last layer keeps the row sums per output.

    The row maxima are exact integer maxima of the bit patterns and the recursion one compiled
    loop per layer (where numba is installed): the same numbers as the torch expressions, bit for
    bit, in 0.8-0.9x the time of stop 34's evaluation here (``theory/cell-bounds.md`` section 12).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != chain.in_features:
        raise CertificationError(
            f"Expected points of shape (n, {chain.in_features}). Got {x.shape} instead."
        )
    if len(x) <= ROWS_PER_BLOCK:
        return _evaluate_block(chain, x)
    values = errors = None
    for start in range(0, len(x), ROWS_PER_BLOCK):
        v, e = _evaluate_block(chain, x[start : start + ROWS_PER_BLOCK])
        if values is None:
            values, errors = np.empty((len(x), v.shape[1])), np.empty((len(x), e.shape[1]))
        values[start : start + len(v)], errors[start : start + len(v)] = v, e
    return values, errors


def _evaluate_block(chain: LinearChain, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evaluate_float64` on one block of rows (already validated)."""
    x_err = np.zeros_like(x)
    if chain.feature_map is not None:
        x, x_err = chain.feature_map(x)
    if np.all(chain.in_offset == 0) and np.all(chain.in_scale == 1):
        z, z_err = x, x_err  # x - 0 and x * 1 are exact (the Fourier-feature networks)
    else:
        diff = x - chain.in_offset
        z = diff * chain.in_scale
        # two roundings: subtraction then product (componentwise; the inputs are few)
        z_err = (x_err + np.abs(diff) * _U) * np.abs(chain.in_scale) + np.abs(z) * _U * (1 + _U)
    h = torch.from_numpy(np.ascontiguousarray(z))
    # max_i |h_i| (exact) and the l-inf error of h; after a GroupSort(2) layer the maxima come out of
    # the activation's own pass (a sort permutes the row)
    m, eps = _input_maxima(h.numpy(), z_err)
    m, eps = torch.from_numpy(m), torch.from_numpy(eps * (1 + 2 * _U))
    layers = _chain_constants(chain)
    with torch.no_grad():
        for i, c in enumerate(layers):
            h = torch.addmm(c.bias, h, c.weight.T)
            if i < len(layers) - 1:
                eps = _next_error(eps, m, c.row_max, c.gamma, c.bias_max, c.underflow)
                h, eps, m = _activation_with_error(chain.activation, h, eps)
            else:  # per output: the exact row sums of this layer
                eps = torch.stack([_next_error(eps, m, float(r), c.gamma, float(abs(b)), c.underflow)
                                   for r, b in zip(c.row_sums, c.bias.numpy())], dim=1)
    out, out_err = h.numpy(), eps.numpy()
    if chain.out_scale is not None:
        out = out * chain.out_scale
        out_err = out_err * np.abs(chain.out_scale) * (1 + 2 * _U) + np.abs(out) * _U * 2
    if chain.aux is not None:
        a, a_err = evaluate_float64(chain.aux, x)
        prod = out * a
        out_err = np.abs(out) * a_err + np.abs(a) * out_err + out_err * a_err + np.abs(prod) * _U * 2
        out = prod
    if chain.residual is not None:
        r = z @ chain.residual
        r_err = z_err @ np.abs(chain.residual) + _gamma(len(chain.residual)) * (np.abs(z) @ np.abs(chain.residual))
        out = out + r[:, None]
        out_err = out_err + r_err[:, None] + np.abs(out) * _U * 2
    return out, out_err * (1 + 8 * _U)


def _input_maxima(z: np.ndarray, z_err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``max_j |z_j|`` and ``max_j z_err_j`` (0 for no columns; NaN where a NaN is), exactly."""
    if (_INPUT_MAXIMA is not None and z.shape[1] and z.shape == z_err.shape and z.dtype == z_err.dtype == np.float64
            and z.flags.c_contiguous and z_err.flags.c_contiguous):
        m, top_err = np.empty(len(z)), np.empty(len(z))
        _INPUT_MAXIMA(z.view(np.int64), z_err.view(np.int64), m.view(np.int64), top_err.view(np.int64))
        return m, top_err
    return row_abs_max(torch.from_numpy(z)).numpy(), z_err.max(axis=1, initial=0.0)


def _next_error(eps: torch.Tensor, m: torch.Tensor, row_max: float, gamma: float, bias_max: float,
                underflow: float) -> torch.Tensor:
    """The l-inf error bound after an affine layer (:func:`evaluate_float64`'s recursion), per row:
    ``(R eps + gamma (R m + B)) (1 + 8u) + underflow``, in this order of operations either way."""
    if _NEXT_ERROR is not None:
        out = np.empty(len(eps))
        _NEXT_ERROR(eps.numpy(), m.numpy(), row_max, gamma, bias_max, 1 + 8 * _U, underflow, out)
        return torch.from_numpy(out)
    return (row_max * eps + gamma * (row_max * m + bias_max)) * (1 + 8 * _U) + underflow


_MAGNITUDE = magnitude_bits(np.float64)[1]


def _input_maxima_rows(z_bits, err_bits, m_bits, err_top_bits):  # pragma: no cover - compiled by numba
    """Row maxima of ``|z|`` and of ``|z_err|`` on the bit patterns (Note [row maxima on the bits] of
    :class:`~lipsurrogate.nn.GroupSort`; the errors are non-negative, so ``|z_err| = z_err``)."""
    n, width = z_bits.shape
    for i in _prange(n):
        m_bits[i] = abs_max_bits(z_bits, i, width, _MAGNITUDE)
        err_top_bits[i] = abs_max_bits(err_bits, i, width, _MAGNITUDE)


def _next_error_rows(eps, m, row_max, gamma, bias_max, widen, underflow, out):  # pragma: no cover - compiled
    for i in range(len(eps)):
        out[i] = (row_max * eps[i] + gamma * (row_max * m[i] + bias_max)) * widen + underflow


if HAVE_NUMBA:
    import numba

    _INPUT_MAXIMA = parallel_kernel(_input_maxima_rows)
    _NEXT_ERROR = numba.njit(cache=True, nogil=True)(_next_error_rows)
else:  # pragma: no cover
    _INPUT_MAXIMA = _NEXT_ERROR = None


def _activation_with_error(activation, y: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The activation of ``y``, the l-inf error bound after it (the activations are 1-Lipschitz), and
    each row's largest absolute value after it (exact), which the next layer's rounding bound uses."""
    if isinstance(activation, nn.ReLU):
        h = torch.clamp_min(y, 0.0)
        return h, eps, row_abs_max(h)
    if isinstance(activation, nn.Tanh):
        # tanh is 1-Lipschitz: the input error passes through. torch's float64 tanh (SLEEF's
        # 1-ulp kernel or libm) is within a few ulps; we allow 32 ulps of the value
        # (ulp(v) <= 2u|v|) plus the smallest subnormal (theory/cell-bounds.md section 9)
        values = torch.tanh(y)
        top = values.abs().amax(dim=1)
        return values, eps + 64 * _U * top + 2.0**-1074, top
    if isinstance(activation, GroupSort):
        if activation.group_size == 2 and y.dim() == 2:  # y is this evaluation's own buffer
            h, top = pair_sort_with_abs_max_(y)
            return h, eps, top
        h = activation.exact(y, out=torch.empty_like(y))
        return h, eps, row_abs_max(h)
    raise CertificationError(f"Unsupported activation {activation!r} in a certified chain.")


def empirical_lipschitz(model: nn.Module, points: torch.Tensor) -> np.ndarray:
    """**Estimate** (a lower bound): the largest |d f_k / d x_j| seen at ``points``, shape (out, in).

    Uses autograd in float64 on a copy of the model; never use it as a certificate.
    """
    import copy

    probe = copy.deepcopy(model).double().eval()
    x = points.detach().to(torch.float64).clone().requires_grad_(True)
    out = probe(x)
    grads = []
    for k in range(out.shape[-1]):
        (g,) = torch.autograd.grad(out[..., k].sum(), x, retain_graph=True)
        grads.append(g.abs().amax(dim=0))
    return torch.stack(grads).numpy()
