r"""Adaptive refinement of a per-cell certificate: split the cells whose bound dominates.

The global bound is the largest cell bound, so only the cells near the top matter. Each round
splits every box whose bound exceeds :math:`\max(\text{target}, \rho \cdot B_\text{current})` into
:math:`2^d` halves, evaluates the error at the new vertices only there, and bounds each child with
the exact per-cell program (:mod:`lipsurrogate.bounds.cell_lp`). A child inherits its parent's
constants (a supremum over a subset is no larger) and, when a ``local_constants`` callback is
given, takes the minimum with constants recomputed on the child; its bound is capped by its
parent's (valid on the child too), so bounds never grow. With signed slope ranges (``local_slopes``)
the child inherits its parent's range, intersected with its own. The children tile the parent exactly:
their corners are the evaluated points, the far corner being the parent's own. A base cell's bound becomes the
largest bound of the boxes that cover it, so the refined certificate is a
:class:`~lipsurrogate.bounds.cells.CellCertificate` on the same grid and every consumer
(verification, ``predict(..., with_bound=True)``) uses it unchanged.

Stops when the bound reaches ``target``, when the next round would exceed the evaluation
``budget``, after ``max_rounds``, or after two rounds that improved the bound by less than 0.1%
(the largest bound then sits where the error itself is largest). Every child runs the consistency check with the global
constants, so a wrong constant is caught where the grid is finest.
"""

from __future__ import annotations

import sys

import itertools
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..exceptions import CertificationError
from .cell_lp import signed_abs_bounds
from .cells import CellCertificate

__all__ = ["RefinementResult", "refine_certificate"]

_U = 2.0**-53


@dataclass(frozen=True)
class RefinementResult:
    """A refined certificate and what it cost.

    Attributes
    ----------
    certificate : CellCertificate
        Same grid as the input; ``per_cell`` holds the refined **certified** bounds.
    rounds : int
    evaluations : int
        Error evaluations spent (points).
    boxes : int
        Leaf boxes at the end inside the refined cells.
    refined_cells : int
        Base cells that were split at least once.
    bound_before, bound_after : float
        The global certified bound before and after.
    history : list of dict
        Per round: threshold, boxes split, evaluations, bound.
    """

    certificate: CellCertificate
    rounds: int
    evaluations: int
    boxes: int
    refined_cells: int
    bound_before: float
    bound_after: float
    history: list

    def summary(self) -> dict:
        """Rounds, evaluations, refined cells and the **certified** bound before and after refinement."""
        return {"rounds": self.rounds, "evaluations": self.evaluations, "leaf_boxes": self.boxes,
                "refined_cells": self.refined_cells, "bound_before": self.bound_before,
                "bound_after": self.bound_after, "history": self.history}


def _check_children(values, margins, spans, lipschitz, d):
    """Consistency check on every edge of every child box (global constants)."""
    bits = np.array(list(itertools.product((0, 1), repeat=d)))
    for k in range(d):
        lo = np.flatnonzero(bits[:, k] == 0)
        hi = lo + 2 ** (d - 1 - k)
        allowed = lipschitz[k] * spans[:, k : k + 1] + margins[:, lo] + margins[:, hi]
        slack = 8 * _U * (np.abs(values[:, lo]) + np.abs(values[:, hi]) + allowed)
        jump = np.abs(values[:, hi] - values[:, lo]) - allowed - slack
        if np.any(jump > 0):
            raise CertificationError(
                f"Consistency check failed along axis {k} while refining: the error changes by more than the "
                f"assumed constant L_{k} = {lipschitz[k]:.4g} allows. One of the assumed Lipschitz constants is "
                "wrong; no bound is printed."
            )


def refine_certificate(
    cert: CellCertificate,
    error: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    local_constants: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    local_slopes: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    target: float | None = None,
    budget: int = 200_000,
    max_rounds: int = 8,
    dominance: float = 0.9,
    progress: bool = False,
) -> RefinementResult:
    r"""Split the dominating cells of ``cert`` until ``target`` or the ``budget`` is reached.

    Parameters
    ----------
    cert : CellCertificate
        A certificate from :func:`~lipsurrogate.bounds.cells.cell_bounds` (with ``constants``).
    error : callable
        ``points (n, d) -> (e, margin)``: float64 errors :math:`f - u` and bounds on their
        rounding/uncertainty, as used for the base grid.
    local_constants : callable, optional
        ``(lo (n, d), hi (n, d)) -> (n, d)`` certified bounds on :math:`|\partial_k e|` on each box.
    local_slopes : callable, optional
        ``(lo, hi) -> (lower, upper)``, each (n, d): certified signed ranges of :math:`\partial_k e`
        on each box (tighter than ``local_constants``: the signed program of
        :func:`~lipsurrogate.bounds.cell_lp.signed_upper_bounds` is used).
    target : float, optional
        Stop once the global bound is at most this (default: refine until budget or rounds).
    budget : int
        Maximum number of error evaluations.
    max_rounds : int
    dominance : float
        A box is split when its bound exceeds ``max(target, dominance * current bound)``.

    Returns
    -------
    RefinementResult
    """
    if cert.constants is None:
        raise CertificationError("The certificate carries no per-cell constants; recompute it with cell_bounds.")
    if not 0 < dominance < 1:
        raise CertificationError(f"dominance must lie in (0, 1). Got {dominance}.")
    d = len(cert.edges)
    shape = cert.per_cell.shape
    L = np.asarray(cert.lipschitz, dtype=np.float64)
    original = cert.per_cell.reshape(-1)
    base = original.copy()
    refined = np.zeros(base.size, dtype=bool)
    # leaves inside refined base cells
    leaf_lo = np.empty((0, d))
    leaf_hi = np.empty((0, d))
    leaf_slo = np.empty((0, d))
    leaf_shi = np.empty((0, d))
    if cert.slopes is not None:
        base_slo = cert.slopes[..., 0].reshape(-1, d)
        base_shi = cert.slopes[..., 1].reshape(-1, d)
    else:
        base_shi = np.ascontiguousarray(cert.constants.reshape(-1, d))
        base_slo = -base_shi
    leaf_base = np.empty(0, dtype=np.int64)
    leaf_bound = np.empty(0)
    offsets = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64)
    fine = np.array(list(itertools.product((0, 1, 2), repeat=d)), dtype=np.float64) / 2.0  # 3^d points
    child_of = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64) / 2.0
    # index into the 3^d points of each child's vertices
    index_3 = {tuple(p): i for i, p in enumerate((fine * 2).astype(int))}
    child_vertex = np.array([[index_3[tuple((2 * c + o).astype(int))] for o in offsets] for c in child_of])
    edges = cert.edges
    before = float(base.max())
    evaluations, history, rounds, stalled = 0, [], 0, 0
    per_split = len(fine)
    while rounds < max_rounds:
        current = float(base.max())
        if target is not None and current <= target:
            break
        threshold = max(target or 0.0, dominance * current)
        new_base = np.flatnonzero((base > threshold) & ~refined)
        split_leaves = np.flatnonzero(leaf_bound > threshold)
        n_split = len(new_base) + len(split_leaves)
        if n_split == 0:
            break
        if evaluations + n_split * per_split > budget:
            break
        # boxes to split: fresh base cells, then existing leaves
        cidx = np.stack(np.unravel_index(new_base, shape), 1) if len(new_base) else np.zeros((0, d), dtype=np.int64)
        blo = np.stack([edges[k][cidx[:, k]] for k in range(d)], 1) if len(new_base) else np.zeros((0, d))
        bhi = np.stack([edges[k][cidx[:, k] + 1] for k in range(d)], 1) if len(new_base) else np.zeros((0, d))
        lo = np.concatenate([blo, leaf_lo[split_leaves]])
        hi = np.concatenate([bhi, leaf_hi[split_leaves]])
        slo = np.concatenate([base_slo[new_base], leaf_slo[split_leaves]])
        shi = np.concatenate([base_shi[new_base], leaf_shi[split_leaves]])
        parent_bound = np.concatenate([original[new_base], leaf_bound[split_leaves]])
        owner = np.concatenate([new_base, leaf_base[split_leaves]])
        refined[new_base] = True
        keep = np.ones(len(leaf_bound), dtype=bool)
        keep[split_leaves] = False

        # the far corner is taken as hi itself, so the children tile the parent exactly, and every
        # child box is built from the very points that were evaluated
        grid = np.where(fine[None] == 1.0, hi[:, None, :], lo[:, None, :] + fine[None] * (hi - lo)[:, None, :])
        points = grid.reshape(-1, d)
        e, m = error(points)
        e = np.asarray(e, dtype=np.float64).reshape(len(lo), per_split)
        m = np.broadcast_to(np.asarray(m, dtype=np.float64), points.shape[:1]).reshape(len(lo), per_split)
        evaluations += len(points)
        if not np.all(np.isfinite(e)):
            raise CertificationError("Refinement evaluated NaN or infinite errors; nothing can be certified.")
        # children: (n_split * 2^d) boxes
        clo = grid[:, child_vertex[:, 0], :].reshape(-1, d)
        chi = grid[:, child_vertex[:, -1], :].reshape(-1, d)
        # a parent's slope range holds on its children; intersect with the children's own
        cslo = np.repeat(slo, len(child_of), axis=0)
        cshi = np.repeat(shi, len(child_of), axis=0)
        if local_constants is not None:
            cl = np.asarray(local_constants(clo, chi), dtype=np.float64)
            cslo, cshi = np.maximum(cslo, -cl), np.minimum(cshi, cl)
        if local_slopes is not None:
            a, b = local_slopes(clo, chi)
            cslo, cshi = np.maximum(cslo, np.asarray(a, dtype=np.float64)), np.minimum(cshi, np.asarray(b, dtype=np.float64))
        if np.any(cslo > cshi):
            raise CertificationError("Refinement found slope ranges that contradict each other on a child box: one of "
                                     "the certified ranges is wrong; no bound is printed.")
        cvals = e[:, child_vertex].reshape(-1, len(offsets))
        cmarg = m[:, child_vertex].reshape(-1, len(offsets))
        spans = chi - clo
        _check_children(cvals, cmarg, spans, L, d)
        # a parent's bound holds on each of its children too: keep the smaller (both certified)
        cbound = np.minimum(signed_abs_bounds(cvals, cmarg, 0.5 * spans * (1 + 4 * _U), cslo, cshi),
                            np.repeat(parent_bound, len(child_of)))
        cowner = np.repeat(owner, len(child_of))

        leaf_lo = np.concatenate([leaf_lo[keep], clo])
        leaf_hi = np.concatenate([leaf_hi[keep], chi])
        leaf_slo = np.concatenate([leaf_slo[keep], cslo])
        leaf_shi = np.concatenate([leaf_shi[keep], cshi])
        leaf_base = np.concatenate([leaf_base[keep], cowner])
        leaf_bound = np.concatenate([leaf_bound[keep], cbound])
        # a refined base cell's bound is the largest bound of the leaves covering it
        touched = np.unique(owner)
        base[touched] = 0.0
        mask = np.isin(leaf_base, touched)
        np.maximum.at(base, leaf_base[mask], leaf_bound[mask])
        base[touched] = np.minimum(base[touched], original[touched])  # both certified
        rounds += 1
        history.append({"threshold": threshold, "boxes_split": int(n_split), "evaluations": int(len(points)),
                        "bound": float(base.max())})
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(f"  refinement round {rounds}: split {n_split} boxes, bound {base.max():.4g}", file=sys.stderr)
        # the largest bound sits where the error itself is largest: stop after two rounds without gain
        stalled = stalled + 1 if base.max() > (1 - 1e-3) * current else 0
        if stalled >= 2:
            break
    refined_cert = replace(cert, per_cell=base.reshape(shape))
    return RefinementResult(refined_cert, rounds, evaluations, int(len(leaf_bound)), int(refined.sum()),
                            before, float(base.max()), history)
