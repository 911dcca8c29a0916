"""Adaptive refinement: sound, tighter, and it catches wrong constants between the base vertices."""

import numpy as np
import pytest

from lipsurrogate.bounds.cells import cell_bounds, locate_cells
from lipsurrogate.bounds.refine import refine_certificate
from lipsurrogate.exceptions import CertificationError


def _grid_values(f, edges):
    grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1)
    return f(grid.reshape(-1, len(edges))).reshape(grid.shape[:-1])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_refinement_stays_sound_and_tightens(rng, d):
    freq = rng.uniform(1.0, 3.0, size=d)

    def f(x):  # |d f / d x_k| <= 0.3 * freq_k
        return 0.3 * np.sin(x @ freq)

    slopes = 0.3 * freq
    edges = [np.linspace(0, 1, 7)] * d
    cert = cell_bounds(_grid_values(f, edges), edges, slopes, margin=1e-15)
    result = refine_certificate(cert, lambda p: (f(p), 1e-15), budget=60_000, max_rounds=6)
    assert result.bound_after < result.bound_before
    assert result.evaluations <= 60_000 and result.rounds >= 1
    refined = result.certificate
    assert np.all(refined.per_cell <= cert.per_cell)
    pts = rng.uniform(0, 1, size=(50_000, d))
    assert np.all(np.abs(f(pts)) <= refined.per_cell[locate_cells(pts, edges)])
    # the refined bound approaches the true max: within the last round's Lipschitz term
    assert result.bound_after >= np.abs(f(pts)).max()


def test_refinement_stops_at_the_target_and_within_budget():
    edges = [np.linspace(0, 1, 5)] * 2

    def f(x):
        return 0.1 * x[:, 0] - 0.05

    cert = cell_bounds(_grid_values(f, edges), edges, [0.1, 0.0], margin=1e-16)
    result = refine_certificate(cert, lambda p: (f(p), 1e-16), target=0.06)
    assert result.bound_after <= 0.06
    small = refine_certificate(cert, lambda p: (f(p), 1e-16), budget=5)
    assert small.evaluations == 0 and small.bound_after == cert.bound


def test_a_round_larger_than_the_budget_splits_the_largest_boxes_that_fit(rng):
    """When every box above the threshold would overrun the budget, the largest that fit are split:
    the bound falls, the evaluations stay within the budget, and the bound still holds everywhere."""
    d = 2
    freq = np.array([2.0, 3.0])

    def f(x):
        return 0.3 * np.sin(x @ freq) + 0.05 * x[:, 0]

    edges = [np.linspace(0, 1, 17)] * d
    cert = cell_bounds(_grid_values(f, edges), edges, 0.3 * freq + [0.05, 0.0], margin=1e-15)
    above = int((cert.per_cell > 0.9 * cert.bound).sum())
    budget = 9 * max(1, above // 3)  # a third of the first round (9 points per split in 2-D)
    result = refine_certificate(cert, lambda p: (f(p), 1e-15), budget=budget)
    assert above > 3 and result.evaluations <= budget and result.rounds >= 1
    assert result.bound_after < result.bound_before
    pts = rng.uniform(0, 1, size=(50_000, d))
    assert np.all(np.abs(f(pts)) <= result.certificate.per_cell[locate_cells(pts, edges)])


def test_local_constants_callback_is_used(rng):
    edges = [np.linspace(0, 1, 5)] * 2

    def f(x):
        return 0.2 * x[:, 0] ** 2

    cert = cell_bounds(_grid_values(f, edges), edges, [0.4, 0.0], margin=1e-16)
    seen = []

    def local(lo, hi):
        seen.append(len(lo))
        return np.stack([0.4 * hi[:, 0], np.zeros(len(lo))], 1)  # exact sup of |f_x| on the box

    result = refine_certificate(cert, lambda p: (f(p), 1e-16), local_constants=local, max_rounds=3)
    plain = refine_certificate(cert, lambda p: (f(p), 1e-16), max_rounds=3)
    assert seen and result.bound_after <= plain.bound_after


def test_refinement_catches_a_bump_between_vertices():
    """The base grid sees zeros only; the children see a spike that breaks the assumed constant."""
    edges = [np.linspace(0, 1, 3)]

    def f(x):
        return np.maximum(0.0, 1.0 - 40 * np.abs(x[:, 0] - 0.25))  # slope 40 at 0.25

    cert = cell_bounds(_grid_values(f, edges), edges, [1.0])
    with pytest.raises(CertificationError, match="while refining"):
        refine_certificate(cert, lambda p: (f(p), 0.0), budget=1000)


@pytest.mark.parametrize("d", [1, 3, 4])
def test_compiled_child_check_decides_as_the_numpy_check(d, monkeypatch):
    """The refinement's consistency check runs compiled: for constants swept across the data's
    steepest edges, it refuses exactly where the numpy check does, naming the same axis."""
    from lipsurrogate.bounds import refine

    rng = np.random.default_rng(d)
    values = rng.normal(size=(500, 2**d)) * rng.uniform(0.5, 2.0, size=2**d)[None]
    margins = np.abs(rng.normal(size=(500, 2**d))) * 1e-3
    spans = rng.uniform(0.5, 1.5, size=(500, d))

    def outcome(lipschitz):
        try:
            refine._check_children(values, margins, spans, lipschitz, d)
        except CertificationError as error:
            return str(error)
        return None

    assert refine._CHECK_EDGES is not None  # the compiled path is the one compared
    outcomes = []
    for scale in np.geomspace(0.5, 200.0, 30):
        lipschitz = scale * rng.uniform(0.5, 1.5, size=d)
        compiled = outcome(lipschitz)
        with monkeypatch.context() as patch:
            patch.setattr(refine, "_CHECK_EDGES", None)
            assert outcome(lipschitz) == compiled
        outcomes.append(compiled is None)
    assert any(outcomes) and not all(outcomes)  # the sweep crosses the threshold


def test_refinement_needs_constants_and_sane_dominance():
    edges = [np.linspace(0, 1, 3)]
    cert = cell_bounds(np.zeros(3), edges, [1.0])
    with pytest.raises(CertificationError, match="dominance"):
        refine_certificate(cert, lambda p: (np.zeros(len(p)), 0.0), dominance=1.5)


def test_signed_local_slopes_refine_tighter_than_constants_and_stay_valid(rng):
    """f = 0.2 x^2 + 0.1 y: the exact slope ranges on a box are [0.4 lo, 0.4 hi] and {0.1}."""
    edges = [np.linspace(0, 1, 5)] * 2

    def f(x):
        return 0.2 * x[:, 0] ** 2 + 0.1 * x[:, 1] - 0.12

    def slopes(lo, hi):
        return np.stack([0.4 * lo[:, 0], np.full(len(lo), 0.1)], 1), np.stack([0.4 * hi[:, 0], np.full(len(lo), 0.1)], 1)

    def constants(lo, hi):
        return np.stack([0.4 * hi[:, 0], np.full(len(lo), 0.1)], 1)

    cert = cell_bounds(_grid_values(f, edges), edges, [0.4, 0.1], margin=1e-16)
    signed = refine_certificate(cert, lambda p: (f(p), 1e-16), local_slopes=slopes, max_rounds=3)
    plain = refine_certificate(cert, lambda p: (f(p), 1e-16), local_constants=constants, max_rounds=3)
    assert signed.bound_after < plain.bound_after
    pts = rng.uniform(0, 1, size=(20000, 2))
    assert np.all(np.abs(f(pts)) <= signed.certificate.per_cell[locate_cells(pts, edges)])


def test_refinement_on_the_candidates_above_the_floor_is_the_same(rng):
    """theory/cell-bounds.md section 13: cells at or below 0.9 * max(|e_v| - m_v) are never split."""
    from lipsurrogate.bounds.refine import refinement_floor

    freq = rng.uniform(1.0, 3.0, size=2)

    def f(x):
        return 0.3 * np.sin(x @ freq) + 0.05 * x[:, 0]

    edges = [np.linspace(0, 1, 13)] * 2
    values = _grid_values(f, edges)
    cert = cell_bounds(values, edges, 0.3 * freq + [0.05, 0.0], margin=1e-15)
    floor = refinement_floor(values, 1e-15)
    assert 0 < floor <= np.abs(values).max()
    whole = refine_certificate(cert, lambda p: (f(p), 1e-15), budget=30_000)
    part = refine_certificate(cert, lambda p: (f(p), 1e-15), budget=30_000, floor=floor)
    assert whole.rounds >= 2 and whole.refined_cells < cert.per_cell.size  # some cells are never candidates
    np.testing.assert_array_equal(whole.certificate.per_cell, part.certificate.per_cell)
    assert whole.history == part.history and whole.evaluations == part.evaluations


def test_screened_children_keep_the_rounds_the_splits_and_the_bound(rng):
    """Note [screened children]: children at most 0.9 * floor with their parent's slope range do not
    get ranges of their own; the rounds, the splits and the largest bound are unchanged."""
    from lipsurrogate.bounds.refine import cell_boxes, refine_boxes, refinement_floor

    freq = rng.uniform(1.0, 3.0, size=2)

    def f(x):
        return 0.3 * np.sin(x @ freq) + 0.05 * x[:, 0]

    def slopes(lo, hi):  # each box's own certified gradient range: cos over [p - r, p + r] is within cos(p) +- r
        calls.append(len(lo))
        c, r = np.cos(0.5 * (lo + hi) @ freq), 0.5 * (hi - lo) @ freq
        return (0.3 * freq[None] * (c - r)[:, None] + [0.05, 0.0],
                0.3 * freq[None] * (c + r)[:, None] + [0.05, 0.0])

    edges = [np.linspace(0, 1, 13)] * 2
    values = _grid_values(f, edges)
    L = 0.3 * freq + [0.05, 0.0]
    cert = cell_bounds(values, edges, L, margin=1e-15)
    lo, hi = cell_boxes(cert.edges, np.unravel_index(np.arange(cert.per_cell.size), cert.per_cell.shape))
    slo, shi = -np.broadcast_to(L, lo.shape), np.broadcast_to(L, lo.shape)
    error = lambda p: (f(p), 1e-15)  # noqa: E731
    runs = {}
    for name, floor in (("all", None), ("screened", refinement_floor(values, 1e-15))):
        calls = []
        runs[name] = (refine_boxes(lo, hi, cert.per_cell.reshape(-1), slo, shi, L, error, local_slopes=slopes,
                                   budget=20_000, screen_floor=floor), sum(calls))
    (every, n_every), (screened, n_screened) = runs["all"], runs["screened"]
    assert every.rounds >= 2 and every.history == screened.history and every.evaluations == screened.evaluations
    assert every.bounds.max() == screened.bounds.max() and np.all(screened.bounds >= every.bounds)
    tau = 0.9 * refinement_floor(values, 1e-15)
    differ = screened.bounds != every.bounds
    assert np.all(screened.bounds[differ] <= tau)
    assert n_screened < n_every  # fewer children got ranges of their own
    pts = rng.uniform(0, 1, size=(20000, 2))
    assert np.all(np.abs(f(pts)) <= screened.bounds.reshape(cert.per_cell.shape)[locate_cells(pts, edges)])
