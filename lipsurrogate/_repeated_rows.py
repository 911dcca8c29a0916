"""Runs of consecutive equal rows: what grid points in C order repeat, so work done per run is done once.

The certificate's vertices and blocks come in C order, the last axis (time) fastest, so the
coordinates of the other axes repeat over runs of rows. What depends only on those coordinates
(Fourier features of the periodic inputs and their interval ranges) is computed at the first row
of each run and copied to the rest: the same operations on the same numbers, so the same results.
"""

from __future__ import annotations

import numpy as np

from ._compiled import parallel_kernel, prange

MIN_RUNS = 64
"""Fewest runs worth a table (a smaller one saves too little to pay for the bookkeeping)."""


def rowwise_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for a short inner dimension (the few inputs of a network), each entry summed
    over it in order: ``((a_0 b_0 + a_1 b_1) + a_2 b_2) + ...`` (float64).

    A row's results then depend on that row alone. A BLAS product may sum in an order that depends
    on the number of rows (it does with MKL on this project's AMD machines, between 187 and 1,683
    rows), and then values computed once per run of rows would not be those of every row. The
    rounding is that of any order (``gamma_d`` of the inner dimension ``d``), which the callers'
    bounds already allow. One compiled pass where numba is installed (numba neither reassociates
    nor contracts into fused multiply-adds: the same bits as the numpy expression).
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], b.shape[0]))
    if _ROWWISE is not None and a.shape[1] > 0:
        _ROWWISE(a, b, out)
        return out
    np.multiply(a[:, :1], b[:, 0], out=out)
    for j in range(1, a.shape[1]):
        out += a[:, j : j + 1] * b[:, j]
    return out


def _rowwise_py(a, b, out):  # pragma: no cover - compiled by numba
    n, d = a.shape
    m = b.shape[0]
    for i in prange(n):
        for w in range(m):
            acc = a[i, 0] * b[w, 0]
            for j in range(1, d):
                acc = acc + a[i, j] * b[w, j]
            out[i, w] = acc


_ROWWISE = parallel_kernel(_rowwise_py)


def runs_of_equal_rows(x: np.ndarray, columns: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Runs of consecutive rows of ``x`` that agree in ``columns``: the first row of each run and
    each row's run number, or None where that would not save work (fewer than two rows a run on
    average), the table would be small (:data:`MIN_RUNS`) or ``x`` is not finite (Note [repeated
    periodic coordinates] of :class:`~lipsurrogate.nn.FourierFeatures`)."""
    if len(x) < 2 * MIN_RUNS or len(columns) == x.shape[1]:
        return None
    key = x[:, columns]
    new = np.empty(len(x), dtype=bool)
    new[0] = True
    np.any(key[1:] != key[:-1], axis=1, out=new[1:])
    n_runs = int(np.count_nonzero(new))
    if n_runs < MIN_RUNS or 2 * n_runs > len(x) or not np.isfinite(x).all():
        return None
    return np.flatnonzero(new), np.cumsum(new, dtype=np.int64) - 1
