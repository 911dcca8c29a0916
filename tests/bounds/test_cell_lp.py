"""The exact per-cell bound (linear program via enumerated dual vertices) against brute force."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from lipsurrogate.bounds.cell_lp import dual_vertices, exact_abs_bounds, exact_upper_bounds, vertex_signs
from lipsurrogate.bounds.cells import cell_bounds, locate_cells


def _primal_lp(e, a):
    """max t s.t. t <= e_v + sum(a) + sigma_v . w, |w_k| <= a_k, solved by HiGHS."""
    d = len(a)
    sigma = vertex_signs(d)
    c = np.zeros(d + 1)
    c[-1] = -1.0
    A = np.hstack([-sigma, np.ones((2**d, 1))])
    res = linprog(c, A_ub=A, b_ub=e + a.sum(), bounds=[(-ak, ak) for ak in a] + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def _envelope_max(e, L, h, n=41):
    """Brute-force max over a dense grid of the McShane envelope min_v (e_v + sum_k L_k |x_k - v_k|)."""
    d = len(L)
    grid = np.stack(np.meshgrid(*[np.linspace(0, hk, n) for hk in h], indexing="ij"), -1).reshape(-1, d)
    corners = np.array(list(itertools.product((0, 1), repeat=d)), dtype=float) * h
    cones = e[None, :] + np.abs(grid[:, None, :] - corners[None]) @ L
    return cones.min(axis=1).max()


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_exact_bound_equals_the_linear_program(rng, d):
    for _ in range(60):
        scale = rng.choice([1e-3, 1.0, 50.0])
        e = rng.normal(size=2**d) * scale
        a = rng.uniform(0, 2, size=d) * rng.choice([1e-3, 1.0, 50.0])
        exact = exact_upper_bounds(e[None], a[None])[0]
        primal = _primal_lp(e, a)
        assert exact >= primal  # certified: never below the true optimum
        assert exact == pytest.approx(primal, rel=1e-9, abs=1e-12 * (np.abs(e).max() + a.sum()))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_exact_bound_is_attained_by_the_envelope(rng, d):
    """Brute-force maximisation: the envelope is an admissible error function, so no smaller bound is valid."""
    for _ in range(10):
        L = rng.uniform(0.2, 3.0, size=d)
        h = rng.uniform(0.1, 1.0, size=d)
        e = rng.normal(size=2**d) * 0.3
        exact = exact_upper_bounds(e[None], (L * h / 2)[None])[0]
        sampled = _envelope_max(e, L, h, n=81 if d < 3 else 41)
        assert sampled <= exact
        # the dense grid misses the maximiser by at most L . (grid step) / 2
        assert exact - sampled <= 0.5 * np.dot(L, h) / (80 if d < 3 else 40) + 1e-12


def test_pair_bound_is_a_subset_of_the_dual_vertices_and_1d_is_closed_form(rng):
    for d in (1, 2, 3):
        coef_e, coef_a = dual_vertices(d)
        assert np.all(coef_e >= 0) and np.allclose(coef_e.sum(axis=1), 1.0)
        n = 2**d
        for v in range(n):  # antipodal pair: bits complemented
            lam = np.zeros(n)
            lam[[v, n - 1 - v]] = 0.5
            assert np.any(np.all(np.isclose(coef_e, lam), axis=1))
    e = np.array([0.3, -0.1])
    assert exact_abs_bounds(e[None], 0.0, np.array([[0.5]]))[0] == pytest.approx((abs(e.sum()) + 1.0) / 2)


def test_exact_never_above_closed_form_and_often_below(rng):
    e = rng.normal(size=(9, 9, 9)) * 0.05
    edges = [np.linspace(0, 1, 9)] * 3
    cert = cell_bounds(e, edges, [1.0, 2.0, 3.0], check=False)
    assert cert.method == "exact"
    assert np.all(cert.per_cell <= cert.closed_form)
    assert np.mean(cert.per_cell < cert.closed_form * (1 - 1e-6)) > 0.3
    pair = cell_bounds(e, edges, [1.0, 2.0, 3.0], check=False, method="pair")
    assert np.array_equal(pair.per_cell, cert.closed_form)


@pytest.mark.parametrize("d", [2, 3])
def test_exact_bound_holds_for_sharp_functions_on_random_grids(rng, d):
    """Functions built from weighted-l1 cones attain their constants: the tightest admissible data."""
    for _ in range(5):
        L = rng.uniform(0.2, 3.0, size=d)
        centres, heights = rng.uniform(0, 1, size=(6, d)), rng.normal(size=6)

        def f(x):
            return np.max(heights[None] - np.abs(x[:, None, :] - centres[None]) @ L, axis=1)

        edges = [np.sort(np.concatenate([[0, 1], rng.uniform(0, 1, size=rng.integers(1, 5))])) for _ in range(d)]
        grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1)
        cert = cell_bounds(f(grid.reshape(-1, d)).reshape(grid.shape[:-1]), edges, L, margin=1e-14)
        pts = rng.uniform(0, 1, size=(30000, d))
        assert np.all(np.abs(f(pts)) <= cert.per_cell[locate_cells(pts, edges)])


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"\(N, 2\^d\)"):
        exact_upper_bounds(np.zeros((3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="1 to 4 dimensions"):
        dual_vertices(5)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_float_bound_is_above_the_exact_rational_optimum(rng, d):
    """The float64 result (with its rounding margin) never falls below the optimum in exact arithmetic."""
    from fractions import Fraction

    coef_e, _ = dual_vertices(d)
    lams = [[Fraction(v).limit_denominator(64) for v in row] for row in coef_e]
    sigma = vertex_signs(d)
    for _ in range(40):
        e = rng.normal(size=2**d) * rng.choice([1e-8, 1.0, 1e8])
        a = rng.uniform(0, 1, size=d) * rng.choice([1e-8, 1.0, 1e8])
        exact = min(
            sum(l * Fraction(float(ev)) for l, ev in zip(lam, e))
            + sum(Fraction(float(ak)) * (1 + abs(sum(l * Fraction(int(s)) for l, s in zip(lam, sigma[:, k]))))
                  for k, ak in enumerate(a))
            for lam in lams
        )
        assert Fraction(float(exact_upper_bounds(e[None], a[None])[0])) >= exact


@pytest.mark.parametrize("d", [2, 3])
def test_consistent_data_reduce_to_pairs_and_tetrahedra(rng, d):
    """theory/cell-bounds.md section 3: for consistent vertex data the pairs (and in 3-D the two
    parity tetrahedra) are the only dual vertices that matter."""
    n = 5000
    a = rng.uniform(0.01, 1.0, size=(n, d))
    bits = 1 - (vertex_signs(d) + 1) / 2  # 0/1 coordinates of the vertices
    # consistent data: values of random weighted-l1 cone functions at the vertices (slopes a_k * 2 / h)
    centres = rng.uniform(-0.5, 1.5, size=(n, 3, d))
    heights = rng.normal(size=(n, 3))
    dist = np.einsum("njvk,nk->njv", np.abs(bits[None, None] - centres[:, :, None, :]), 2 * a)
    e = np.max(heights[:, :, None] - dist, axis=1)
    exact = exact_upper_bounds(e, a)
    pairs = np.min([(e[:, v] + e[:, 2**d - 1 - v]) / 2 for v in range(2**d)], axis=0)
    best = pairs
    if d == 3:
        parity = bits.sum(axis=1) % 2
        best = np.minimum(pairs, np.minimum(e[:, parity == 0].mean(axis=1), e[:, parity == 1].mean(axis=1)))
    formula = a.sum(axis=1) + best
    assert np.allclose(exact, formula, rtol=1e-12, atol=1e-12)
    if d == 3:  # a checkerboard (consistent: neighbours differ by 2 = L h) where a tetrahedron wins
        parity = bits.sum(axis=1) % 2
        board = 2.0 * parity
        assert exact_upper_bounds(board[None], np.ones((1, 3)))[0] == pytest.approx(3.0)
        assert cell_bounds(board.reshape(2, 2, 2), [np.array([0.0, 2.0])] * 3, [1.0] * 3).closed_form.max() == pytest.approx(4.0)


def _signed_primal(e, s, c, r):
    """max t s.t. t <= e_v + sum_k (r_k (s_k + sigma_vk w_k) + c_k (w_k + sigma_vk s_k)), |w_k| <= s_k (HiGHS)."""
    d = len(s)
    sig = vertex_signs(d)
    A = np.hstack([-(r * sig + c), np.ones((2**d, 1))])
    b = e + (c * sig * s).sum(1) + (r * s).sum()
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=A, b_ub=b, bounds=[(-sk, sk) for sk in s] + [(None, None)],
                  method="highs")
    assert res.status == 0
    return -res.fun


def _admissible_vertex_values(rng, s, c, r):
    """Vertex values of e(w) = c.w + g(w), |g_k'| <= r_k: a function the signed program must cover."""
    d = len(s)
    w = -vertex_signs(d) * s
    phase, freq = rng.uniform(0, 6, d), rng.uniform(0.2, 3, d)
    return w @ c + (r * np.sin(w * freq + phase) / freq).sum(1) + rng.normal() * 0.1


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_signed_bound_is_valid_and_exact_when_slopes_keep_their_sign(rng, d):
    from lipsurrogate.bounds.cell_lp import signed_upper_bounds

    for _ in range(60):
        s = rng.uniform(0.1, 1, d)
        r = rng.uniform(0, 1, d) * rng.choice([0.01, 0.3, 1.0])
        c = rng.normal(size=d) * rng.choice([0.1, 1.0, 3.0])
        e = _admissible_vertex_values(rng, s, c, r)
        bound = signed_upper_bounds(e[None], s[None], c[None], r[None])[0]
        primal = _signed_primal(e, s, c, r)
        scale = np.abs(e).max() + ((np.abs(c) + r) * s).sum()
        assert bound >= primal - 1e-12 * scale  # never below the smallest valid bound
        # never looser than the symmetric program with L = |c| + r
        assert bound <= exact_upper_bounds(e[None], ((np.abs(c) + r) * s)[None])[0] + 1e-12 * scale
        if np.all(np.abs(c) >= r):  # the dual objective is linear: the optimum is a point mass, enumerated
            assert bound == pytest.approx(primal, rel=1e-9, abs=1e-12 * scale)


def test_signed_bound_covers_admissible_functions_by_dense_sampling(rng):
    """Sample e = c.w + g on the whole cell: its maximum never exceeds the bound of its vertex values."""
    from lipsurrogate.bounds.cell_lp import signed_upper_bounds

    d = 2
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 81)] * d, indexing="ij"), -1).reshape(-1, d)
    for _ in range(30):
        s = rng.uniform(0.1, 1, d)
        c, r = rng.normal(size=d), rng.uniform(0, 0.5, d)
        phase, freq = rng.uniform(0, 6, d), rng.uniform(0.2, 3, d)

        def e(w):
            return w @ c + (r * np.sin(w * freq + phase) / freq).sum(-1)

        values = e(-vertex_signs(d) * s)
        bound = signed_upper_bounds(values[None], s[None], c[None], r[None])[0]
        assert e(grid * s).max() <= bound + 1e-12


def _random_signed_cells(rng, n, d):
    """Vertex errors, margins, half-spans and slope ranges of mixed scales; some ranges keep their sign."""
    scale = rng.choice([1e-6, 1.0, 1e4], size=(n, 1))
    e = rng.normal(size=(n, 2**d)) * scale
    m = rng.random((n, 2**d)) * 1e-3 * scale
    s = rng.uniform(0, 1, (n, d)) * rng.choice([1e-3, 1.0], size=(n, 1))
    lo = rng.normal(size=(n, d)) * scale
    hi = lo + rng.random((n, d)) * rng.choice([0.0, 0.1, 3.0], size=(n, 1)) * scale
    return e, m, s, lo, hi


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_compiled_signed_program_matches_the_numpy_path_within_its_margin(rng, d):
    """The numba pass (theory/cell-bounds.md section 11, `_lp_kernel`) computes the numpy path's terms in
    another order, without the zero weights: the two differ by less than the margin each adds."""
    from lipsurrogate.bounds import _lp_kernel
    from lipsurrogate.bounds.cell_lp import signed_abs_bounds, slope_centre_radius

    if not _lp_kernel.HAVE_KERNEL:
        pytest.skip("numba is not installed: there is only the numpy path")
    e, m, s, lo, hi = _random_signed_cells(rng, 3000, d)
    compiled = signed_abs_bounds(e, m, s, lo, hi)
    with _lp_kernel.disabled():
        plain = signed_abs_bounds(e, m, s, lo, hi)
    c, r = slope_centre_radius(lo, hi)
    margin = 2 * (2**d + 3 * d + 6) * 2.0**-53 * (np.abs(e).max(1) + m.max(1) + 3 * (s * (r + np.abs(c))).sum(1))
    assert np.all(np.abs(compiled - plain) <= margin)
    assert np.mean(compiled == plain) < 1  # the two paths really are different code
    # the vertex-major layout (2^d, N) that cell_bounds passes gives the same numbers on both paths
    assert np.array_equal(signed_abs_bounds(e.T.copy(), m.T.copy(), s, lo, hi, vertex_major=True), compiled)
    with _lp_kernel.disabled():
        assert np.array_equal(signed_abs_bounds(e.T.copy(), m.T.copy(), s, lo, hi, vertex_major=True), plain)
    # a NaN corner value gives NaN on both paths (not a finite number from the other dual vertices)
    e[7, -1] = np.nan
    assert np.isnan(signed_abs_bounds(e, m, s, lo, hi)[7])
    with _lp_kernel.disabled():
        assert np.isnan(signed_abs_bounds(e, m, s, lo, hi)[7])


@pytest.mark.parametrize("d", [2, 3])
def test_compiled_signed_program_is_above_the_exact_rational_optimum(rng, d):
    """Both programs of `signed_abs_bounds`, evaluated in exact rationals over the dual vertices
    (recovered as fractions), never exceed the compiled float64 result."""
    from fractions import Fraction

    from lipsurrogate.bounds.cell_lp import signed_abs_bounds

    coef_e, _ = dual_vertices(d)
    lams = [[Fraction(v).limit_denominator(64) for v in row] for row in coef_e]
    sigma = vertex_signs(d)
    ms = [[sum(lam * int(sg) for lam, sg in zip(row, sigma[:, k])) for k in range(d)] for row in lams]
    e, mar, s, lo, hi = _random_signed_cells(rng, 30, d)
    bound = signed_abs_bounds(e, mar, s, lo, hi)
    for i in range(len(e)):
        # the enclosure [c - r, c + r] of the code, in exact arithmetic
        c = [(Fraction(float(a)) + Fraction(float(b))) / 2 for a, b in zip(lo[i], hi[i])]
        r = [max(Fraction(float(b)) - ck, ck - Fraction(float(a))) for a, b, ck in zip(lo[i], hi[i], c)]
        sk = [Fraction(float(x)) for x in s[i]]
        best = []
        for sign in (1, -1):
            vals = [sign * Fraction(float(ev)) + Fraction(float(mv)) for ev, mv in zip(e[i], mar[i])]
            best.append(min(
                sum(lam * v for lam, v in zip(row, vals))
                + sum(sk[k] * (r[k] + sign * c[k] * mk[k] + abs(r[k] * mk[k] + sign * c[k])) for k in range(d))
                for row, mk in zip(lams, ms)))
        assert Fraction(float(bound[i])) >= max(best)


def test_compiled_signed_bound_covers_sampled_functions():
    """|e| sampled densely on the cell never exceeds the compiled bound of its vertex values (d = 2)."""
    rng = np.random.default_rng(7)
    d = 2
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 81)] * d, indexing="ij"), -1).reshape(-1, d)
    from lipsurrogate.bounds.cell_lp import signed_abs_bounds

    for _ in range(30):
        s = rng.uniform(0.1, 1, d)
        c, r = rng.normal(size=d), rng.uniform(0, 0.5, d)
        phase, freq, shift = rng.uniform(0, 6, d), rng.uniform(0.2, 3, d), rng.normal() * 0.3

        def e(w):
            return w @ c + (r * np.sin(w * freq + phase) / freq).sum(-1) + shift

        values = e(-vertex_signs(d) * s)
        bound = signed_abs_bounds(values[None], np.zeros((1, 2**d)), s[None], (c - r)[None], (c + r)[None])[0]
        assert np.abs(e(grid * s)).max() <= bound + 1e-12
        assert bound < np.abs(values).max() + ((np.abs(c) + r) * s).sum() + 1e-12  # and it is not vacuous
