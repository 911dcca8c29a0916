"""Per-cell bounds against brute-force maximisation of functions with known constants."""

import itertools

import numpy as np
import pytest

from lipsurrogate.bounds.cells import cell_bounds, locate_cells
from lipsurrogate.exceptions import CertificationError


def _cone_function(rng, d, L, n_cones=6):
    """e(x) = max_j (b_j - sum_k L_k |x_k - c_jk|): weighted-l1 Lipschitz with constants L, sharp."""
    centres = rng.uniform(0, 1, size=(n_cones, d))
    heights = rng.normal(size=n_cones)

    def e(x):
        return np.max(heights[None] - np.abs(x[:, None, :] - centres[None]) @ L, axis=1)

    return e


@pytest.mark.parametrize("d", [1, 2, 3])
def test_bound_holds_and_is_sharp_in_1d(rng, d):
    for trial in range(5):
        L = rng.uniform(0.2, 3.0, size=d)
        e = _cone_function(rng, d, L)
        edges = [np.sort(np.concatenate([[0, 1], rng.uniform(0, 1, size=rng.integers(2, 6))])) for _ in range(d)]
        grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1)
        # margin: the float evaluation of the cone function itself rounds (a few ulps of ~3)
        cert = cell_bounds(e(grid.reshape(-1, d)).reshape(grid.shape[:-1]), edges, L, margin=1e-14)
        pts = rng.uniform(0, 1, size=(20000, d))
        values = np.abs(e(pts))
        bounds = cert.per_cell[locate_cells(pts, edges)]
        assert np.all(values <= bounds)
        assert np.all(cert.per_cell <= cert.naive + 1e-15)
    if d == 1:  # exact in 1D: (|e0 + e1| + L h) / 2 is attained by the McShane envelope
        e0, e1, L1, h = 0.3, -0.1, 2.0, 0.5
        cert = cell_bounds(np.array([e0, e1]), [np.array([0, h])], [L1])
        xs = np.linspace(0, h, 100001)
        upper = np.minimum(e0 + L1 * xs, e1 + L1 * (h - xs))
        assert cert.bound == pytest.approx(upper.max(), rel=1e-6)


def test_margin_is_added():
    base = cell_bounds(np.zeros((2, 2)), [np.array([0, 1.0])] * 2, [1.0, 1.0])
    wider = cell_bounds(np.zeros((2, 2)), [np.array([0, 1.0])] * 2, [1.0, 1.0], margin=0.1)
    assert wider.bound == pytest.approx(base.bound + 0.1)


def test_consistency_check_refuses_wrong_constant():
    e = np.array([0.0, 1.0, 0.0])
    with pytest.raises(CertificationError, match="Consistency check failed along axis 0"):
        cell_bounds(e, [np.array([0.0, 0.1, 0.2])], [1.0])
    cell_bounds(e, [np.array([0.0, 0.1, 0.2])], [10.0])  # enough


@pytest.mark.parametrize(
    "errors, edges, L, match",
    [
        (np.zeros(3), [np.array([0.0, 2.0, 1.0])], [1.0], "strictly increasing"),
        (np.zeros(3), [np.array([0.0, 1.0, 1.0])], [1.0], "no zero-size"),
        (np.array([0.0, np.nan, 0.0]), [np.array([0.0, 1.0, 2.0])], [1.0], "NaN"),
        (np.zeros(3), [np.array([0.0, 1.0])], [1.0], "expected 3"),
        (np.zeros((3, 3)), [np.arange(3.0)], [1.0], "one coordinate vector per axis"),
        (np.zeros(3), [np.arange(3.0)], [-1.0], "non-negative"),
    ],
)
def test_bad_input(errors, edges, L, match):
    with pytest.raises(CertificationError, match=match):
        cell_bounds(errors, edges, L)


def test_network_error_functions_never_exceed_bound(rng):
    """Random Lipschitz networks minus a smooth function with known constants, on random grids."""
    import torch

    from lipsurrogate.bounds import evaluate_float64, extract_chain, lipschitz_bounds
    from lipsurrogate.nn import LipschitzMLP

    for seed in range(4):
        model = LipschitzMLP(2, 1, (16, 16), lipschitz=2.0, seed=seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("original"):
                    p.mul_(5)
        lf = lipschitz_bounds(model).per_input[0]
        u = lambda p: np.sin(3 * p[:, 0]) * np.cos(2 * p[:, 1])  # noqa: E731 - |u_x| <= 3, |u_y| <= 2
        edges = [np.sort(np.concatenate([[-1, 1], rng.uniform(-1, 1, 6)])) for _ in range(2)]
        grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1).reshape(-1, 2)
        f, err = evaluate_float64(extract_chain(model), grid)
        e = (f[:, 0] - u(grid)).reshape(len(edges[0]), len(edges[1]))
        cert = cell_bounds(e, edges, lf + np.array([3.0, 2.0]), margin=err[:, 0].reshape(e.shape) + 1e-15)
        pts = rng.uniform(-1, 1, size=(20000, 2))
        with torch.no_grad():
            fp = model.double()(torch.from_numpy(pts))[:, 0].numpy()
        model.float()
        assert np.all(np.abs(fp - u(pts)) <= cert.per_cell[locate_cells(pts, edges)])


def test_local_constants_tighten_and_stay_sound(rng):
    from lipsurrogate.bounds.local import cos_range

    edges = [np.linspace(0, 6, 31), np.linspace(0, 3, 16)]
    X, Y = np.meshgrid(*edges, indexing="ij")
    e = lambda x, y: np.sin(x) * 0.5 + np.sin(2 * y) * 0.25  # noqa: E731 - |e_x| <= 0.5, |e_y| <= 0.5
    errors = e(X, Y)
    lo = [edges[0][:-1], edges[1][:-1]]
    hx = np.diff(edges[0]) / 2
    hy = np.diff(edges[1]) / 2
    cx_lo, cx_hi = cos_range(lo[0] + hx, hx)  # e_x = 0.5 cos(x)
    cy_lo, cy_hi = cos_range(2 * (lo[1] + hy), 2 * hy)  # e_y = 0.5 cos(2y)
    lx = 0.5 * np.maximum(np.abs(cx_lo), np.abs(cx_hi))
    ly = 0.5 * np.maximum(np.abs(cy_lo), np.abs(cy_hi))
    local = np.stack(np.broadcast_arrays(lx[:, None], ly[None, :]), -1)
    glob = cell_bounds(errors, edges, [0.5, 0.5], margin=1e-15)
    loc = cell_bounds(errors, edges, [0.5, 0.5], margin=1e-15, local_lipschitz=local)
    assert np.all(loc.per_cell <= glob.per_cell) and loc.bound < glob.bound
    pts = rng.uniform([0, 0], [6, 3], size=(50000, 2))
    assert np.all(np.abs(e(pts[:, 0], pts[:, 1])) <= loc.per_cell[locate_cells(pts, edges)])
    # local constants above the global ones are capped, wrong shapes refused
    capped = cell_bounds(errors, edges, [0.5, 0.5], local_lipschitz=local * 100)
    np.testing.assert_allclose(capped.per_cell, cell_bounds(errors, edges, [0.5, 0.5]).per_cell)
    with pytest.raises(CertificationError, match="local_lipschitz"):
        cell_bounds(errors, edges, [0.5, 0.5], local_lipschitz=local[:-1])


def test_bad_local_constants_margins_and_method_are_refused():
    e, edges = np.zeros((3, 3)), [np.arange(3.0)] * 2
    with pytest.raises(CertificationError, match="local_lipschitz"):
        cell_bounds(e, edges, [1.0, 1.0], local_lipschitz=np.ones((3, 3, 2)))
    with pytest.raises(CertificationError, match="local_lipschitz"):
        cell_bounds(e, edges, [1.0, 1.0], local_lipschitz=np.full((2, 2, 2), np.nan))
    with pytest.raises(CertificationError, match="margin"):
        cell_bounds(e, edges, [1.0, 1.0], margin=-1.0)
    with pytest.raises(CertificationError, match="method"):
        cell_bounds(e, edges, [1.0, 1.0], method="lp")
    with pytest.raises(CertificationError, match="1 to 4 dimensions"):
        cell_bounds(np.zeros((2,) * 5), [np.arange(2.0)] * 5, [1.0] * 5)
    assert cell_bounds(np.zeros((2,) * 5), [np.arange(2.0)] * 5, [1.0] * 5, method="pair").bound > 0


def test_signed_local_slopes_give_a_valid_bound_no_larger_than_symmetric(rng):
    """e = 0.3 x - 0.2 y + small wiggle: slopes keep their sign, so the signed program is tighter."""
    edges = [np.linspace(0, 1, 9), np.linspace(0, 2, 9)]

    def e(p):
        return 0.3 * p[..., 0] - 0.2 * p[..., 1] + 0.01 * np.sin(5 * p[..., 0])

    grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1)
    values = e(grid)
    lo = np.broadcast_to(np.array([0.3 - 0.05, -0.2]), (8, 8, 2)).copy()
    hi = np.broadcast_to(np.array([0.3 + 0.05, -0.2]), (8, 8, 2)).copy()
    signed = cell_bounds(values, edges, [0.4, 0.3], margin=1e-15, local_slopes=(lo, hi))
    symmetric = cell_bounds(values, edges, [0.4, 0.3], margin=1e-15, local_lipschitz=np.maximum(abs(lo), abs(hi)))
    pts = np.stack([rng.uniform(0, 1, 20000), rng.uniform(0, 2, 20000)], 1)
    assert np.all(np.abs(e(pts)) <= signed.per_cell[locate_cells(pts, edges)])
    assert np.all(signed.per_cell <= symmetric.per_cell * (1 + 1e-12))
    assert signed.per_cell.mean() < symmetric.per_cell.mean() - 1e-3
    assert signed.slopes.shape == (8, 8, 2, 2)


def test_local_slopes_are_checked():
    edges = [np.linspace(0, 1, 4)] * 2
    e = np.zeros((4, 4))
    ones = np.ones((3, 3, 2))
    with pytest.raises(CertificationError, match="local_slopes"):
        cell_bounds(e, edges, [1.0, 1.0], local_slopes=(ones[:-1], ones[:-1]))
    with pytest.raises(CertificationError, match="contradict"):
        cell_bounds(e, edges, [1.0, 1.0], local_slopes=(ones * 2, ones * 3))  # outside [-L, L]


@pytest.mark.parametrize("d", [2, 4, 6])
def test_pair_and_naive_bounds_are_above_their_exact_values(d, rng):
    """theory/cell-bounds.md section 8: the computed pair and naive bounds, against the same formulas
    in exact rational arithmetic, on non-uniform cells that straddle 0 (their widths are rounded).
    Without the factor (closed_form_factor = 1) this fails for every d here."""
    from fractions import Fraction

    from lipsurrogate.bounds.cells import closed_form_factor

    edges = [np.array([-1.0 / 3, 0.1 + rng.uniform(0, 0.1), 0.7]) for _ in range(d)]
    e = rng.standard_normal((3,) * d) * 0.1
    m = rng.uniform(0, 1e-3, e.shape)
    L = rng.uniform(0.5, 3.0, d)
    cert = cell_bounds(e, edges, L, m, method="pair", check=False)
    assert closed_form_factor(d) == 1 + max(8, d + 4) * 2.0**-53
    F = lambda x: Fraction(float(x))  # noqa: E731
    for cell in itertools.product(range(2), repeat=d):
        lip = sum(F(L[k]) * (F(edges[k][i + 1]) - F(edges[k][i])) for k, i in enumerate(cell)) / 2
        corners = [tuple(i + o for i, o in zip(cell, off)) for off in itertools.product((0, 1), repeat=d)]
        best = min((abs(F(e[v]) + F(e[w])) + F(m[v]) + F(m[w])) / 2
                   for v, w in zip(corners, corners[::-1]))
        worst = max(abs(F(e[v])) + F(m[v]) for v in corners)
        assert F(cert.closed_form[cell]) >= best + lip
        assert F(cert.naive[cell]) >= worst + lip
