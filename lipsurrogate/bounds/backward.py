r"""Backward (CROWN-style) linear bounds on a GroupSort network's derivatives over a box.

The forward affine forms (:mod:`~lipsurrogate.bounds.affine`) must pick one symmetric relaxation
per undecided GroupSort pair before they know how the pair's tangent will be used downstream;
their radii then travel through :math:`|W|`. Going backward from the output, the coefficient
that multiplies each pair's tangent is known, and the relaxation can be chosen for its sign.
``theory/cell-bounds.md`` section 14 has the argument; in short, along input :math:`x_k` the
tangent :math:`\dot v` of every layer obeys

.. math::

    \dot z_l = W_l \dot v_{l-1}, \qquad
    \dot v_l = (\dot a - t,\; \dot b + t), \quad t = H(a - b)\,(\dot a - \dot b),

with :math:`(a, b)` the two halves of :math:`z_l` and H the step (any value in [0, 1] at ties:
every Clarke derivative is covered). For a coefficient vector :math:`(\alpha, \beta)` on
:math:`\dot v_l` and :math:`\gamma = \beta - \alpha`,
:math:`\alpha \cdot (\dot a - t) + \beta \cdot (\dot b + t) = \alpha \cdot \dot a + \beta \cdot \dot b + \gamma \cdot t`,
and on the box, with :math:`q = a - b \in [q_l, q_u]` and :math:`e = \dot a - \dot b \in [e_l, e_u]`
(certified intervals from the forward forms):

* decided pairs (:math:`q_l \ge 0` or :math:`q_u \le 0`): :math:`t = e` or :math:`t = 0` exactly;
* undecided pairs: :math:`\gamma t \le \mathrm{relu}(\gamma e) \le \lambda \gamma e + \mu` for
  :math:`\gamma e \in [y_l, y_u]`, any :math:`\lambda \in [0, 1]` and
  :math:`\mu = \max(0, -\lambda y_l, (1 - \lambda) y_u)` (the chord :math:`\lambda = y_u / (y_u - y_l)`
  when :math:`y_l < 0 < y_u`).

So :math:`\alpha \cdot \dot v_l \le c \cdot \dot z_l + \sum \mu` with
:math:`c = (\alpha + \lambda\gamma, \beta - \lambda\gamma)`, and :math:`c \cdot \dot z_l = (W_l^T c) \cdot \dot v_{l-1}`:
one vector-matrix product per layer. At the input the tangent of the features is an affine form
:math:`D_k + H_k \delta \pm \sigma_k` in :math:`\delta = x - x_c`, so the result is a **linear**
bound :math:`\partial_k f(x) \le C_k + g_k \cdot \delta` over the box (and a lower one from
:math:`-f`), which keeps its cancellation with the reference's form in
:func:`~lipsurrogate.bounds.affine.error_slopes`.

Every floating-point step is a computed number used as an exact choice; what differs from the
exact algebra (the coefficients' rounding, Higham's :math:`\gamma_n` of each product with
:math:`W_l`, the sums) is bounded by the rounding bound times the certified magnitude of the tangent
it multiplies and added to the constant (section 14). The bounds are **certified** for the
computed float64 numbers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from .._compiled import HAVE_NUMBA, flag_off, parallel_kernel
from .._compiled import prange as _prange

__all__ = ["LayerRanges", "TangentBounds", "disabled", "layer_ranges", "tangent_bounds"]

ACTIVE = True
"""Whether :func:`~lipsurrogate.bounds.affine.error_slopes` uses these bounds (see :func:`disabled`)."""


def disabled():
    """Inside the block the error's slopes come from the forward forms alone (the certifier before
    2026-12-07; benchmarks and tests compare the two). Both ways are certified."""
    return flag_off(sys.modules[__name__], "ACTIVE")


_U = 2.0**-53
_TINY = 1e-300


def _gamma(n: int) -> float:
    """Higham's :math:`\\gamma_n = n u / (1 - n u)` for float64, rounded up generously."""
    return 1.01 * n * _U / (1 - n * _U)


@dataclass(frozen=True)
class LayerRanges:
    """Certified ranges at one hidden layer, for every box (from the forward forms).

    Attributes
    ----------
    q_lower, q_upper : ndarray, shape (n, h)
        :math:`a - b` of every GroupSort pair (values).
    e_lower, e_upper : ndarray, shape (d, n, h)
        :math:`\\partial_k a - \\partial_k b` of every pair, per input k.
    """

    q_lower: np.ndarray
    q_upper: np.ndarray
    e_lower: np.ndarray
    e_upper: np.ndarray


def layer_ranges(P: torch.Tensor, R: torch.Tensor, s: np.ndarray) -> LayerRanges:  # noqa: N803
    r"""Intervals of the pair differences :math:`q = a - b` and :math:`\partial_k a - \partial_k b` from packed forms.

    ``P[n, r, b, unit]``: row r = 0 the value, r = 1..d the derivatives; column b = 0 the centre,
    b = 1..d the generators; ``R[n, r, unit]`` the radii (``affine._pack``'s layout), in the forms'
    dtype (float32 or float64, unit roundoff u). The difference of two forms is enclosed by its own
    form (generators subtract): :math:`Q_c \pm (\sum_j |Q_j| s_j + R_a + R_b)`. Each entry of Q is one
    correctly rounded subtraction (error at most :math:`u|Q|`) and the sums have at most d + 3
    terms, so a margin of :math:`8(d + 3)u(|Q_c| + \text{spread})` covers the evaluation; s is
    rounded up to the dtype first (a larger box only widens the enclosure).
    """
    h = P.shape[-1] // 2
    d = P.shape[2] - 1
    u = _U if P.dtype == torch.float64 else 2.0**-24
    tiny = _TINY if P.dtype == torch.float64 else 1e-30
    half = torch.from_numpy(np.asarray(s, dtype=np.float64))
    half = half if P.dtype == torch.float64 else half.to(P.dtype) * (1 + 4 * u)
    Q = P[..., :h] - P[..., h:]
    spread = torch.einsum("nrbw,nb->nrw", Q[:, :, 1:].abs(), half) + R[..., :h] + R[..., h:]
    centre = Q[:, :, 0]
    reach = spread + (8 * (d + 3) * u) * (centre.abs() + spread) + tiny
    lower, upper = (centre - reach).double().numpy(), (centre + reach).double().numpy()
    return LayerRanges(lower[:, 0], upper[:, 0], np.moveaxis(lower[:, 1:], 1, 0), np.moveaxis(upper[:, 1:], 1, 0))


@dataclass(frozen=True)
class TangentBounds:
    r"""Linear bounds :math:`L_k + g^L_k \cdot \delta \le \partial_k f(x) \le U_k + g^U_k \cdot \delta` on boxes.

    All arrays have a leading box axis n; ``*_centre`` (n, d), ``*_slope`` (n, d, d) with
    ``[i, k, j]`` multiplying :math:`\delta_j = x_j - x_{c,j}`. **Certified** for almost every x
    in each box (every rounding error is inside the constants).
    """

    lower_centre: np.ndarray
    lower_slope: np.ndarray
    upper_centre: np.ndarray
    upper_slope: np.ndarray

    def intervals(self, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Certified ``(lower, upper)`` of each :math:`\\partial_k f` over the boxes of half-widths ``half``."""
        return _concretise(self.lower_centre, self.lower_slope, half, -1), \
            _concretise(self.upper_centre, self.upper_slope, half, 1)


def _concretise(centre, slope, half, sign):
    """``centre + sign * sum_j |slope_j| half_j`` rounded outwards (the extreme of the linear bound over the box)."""
    reach = np.einsum("nkj,nj->nk", np.abs(slope), half)
    margin = 4 * (half.shape[1] + 2) * _U * (np.abs(centre) + reach) + _TINY
    return centre + sign * (reach + margin)


def tangent_bounds(weights, records, inputs, half: np.ndarray, input_bound: np.ndarray,
                   boxes: np.ndarray | None = None) -> TangentBounds:
    r"""Backward linear bounds of every :math:`\partial_k f` of a GroupSort(2) chain on boxes.

    Parameters
    ----------
    weights : list of ndarray
        The chain's float64 weight matrices :math:`W_1, \dots, W_m` (``W_m`` of one row).
    records : list of LayerRanges
        One per hidden layer, in order (:func:`layer_ranges` of the forward forms).
    inputs : (D, H, sigma)
        The first layer's input tangents as forms: ``D[n, unit, k]``, ``H[n, unit, k, j]``,
        ``sigma[n, unit, k]`` (``affine._tangent_inputs``).
    half : ndarray, shape (n, d)
        Half-widths of the boxes.
    input_bound : ndarray, shape (d, width of the first layer)
        A certified bound on :math:`|\partial_k v_0|`, the input tangents' magnitudes, valid on
        every box (e.g. over the whole certified domain:
        :func:`~lipsurrogate.bounds.affine.input_tangent_bound`). It only scales the rounding
        terms, and since it does not depend on the batch, each box's bounds depend on that box
        alone.
    boxes : ndarray of int, optional
        Which boxes of ``records`` the bounds are for (``inputs`` and ``half`` hold those boxes
        only, in this order); default all of them. The compiled step reads the records' rows
        through this index instead of copies of them (the same numbers).

    Returns
    -------
    TangentBounds

    Notes
    -----
    All 2d bounds (upper and lower, every input) run as one batch: the coefficient vectors are
    stacked as ``(2, d, n, width)`` so that each layer is one matrix product.
    """
    D, H, sigma = inputs  # noqa: N806
    n, _, d = D.shape
    abs_d = np.abs(D)
    h_reach = np.einsum("nwkj,nj->nwk", np.abs(H), half)  # |H_k| half per unit, box and input k
    input_bound = np.asarray(input_bound, dtype=np.float64)
    if input_bound.shape != (d, D.shape[1]):
        raise ValueError(f"'input_bound' must have shape {(d, D.shape[1])}. Got {input_bound.shape}.")
    magnitudes = _tangent_magnitudes(weights, input_bound)  # (layers, d, w): |dz| bounds
    y = np.stack([np.broadcast_to(sign * weights[-1][0], (d, n, weights[-1].shape[1])) for sign in (1.0, -1.0)])
    weights_t = [torch.from_numpy(np.ascontiguousarray(w, dtype=np.float64)) for w in weights]
    const = np.zeros((2, d, n))
    gather = boxes is not None  # the numpy step takes copies of those boxes' ranges
    boxes = np.asarray(boxes, dtype=np.int64) if gather else np.arange(n, dtype=np.int64)
    if boxes.shape != (n,):
        raise ValueError(f"'boxes' must name one box of the records per box of 'inputs' ({n}). Got shape {boxes.shape}.")
    for i in range(len(weights) - 2, -1, -1):
        r = records[i]
        h = r.q_lower.shape[1]
        w = weights[i]
        below = magnitudes[i - 1] if i > 0 else input_bound  # (d, width of the layer below)
        below = _pair_hull(below) if i > 0 else below
        rows = np.abs(w) @ below.T  # (w, d): bounds sum_j |W_oj| |dv_j| per output unit o and input k
        if ENABLED:
            c, terms, c_rows = _relax_kernel(y.reshape(2 * d, n, -1), r.q_lower, r.q_upper, r.e_lower, r.e_upper,
                                             magnitudes[i], np.ascontiguousarray(rows.T), d, boxes)
            c, terms, c_rows = c.reshape(2, d, n, -1), terms.reshape(2, d, n), c_rows.reshape(2, d, n)
        else:
            if gather:
                r = LayerRanges(r.q_lower[boxes], r.q_upper[boxes], r.e_lower[:, boxes], r.e_upper[:, boxes])
            c, terms, c_rows = _relax(y[..., :h], y[..., h:], r, magnitudes[i][None, :, None, :], rows)
        # on dv_{i-1}; |exact - y| <= gamma |c| |W| for any summation order: torch's float64 GEMM
        # uses torch's threads (numpy's BLAS runs one thread inside the certifier)
        y = torch.mm(torch.from_numpy(c.reshape(-1, c.shape[-1])), weights_t[i]).numpy().reshape(2, d, n, -1)
        product_err = _gamma(max(w.shape) + 2) * c_rows
        const = const + (terms + product_err) * (1 + 4 * (2 * h + 4) * _U)
    # at the features: y . (D_k + H_k delta +- sigma_k)
    centre = np.einsum("sknw,nwk->skn", y, D)
    # y . H_k as one batched (1 x w) @ (w x d) product per box and input (einsum took 4.7x as long here)
    lin = np.matmul(y[..., None, :], np.ascontiguousarray(H.transpose(2, 0, 1, 3))[None])[..., 0, :]
    m = y.shape[-1] + 2
    ay = np.abs(y)
    # |y| . (|H_k| half): the sum over j first (d terms), then over the w units. Sums of
    # non-negative terms in any order: relative error at most (d + w + 1) u, which the
    # (1 + 4 m u) margin below covers (m = w + 2) as long as d <= 3 w + 7
    err = _gamma(m) * (np.einsum("sknw,nwk->skn", ay, abs_d) + (ay * h_reach.transpose(2, 0, 1)[None]).sum(axis=-1))
    const = const + (np.einsum("sknw,nwk->skn", ay, sigma) + err) * (1 + 4 * m * _U)
    top = centre + const
    top = top + 4 * _U * (np.abs(centre) + const) + _TINY  # the sign * f' <= top + lin . delta of every box
    up_c, lo_c = np.moveaxis(top[0], 0, 1), np.moveaxis(top[1], 0, 1)  # (n, d)
    up_g, lo_g = np.moveaxis(lin[0], 0, 1), np.moveaxis(lin[1], 0, 1)  # (n, d, d)
    return TangentBounds(-lo_c, -lo_g, up_c, up_g)


_RELAX_ROWS_PER_TASK = 256
"""Rows (bound, box) per parallel task of :func:`_relax_kernel`, each task with its own scratch rows."""


def _relax_kernel(y, q_lower, q_upper, e_lower, e_upper, dz, rows_t, d, boxes):  # pragma: no cover - compiled
    """:func:`_relax` one number at a time (same formulas, same order of operations per element),
    in parallel over (bound, box); ``rows_t`` is ``rows`` transposed, (d, w). Box ``i`` of ``y``
    reads the ranges of box ``boxes[i]`` of ``q_*`` and ``e_*`` (which may hold more boxes).

    Note [selects, then sums in order]
        Which pairs are decided varies from unit to unit, so branches on it mispredict and keep the
        loop scalar. The elements are computed with selects instead, each ``min``/``max`` written
        as numba's builtins evaluate them (``min(a, b) = b if b < a else a``, ``max(a, b) = b if
        b > a else a``: the same value, NaN and signed zeros included), into scratch rows; the
        loop vectorises. The three sums then run in a second loop over the units in order, adding
        the same terms in the same order as before: the results are the same bit for bit (tested
        against the scalar loop with branches that this replaced; 2x faster on 20,000 boxes)."""
    s_count, n, w = y.shape
    h = w // 2
    c = np.empty_like(y)
    terms = np.zeros((s_count, n))
    c_rows = np.zeros((s_count, n))
    total = s_count * n
    for task in _prange((total + _RELAX_ROWS_PER_TASK - 1) // _RELAX_ROWS_PER_TASK):
        mu_row = np.empty(h)
        err_row = np.empty(h)
        rows_row = np.empty(h)
        for idx in range(task * _RELAX_ROWS_PER_TASK, min(total, (task + 1) * _RELAX_ROWS_PER_TASK)):
            sk = idx // n
            i = idx - sk * n
            k = sk % d
            box = boxes[i]
            for j in range(h):
                alpha = y[sk, i, j]
                beta = y[sk, i, j + h]
                g = beta - alpha
                el = e_lower[k, box, j]
                eu = e_upper[k, box, j]
                p1 = g * el
                p2 = g * eu
                abs_el = abs(el)
                abs_eu = abs(eu)
                eta = 3 * _U * abs(g) * (abs_eu if abs_eu > abs_el else abs_el) + _TINY
                yl = (p2 if p2 < p1 else p1) - eta
                yu = (p2 if p2 > p1 else p1) + eta
                span = yu - yl
                ratio = yu / (span if span > 0 else 1.0)
                ratio = 0.0 if 0.0 > ratio else ratio
                chord = 1.0 if 1.0 < ratio else ratio
                lam_open = 1.0 if yl >= 0 else (0.0 if yu <= 0 else chord)
                low_side = -lam_open * yl
                high_side = (1 - lam_open) * yu
                larger = high_side if high_side > low_side else low_side
                mu_open = (larger if larger > 0.0 else 0.0) * (1 + 4 * _U)
                up = q_lower[box, j] >= 0
                down = q_upper[box, j] <= 0
                lam = 1.0 if up else (0.0 if down else lam_open)
                mu = 0.0 if (up or down) else mu_open
                lg = lam * g
                ca = alpha + lg
                cb = beta - lg
                c[sk, i, j] = ca
                c[sk, i, j + h] = cb
                err = 4 * _U * (abs(alpha) + abs(beta) + 2 * abs(lg))
                mu_row[j] = mu
                err_row[j] = err * (dz[k, j] + dz[k, j + h])
                rows_row[j] = abs(ca) * rows_t[k, j] + abs(cb) * rows_t[k, j + h]
            acc_mu = 0.0
            acc_err = 0.0
            acc_rows = 0.0
            for j in range(h):
                acc_mu += mu_row[j]
                acc_err += err_row[j]
                acc_rows += rows_row[j]
            terms[sk, i] = acc_mu + acc_err
            c_rows[sk, i] = acc_rows
    return c, terms, c_rows


if HAVE_NUMBA:  # without numba the numpy step is used
    _relax_kernel = parallel_kernel(_relax_kernel)

ENABLED = HAVE_NUMBA
"""Whether :func:`tangent_bounds` uses the compiled relaxation step (else the numpy one; same formulas)."""


def _relax(alpha, beta, r: LayerRanges, dz, rows):
    r"""One pair layer backwards (section 14): coefficients on :math:`\dot z`, the constants added and
    :math:`\sum_o |c_o|\,\mathrm{rows}_{ok}` (the product's rounding bound, before :math:`\gamma`).

    ``alpha``, ``beta``: the coefficients on the pair's two outputs, shape (2, d, n, h); ``dz``:
    bounds on :math:`|\partial_k z|` of the layer's units, broadcastable to (2, d, n, w); ``rows``
    (w, d): :math:`\sum_j |W_{oj}|\,|\partial_k v_j|` bounds per unit o of the layer.
    """
    h = alpha.shape[-1]
    g = beta - alpha  # |gamma - g| <= u |g| for the exact gamma = beta - alpha
    el, eu = r.e_lower[None], r.e_upper[None]
    p1, p2 = g * el, g * eu
    eta = 3 * _U * np.abs(g) * np.maximum(np.abs(el), np.abs(eu)) + _TINY
    yl, yu = np.minimum(p1, p2) - eta, np.maximum(p1, p2) + eta  # gamma e in [yl, yu]
    up, down = r.q_lower >= 0, r.q_upper <= 0
    undecided = ~(up | down)
    chord = np.clip(yu / np.where(yu - yl > 0, yu - yl, 1.0), 0.0, 1.0)
    lam = np.where(undecided, np.where(yl >= 0, 1.0, np.where(yu <= 0, 0.0, chord)), up.astype(np.float64))
    mu = np.where(undecided, np.maximum(0.0, np.maximum(-lam * yl, (1 - lam) * yu)) * (1 + 4 * _U), 0.0)
    lg = lam * g
    c = np.concatenate([alpha + lg, beta - lg], -1)
    # the exact coefficients alpha + lam gamma, beta - lam gamma differ from the computed ones by at
    # most u |lam g| (gamma vs g) + u |lam g| (the product) + u |c| (the sum), times |dz| on the box
    err = 4 * _U * (np.abs(alpha) + np.abs(beta) + 2 * np.abs(lg))
    terms = mu.sum(-1) + (err * (dz[..., :h] + dz[..., h:])).sum(-1)
    c_rows = np.einsum("sknw,wk->skn", np.abs(c), rows)
    return c, terms, c_rows


def _tangent_magnitudes(weights, feature_abs):
    r"""Bounds on :math:`|\partial_k z_l|` of every unit of every hidden layer, valid on all the boxes.

    ``feature_abs`` (d, w_0) bounds the input tangents; :math:`|\dot z_l| \le |W_l|\,|\dot v_{l-1}|`
    and a pair's output tangents lie in the hull of its inputs'. Crude (they only scale the
    rounding terms, which are :math:`O(u)`), rounded up by :math:`(1 + \gamma)` per layer.
    """
    out = []
    below = feature_abs
    for w in weights[:-1]:
        z = (below @ np.abs(w).T) * (1 + _gamma(w.shape[1] + 2)) + _TINY
        out.append(z)
        below = _pair_hull(z)
    return out


def _pair_hull(tangent_abs: np.ndarray) -> np.ndarray:
    """A GroupSort pair's output tangents lie in the hull of its input tangents: max of the two bounds, both outputs."""
    h = tangent_abs.shape[-1] // 2
    m = np.maximum(tangent_abs[..., :h], tangent_abs[..., h:])
    return np.concatenate([m, m], -1)
