r"""The exact per-cell bound for per-coordinate constants, for all cells at once.

On a box cell with vertices :math:`v \in \{0, 1\}^d`, half-widths in weighted units
:math:`a_k = L_k h_k / 2` and centred coordinates :math:`w_k \in [-a_k, a_k]`
(:math:`w_k = L_k (x_k - c_k)`), the McShane cone of vertex :math:`v` is affine on the cell:

.. math::

    e_v + \sum_k L_k |x_k - v_k| = e_v + \sum_k a_k + \sigma_v \cdot w,
    \qquad \sigma_{v,k} = +1 \text{ if } v_k = 0, \ -1 \text{ otherwise}.

The smallest valid bound of :math:`e` on the cell is the linear program
:math:`P = \max_{|w_k| \le a_k} \min_v (e_v + \sum_k a_k + \sigma_v \cdot w)`
(certificates.md section 2). By the minimax theorem (bilinear function, compact convex sets)

.. math::

    P = \sum_k a_k + \min_{\lambda \in \Delta} \Big( \lambda \cdot e + \sum_k a_k\, |m_k(\lambda)| \Big),
    \qquad m(\lambda) = \sum_v \lambda_v \sigma_v ,

and **every** :math:`\lambda` in the simplex gives a valid upper bound (weak duality: the max of a
minimum is at most the max of any average). The feasible set
:math:`\{(\lambda, u) : \lambda \in \Delta,\ u_k \ge |m_k(\lambda)|\}` does not depend on the cell;
only the objective :math:`\lambda \cdot e + a \cdot u` does. A linear objective that is bounded below
attains its minimum at a vertex, so with the vertices :math:`(\lambda_j, |m(\lambda_j)|)` enumerated
once per dimension (:func:`dual_vertices`), the exact bound of every cell is

.. math::

    P = \min_j \big( \lambda_j \cdot e + a \cdot (1 + |m(\lambda_j)|) \big),

one matrix product and a row minimum. The opposite-vertex pairs (:math:`\lambda = \frac12` on
:math:`v, \bar v`, so :math:`m = 0`) are among the vertices: the closed-form pair bound is the
minimum over a subset. Derivation and tests: ``theory/cell-bounds.md`` section 3.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch

from . import _lp_kernel

__all__ = ["dual_vertices", "exact_abs_bounds", "exact_upper_bounds", "signed_abs_bounds", "signed_upper_bounds",
           "slope_centre_radius", "vertex_signs"]

_U = 2.0**-53


def vertex_signs(d: int) -> np.ndarray:
    r""":math:`\sigma_v` for the :math:`2^d` vertices in ``itertools.product((0, 1), repeat=d)`` order."""
    bits = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64).reshape(-1, d)
    return 1.0 - 2.0 * bits


@lru_cache(maxsize=None)
def dual_vertices(d: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Vertices of :math:`\{(\lambda, u): \lambda \in \Delta_{2^d},\ u \ge |m(\lambda)|\}`.

    A vertex has, for its zero set :math:`Z = \{k : m_k = 0\}`, a :math:`\lambda` that is a basic
    solution of :math:`\{\lambda \ge 0, \sum \lambda = 1, m_Z(\lambda) = 0\}` (support of at most
    :math:`|Z| + 1` vertices with independent columns): otherwise it is the midpoint of two
    feasible points on which :math:`|m|` is affine. All such basic solutions are enumerated
    (a superset of the vertices does no harm: each one is a valid bound).

    Returns
    -------
    coef_e : ndarray, shape (n, 2^d)
        :math:`\lambda_j` (non-negative, rows sum to 1 up to rounding).
    coef_a : ndarray, shape (n, d)
        :math:`1 + |m(\lambda_j)|`, recomputed from the stored :math:`\lambda_j`.
    """
    if not 1 <= d <= 4:
        raise ValueError(f"Exact cell bounds are enumerated for 1 to 4 dimensions. Got d={d}.")
    sigma = vertex_signs(d)
    n = len(sigma)
    found: dict[tuple, np.ndarray] = {}
    for size in range(1, d + 2):
        for support in itertools.combinations(range(n), size):
            cols = sigma[list(support)]  # (size, d)
            for zsize in range(size - 1, d + 1):
                for zero in itertools.combinations(range(d), zsize):
                    A = np.vstack([np.ones(size), cols[:, list(zero)].T])  # (1 + |Z|, size)
                    if np.linalg.matrix_rank(A) < size:
                        continue
                    rhs = np.zeros(len(A))
                    rhs[0] = 1.0
                    lam_s, *_ = np.linalg.lstsq(A, rhs, rcond=None)
                    if np.any(lam_s < -1e-12) or np.abs(A @ lam_s - rhs).max() > 1e-9:
                        continue
                    lam = np.zeros(n)
                    lam[list(support)] = np.clip(lam_s, 0.0, None)
                    lam /= lam.sum()
                    found.setdefault(tuple(np.round(lam, 12)), lam)
    coef_e = np.array(list(found.values()))
    coef_a = 1.0 + np.abs(coef_e @ sigma)
    return coef_e, coef_a


def exact_upper_bounds(values: np.ndarray, half_widths: np.ndarray, chunk: int = 8192) -> np.ndarray:
    r"""Certified :math:`\max_{x \in C} \min_v (e_v + \sum_k L_k |x_k - v_k|)` for every cell.

    Parameters
    ----------
    values : ndarray, shape (N, 2^d)
        Upper values at the vertices (the vertex errors plus their margins), vertex order of
        :func:`vertex_signs`.
    half_widths : ndarray, shape (N, d)
        :math:`a_k = L_k h_k / 2 \ge 0` per cell.
    chunk : int
        Cells per matrix product (small chunks stay in cache: about 10x faster than one big one).

    Returns
    -------
    ndarray, shape (N,)
        The exact value of the linear program (the smallest valid bound given these inputs), plus
        a float64 rounding margin: **certified** upper bounds.
    """
    values = np.asarray(values, dtype=np.float64)
    half_widths = np.asarray(half_widths, dtype=np.float64)
    if values.ndim != 2 or half_widths.ndim != 2:
        raise ValueError(f"Expected values (N, 2^d) and half_widths (N, d). Got {values.shape} and {half_widths.shape}.")
    N, nv = values.shape
    d = half_widths.shape[1]
    if nv != 2**d or half_widths.shape[0] != N:
        raise ValueError(f"Expected values (N, 2^d) and half_widths (N, d). Got {values.shape} and {half_widths.shape}.")
    coef_e, coef_a = dual_vertices(d)
    coef = torch.from_numpy(np.vstack([coef_e.T, coef_a.T]))  # (2^d + d, n_vertices)
    data = torch.from_numpy(np.concatenate([values, half_widths], axis=1))
    out = np.empty(N)
    out_t = torch.from_numpy(out)
    # torch's float64 matrix products on its threads (numpy's BLAS runs one thread inside the
    # certifier); the margin below is Higham's bound for any summation order
    for s in range(0, N, chunk):
        torch.amin(data[s : s + chunk] @ coef, dim=1, out=out_t[s : s + chunk])
    # each entry is a sum of 2^d + d products with coefficients in [0, 2]: gamma_{2^d + d + 1} of
    # sum |terms| <= max|e| + 2 sum a, doubled for the rounding of the stored coefficients
    scale = np.abs(values).max(axis=1) + 2.0 * half_widths.sum(axis=1)
    return out + 2 * (nv + d + 2) * _U * scale


def exact_abs_bounds(errors: np.ndarray, margins: np.ndarray, half_widths: np.ndarray, chunk: int = 8192) -> np.ndarray:
    r"""Certified exact bound of :math:`|e|` per cell: the larger of the programs for :math:`e` and :math:`-e`.

    ``errors`` and ``margins`` have shape (N, 2^d): the measured vertex errors :math:`\hat e_v` and
    bounds :math:`m_v` on their uncertainty, so the true values lie in :math:`\hat e_v \pm m_v`;
    the upper program uses :math:`\hat e_v + m_v` and the lower one :math:`-\hat e_v + m_v`.
    """
    errors = np.asarray(errors, dtype=np.float64)
    margins = np.broadcast_to(np.asarray(margins, dtype=np.float64), errors.shape)
    half_widths = np.asarray(half_widths, dtype=np.float64)
    out = np.empty(len(errors))
    for s in range(0, len(errors), chunk):
        e, m, a = errors[s : s + chunk], margins[s : s + chunk], half_widths[s : s + chunk]
        out[s : s + chunk] = np.maximum(exact_upper_bounds(e + m, a, chunk), exact_upper_bounds(m - e, a, chunk))
    return out


def slope_centre_radius(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Centre :math:`c` and radius :math:`r` with :math:`[c - r, c + r] \supseteq [\text{lower}, \text{upper}]`.

    Computed in float64 and rounded outwards (``nextafter``), so the enclosure holds for the
    computed numbers, not only in exact arithmetic.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    centre = 0.5 * (lower + upper)
    radius = np.nextafter(np.maximum(upper - centre, centre - lower), np.inf)
    return centre, np.maximum(radius, 0.0)


def signed_upper_bounds(values: np.ndarray, half_spans: np.ndarray, centre: np.ndarray, radius: np.ndarray,
                        chunk: int = 4096) -> np.ndarray:
    r"""Certified :math:`\max_{x \in C} e(x)` when each slope :math:`\partial_k e` lies in :math:`[c_k - r_k, c_k + r_k]` on C.

    With centred coordinates :math:`w_k = x_k - x_{C,k} \in [-s_k, s_k]` and
    :math:`g(x) = e(x) - c \cdot w`, the slopes of :math:`g` are at most :math:`r_k` in modulus, so
    :math:`e(x) \le \min_v \big(g_v + \sum_k r_k (s_k + \sigma_{v,k} w_k)\big) + c \cdot w` with
    :math:`g_v = e_v + \sum_k c_k \sigma_{v,k} s_k`. Every :math:`\lambda` in the simplex bounds the
    maximum over the cell of this minimum (weak duality):

    .. math::

        P \le \lambda \cdot e + \sum_k s_k \big(r_k + c_k m_k(\lambda) + |r_k m_k(\lambda) + c_k|\big),

    and the minimum over the enumerated dual vertices :func:`dual_vertices` is taken. For
    :math:`c = 0` this is :func:`exact_upper_bounds` with :math:`a_k = r_k s_k`; for every
    :math:`\lambda` it is never larger than that program with the symmetric constants
    :math:`L_k = |c_k| + r_k` (``theory/cell-bounds.md`` section 11).

    Parameters
    ----------
    values : ndarray, shape (N, 2^d)
        Upper values at the vertices (errors plus margins), vertex order of :func:`vertex_signs`.
    half_spans : ndarray, shape (N, d)
        Half side lengths :math:`s_k` of the cells (rounded up by the caller, or exact).
    centre, radius : ndarray, shape (N, d)
        Slope enclosure of the function whose maximum is bounded (see :func:`slope_centre_radius`).

    Returns
    -------
    ndarray, shape (N,)
        **Certified** upper bounds, float64 rounding margin included.
    """
    values = np.asarray(values, dtype=np.float64)
    s = np.asarray(half_spans, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    r = np.asarray(radius, dtype=np.float64)
    N, nv = values.shape
    d = s.shape[1]
    if nv != 2**d or s.shape != (N, d) or c.shape != (N, d) or r.shape != (N, d):
        raise ValueError(f"Expected values (N, 2^d) and half_spans, centre, radius (N, d). Got {values.shape}, "
                         f"{s.shape}, {c.shape}, {r.shape}.")
    coef_e, m = _signed_duals(d)
    lin = np.vstack([coef_e.T, m.T])  # (2^d + d, J)
    out = np.empty(N)
    for a in range(0, N, chunk):
        sa, ca, ra = s[a : a + chunk], c[a : a + chunk], r[a : a + chunk]
        bounds = np.concatenate([values[a : a + chunk], sa * ca], 1) @ lin
        bounds += (sa * ra).sum(1, keepdims=True)
        bounds += np.einsum("njk,nk->nj", np.abs(ra[:, None, :] * m[None] + ca[:, None, :]), sa)
        out[a : a + chunk] = bounds.min(axis=1)
    # Every term is bounded by max|values| + 3 sum_k s_k (r_k + |c_k|); each bound is a sum of
    # 2^d + 3d + 1 rounded products (gamma_n, n = 2^d + 3d + 6, doubled for the stored coefficients).
    scale = np.abs(values).max(axis=1) + 3.0 * (s * (r + np.abs(c))).sum(axis=1)
    return out + 2 * (nv + 3 * d + 6) * _U * scale


@lru_cache(maxsize=None)
def _signed_duals(d: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The dual vertices :math:`\lambda_j` (J, 2^d) and their stored :math:`m_j = \sum_v \lambda_{jv} \sigma_v` (J, d)."""
    coef_e, _ = dual_vertices(d)
    m = coef_e @ vertex_signs(d)  # |m| <= 1
    coef_e.flags.writeable = m.flags.writeable = False
    return coef_e, m


@lru_cache(maxsize=None)
def _sparse_signed_duals(d: int):
    return _lp_kernel.sparse_duals(*_signed_duals(d))


def signed_abs_bounds(errors: np.ndarray, margins: np.ndarray, half_spans: np.ndarray, slope_lower: np.ndarray,
                      slope_upper: np.ndarray, vertex_major: bool = False) -> np.ndarray:
    r"""Certified bound of :math:`|e|` per cell from vertex errors and signed slope ranges of :math:`e`.

    ``slope_lower`` / ``slope_upper`` (N, d) enclose :math:`\partial_k e` on each cell; the upper
    program uses :math:`\hat e_v + m_v` and the slopes as given, the lower one
    :math:`m_v - \hat e_v` and the negated slopes (:func:`signed_upper_bounds`). Both programs run
    in one compiled pass where numba is installed (:mod:`~lipsurrogate.bounds._lp_kernel`: the same
    terms and margin, ``theory/cell-bounds.md`` section 11). With ``vertex_major`` the vertex
    values come as (2^d, N), one row per corner (the kernel's layout).
    """
    errors = np.asarray(errors, dtype=np.float64)
    margins = np.broadcast_to(np.asarray(margins, dtype=np.float64), errors.shape)
    centre, radius = slope_centre_radius(slope_lower, slope_upper)
    d = centre.shape[-1] if centre.ndim == 2 else -1
    if _lp_kernel.ENABLED and 1 <= d <= 4 and errors.shape == ((2**d, len(centre)) if vertex_major
                                                                 else (len(centre), 2**d)):
        s = np.broadcast_to(np.asarray(half_spans, dtype=np.float64), centre.shape)
        return _lp_kernel.signed_abs_kernel(errors, margins, s, centre, radius, _sparse_signed_duals(d),
                                            vertex_major=vertex_major)
    if vertex_major:
        errors, margins = errors.T, margins.T
    upper = signed_upper_bounds(errors + margins, half_spans, centre, radius)
    lower = signed_upper_bounds(margins - errors, half_spans, -centre, radius)
    return np.maximum(upper, lower)
