r"""The GroupSort(2) step of the interval derivative bounds, fused in one numba pass.

:func:`lipsurrogate.bounds.local.network_derivative_intervals` states each hidden layer in torch:
after the layer's four matrix products, about thirty whole-array operations (the widened radii,
the end points, the pair decisions, the derivative hulls, the concatenations, and the next
layer's centres and radii), each a pass over ``(n, d, width)`` numbers. :func:`pair_layer` does
the same per box, one pair of units at a time, and returns what the next layer's products need.

**Same numbers.** Every output is the torch step's, operation for operation and in the same
order, in float64 (IEEE arithmetic is the same in both; no operation is contracted or reordered):

* radii ``yr = (|W| r) (1 + 2 gamma) + gamma (rows max|c| + |b|) + 1e-300`` and
  ``gr = (|W| r_k) (1 + 2 gamma) + (gamma rows) max_j|dc_kj| + 1e-300`` (Note [rigorous widening]);
* ends ``c - r``, ``c + r``; a pair (a, b) is decided when ``a_hi <= b_lo`` or ``b_hi <= a_lo``;
  min/max of the value ends; the derivatives permuted or replaced by their hull;
* the next layer's centres and radii ``(lo + hi) / 2``, ``(hi - lo) / 2`` and the row maxima
  ``max|c|`` (values) and ``max_j |dc_kj|`` (per input k) that its rounding bound uses.

NaN propagates as in torch (a NaN end makes the pair's outputs NaN), so a non-finite network
cannot yield a finite interval here that the torch step would not. Test:
``tests/bounds/test_local.py`` (the kernel equals the torch step bit for bit).
"""

from __future__ import annotations

import sys

import numpy as np

from .._compiled import HAVE_NUMBA, flag_off, parallel_kernel
from .._compiled import prange as _prange

__all__ = ["ENABLED", "disabled", "pair_layer"]

ENABLED = HAVE_NUMBA
"""Whether :func:`~lipsurrogate.bounds.local.network_derivative_intervals` uses :func:`pair_layer`
for GroupSort(2) layers (else the torch step; the same numbers)."""


def disabled():
    """Inside the block the interval bounds use the torch step (same numbers; slower)."""
    return flag_off(sys.modules[__name__], "ENABLED")


def _nan_min(x, y):
    if x != x or y != y:
        return x + y
    return x if x <= y else y


def _nan_max(x, y):
    if x != x or y != y:
        return x + y
    return x if x >= y else y


def _pair_layer_py(mc, mr, gc, gr, bias, abs_bias, rows, gamma, c_max, d_max,  # noqa: PLR0913
                   vc, vr, dc, dr, c_max_out, d_max_out):
    n, w = mc.shape
    d = gc.shape[1]
    h = w // 2
    widen = 1 + 2 * gamma
    for i in _prange(n):
        top = 0.0
        for j in range(h):
            # values: centre and radius of a and b, then the ends
            ya_c = mc[i, j] + bias[j]
            yb_c = mc[i, j + h] + bias[j + h]
            ya_r = mr[i, j] * widen + gamma * (rows[j] * c_max[i] + abs_bias[j]) + 1e-300
            yb_r = mr[i, j + h] * widen + gamma * (rows[j + h] * c_max[i] + abs_bias[j + h]) + 1e-300
            alo, ahi = ya_c - ya_r, ya_c + ya_r
            blo, bhi = yb_c - yb_r, yb_c + yb_r
            lo_min, lo_max = _nan_min(alo, blo), _nan_max(alo, blo)
            hi_min, hi_max = _nan_min(ahi, bhi), _nan_max(ahi, bhi)
            c_min, c_mx = (lo_min + hi_min) / 2, (lo_max + hi_max) / 2
            vc[i, j], vr[i, j] = c_min, (hi_min - lo_min) / 2
            vc[i, j + h], vr[i, j + h] = c_mx, (hi_max - lo_max) / 2
            top = _nan_max(top, _nan_max(abs(c_min), abs(c_mx)))
            # the derivatives: permuted where the order is decided, else the hull for both outputs
            a_le_b = ahi <= blo
            b_le_a = bhi <= alo
            for k in range(d):
                da_c, db_c = gc[i, k, j], gc[i, k, j + h]
                da_r = gr[i, k, j] * widen + gamma * rows[j] * d_max[i, k] + 1e-300
                db_r = gr[i, k, j + h] * widen + gamma * rows[j + h] * d_max[i, k] + 1e-300
                da_lo, da_hi = da_c - da_r, da_c + da_r
                db_lo, db_hi = db_c - db_r, db_c + db_r
                if a_le_b:
                    min_lo, min_hi, max_lo, max_hi = da_lo, da_hi, db_lo, db_hi
                elif b_le_a:
                    min_lo, min_hi, max_lo, max_hi = db_lo, db_hi, da_lo, da_hi
                else:
                    min_lo = _nan_min(da_lo, db_lo)
                    min_hi = _nan_max(da_hi, db_hi)
                    max_lo, max_hi = min_lo, min_hi
                dc[i, k, j], dr[i, k, j] = (min_lo + min_hi) / 2, (min_hi - min_lo) / 2
                dc[i, k, j + h], dr[i, k, j + h] = (max_lo + max_hi) / 2, (max_hi - max_lo) / 2
        c_max_out[i] = top
        for k in range(d):
            m = 0.0
            for j in range(w):
                m = _nan_max(m, abs(dc[i, k, j]))
            d_max_out[i, k] = m


if HAVE_NUMBA:
    import numba

    _nan_min = numba.njit(inline="always")(_nan_min)
    _nan_max = numba.njit(inline="always")(_nan_max)
    _kernel = parallel_kernel(_pair_layer_py)
else:  # pragma: no cover
    _kernel = None


def pair_layer(mc, mr, gc, gr, bias, abs_bias, rows, gamma: float, c_max, d_max):
    r"""One hidden GroupSort(2) layer of the interval bounds, from its matrix products to the next layer's inputs.

    Parameters
    ----------
    mc, mr : ndarray, shape (n, w)
        :math:`W c` and :math:`|W| r` of the values (float64, no bias yet).
    gc, gr : ndarray, shape (n, d, w)
        :math:`W\,dc_k` and :math:`|W|\,dr_k` of the derivatives.
    bias, abs_bias, rows : ndarray, shape (w,)
        :math:`b`, :math:`|b|` and the row sums of :math:`|W|`.
    gamma : float
        The layer's :math:`\gamma` (Note [rigorous widening] of :mod:`~lipsurrogate.bounds.local`).
    c_max, d_max : ndarray, shapes (n,) and (n, d)
        The input's :math:`\max|c|` and :math:`\max_j |dc_{kj}|` per box.

    Returns
    -------
    vc, vr, dc, dr, c_max, d_max
        Centres and radii after the layer and its GroupSort(2), and their maxima for the next layer.
    """
    n, w = mc.shape
    d = gc.shape[1]
    vc, vr = np.empty((n, w)), np.empty((n, w))
    dc, dr = np.empty((n, d, w)), np.empty((n, d, w))
    c_max_out, d_max_out = np.empty(n), np.empty((n, d))
    _kernel(mc, mr, gc, gr, bias, abs_bias, rows, float(gamma), c_max, d_max, vc, vr, dc, dr, c_max_out, d_max_out)
    return vc, vr, dc, dr, c_max_out, d_max_out
