r"""The certificate grid in tiles: bounded memory, and the same tiles on Dask workers.

Every number of a per-cell certificate depends on its own cell only: the vertex errors at its
:math:`2^d` corners, the slope range of the block of cells it belongs to, and the global
constants :math:`L_k`. :func:`~lipsurrogate.bounds.certify` therefore cuts the grid into
**tiles** of whole blocks (:func:`plan_tiles`) and certifies each with :func:`certify_tile`, in
this process or as Dask tasks (:func:`run_tiles`); neighbouring tiles share their boundary
vertices, so every edge of the grid still goes through the consistency check. What a tile
hands back is small: its cells' final-grid bounds, its own vertices' errors, the maxima of every
rung of the ladder, and the few cells that refinement may split (those above
``DOMINANCE * floor``, ``theory/cell-bounds.md`` section 13). Refinement then runs once on those
candidates, in the driver.

Identity
    The tiles are the same whether they run here or on any number of workers, and each is
    computed by the same function, so the result does not depend on the scheduler, the number
    of workers or the order in which tiles finish (tested bit for bit). A grid cut into tiles
    gives the same per-cell bounds as one piece up to the last bits of the floating-point
    products (the BLAS may sum in another order for another batch); every such result is
    certified, since every rounding is covered by a proven margin, not by a particular order.

Memory
    A task holds one tile's intermediates (corners, slope ranges: about
    :math:`(2^d + 4d + 8)` float64 per cell); the driver holds three float64 per cell of the
    result (final bound, naive bound, vertex error) plus the candidates, and at most
    ``2 * workers`` finished tiles waiting to be written.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._threads import one_numpy_blas_thread
from ..exceptions import CertificationError, ConfigurationError

__all__ = ["TileResult", "plan_tiles", "certify_tile", "run_tiles", "DEFAULT_TILE_CELLS"]

DEFAULT_TILE_CELLS = 1 << 20
"""Cells per tile when ``certify(tile_cells=None)``: about 1M cells, a few hundred MB of intermediates in 4-D."""


def plan_tiles(cells: Sequence[int], steps: Sequence[int], tile_cells: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Cut a grid of ``cells`` cells per axis into tiles of at most ``tile_cells`` cells (when blocks allow).

    Tile edges fall on multiples of ``steps`` (the cells per slope block on each axis), so no
    block is cut. The tile shape halves the axis with the most blocks per tile, first axes
    first on ties, until the tile is small enough or a single block; the plan depends only on
    the arguments. Returns ``(start, stop)`` cell indices per tile, in C order.
    """
    cells = [int(n) for n in cells]
    steps = [int(s) for s in steps]
    if tile_cells < 1:
        raise ConfigurationError(f"'tile_cells' must be a positive integer. Got {tile_cells}.")
    shape = list(cells)
    while math.prod(shape) > tile_cells:
        blocks = [t // s for t, s in zip(shape, steps)]
        k = int(np.argmax(blocks))
        if blocks[k] <= 1:
            break
        shape[k] = steps[k] * math.ceil(blocks[k] / 2)
    ranges = [[(a, min(a + t, n)) for a in range(0, n, t)] for n, t in zip(cells, shape)]
    tiles = []
    for combo in np.ndindex(*[len(r) for r in ranges]):
        spans = [ranges[k][i] for k, i in enumerate(combo)]
        tiles.append((tuple(a for a, _ in spans), tuple(b for _, b in spans)))
    return tiles


@dataclass
class TileResult:
    """What one tile of the certificate grid hands back (all **certified** numbers, float64).

    Attributes
    ----------
    start, stop : tuple of int
        The tile's cells along each axis: ``start[k] <= i_k < stop[k]``.
    per_cell : ndarray
        Bounds of its cells with local slopes (before refinement), or with global constants
        when local slopes are not computed.
    naive : ndarray
        The naive anchor per cell.
    vertex_errors : ndarray
        :math:`f - u` at the vertices the tile owns: ``start[k] <= j_k < stop[k]``, and the
        last vertex too on the grid's last tile along an axis.
    maxima : dict
        Largest value over the tile of each rung of the ladder that is computed per tile.
    max_vertex_error : float
        :math:`\\max (|e_v| + m_v)` over the tile's vertices.
    floor : float
        :math:`\\max (|e_v| - m_v)`: a lower bound on any valid global bound.
    candidates : dict or None
        Cells with a bound above the candidate threshold: global multi-index (``index``, (n, d)),
        ``bound``, ``slope_lo`` and ``slope_hi`` ((n, d)); None when not asked for.
    seconds : dict
    screened : (int, int) or None
        Blocks that kept their screening ranges, and all blocks (Note [screened blocks]); None
        when the tile did not screen.
    """

    start: tuple
    stop: tuple
    per_cell: np.ndarray
    naive: np.ndarray
    vertex_errors: np.ndarray
    maxima: dict
    max_vertex_error: float
    floor: float
    candidates: dict | None = None
    seconds: dict = field(default_factory=dict)
    screened: tuple | None = None


@one_numpy_blas_thread  # also on Dask workers, which run this and not certify
def certify_tile(job: dict, start: Sequence[int], stop: Sequence[int], candidate_floor: float | None) -> TileResult:
    r"""Certify one tile (cells ``start <= i < stop``) of the grid that ``job`` describes.

    ``job`` holds what every tile shares (see :func:`lipsurrogate.bounds.certifier.certify`):
    ``edges``, ``lipschitz``, ``errors`` (points -> (e, margin)), ``slopes`` ((lo, hi) of boxes ->
    signed ranges, or None), ``steps`` (cells per block and axis), and ``screen`` (whether
    ``slopes`` takes a ``select`` function: Note [screened blocks]). With ``candidate_floor`` not
    None, the cells whose bound exceeds ``DOMINANCE * max(candidate_floor, tile floor)`` are
    returned for refinement.

    Note [screened blocks]
        With ``screen``, ``slopes`` propagates the forward affine forms of a batch of blocks and
        hands their ranges (the *cheap* ranges) to ``select`` (:func:`_screen`), which marks the
        blocks that hold a cell whose closed-form bound with them exceeds the threshold
        :math:`\tau = 0.9 \max_v (|e_v| - m_v)` (over the tile's own vertices); only those get the
        backward bounds (and, for ``slopes="both"``, the intervals), from the same propagation's
        layer ranges. The others keep bounds at most :math:`\tau`: valid (any certified range
        gives a valid bound), never candidates for refinement (whose threshold is 0.9 times a
        floor at least as large), and never the maximum, since the maximum of valid bounds is at
        least the true error's maximum, hence at least :math:`\max_v (|e_v| - m_v) > \tau` (when
        that is positive). The threshold depends on the tile alone, so the result does not depend
        on the order in which tiles finish.
        A cell whose bound with the full ranges exceeds :math:`\tau` also exceeds it with the
        wider cheap ranges (the per-cell program's bound grows with the ranges; the closed form
        is never below it), so its block is selected and it gets the same bound as without
        screening, given that each block's range depends on that block alone (the batches are
        aligned for that, :data:`~lipsurrogate.bounds.affine.ROW_ALIGN`). So the candidates for
        refinement, the largest bound, the pair and exact rungs of the ladder and the refined
        bound are those of the unscreened tile; only cells below :math:`\tau` keep wider (still
        certified) bounds. ``theory/cell-bounds.md`` section 16.
    """
    from .cells import cell_bounds
    from .refine import DOMINANCE, cell_slope_ranges

    edges_all, L, steps = job["edges"], job["lipschitz"], job["steps"]
    d = len(edges_all)
    start, stop = tuple(int(a) for a in start), tuple(int(b) for b in stop)
    edges = [e[a : b + 1] for e, a, b in zip(edges_all, start, stop)]
    seconds = {}
    clock = time.perf_counter()
    mesh = np.meshgrid(*edges, indexing="ij")
    e, margin = job["errors"](np.stack([m.ravel() for m in mesh], axis=1))
    del mesh
    shape = tuple(len(x) for x in edges)
    e = np.asarray(e, dtype=np.float64).reshape(shape)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), (e.size,)).reshape(shape)
    seconds["vertex_errors"] = time.perf_counter() - clock
    if not np.all(np.isfinite(e)):
        i = np.unravel_index(int(np.flatnonzero(~np.isfinite(e.reshape(-1)))[0]), shape)
        raise CertificationError(f"The network or the reference is not finite at vertex "
                                 f"{[float(x[j]) for x, j in zip(edges, i)]}; nothing can be certified.")
    clock = time.perf_counter()
    global_cert = cell_bounds(e, edges, L, margin)
    seconds["global_bounds"] = time.perf_counter() - clock
    maxima = {"naive_global": float(global_cert.naive.max()), "pair_global": float(global_cert.closed_form.max()),
              "exact_global": global_cert.bound}
    local_cert = global_cert
    floor = float(np.max(np.abs(e) - margin))
    screened = None
    if job["slopes"] is not None:
        clock = time.perf_counter()
        lo, hi, block_shape = block_boxes(edges, steps)

        def per_cell(ranges):
            return cell_bounds(e, edges, L, margin, check=False, local_slopes=tuple(
                _spread(np.asarray(part, dtype=np.float64).reshape(*block_shape, d), steps) for part in ranges))

        if not job.get("screen"):
            local_cert = per_cell(job["slopes"](lo, hi))
        else:  # Note [screened blocks]
            # the tile's own floor, not the floor known when it was submitted: the same cells
            # whatever the order in which tiles finish
            select = _screen(e, margin, edges, L, steps, block_shape, DOMINANCE * floor)
            lower, upper, kept = job["slopes"](lo, hi, select=select)
            local_cert = per_cell((lower, upper))
            screened = (len(lo) - int(np.count_nonzero(kept)), len(lo))
        del lo, hi
        seconds["local_constants"] = time.perf_counter() - clock
    maxima["pair_local"] = float(local_cert.closed_form.max())
    maxima["exact_local"] = local_cert.bound
    candidates = None
    if candidate_floor is not None:
        threshold = DOMINANCE * max(float(candidate_floor), floor)
        flat = np.flatnonzero(local_cert.per_cell.reshape(-1) > threshold)
        index = np.stack(np.unravel_index(flat, local_cert.per_cell.shape), 1) + np.asarray(start)
        slo, shi = cell_slope_ranges(local_cert, flat)
        candidates = {"index": index, "bound": local_cert.per_cell.reshape(-1)[flat], "slope_lo": slo, "slope_hi": shi}
    own = tuple(slice(0, (b - a) + (1 if b == len(x) - 1 else 0)) for a, b, x in zip(start, stop, edges_all))
    return TileResult(start, stop, local_cert.per_cell, global_cert.naive, np.ascontiguousarray(e[own]), maxima,
                      float(np.max(np.abs(e) + margin)), floor, candidates, seconds, screened)


def _screen(e: np.ndarray, margin: np.ndarray, edges, L: np.ndarray, steps: Sequence[int], block_shape: Sequence[int],
            threshold: float):
    """The selection of Note [screened blocks]: ``select(start, stop, lower, upper)`` marks the blocks
    ``start:stop`` (C order) that hold a cell whose closed-form bound with the ranges ``[lower,
    upper]`` exceeds ``threshold``: :func:`~lipsurrogate.bounds.cells.cell_bounds`'s closed form
    (the same functions, the same numbers), on the blocks' cells only."""
    from .cells import closed_form_bounds, pair_minimum

    d = e.ndim
    cell_shape = tuple(n - 1 for n in e.shape)
    per_block = int(np.prod(steps))

    def by_block(a: np.ndarray) -> np.ndarray:  # cell grid -> (blocks, cells of the block)
        split = [n for pair in zip(block_shape, steps) for n in pair]
        order = list(range(0, 2 * d, 2)) + list(range(1, 2 * d, 2))
        return np.ascontiguousarray(a.reshape(split).transpose(order)).reshape(-1, per_block)

    best = by_block(pair_minimum(e, margin))
    spans = [by_block(np.broadcast_to(np.diff(x).reshape([-1 if i == k else 1 for i in range(d)]), cell_shape))
             for k, x in enumerate(edges)]

    def select(start: int, stop: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        slope_lo, slope_hi = np.maximum(lower, -L), np.minimum(upper, L)
        local = np.maximum(np.abs(slope_lo), np.abs(slope_hi))  # (blocks, d), as cell_bounds clips them
        closed, _, _ = closed_form_bounds(best[start:stop], [local[:, k : k + 1] for k in range(d)],
                                          [s[start:stop] for s in spans], (stop - start, per_block))
        return np.any(closed > threshold, axis=1)

    return select


def _spread(part: np.ndarray, steps: Sequence[int]) -> np.ndarray:
    """Per-block values (block grid, d) repeated onto the cells of each block (cell grid, d)."""
    for axis, k in enumerate(steps):
        part = np.repeat(part, k, axis=axis)
    return part


def block_boxes(edges: Sequence[np.ndarray], steps: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Lower and upper corners, each (n, d), of the blocks of ``steps[k]`` cells along axis k, and their grid shape."""
    d = len(edges)
    block_edges = [e[::s] for e, s in zip(edges, steps)]
    lo = np.stack(np.meshgrid(*[e[:-1] for e in block_edges], indexing="ij"), -1).reshape(-1, d)
    hi = np.stack(np.meshgrid(*[e[1:] for e in block_edges], indexing="ij"), -1).reshape(-1, d)
    return lo, hi, [len(e) - 1 for e in block_edges]


def run_tiles(job: dict, tiles: Iterable[tuple[tuple, tuple]], *, scheduler: Any = None, n_workers: int | None = None,
              candidates: bool = False, on_result: Callable[[TileResult], None], progress: bool = False,
              total: int | None = None) -> None:
    """Certify ``tiles`` here (``scheduler=None``) or on Dask, handing each result to ``on_result``.

    ``scheduler``: None (this process), ``"local"`` (a :class:`dask.distributed.LocalCluster` of
    ``n_workers`` one-thread processes, closed afterwards), a scheduler address, or a
    :class:`dask.distributed.Client` (used as it is). At most twice as many tiles as workers are
    in flight, so finished results never pile up. With ``candidates`` each tile also returns its
    refinement candidates, above the largest floor known when it was submitted.
    """
    from tqdm.auto import tqdm

    floor = 0.0 if candidates else None
    bar = tqdm(total=total, desc="certificate tiles", unit="tile", disable=not progress, leave=False)
    try:
        if scheduler is None:
            for start, stop in tiles:
                result = certify_tile(job, start, stop, floor)
                if candidates:
                    floor = max(floor, result.floor)
                on_result(result)
                bar.update(1)
            return
        from .._dask import dask_client

        with dask_client(scheduler, n_workers) as (client, as_completed):
            n_active = max(1, len(client.scheduler_info().get("workers", {})))
            todo = iter(tiles)
            shared = client.scatter(job, broadcast=True)
            inflight: set = set()

            def submit(span):
                future = client.submit(certify_tile, shared, span[0], span[1], floor, pure=False)
                inflight.add(future)
                return future

            try:
                queue = as_completed([submit(s) for _, s in zip(range(2 * n_active), todo)])
                for future in queue:
                    result = future.result()
                    inflight.discard(future)
                    future.release()
                    if candidates:
                        floor = max(floor, result.floor)
                    on_result(result)
                    bar.update(1)
                    following = next(todo, None)
                    if following is not None:
                        queue.add(submit(following))
            finally:
                if inflight:  # interrupted: do not leave tasks running on a cluster that stays up
                    client.cancel(list(inflight))
    finally:
        bar.close()
