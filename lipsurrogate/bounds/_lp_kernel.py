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

Note [cells side by side]
    Since stop 35 a task of :data:`CELLS_PER_TASK` cells runs each step for all its cells in the
    innermost loop (the corners are vertex-major, so a vertex's cells are contiguous): the loops
    vectorise across cells, where one cell's sparse sums over gathered corners did not. Every
    cell sees the operations of the one-cell loop in the same order, so the results are the same
    bit for bit (2.5-3x faster on random 3-D and 4-D cells). A cell with a NaN corner value gets
    NaN, as on the numpy path (the one-cell loop's ``min`` skipped a NaN term and could return a
    finite number; the certifier refuses non-finite vertex errors before it gets here).
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
    # errors, margins: (2^d, n), vertex-major (each vertex's column of the cells is contiguous).
    # Each task takes CELLS_PER_TASK cells side by side: every loop below has the cells innermost,
    # so it vectorises across cells, and each cell sees the operations of the one-cell program in
    # the same order (Note [cells side by side]).
    nv, n = errors.shape
    d = s.shape[1]
    J = index.shape[0]
    width = CELLS_PER_TASK
    n_tasks = (n + width - 1) // width
    for task in _prange(n_tasks):
        first = task * width
        count = min(n, first + width) - first
        up = np.empty((nv, width))
        low = np.empty((nv, width))
        s_t = np.empty((d, width))
        c_t = np.empty((d, width))
        r_t = np.empty((d, width))
        sc = np.empty((d, width))
        top_up = np.zeros(width)
        top_low = np.zeros(width)
        sr = np.zeros(width)
        spread = np.zeros(width)
        best_up = np.full(width, np.inf)
        best_low = np.full(width, np.inf)
        bu = np.empty(width)
        bl = np.empty(width)
        invalid = np.zeros(width, dtype=np.bool_)  # a NaN corner: the bound is NaN, as on the numpy path
        for v in range(nv):
            for q in range(count):
                up[v, q] = errors[v, first + q] + margins[v, first + q]
                low[v, q] = margins[v, first + q] - errors[v, first + q]
                top_up[q] = max(top_up[q], abs(up[v, q]))
                top_low[q] = max(top_low[q], abs(low[v, q]))
                invalid[q] |= (up[v, q] != up[v, q]) | (low[v, q] != low[v, q])
        for k in range(d):
            for q in range(count):
                s_t[k, q] = s[first + q, k]
                c_t[k, q] = c[first + q, k]
                r_t[k, q] = r[first + q, k]
                sc[k, q] = s_t[k, q] * c_t[k, q]
                sr[q] += s_t[k, q] * r_t[k, q]
                spread[q] += s_t[k, q] * (r_t[k, q] + abs(c_t[k, q]))
        for j in range(J):
            for q in range(count):
                bu[q] = 0.0
                bl[q] = 0.0
            for t in range(size[j]):
                w = weight[j, t]
                vertex = index[j, t]
                for q in range(count):
                    bu[q] += w * up[vertex, q]
                    bl[q] += w * low[vertex, q]
            for k in range(d):
                mjk = m[j, k]
                for q in range(count):
                    rm = r_t[k, q] * mjk
                    drift = sc[k, q] * mjk
                    bu[q] += drift + abs(rm + c_t[k, q]) * s_t[k, q]
                    bl[q] += abs(rm - c_t[k, q]) * s_t[k, q] - drift
            for q in range(count):
                bu[q] += sr[q]
                bl[q] += sr[q]
                best_up[q] = min(best_up[q], bu[q])
                best_low[q] = min(best_low[q], bl[q])
        for q in range(count):
            bound = max(best_up[q] + slack * (top_up[q] + 3.0 * spread[q]),
                        best_low[q] + slack * (top_low[q] + 3.0 * spread[q]))
            out[first + q] = np.nan if invalid[q] else bound


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
    # C order and read-only views always: one compiled signature (numba specialises on the memory
    # order and on writability; a second signature cost another 3 s of compilation on a first run)
    corners = [_read_only(np.ascontiguousarray(a if vertex_major else a.T)) for a in corners]
    nv, d = corners[0].shape[0], m.shape[1]
    out = np.empty(corners[0].shape[1])
    arrays = [_read_only(np.ascontiguousarray(a, dtype=np.float64)) for a in (half_spans, centre, radius)]
    _kernel(*corners, *arrays, index, weight, size, m, 2 * (nv + 3 * d + 6) * _U, out)
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (no copy)."""
    view = a.view()
    view.flags.writeable = False
    return view
