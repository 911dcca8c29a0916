r"""The signed per-cell program of :func:`~lipsurrogate.bounds.cell_lp.signed_abs_bounds`, one numba pass.

:func:`~lipsurrogate.bounds.cell_lp.signed_upper_bounds` evaluates, for every cell and every
enumerated dual vertex :math:`\lambda_j`,

.. math::

    \lambda_j \cdot v + \sum_k (s_k c_k)\, m_{jk} + \sum_k s_k r_k + \sum_k |r_k m_{jk} + c_k|\, s_k

as dense matrix products over all :math:`2^d` vertices and a (cells, J, d) temporary, once for
the upper and once for the lower program. In four dimensions (J = 256 dual vertices) that is the
largest single cost of a heat2d-kappa certificate after the slopes (17 s of 84 s, profiled).
:func:`signed_abs_kernel` computes the same terms cell by cell, both programs in one pass, and
skips the vertices outside each :math:`\lambda_j`'s support (at most :math:`d + 1` of them).

**Same proof.** The terms are the numpy path's, each rounded the same way: the products
:math:`\mathrm{fl}(s_k c_k)`, :math:`\mathrm{fl}(s_k r_k)`, :math:`\mathrm{fl}(r_k m_{jk})`, the
stored coefficients :math:`\lambda_j` and :math:`m_j` (the very arrays of
:func:`~lipsurrogate.bounds.cell_lp.dual_vertices`), and the values :math:`\hat e_v \pm m_v`.
Only the terms with :math:`\lambda_{jv} = 0` (stored as exact zeros) are left out, and the
summation order differs. The rounding margin of ``theory/cell-bounds.md`` section 11 is Higham's
:math:`\gamma_n` bound for a sum of at most :math:`n` rounded products, which holds for any
summation order (and with fused multiply-adds); fewer terms only lower the count. So the margin
added here, :math:`2(2^d + 3d + 6)\,u` times the same scale, is the one of the numpy path, and
the minimum over :math:`j` is exact. Tests: ``tests/bounds/test_cell_lp.py`` (the kernel against
the numpy path on random cells, both within the margin; validity by dense sampling).
"""

from __future__ import annotations

import sys

import numpy as np

from .._compiled import HAVE_NUMBA, flag_off, parallel_kernel
from .._compiled import prange as _prange

__all__ = ["HAVE_KERNEL", "ENABLED", "disabled", "signed_abs_kernel", "sparse_duals"]

HAVE_KERNEL = HAVE_NUMBA  # without numba the numpy path is used
ENABLED = HAVE_KERNEL
"""Whether :func:`~lipsurrogate.bounds.cell_lp.signed_abs_bounds` uses this kernel (see :func:`disabled`)."""

_U = 2.0**-53


def disabled():
    """Inside the block :func:`~lipsurrogate.bounds.cell_lp.signed_abs_bounds` takes the numpy path."""
    return flag_off(sys.modules[__name__], "ENABLED")


def sparse_duals(coef_e: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each dual vertex's support as (index, weight) rows padded with weight 0, its size, and ``m``.

    ``coef_e`` (J, 2^d) and ``m`` (J, d) are the stored arrays of the numpy path; the weights are
    copied, not recomputed.
    """
    size = (coef_e != 0).sum(axis=1)
    width = int(size.max())
    index = np.zeros((len(coef_e), width), dtype=np.int64)
    weight = np.zeros((len(coef_e), width))
    for j, row in enumerate(coef_e):
        nz = np.flatnonzero(row)
        index[j, : len(nz)] = nz
        weight[j, : len(nz)] = row[nz]
    return index, weight, size.astype(np.int64), np.ascontiguousarray(m, dtype=np.float64)


CELLS_PER_TASK = 64
"""Cells per parallel task of :func:`signed_abs_kernel` (its scratch arrays are allocated once per task)."""


def _signed_abs_py(errors, margins, s, c, r, index, weight, size, m, slack, out):  # noqa: PLR0913
    # errors, margins: (2^d, n), vertex-major (each vertex's column of the cells is contiguous)
    nv, n = errors.shape
    d = s.shape[1]
    J = index.shape[0]
    n_tasks = (n + CELLS_PER_TASK - 1) // CELLS_PER_TASK
    for task in _prange(n_tasks):
        up = np.empty(nv)
        low = np.empty(nv)
        sc = np.empty(d)
        for i in range(task * CELLS_PER_TASK, min(n, (task + 1) * CELLS_PER_TASK)):
            top_up = 0.0
            top_low = 0.0
            for v in range(nv):
                up[v] = errors[v, i] + margins[v, i]
                low[v] = margins[v, i] - errors[v, i]
                top_up = max(top_up, abs(up[v]))
                top_low = max(top_low, abs(low[v]))
            sr = 0.0
            spread = 0.0
            for k in range(d):
                sc[k] = s[i, k] * c[i, k]
                sr += s[i, k] * r[i, k]
                spread += s[i, k] * (r[i, k] + abs(c[i, k]))
            best_up = np.inf
            best_low = np.inf
            for j in range(J):
                bu = 0.0
                bl = 0.0
                for t in range(size[j]):
                    bu += weight[j, t] * up[index[j, t]]
                    bl += weight[j, t] * low[index[j, t]]
                for k in range(d):
                    rm = r[i, k] * m[j, k]
                    drift = sc[k] * m[j, k]
                    bu += drift + abs(rm + c[i, k]) * s[i, k]
                    bl += abs(rm - c[i, k]) * s[i, k] - drift
                bu += sr
                bl += sr
                best_up = min(best_up, bu)
                best_low = min(best_low, bl)
            best_up += slack * (top_up + 3.0 * spread)
            best_low += slack * (top_low + 3.0 * spread)
            out[i] = max(best_up, best_low)


_kernel = parallel_kernel(_signed_abs_py)


def signed_abs_kernel(errors: np.ndarray, margins: np.ndarray, half_spans: np.ndarray, centre: np.ndarray,
                      radius: np.ndarray, duals: tuple, vertex_major: bool = False) -> np.ndarray:
    r"""**Certified** :math:`\max(P_\text{upper}, P_\text{lower})` per cell, the value of the numpy path's
    ``max(signed_upper_bounds(e + m, s, c, r), signed_upper_bounds(m - e, s, -c, r))``.

    ``errors``, ``margins`` (N, 2^d), or (2^d, N) with ``vertex_major`` (the kernel's own layout:
    a caller that gathers the corners vertex by vertex writes them contiguously, where stacking
    them cell by cell costs a strided pass); ``half_spans``, ``centre``, ``radius`` (N, d);
    ``duals`` the :func:`sparse_duals` of the stored dual vertices (``cell_lp._signed_duals``).
    """
    if not HAVE_KERNEL:  # pragma: no cover
        raise RuntimeError("numba is not installed: use the numpy path.")
    index, weight, size, m = duals
    corners = [np.asarray(a, dtype=np.float64) for a in (errors, margins)]
    if not vertex_major:  # transposed views: numba compiles the kernel for either memory order, no copy
        corners = [a.T for a in corners]
    corners = [a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a) for a in corners]
    nv, d = corners[0].shape[0], m.shape[1]
    out = np.empty(corners[0].shape[1])
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (half_spans, centre, radius)]
    _kernel(*corners, *arrays, index, weight, size, m, 2 * (nv + 3 * d + 6) * _U, out)
    return out
