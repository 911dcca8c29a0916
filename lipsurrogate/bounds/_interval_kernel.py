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

The loops are written so that the compiler can vectorise them (the stop-35 rewrite, 2.9x faster
on 8192 boxes of width 128 in 3-D): min and max are selects instead of branches, the pair
decisions of a box are kept in a small row, the derivative loop runs along the units (contiguous
in memory), and the row maxima are integer maxima of the bit patterns (Note [row maxima on the
bits] of :class:`lipsurrogate.nn.GroupSort`: exactly ``max |x|``, NaN where a NaN is). None of
this changes an operation on a number, so the results are the same bit for bit as before.

NaN propagates as in torch (a NaN end makes the pair's outputs NaN), so a non-finite network
cannot yield a finite interval here that the torch step would not. Test:
``tests/bounds/test_local.py`` (the kernel equals the torch step bit for bit).
"""

from __future__ import annotations

import sys

import numpy as np

from .._compiled import HAVE_NUMBA, abs_max_bits, flag_off, magnitude_bits, parallel_kernel
from .._compiled import prange as _prange

__all__ = ["ENABLED", "disabled", "pair_layer"]

ENABLED = HAVE_NUMBA
"""Whether :func:`~lipsurrogate.bounds.local.network_derivative_intervals` uses :func:`pair_layer`
for GroupSort(2) layers (else the torch step; the same numbers)."""


def disabled():
    """Inside the block the interval bounds use the torch step (same numbers; slower)."""
    return flag_off(sys.modules[__name__], "ENABLED")


def _nan_min(x, y):
    """min(x, y), or NaN (x + y) where either is NaN, as ``torch.minimum``; branch-free (a select)."""
    smaller = x if x <= y else y
    return x + y if (x != x) | (y != y) else smaller


def _nan_max(x, y):
    """max(x, y), or NaN (x + y) where either is NaN, as ``torch.maximum``; branch-free (a select)."""
    larger = x if x >= y else y
    return x + y if (x != x) | (y != y) else larger


_MAGNITUDE = magnitude_bits(np.float64)[1]  # every bit of a float64 but the sign
_BOXES_PER_TASK = 64  # boxes per parallel task: one scratch pair of decision rows each


def _pair_layer_py(mc, mr, gc, gr, bias, abs_bias, rows, gamma, c_max, d_max,  # noqa: PLR0913
                   vc, vr, dc, dr, vc_bits, dc_bits, c_max_bits, d_max_bits):
    n, w = mc.shape
    d = gc.shape[1]
    h = w // 2
    widen = 1 + 2 * gamma
    for task in _prange((n + _BOXES_PER_TASK - 1) // _BOXES_PER_TASK):
        a_le_b = np.empty(h, dtype=np.bool_)
        b_le_a = np.empty(h, dtype=np.bool_)
        for i in range(task * _BOXES_PER_TASK, min(n, (task + 1) * _BOXES_PER_TASK)):
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
                vc[i, j], vr[i, j] = (lo_min + hi_min) / 2, (hi_min - lo_min) / 2
                vc[i, j + h], vr[i, j + h] = (lo_max + hi_max) / 2, (hi_max - lo_max) / 2
                a_le_b[j] = ahi <= blo
                b_le_a[j] = bhi <= alo
            c_max_bits[i] = abs_max_bits(vc_bits, i, w, _MAGNITUDE)
            # the derivatives: permuted where the order is decided, else the hull for both outputs
            for k in range(d):
                for j in range(h):
                    da_c, db_c = gc[i, k, j], gc[i, k, j + h]
                    da_r = gr[i, k, j] * widen + gamma * rows[j] * d_max[i, k] + 1e-300
                    db_r = gr[i, k, j + h] * widen + gamma * rows[j + h] * d_max[i, k] + 1e-300
                    da_lo, da_hi = da_c - da_r, da_c + da_r
                    db_lo, db_hi = db_c - db_r, db_c + db_r
                    hull_lo = _nan_min(da_lo, db_lo)
                    hull_hi = _nan_max(da_hi, db_hi)
                    first, second = a_le_b[j], b_le_a[j]
                    min_lo = da_lo if first else (db_lo if second else hull_lo)
                    min_hi = da_hi if first else (db_hi if second else hull_hi)
                    max_lo = db_lo if first else (da_lo if second else hull_lo)
                    max_hi = db_hi if first else (da_hi if second else hull_hi)
                    dc[i, k, j], dr[i, k, j] = (min_lo + min_hi) / 2, (min_hi - min_lo) / 2
                    dc[i, k, j + h], dr[i, k, j + h] = (max_lo + max_hi) / 2, (max_hi - max_lo) / 2
                d_max_bits[i, k] = abs_max_bits(dc_bits, i * d + k, w, _MAGNITUDE)  # rows (box, k)


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
    _kernel(mc, mr, gc, gr, bias, abs_bias, rows, float(gamma), c_max, d_max, vc, vr, dc, dr,
            vc.view(np.int64), dc.view(np.int64).reshape(n * d, w), c_max_out.view(np.int64), d_max_out.view(np.int64))
    return vc, vr, dc, dr, c_max_out, d_max_out
