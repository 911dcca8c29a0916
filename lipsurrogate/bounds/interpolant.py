r"""The data's own multilinear interpolant: the reference of level-1 certificates.

Given values :math:`u_v` on a rectilinear grid, the multilinear interpolant :math:`u_I` is, in each
cell, the unique function that is affine in every coordinate separately and matches the vertices.
Its partial derivative :math:`\partial_k u_I` is, in the cell, the multilinear interpolation (in the
other coordinates) of the finite differences :math:`(u_{v + e_k} - u_v) / h_k` along the
:math:`2^{d-1}` edges parallel to axis :math:`k`. A multilinear function attains its extremes at
vertices, so

.. math::

    \partial_k u_I(C) = \big[\min_{\text{edges} \parallel k} \Delta_k u / h_k,\ \max_{\text{edges} \parallel k} \Delta_k u / h_k\big]

**exactly** (up to the rounding of the differences), and the global constant is the largest
absolute finite difference along axis :math:`k`. The same holds on any sub-box of one cell, from the
interpolant's values at the sub-box's vertices. No PDE assumption enters: a level-1 certificate
states :math:`\max |f - u_I|` over the grid's hull (certificates.md section 4).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch

from ..exceptions import CertificationError
from .reference import Reference

__all__ = ["MultilinearInterpolant"]

_U = 2.0**-53


class MultilinearInterpolant(Reference):
    """Multilinear interpolation of grid values, with exact derivative ranges per cell.

    A :class:`~lipsurrogate.bounds.reference.Reference` of level 1: certificates against it need
    no assumption beyond the stored data.

    Parameters
    ----------
    axes : sequence of ndarray
        Strictly increasing coordinates along each axis (at least 2 each).
    values : ndarray, shape (len(axes[0]), ..., len(axes[d-1]))
        The data at the grid points (finite).
    inputs : sequence of str, optional
        Names of the axes (printed in certificates).
    """

    def __init__(self, axes: Sequence[np.ndarray], values: np.ndarray, inputs: Sequence[str] | None = None) -> None:
        values = np.asarray(values, dtype=np.float64)
        if len(axes) != values.ndim:
            raise CertificationError(f"Expected one coordinate vector per axis of the values ({values.ndim}). Got {len(axes)}.")
        self.axes = []
        for k, (a, n) in enumerate(zip(axes, values.shape)):
            a = np.asarray(a, dtype=np.float64)
            if a.ndim != 1 or len(a) != n or n < 2:
                raise CertificationError(f"Axis {k}: expected {n} >= 2 coordinates. Got shape {a.shape}.")
            if not np.all(np.isfinite(a)) or np.any(np.diff(a) <= 0):
                raise CertificationError(f"Axis {k}: coordinates must be finite and strictly increasing (no zero-size cells).")
            self.axes.append(a)
        if not np.all(np.isfinite(values)):
            raise CertificationError("The data contain NaN or infinite values; no interpolant can be certified against.")
        self.data = values
        self.d = self.in_features = values.ndim
        if inputs is not None and len(inputs) != self.d:
            raise CertificationError(f"'inputs' names {len(inputs)} axes; the data have {self.d}.")
        self.inputs = None if inputs is None else list(inputs)
        self._cell_ranges = None
        self._corners = np.array(list(itertools.product((0, 1), repeat=self.d)))
        scale = float(np.abs(values).max())
        # u_I(x) = sum_v w_v u_v with sum w_v = 1, w_v products of d factors: gamma bound
        self.rounding = 4 * (2**self.d + 2 * self.d + 2) * _U * scale

    @property
    def lower(self) -> np.ndarray:
        """Lower corner of the grid's hull (exact, the first coordinate of each axis)."""
        return np.array([a[0] for a in self.axes])

    @property
    def upper(self) -> np.ndarray:
        """Upper corner of the grid's hull (exact, the last coordinate of each axis)."""
        return np.array([a[-1] for a in self.axes])

    def _locate(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != self.d:
            raise CertificationError(f"Expected points of shape (n, {self.d}). Got {points.shape}.")
        if np.any(points < self.lower - 1e-12 * (1 + np.abs(self.lower))) or np.any(points > self.upper + 1e-12 * (1 + np.abs(self.upper))):
            raise CertificationError("Points outside the data grid: the interpolant is only defined on its hull.")
        idx = np.stack([np.clip(np.searchsorted(a, points[:, k], side="right") - 1, 0, len(a) - 2)
                        for k, a in enumerate(self.axes)], 1)
        frac = np.stack([(points[:, k] - a[idx[:, k]]) / (a[idx[:, k] + 1] - a[idx[:, k]])
                         for k, a in enumerate(self.axes)], 1)
        return idx, np.clip(frac, 0.0, 1.0)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """:math:`u_I` at ``points`` (n, d), float64; rounding is at most :attr:`rounding`."""
        idx, frac = self._locate(points)
        out = np.zeros(len(idx))
        for corner in self._corners:
            w = np.prod(np.where(corner, frac, 1.0 - frac), axis=1)
            out += w * self.data[tuple((idx + corner).T)]
        return out

    def torch(self, points: torch.Tensor) -> torch.Tensor:
        """:math:`u_I` as a differentiable torch function (float64), for adversarial search."""
        with torch.no_grad():
            idx, _ = self._locate(points.detach().cpu().numpy())
        lo = torch.stack([torch.from_numpy(a[idx[:, k]]) for k, a in enumerate(self.axes)], 1)
        hi = torch.stack([torch.from_numpy(a[idx[:, k] + 1]) for k, a in enumerate(self.axes)], 1)
        frac = (points - lo) / (hi - lo)
        out = torch.zeros(len(points), dtype=torch.float64)
        for corner in self._corners:
            c = torch.from_numpy(corner.astype(bool))
            w = torch.where(c, frac, 1.0 - frac).prod(dim=1)
            out = out + w * torch.from_numpy(self.data[tuple((idx + corner).T)])
        return out

    def _spacing(self, k: int) -> np.ndarray:
        return np.diff(self.axes[k]).reshape([-1 if i == k else 1 for i in range(self.d)])

    def cell_derivative_intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact ranges of :math:`\\partial_k u_I` on every cell: arrays of shape (*cells, d)."""
        cells = tuple(n - 1 for n in self.data.shape)
        lo = np.empty((*cells, self.d))
        hi = np.empty((*cells, self.d))
        for k in range(self.d):
            fd = np.diff(self.data, axis=k) / self._spacing(k)  # edges along k: cells in k, vertices elsewhere
            parts = []
            for offset in itertools.product((0, 1), repeat=self.d - 1):
                sl = []
                j = 0
                for i in range(self.d):
                    if i == k:
                        sl.append(slice(None))
                    else:
                        sl.append(slice(offset[j], offset[j] + cells[i]))
                        j += 1
                parts.append(fd[tuple(sl)])
            parts = np.stack(parts)
            pad = 4 * _U * np.abs(parts).max(axis=0)
            lo[..., k] = parts.min(axis=0) - pad
            hi[..., k] = parts.max(axis=0) + pad
        return lo, hi

    def box_derivative_intervals(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ranges of :math:`\\partial_k u_I` on boxes that each lie inside one grid cell.

        The interpolant is multilinear on such a box, so the range along :math:`k` is the hull of
        the edge differences of its values at the box's vertices, widened by their rounding.
        """
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        n = len(lo)
        pts = np.where(self._corners[None] == 1, hi[:, None, :], lo[:, None, :])
        vals = self(pts.reshape(-1, self.d)).reshape(n, len(self._corners))
        out_lo = np.empty((n, self.d))
        out_hi = np.empty((n, self.d))
        for k in range(self.d):
            a = np.flatnonzero(self._corners[:, k] == 0)
            b = a + 2 ** (self.d - 1 - k)
            width = (hi - lo)[:, k : k + 1]
            fd = (vals[:, b] - vals[:, a]) / width
            pad = (2 * self.rounding / width) + 4 * _U * np.abs(fd)
            out_lo[:, k] = (fd - pad).min(axis=1)
            out_hi[:, k] = (fd + pad).max(axis=1)
        return out_lo, out_hi

    # -- the Reference protocol --------------------------------------------------------------

    def values(self, points: np.ndarray) -> tuple[np.ndarray, float]:
        """:math:`u_I` at ``points`` (n, d) and the **certified** bound :attr:`rounding` on its rounding."""
        return self(points), self.rounding

    def global_constants(self, box: np.ndarray | None = None) -> np.ndarray:
        """Exact :math:`\\sup |\\partial_k u_I|`: the largest absolute finite difference along each axis.

        ``box`` is accepted for the :class:`~lipsurrogate.bounds.reference.Reference` protocol;
        the constants hold on the whole hull.
        """
        return np.array([np.abs(np.diff(self.data, axis=k) / self._spacing(k)).max() * (1 + 4 * _U)
                         for k in range(self.d)])

    def derivative_intervals(self, lo: np.ndarray, hi: np.ndarray, box=None) -> tuple[np.ndarray, np.ndarray]:
        """Certified ranges of :math:`\\partial_k u_I` on arbitrary boxes inside the hull.

        A box inside one grid cell (and not the whole cell) gets the exact sub-box range
        (:meth:`box_derivative_intervals`); any other box the hull of the exact ranges of the grid
        cells it touches (:meth:`cell_derivative_intervals`), which is exact when the box is a
        union of cells and a superset otherwise.
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        if self._cell_ranges is None:
            self._cell_ranges = self.cell_derivative_intervals()
        clo, chi = self._cell_ranges
        i0 = np.stack([np.clip(np.searchsorted(a, lo[:, k], side="right") - 1, 0, len(a) - 2)
                       for k, a in enumerate(self.axes)], 1)
        i1 = np.stack([np.clip(np.searchsorted(a, hi[:, k], side="left") - 1, 0, len(a) - 2)
                       for k, a in enumerate(self.axes)], 1)
        i1 = np.maximum(i1, i0)
        out_lo = np.full(lo.shape, np.inf)
        out_hi = np.full(lo.shape, -np.inf)
        span = (i1 - i0).max(axis=0) if len(lo) else np.zeros(self.d, dtype=int)
        for offset in itertools.product(*[range(int(s) + 1) for s in span]):
            idx = tuple(np.minimum(i0 + np.asarray(offset), i1).T)
            out_lo = np.minimum(out_lo, clo[idx])
            out_hi = np.maximum(out_hi, chi[idx])
        inside = np.all(i0 == i1, axis=1)
        whole = np.all((lo == np.stack([a[i0[:, k]] for k, a in enumerate(self.axes)], 1))
                       & (hi == np.stack([a[i1[:, k] + 1] for k, a in enumerate(self.axes)], 1)), axis=1)
        sub = np.flatnonzero(inside & ~whole)
        if len(sub):
            slo, shi = self.box_derivative_intervals(lo[sub], hi[sub])
            # both are certified on the sub-box: keep the tighter ends
            out_lo[sub] = np.maximum(out_lo[sub], slo)
            out_hi[sub] = np.minimum(out_hi[sub], shi)
        return out_lo, out_hi

    def statement(self) -> dict:
        """Level 1: the statement is about :math:`u_I` itself (no PDE assumption)."""
        return {
            "level": "level 1: against the data's own multilinear interpolant u_I (no PDE assumption)",
            "bound_kind": "certified upper bound on max |f - u_I| over the hull of the data grid "
                          "(u_I: the data's multilinear interpolant)",
            "reference": "u_I, the multilinear interpolant of the stored data (exact vertex values)",
            "assumptions": ["the statement is about u_I, the multilinear interpolant of the stored data; how far u_I "
                            "is from the PDE's solution is estimated separately (level 3)",
                            "network certified as it computes in evaluation mode with the saved weights"],
            "lipschitz_u_kind": "exact (rounded up): largest absolute finite difference of the data along each axis",
            "lipschitz_u_source": "the data's multilinear interpolant (level 1)",
        }
