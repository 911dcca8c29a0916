r"""Per-cell certificates of the max error from vertex errors and per-coordinate Lipschitz constants.

Let :math:`e = f - u` satisfy :math:`|e(x) - e(x')| \le \sum_k L_k |x_k - x'_k|` on a box cell
:math:`C` with side lengths :math:`h_k` and vertices :math:`v`. For a vertex :math:`v` and its
opposite :math:`\bar v`, every :math:`x \in C` has
:math:`\sum_k L_k |x_k - v_k| + \sum_k L_k |x_k - \bar v_k| = \sum_k L_k h_k`, so

.. math::

    e(x) \le \min(e_v + d_v(x), e_{\bar v} + d_{\bar v}(x)) \le \tfrac12 (e_v + e_{\bar v} + \textstyle\sum_k L_k h_k),

and the same for :math:`-e`. Hence the **certified** per-cell bound

.. math::

    B(C) = \min_{(v, \bar v)} \tfrac12 \big(|e_v + e_{\bar v}| + \textstyle\sum_k L_k h_k\big),

minimised over the :math:`2^{d-1}` opposite pairs (the **closed form**), which is never larger
than the naive anchor :math:`\max_v |e_v| + \tfrac12 \sum_k L_k h_k` and, for consistent
vertex data, exact in one dimension. The default ``method="exact"`` computes the smallest valid bound instead: the linear
program of certificates.md section 2, solved for all cells at once through its enumerated dual
vertices (:mod:`lipsurrogate.bounds.cell_lp`); the pair bound is the minimum over a subset of
those vertices, so the exact bound is never larger (``theory/cell-bounds.md`` section 3).
Uncertainty in the vertex errors (rounding of the network and of the reference) is a per-vertex
margin :math:`m_v`: the pair bound adds :math:`(m_v + m_{\bar v})/2`, the linear program uses
:math:`e_v + m_v` for the upper and :math:`m_v - e_v` for the lower envelope.

**Consistency check.** Along each axis, neighbouring vertices must satisfy
:math:`|e_v - e_w| \le L_k h_k + m_v + m_w`; otherwise one of the assumed constants is wrong and
:func:`cell_bounds` refuses with :class:`~lipsurrogate.exceptions.CertificationError`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..exceptions import CertificationError
from .cell_lp import exact_abs_bounds, signed_abs_bounds

__all__ = ["CellCertificate", "cell_bounds", "closed_form_bounds", "locate_cells", "pair_minimum"]


@dataclass(frozen=True)
class CellCertificate:
    """Per-cell bounds on the grid spanned by ``edges``.

    Attributes
    ----------
    per_cell : ndarray, shape (n_0 - 1, ..., n_{d-1} - 1)
        **Certified** bound of :math:`|e|` on each cell (the exact linear-program bound, or the
        closed form when ``method="pair"``).
    naive : ndarray
        The naive anchor :math:`\\max_v |e_v| + \\frac12 \\sum_k L_k h_k` per cell (also certified,
        never smaller).
    edges : list of ndarray
        Vertex coordinates along each axis.
    lipschitz : ndarray
        The per-coordinate constants :math:`L_k` of the error that were assumed.
    max_vertex_error : float
        :math:`\\max_v |e_v|` (measured at the vertices, plus margin).
    closed_form : ndarray or None
        The opposite-vertex-pair bound per cell (certified, never smaller than ``per_cell``).
    method : str
        ``"exact"`` (linear program) or ``"pair"`` (closed form).
    constants : ndarray or None, shape (*cells, d)
        The per-cell constants :math:`\\min(L_k(C), L_k)` that were used (what refinement inherits).
    slopes : ndarray or None, shape (*cells, d, 2)
        Signed **certified** ranges ``[lower, upper]`` of :math:`\\partial_k e` per cell, already
        intersected with :math:`[-L_k, L_k]`, when they were given (``constants`` is then
        :math:`\\max(|\\text{lower}|, |\\text{upper}|)`).
    """

    per_cell: np.ndarray
    naive: np.ndarray
    edges: list
    lipschitz: np.ndarray
    max_vertex_error: float
    closed_form: np.ndarray | None = None
    method: str = "exact"
    constants: np.ndarray | None = None
    slopes: np.ndarray | None = None

    @property
    def bound(self) -> float:
        """The global certified bound :math:`\\max_C B(C)`."""
        return float(self.per_cell.max())

    def summary(self) -> dict:
        """Global bound, naive and closed-form bounds (all **certified**) and the per-cell distribution, as JSON-ready numbers."""
        q = np.quantile(self.per_cell, [0.0, 0.5, 0.9, 0.99, 1.0])
        return {
            "bound": self.bound,
            "method": self.method,
            "closed_form_bound": float(self.closed_form.max()) if self.closed_form is not None else None,
            "naive_bound": float(self.naive.max()),
            "cells": int(self.per_cell.size),
            "per_cell": {"min": q[0], "median": q[1], "p90": q[2], "p99": q[3], "max": q[4],
                         "mean": float(self.per_cell.mean())},
            "max_vertex_error": self.max_vertex_error,
            # with the global constants: the part of the bound that local constants can shrink
            "lipschitz_term_global": float(0.5 * sum(L * np.max(np.diff(e)) for L, e in zip(self.lipschitz, self.edges))),
        }


def _check_edges(edges: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    if len(edges) != len(shape):
        raise CertificationError(f"Expected one coordinate vector per axis ({len(shape)}). Got {len(edges)}.")
    out = []
    for k, (e, n) in enumerate(zip(edges, shape)):
        e = np.asarray(e, dtype=np.float64)
        if e.ndim != 1 or len(e) != n or n < 2:
            raise CertificationError(f"Axis {k}: expected {n} >= 2 vertex coordinates. Got shape {e.shape}.")
        if not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise CertificationError(f"Axis {k}: vertex coordinates must be finite and strictly increasing (no zero-size cells).")
        out.append(e)
    return out


def cell_bounds(
    vertex_errors: np.ndarray,
    edges: Sequence[np.ndarray],
    lipschitz: Sequence[float],
    margin: np.ndarray | float = 0.0,
    check: bool = True,
    local_lipschitz: np.ndarray | None = None,
    method: str = "exact",
    local_slopes: tuple[np.ndarray, np.ndarray] | None = None,
) -> CellCertificate:
    r"""Certified per-cell max-error bounds on a rectilinear grid.

    Parameters
    ----------
    vertex_errors : ndarray, shape (n_0, ..., n_{d-1})
        :math:`e_v = f(v) - u(v)` at the grid vertices (float64).
    edges : sequence of ndarray
        The vertex coordinates along each axis (strictly increasing; spacing may vary).
    lipschitz : sequence of float
        :math:`L_k`, bounds on :math:`|\\partial e / \\partial x_k|` (e.g. ``L_f + L_u``).
    margin : float or ndarray broadcastable to ``vertex_errors``
        Bound on the uncertainty of each :math:`e_v` (rounding of the evaluations).
    check : bool
        Run the consistency check (refuse contradictory constants).
    local_lipschitz : ndarray, shape (n_0 - 1, ..., n_{d-1} - 1, d), optional
        Per-cell constants :math:`L_k(C)` (e.g. from interval propagation); each cell uses
        :math:`\min(L_k(C), L_k)`. The consistency check always uses the global ``lipschitz``.
    method : {"exact", "pair"}
        ``"exact"``: the linear-program bound (the smallest valid one); ``"pair"``: the closed
        form only (about 10x faster, never smaller).
    local_slopes : (lower, upper), each of shape (n_0 - 1, ..., n_{d-1} - 1, d), optional
        Signed **certified** ranges of :math:`\\partial_k e` per cell (e.g. the network's range
        minus the reference's). They are intersected with :math:`[-L_k, L_k]` (and with
        ``local_lipschitz`` when both are given) and the exact bound becomes the signed program
        of :func:`~lipsurrogate.bounds.cell_lp.signed_upper_bounds`: where :math:`e` is nearly
        affine on a cell (the network's pattern decided there, u smooth), the slope term shrinks
        from :math:`\\sum_k |\\partial_k e| h_k / 2` to the slopes' *variation* over the cell
        (``theory/cell-bounds.md`` section 11).

    Returns
    -------
    CellCertificate
    """
    if method not in ("exact", "pair"):
        raise CertificationError(f"method must be 'exact' or 'pair'. Got {method!r}.")
    e = np.asarray(vertex_errors, dtype=np.float64)
    d = e.ndim
    if method == "exact" and d > 4:
        raise CertificationError(f"The exact bound is enumerated for 1 to 4 dimensions; use method='pair' for d={d}.")
    edges = _check_edges(edges, e.shape)
    L = np.asarray(lipschitz, dtype=np.float64)
    if L.shape != (d,) or np.any(~np.isfinite(L)) or np.any(L < 0):
        raise CertificationError(f"'lipschitz' must hold {d} finite non-negative constants. Got {list(L)}.")
    if not np.all(np.isfinite(e)):
        raise CertificationError("Vertex errors contain NaN or infinity; nothing can be certified.")
    m = np.broadcast_to(np.asarray(margin, dtype=np.float64), e.shape)
    if np.any(m < 0) or not np.all(np.isfinite(m)):
        raise CertificationError("'margin' must be finite and non-negative.")

    if check:
        for k in range(d):
            lo = [slice(None)] * d
            hi = [slice(None)] * d
            lo[k], hi[k] = slice(None, -1), slice(1, None)
            h = np.diff(edges[k]).reshape([-1 if i == k else 1 for i in range(d)])
            allowed = L[k] * h + m[tuple(hi)] + m[tuple(lo)]
            # rounding of the subtraction and of L * h itself: a few ulps of the operands
            slack = 8 * 2.0**-53 * (np.abs(e[tuple(hi)]) + np.abs(e[tuple(lo)]) + allowed)
            jump = np.abs(e[tuple(hi)] - e[tuple(lo)]) - allowed - slack
            if np.any(jump > 0):
                idx = np.unravel_index(int(np.argmax(jump)), jump.shape)
                raise CertificationError(
                    f"Consistency check failed along axis {k} at vertex {tuple(int(i) for i in idx)}: the error "
                    f"changes by {float(jump[idx] + L[k] * h.reshape(-1)[idx[k]]):.4g} over a step that the assumed "
                    f"constant L_{k} = {L[k]:.4g} allows only {float(L[k] * h.reshape(-1)[idx[k]]):.4g}. One of the "
                    "assumed Lipschitz constants is wrong; no bound is printed."
                )

    spans = [np.diff(edges[k]).reshape([-1 if i == k else 1 for i in range(d)]) for k in range(d)]
    cell_shape = tuple(n - 1 for n in e.shape)
    if local_lipschitz is None:
        local = np.broadcast_to(L, (*cell_shape, d))
    else:
        local = np.asarray(local_lipschitz, dtype=np.float64)
        if local.shape != (*cell_shape, d) or not np.all(np.isfinite(local)) or np.any(local < 0):
            raise CertificationError(
                f"'local_lipschitz' must be finite, non-negative, of shape {(*cell_shape, d)}. Got {local.shape}."
            )
        local = np.minimum(local, L)
    slopes = None
    if local_slopes is not None:
        slope_lo, slope_hi = (np.asarray(a, dtype=np.float64) for a in local_slopes)
        if (slope_lo.shape != (*cell_shape, d) or slope_hi.shape != (*cell_shape, d)
                or not (np.all(np.isfinite(slope_lo)) and np.all(np.isfinite(slope_hi)))):
            raise CertificationError(f"'local_slopes' must be two finite arrays of shape {(*cell_shape, d)}. "
                                     f"Got {slope_lo.shape} and {slope_hi.shape}.")
        slope_lo, slope_hi = np.maximum(slope_lo, -local), np.minimum(slope_hi, local)
        if np.any(slope_lo > slope_hi):
            raise CertificationError("The local slope ranges contradict the constants (an empty intersection): "
                                     "one of them is wrong; no bound is printed.")
        local = np.maximum(np.abs(slope_lo), np.abs(slope_hi))
        slopes = np.stack([slope_lo, slope_hi], -1)
    closed_form, lip_term, half = closed_form_bounds(pair_minimum(e, m), [local[..., k] for k in range(d)], spans,
                                                     cell_shape)
    worst_vertex = np.zeros(cell_shape)
    # the corners vertex by vertex, (2^d, N), each row written once from the strided grid (only the
    # exact program reads them)
    corners_e = corners_m = None
    if method == "exact":
        corners_e, corners_m = np.empty((2**d, *cell_shape)), np.empty((2**d, *cell_shape))
    for v, offset in enumerate(itertools.product((0, 1), repeat=d)):
        sl = tuple(slice(o, o + n) for o, n in zip(offset, cell_shape))
        worst_vertex = np.maximum(worst_vertex, np.abs(e[sl]) + m[sl])
        if corners_e is not None:
            corners_e[v], corners_m[v] = e[sl], m[sl]
    naive = (worst_vertex + lip_term) * closed_form_factor(d)
    per_cell = closed_form
    if method == "exact" and slopes is not None:
        half_spans = np.stack([np.broadcast_to(0.5 * spans[k], cell_shape) for k in range(d)], -1).reshape(-1, d)
        # vertex-major corners: contiguous rows, where (N, 2^d) is a strided pass
        exact = signed_abs_bounds(corners_e.reshape(2**d, -1), corners_m.reshape(2**d, -1),
                                  half_spans * (1 + 4 * 2.0**-53), slopes[..., 0].reshape(-1, d),
                                  slopes[..., 1].reshape(-1, d), vertex_major=True)
        per_cell = np.minimum(exact.reshape(cell_shape), closed_form)
    elif method == "exact":
        # transposed views: the program transposes each chunk of cells in cache, not the whole grid
        exact = exact_abs_bounds(corners_e.reshape(2**d, -1).T, corners_m.reshape(2**d, -1).T, half.reshape(-1, d))
        # both are certified; the exact one is never larger up to the rounding margins
        per_cell = np.minimum(exact.reshape(cell_shape), closed_form)
    return CellCertificate(per_cell, naive, edges, L, float(np.max(np.abs(e) + m)), closed_form, method,
                           np.ascontiguousarray(local), slopes)


def pair_minimum(e: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per cell, :math:`\\min_v (|e_v + e_{v'}| + m_v + m_{v'}) / 2` over the pairs of opposite
    corners :math:`(v, v')` (each pair once), from vertex errors ``e`` and margins ``m`` on the grid:
    the vertex part of the closed-form pair bound (section 3)."""
    d = e.ndim
    cell_shape = tuple(n - 1 for n in e.shape)
    best = np.full(cell_shape, np.inf)
    for offset in itertools.product((0, 1), repeat=d):
        if offset[0] == 1:  # each pair once: v with first coordinate low
            continue
        sl = tuple(slice(o, o + n) for o, n in zip(offset, cell_shape))
        opp = tuple(slice(1 - o, 1 - o + n) for o, n in zip(offset, cell_shape))
        best = np.minimum(best, 0.5 * (np.abs(e[sl] + e[opp]) + m[sl] + m[opp]))
    return best


def closed_form_factor(d: int) -> float:
    """:math:`1 + \\max(8, d + 4)\\, u`: the factor that makes the computed pair and naive bounds of
    d-dimensional cells upper bounds of their exact values (``theory/cell-bounds.md`` section 8:
    each term passes through at most d + 3 roundings of non-negative numbers, the factor's own
    product included; 8 for d <= 4, as before 2026-12-08)."""
    return 1 + max(8, d + 4) * 2.0**-53


def closed_form_bounds(best: np.ndarray, local: Sequence[np.ndarray], spans: Sequence[np.ndarray],
                       shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The closed-form pair bound :math:`(\\text{best} + \\sum_k L_k h_k / 2)` times
    :func:`closed_form_factor` for cells of ``shape``, its Lipschitz term :math:`\\sum_k L_k h_k / 2`
    and the terms :math:`L_k h_k / 2` (stacked last), from :func:`pair_minimum`'s ``best``, each
    axis' slope bound ``local[k]`` and computed cell width ``spans[k]`` (broadcastable).
    **Certified**: the factor covers every rounding, those of the widths included."""
    half = np.stack([0.5 * np.broadcast_to(lk * sk, shape) for lk, sk in zip(local, spans)], -1)
    lip_term = half.sum(axis=-1)
    return (best + lip_term) * closed_form_factor(len(local)), lip_term, half


def locate_cells(points: np.ndarray, edges: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Index of the cell containing each point (points on a shared face go to either side)."""
    points = np.asarray(points, dtype=np.float64)
    idx = []
    for k, e in enumerate(edges):
        i = np.searchsorted(e, points[:, k], side="right") - 1
        idx.append(np.clip(i, 0, len(e) - 2))
    return tuple(idx)
