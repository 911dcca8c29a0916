"""Runs of consecutive equal rows: what grid points in C order repeat, so work done per run is done once.

The certificate's vertices and blocks come in C order, the last axis (time) fastest, so the
coordinates of the other axes repeat over runs of rows. What depends only on those coordinates
(Fourier features of the periodic inputs and their interval ranges) is computed at the first row
of each run and copied to the rest: the same operations on the same numbers, so the same results.
"""

from __future__ import annotations

import numpy as np

MIN_RUNS = 64
"""Fewest runs worth a table: BLAS rounds very small products differently (MKL: up to 23 rows here)."""


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
