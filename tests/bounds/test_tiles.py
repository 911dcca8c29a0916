"""The certificate in tiles: same bounds as in one piece, bit for bit the same on Dask workers."""

import numpy as np
import pytest

from lipsurrogate.bounds import HeatSolution, certify, verify
from lipsurrogate.bounds.tiles import plan_tiles
from lipsurrogate.data.heat import random_periodic_modes
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import FeatureLipschitzMLP

BOX = [[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]]


@pytest.mark.parametrize("cells,steps,tile", [([16, 16, 4], [2, 2, 2], 100), ([7, 5], [1, 1], 6),
                                              ([9, 8, 3], [1, 2, 3], 1), ([4, 4], [2, 2], 10**6)])
def test_tiles_cover_every_cell_once_without_cutting_a_block(cells, steps, tile):
    covered = np.zeros(cells, dtype=int)
    tiles = plan_tiles(cells, steps, tile)
    for start, stop in tiles:
        covered[tuple(slice(a, b) for a, b in zip(start, stop))] += 1
        for a, b, s, n in zip(start, stop, steps, cells):
            assert a % s == 0 and (b % s == 0 or b == n)
        # as small as asked, unless a single block is larger
        assert np.prod(np.subtract(stop, start)) <= max(tile, int(np.prod(steps)))
    assert np.all(covered == 1)
    assert plan_tiles(cells, steps, tile) == tiles  # deterministic
    with pytest.raises(ConfigurationError, match="tile_cells"):
        plan_tiles(cells, steps, 0)


@pytest.fixture(scope="module")
def heat_case():
    rng = np.random.default_rng(3)
    reference = HeatSolution(random_periodic_modes(rng, n_modes=3, k_max=2), 0.05)
    model = FeatureLipschitzMLP(3, 1, (32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[6, 6, 2], seed=5)
    options = dict(cells=[16, 16, 4], local_block=2, refine_budget=20_000)
    return model, reference, options, certify(model, reference, BOX, **options)


def _same(a, b, exact=True, cells=True):
    check = np.testing.assert_array_equal if exact else (lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-9))
    if cells:
        check(a.cells.per_cell, b.cells.per_cell)
    check(a.bound, b.bound)
    check(a.cells.naive, b.cells.naive)
    check(a.vertex_errors, b.vertex_errors)
    for key in a.document["ladder"]:
        check(a.document["ladder"][key], b.document["ladder"][key])
    ra, rb = a.document["refinement"], b.document["refinement"]
    assert (ra["rounds"], ra["evaluations"], ra["refined_cells"]) == (rb["rounds"], rb["evaluations"], rb["refined_cells"])


def test_a_grid_in_tiles_gives_the_bounds_of_one_piece(heat_case):
    model, reference, options, whole = heat_case
    assert whole.document["grid"]["tiles"] == 1 and whole.document["refinement"]["refined_cells"] > 0
    tiled = certify(model, reference, BOX, tile_cells=70, **options)
    assert tiled.document["grid"]["tiles"] > 10
    # the BLAS may sum another batch in another order: last bits only. With tighten="dominant" each
    # tile screens against its own largest vertex error, so the cells below the threshold differ
    _same(whole, tiled, exact=False, cells=False)
    # and the tiled certificate holds (every rounding is covered by a proven margin, whatever the order)
    assert verify(tiled, model, reference, density=5, random_points=20_000, seed=1).violations == 0
    every = {**options, "tighten": "all"}
    _same(certify(model, reference, BOX, **every), certify(model, reference, BOX, tile_cells=70, **every), exact=False)


def test_screening_keeps_the_bound_the_ladder_and_the_refinement(heat_case):
    """tighten="dominant" (Note [screened blocks]): the full slope ranges only on blocks with a cell
    above 0.9 max(|e| - m); the same bound, ladder and refinement as tighten="all", the same bound on
    every cell above the threshold, and wider but certified bounds below it."""
    model, reference, options, screened = heat_case
    every = certify(model, reference, BOX, **{**options, "tighten": "all"})
    _same(screened, every, exact=True, cells=False)
    assert screened.document["refinement"]["history"] == every.document["refinement"]["history"]
    tightened = screened.document["tightened"]
    assert every.document["tightened"] is None and 0 < tightened["blocks"] < tightened["of"] == 8 * 8 * 2
    tau = 0.9 * np.max(np.abs(screened.vertex_errors))  # at least the threshold (its margins are >= 0)
    a, b = screened.cells.per_cell, every.cells.per_cell
    above = b > tau
    assert np.any(above) and not np.all(above)
    np.testing.assert_array_equal(a[above], b[above])  # refined alike, too
    assert np.all(a[~above] <= tau) and np.all(a >= b)
    assert np.mean(a[~above] > b[~above]) > 0.2  # screening did leave some cells wider
    assert verify(screened, model, reference, density=5, random_points=20_000, seed=3).violations == 0


def test_tiles_on_dask_workers_give_the_same_bits_as_in_this_process(heat_case):
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    model, reference, options, _ = heat_case
    here = certify(model, reference, BOX, tile_cells=70, **options)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        there = certify(model, reference, BOX, tile_cells=70, scheduler=client, **options)
    _same(here, there, exact=True)
    assert here.document["refinement"]["history"] == there.document["refinement"]["history"]


def test_a_bad_scheduler_is_refused_before_any_work(heat_case):
    pytest.importorskip("dask.distributed")
    model, reference, options, _ = heat_case
    with pytest.raises(ConfigurationError, match="scheduler"):
        certify(model, reference, BOX, scheduler=3, **options)
