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

When the boxes above the threshold need more evaluations than the ``budget`` has left, the
round splits only the largest of them that fit (the threshold rises to the bound of the first box
left out). Stops when the bound reaches ``target``, when the budget is spent, after
``max_rounds`` (32: the budget is the real limit; rounds that split few boxes are cheap), or after
two rounds that improved the bound by less than 0.1% (the largest bound then sits where the error
itself is largest). Every child runs the consistency check with the global
constants, so a wrong constant is caught where the grid is finest.
"""

from __future__ import annotations

import sys

import itertools
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .._compiled import HAVE_NUMBA, parallel_kernel
from .._compiled import prange as _prange
from ..exceptions import CertificationError
from .cell_lp import signed_abs_bounds
from .cells import CellCertificate

__all__ = ["RefinementResult", "RefinedBoxes", "refine_certificate", "refine_boxes", "refinement_floor", "cell_boxes",
           "cell_slope_ranges", "DOMINANCE"]

_U = 2.0**-53

DOMINANCE = 0.9
"""Default share of the current bound above which a box is split."""


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
    lows = [np.flatnonzero(bits[:, k] == 0) for k in range(d)]
    if _CHECK_EDGES is not None and values.flags.c_contiguous and margins.flags.c_contiguous:
        failed = np.zeros(d, dtype=np.bool_)
        _CHECK_EDGES(values, margins, np.ascontiguousarray(spans, dtype=np.float64),
                     np.asarray(lipschitz, dtype=np.float64), np.array(lows, dtype=np.int64), failed)
        failing = [k for k in range(d) if failed[k]]
    else:
        failing = []
        for k in range(d):
            lo = lows[k]
            hi = lo + 2 ** (d - 1 - k)
            allowed = lipschitz[k] * spans[:, k : k + 1] + margins[:, lo] + margins[:, hi]
            slack = 8 * _U * (np.abs(values[:, lo]) + np.abs(values[:, hi]) + allowed)
            jump = np.abs(values[:, hi] - values[:, lo]) - allowed - slack
            if np.any(jump > 0):
                failing.append(k)
                break
    if failing:
        k = failing[0]
        raise CertificationError(
            f"Consistency check failed along axis {k} while refining: the error changes by more than the "
            f"assumed constant L_{k} = {lipschitz[k]:.4g} allows. One of the assumed Lipschitz constants is "
            "wrong; no bound is printed."
        )


def _check_edges_rows(values, margins, spans, lipschitz, lows, failed):  # pragma: no cover - compiled
    """:func:`_check_children`'s test, one child at a time: the same operations in the same order per
    edge, so the same decisions; ``failed[k]`` is set where an edge along axis ``k`` fails."""
    n, nv = values.shape
    d, half = lows.shape
    for k in range(d):
        step = 2 ** (d - 1 - k)
        bad = 0
        for i in _prange(n):
            span = lipschitz[k] * spans[i, k]
            for t in range(half):
                lo = lows[k, t]
                hi = lo + step
                allowed = span + margins[i, lo] + margins[i, hi]
                slack = 8 * _U * (abs(values[i, lo]) + abs(values[i, hi]) + allowed)
                jump = abs(values[i, hi] - values[i, lo]) - allowed - slack
                if jump > 0:
                    bad += 1
        failed[k] = bad > 0


if HAVE_NUMBA:
    _CHECK_EDGES = parallel_kernel(_check_edges_rows)
else:  # pragma: no cover
    _CHECK_EDGES = None


def refine_certificate(
    cert: CellCertificate,
    error: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    local_constants: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    local_slopes: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    target: float | None = None,
    budget: int = 200_000,
    max_rounds: int = 32,
    dominance: float = DOMINANCE,
    floor: float | None = None,
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
    floor : float, optional
        A **lower** bound on the final global bound (e.g. :func:`refinement_floor`: the largest
        vertex error minus its margin). Only cells whose bound exceeds ``dominance * floor`` are
        candidates; since every threshold is at least ``dominance`` times the current bound,
        which never falls below ``floor``, the result is the same as without it, at the memory
        of the candidates only (``theory/cell-bounds.md`` section 13).

    Returns
    -------
    RefinementResult
    """
    if cert.constants is None:
        raise CertificationError("The certificate carries no per-cell constants; recompute it with cell_bounds.")
    shape = cert.per_cell.shape
    bound = cert.per_cell.reshape(-1)
    chosen = np.flatnonzero(bound > dominance * floor) if floor is not None else np.arange(bound.size)
    slo, shi = cell_slope_ranges(cert, chosen)
    lo, hi = cell_boxes(cert.edges, np.unravel_index(chosen, shape))
    boxes = refine_boxes(lo, hi, bound[chosen], slo, shi, cert.lipschitz, error, local_constants=local_constants,
                         local_slopes=local_slopes, target=target, budget=budget, max_rounds=max_rounds,
                         dominance=dominance, progress=progress)
    refined_bound = bound.copy()
    refined_bound[chosen] = boxes.bounds
    return RefinementResult(replace(cert, per_cell=refined_bound.reshape(shape)), boxes.rounds, boxes.evaluations,
                            boxes.leaves, boxes.refined, float(bound.max()), float(refined_bound.max()), boxes.history)


def cell_slope_ranges(cert: CellCertificate, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """**Certified** signed slope ranges (lower, upper), each (n, d), of the cells with flat indices ``flat``.

    The signed ranges when the certificate has them, else :math:`[-L_k(C), L_k(C)]` from its constants.
    """
    d = len(cert.edges)
    if cert.slopes is not None:
        return tuple(cert.slopes[..., j].reshape(-1, d)[flat] for j in (0, 1))
    upper = np.ascontiguousarray(cert.constants.reshape(-1, d)[flat])
    return -upper, upper


def cell_boxes(edges, index: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners, each (n, d), of the grid cells with multi-index ``index`` (one array per axis)."""
    d = len(edges)
    lo = np.stack([edges[k][index[k]] for k in range(d)], 1) if d else np.zeros((0, 0))
    hi = np.stack([edges[k][index[k] + 1] for k in range(d)], 1) if d else np.zeros((0, 0))
    return lo.reshape(-1, d), hi.reshape(-1, d)


def refinement_floor(vertex_errors: np.ndarray, margin) -> float:
    r"""A **certified lower** bound on any valid global bound: :math:`\max_v (|e_v| - m_v)`.

    The true :math:`|e(v)|` is at least :math:`|e_v| - m_v` at every vertex, and a valid bound is at
    least the true :math:`\max |e|`; hence no refinement can go below this value.
    """
    e = np.asarray(vertex_errors, dtype=np.float64)
    return float(np.max(np.abs(e) - np.broadcast_to(np.asarray(margin, dtype=np.float64), e.shape)))


@dataclass(frozen=True)
class RefinedBoxes:
    """What :func:`refine_boxes` returns: the refined **certified** bound of each box and the cost."""

    bounds: np.ndarray
    rounds: int
    evaluations: int
    leaves: int
    refined: int
    history: list


# Note [screened children]
# ~~~~~~~~~~~~~~~~~~~~~~~~
# Let F <= max|e| (the largest |e_v| - m_v at the grid's vertices) and tau = dominance * F. Every
# round's threshold is dominance * current (or the target, larger) with current the largest
# certified box bound, so current >= max|e| >= F and the threshold is >= tau. A child whose bound
# with its parent's slope range ("cheap") is <= tau has, with its own range intersected in, a
# bound <= cheap <= tau (the program's bound grows with the range): with either, it is never
# split (splits need a bound above the threshold) and never the largest (the largest is >= F >
# tau when F > 0). So the splits, the budget's partition over the candidates, every round's
# current and the global bound are the same; a base box's bound (the largest of its leaves)
# differs only where it is <= tau. Its own range is computed for the other children only:
# each box's range depends on that box alone (section 16), so they are the same numbers.
# theory/cell-bounds.md section 18; tests/bounds/test_refine.py.


def refine_boxes(
    lo: np.ndarray,
    hi: np.ndarray,
    bound: np.ndarray,
    slope_lo: np.ndarray,
    slope_hi: np.ndarray,
    lipschitz,
    error: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    local_constants: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    local_slopes: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    target: float | None = None,
    budget: int = 200_000,
    max_rounds: int = 32,
    dominance: float = DOMINANCE,
    progress: bool = False,
    screen_floor: float | None = None,
) -> RefinedBoxes:
    r"""The refinement loop of :func:`refine_certificate` on a list of base boxes.

    ``lo``, ``hi`` (n, d) are the boxes, ``bound`` (n,) their **certified** bounds, ``slope_lo``,
    ``slope_hi`` (n, d) their **certified** signed slope ranges (already within the global
    constants ``lipschitz``). Rounds as described in the module docstring; the returned bound of a
    box is the largest bound of the leaves that tile it, never above its ``bound``.

    ``screen_floor`` (with ``local_slopes``): a number at most the true :math:`\max |e|` (e.g.
    the largest :math:`|e_v| - m_v` at the grid's vertices). Children whose bound with the range
    inherited from their parent is at most ``dominance * screen_floor`` keep that range and bound,
    and ``local_slopes`` runs on the others only (Note [screened children]): the rounds, the splits
    and the global bound are those without it; those children's bounds may be wider.
    """
    if not 0 < dominance < 1:
        raise CertificationError(f"dominance must lie in (0, 1). Got {dominance}.")
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    d = lo.shape[1]
    L = np.asarray(lipschitz, dtype=np.float64)
    original = np.asarray(bound, dtype=np.float64)
    base = original.copy()
    refined = np.zeros(base.size, dtype=bool)
    # leaves inside refined base boxes
    leaf_lo = np.empty((0, d))
    leaf_hi = np.empty((0, d))
    leaf_slo = np.empty((0, d))
    leaf_shi = np.empty((0, d))
    base_slo, base_shi = np.asarray(slope_lo, dtype=np.float64), np.asarray(slope_hi, dtype=np.float64)
    leaf_base = np.empty(0, dtype=np.int64)
    leaf_bound = np.empty(0)
    offsets = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64)
    fine = np.array(list(itertools.product((0, 1, 2), repeat=d)), dtype=np.float64) / 2.0  # 3^d points
    child_of = np.array(list(itertools.product((0, 1), repeat=d)), dtype=np.float64) / 2.0
    # index into the 3^d points of each child's vertices
    index_3 = {tuple(p): i for i, p in enumerate((fine * 2).astype(int))}
    child_vertex = np.array([[index_3[tuple((2 * c + o).astype(int))] for o in offsets] for c in child_of])
    evaluations, history, rounds, stalled = 0, [], 0, 0
    per_split = len(fine)
    while rounds < max_rounds and base.size:
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
            # not all of them: spend what is left on the largest, the threshold rising to the
            # bound of the first box left out (the global bound can fall at most to it)
            room = (budget - evaluations) // per_split
            if room == 0:
                break
            candidates = np.concatenate([base[new_base], leaf_bound[split_leaves]])
            threshold = float(np.partition(candidates, n_split - room - 1)[n_split - room - 1])
            new_base = new_base[base[new_base] > threshold]
            split_leaves = split_leaves[leaf_bound[split_leaves] > threshold]
            n_split = len(new_base) + len(split_leaves)
            if n_split == 0:
                break
        # boxes to split: fresh base boxes, then existing leaves
        blo, bhi = lo[new_base], hi[new_base]
        slo_ = np.concatenate([base_slo[new_base], leaf_slo[split_leaves]])
        shi_ = np.concatenate([base_shi[new_base], leaf_shi[split_leaves]])
        plo = np.concatenate([blo, leaf_lo[split_leaves]])
        phi = np.concatenate([bhi, leaf_hi[split_leaves]])
        parent_bound = np.concatenate([original[new_base], leaf_bound[split_leaves]])
        owner = np.concatenate([new_base, leaf_base[split_leaves]])
        refined[new_base] = True
        keep = np.ones(len(leaf_bound), dtype=bool)
        keep[split_leaves] = False

        # the far corner is taken as hi itself, so the children tile the parent exactly, and every
        # child box is built from the very points that were evaluated
        grid = np.where(fine[None] == 1.0, phi[:, None, :], plo[:, None, :] + fine[None] * (phi - plo)[:, None, :])
        points = grid.reshape(-1, d)
        e, m = error(points)
        e = np.asarray(e, dtype=np.float64).reshape(len(plo), per_split)
        m = np.broadcast_to(np.asarray(m, dtype=np.float64), points.shape[:1]).reshape(len(plo), per_split)
        evaluations += len(points)
        if not np.all(np.isfinite(e)):
            raise CertificationError("Refinement evaluated NaN or infinite errors; nothing can be certified.")
        # children: (n_split * 2^d) boxes
        clo = grid[:, child_vertex[:, 0], :].reshape(-1, d)
        chi = grid[:, child_vertex[:, -1], :].reshape(-1, d)
        # a parent's slope range holds on its children; intersect with the children's own
        cslo = np.repeat(slo_, len(child_of), axis=0)
        cshi = np.repeat(shi_, len(child_of), axis=0)
        if local_constants is not None:
            cl = np.asarray(local_constants(clo, chi), dtype=np.float64)
            cslo, cshi = np.maximum(cslo, -cl), np.minimum(cshi, cl)
        cvals = e[:, child_vertex].reshape(-1, len(offsets))
        cmarg = m[:, child_vertex].reshape(-1, len(offsets))
        spans = chi - clo
        half = 0.5 * spans * (1 + 4 * _U)
        inherited = np.repeat(parent_bound, len(child_of))
        own = np.arange(len(clo))  # the children that get ranges of their own
        cbound = None
        if local_slopes is not None and screen_floor is not None and screen_floor > 0:
            # Note [screened children]: a child at most dominance * floor with its parent's range is
            # never split and never the largest, with its own range or without
            cbound = np.minimum(signed_abs_bounds(cvals, cmarg, half, cslo, cshi), inherited)
            own = np.flatnonzero(cbound > dominance * screen_floor)
        if local_slopes is not None and len(own):
            a, b = local_slopes(clo[own], chi[own])
            cslo[own] = np.maximum(cslo[own], np.asarray(a, dtype=np.float64))
            cshi[own] = np.minimum(cshi[own], np.asarray(b, dtype=np.float64))
        if np.any(cslo > cshi):
            raise CertificationError("Refinement found slope ranges that contradict each other on a child box: one of "
                                     "the certified ranges is wrong; no bound is printed.")
        _check_children(cvals, cmarg, spans, L, d)
        # a parent's bound holds on each of its children too: keep the smaller (both certified)
        if cbound is None:
            cbound = np.minimum(signed_abs_bounds(cvals, cmarg, half, cslo, cshi), inherited)
        elif len(own):  # the screened children keep the bound with their parent's range
            cbound[own] = np.minimum(signed_abs_bounds(cvals[own], cmarg[own], half[own], cslo[own], cshi[own]),
                                     inherited[own])
        cowner = np.repeat(owner, len(child_of))

        leaf_lo = np.concatenate([leaf_lo[keep], clo])
        leaf_hi = np.concatenate([leaf_hi[keep], chi])
        leaf_slo = np.concatenate([leaf_slo[keep], cslo])
        leaf_shi = np.concatenate([leaf_shi[keep], cshi])
        leaf_base = np.concatenate([leaf_base[keep], cowner])
        leaf_bound = np.concatenate([leaf_bound[keep], cbound])
        # a refined base box's bound is the largest bound of the leaves covering it
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
    return RefinedBoxes(base, rounds, evaluations, int(len(leaf_bound)), int(refined.sum()), history)
