"""Backward linear bounds on the network's derivatives (theory/cell-bounds.md section 14)."""

import contextlib
import copy

import numpy as np
import pytest
import torch

from lipsurrogate.bounds import HeatSolution, backward
from lipsurrogate.bounds.affine import box_centres, error_slopes, network_derivative_forms
from lipsurrogate.data.heat import random_periodic_modes
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP, to_plain


def _features(seed=1):
    return FeatureLipschitzMLP(3, 1, (32, 32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=3,
                               offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[3, 3, 1], seed=seed)


def _models():
    yield _features()
    yield LipschitzMLP(2, 1, (16, 16, 16), lipschitz=3.0, seed=2)


def _inflate(model, factor=3.0):
    """More undecided pairs: a harder test."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(factor)
    return model


def _boxes(d, n, rng, widths=(1e-3, 0.05, 0.5)):
    lo = rng.uniform(0, 6, size=(n, d))
    width = rng.choice(widths, size=(n, 1)) * np.ones((1, d))
    return lo, width


def _gradients(model, pts):
    n, m, d = pts.shape
    x = torch.tensor(pts.reshape(-1, d), requires_grad=True)
    (g,) = torch.autograd.grad(to_plain(model).double()(x).sum(), x)
    return g.numpy().reshape(n, m, d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort"])
def test_backward_bounds_contain_sampled_gradients_pointwise(model, dtype, rng):
    model = _inflate(copy.deepcopy(model))
    d = model.in_features
    lo, width = _boxes(d, 240, rng)
    centre, half = box_centres(lo, lo + width)
    _, tb = network_derivative_forms(model, centre, half, dtype=dtype, with_backward=True)
    pts = lo[:, None, :] + rng.uniform(size=(len(lo), 40, d)) * width[:, None, :]
    g = _gradients(model, pts)
    delta = pts - centre[:, None, :]
    upper = tb.upper_centre[:, None, :] + np.einsum("nkj,npj->npk", tb.upper_slope, delta)
    lower = tb.lower_centre[:, None, :] + np.einsum("nkj,npj->npk", tb.lower_slope, delta)
    assert np.all(g <= upper) and np.all(g >= lower)  # the linear bounds hold pointwise
    low, up = tb.intervals(half)
    assert np.all(g >= low[:, None]) and np.all(g <= up[:, None])


def test_backward_is_tighter_than_the_forward_forms(rng):
    model = _features()
    lo = rng.uniform(0, 5, size=(400, 3))
    centre, half = box_centres(lo, lo + np.array([2 * np.pi / 64, 2 * np.pi / 64, 1 / 16]))
    forms, tb = network_derivative_forms(model, centre, half, with_backward=True)
    flo, fhi = forms.intervals(half)
    blo, bhi = tb.intervals(half)
    assert np.median((bhi - blo) / (fhi - flo)) < 0.9


def test_tiny_boxes_give_the_exact_gradient(rng):
    """Every pair is decided on a tiny box: the bounds pinch the gradient (only rounding terms remain)."""
    model = _features()
    centre = rng.uniform(0.5, 5, size=(50, 3))
    half = np.full((50, 3), 1e-10)
    # float64 forms: float32 radii (1e-6 relative) would leave near-ties undecided
    _, tb = network_derivative_forms(model, centre, half, dtype=torch.float64, with_backward=True)
    low, up = tb.intervals(half)
    g = _gradients(model, centre[:, None, :])[:, 0]
    assert np.all(low <= g) and np.all(g <= up)
    assert np.max(up - low) < 1e-8


def test_a_shrunk_bound_is_caught_by_the_sampled_check(rng):
    """The pointwise containment check above has teeth: on small boxes, where the linear bounds hug
    the gradient, moving each upper bound's constant down by a tenth of the box's bound width puts
    sampled gradients above it in most boxes."""
    model = _features()
    lo, width = _boxes(3, 100, rng, widths=(1e-4,))
    centre, half = box_centres(lo, lo + width)
    _, tb = network_derivative_forms(model, centre, half, dtype=torch.float64, with_backward=True)
    low, up = tb.intervals(half)
    pts = lo[:, None, :] + rng.uniform(size=(100, 20, 3)) * width[:, None, :]
    g = _gradients(model, pts)
    delta = pts - centre[:, None, :]
    upper = tb.upper_centre[:, None, :] + np.einsum("nkj,npj->npk", tb.upper_slope, delta)
    assert np.all(g <= upper)
    shrunk = upper - 0.1 * (up - low)[:, None, :] - 1e-12
    caught = np.any(g > shrunk, axis=(1, 2))
    assert caught.mean() > 0.5


def test_compiled_step_equals_the_numpy_step(rng, monkeypatch):
    model = _inflate(_features())
    lo, width = _boxes(3, 60, rng)
    centre, half = box_centres(lo, lo + width)
    _, fast = network_derivative_forms(model, centre, half, with_backward=True)
    monkeypatch.setattr(backward, "ENABLED", False)
    _, slow = network_derivative_forms(model, centre, half, with_backward=True)
    for name in ("lower_centre", "lower_slope", "upper_centre", "upper_slope"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-12, atol=1e-14)


def test_relu_networks_have_no_backward_bounds(rng):
    model = LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, activation="relu", seed=3)
    centre, half = box_centres(np.zeros((4, 2)), np.full((4, 2), 0.1))
    forms, tb = network_derivative_forms(model, centre, half, with_backward=True)
    assert tb is None and forms.centre.shape == (4, 2)


def _heat_problem(rng):
    """A heat reference, a small Fourier-feature network and the (x, y, t) box."""
    ref = HeatSolution(random_periodic_modes(rng, n_modes=3, k_max=2), 0.05)
    model = FeatureLipschitzMLP(3, 1, (32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[6, 6, 2], seed=5)
    return ref, model, np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]])


def test_error_slopes_with_backward_contain_samples_and_only_tighten(rng):
    ref, model, box = _heat_problem(rng)
    lo = box[:, 0] + rng.uniform(size=(200, 3)) * (box[:, 1] - box[:, 0] - 0.1)
    hi = lo + 0.1
    elo, ehi = error_slopes(model, ref, lo, hi, box)
    pts = lo[:, None, :] + rng.uniform(size=(200, 30, 3)) * 0.1
    x = torch.tensor(pts.reshape(-1, 3), requires_grad=True)
    (g,) = torch.autograd.grad((to_plain(model).double()(x)[:, 0] - ref.torch(x)).sum(), x)
    g = g.numpy().reshape(200, 30, 3)
    assert np.all(g >= elo[:, None]) and np.all(g <= ehi[:, None])
    flo, fhi = error_slopes(model, ref, lo, hi, box, backward=False)
    assert np.all(elo >= flo) and np.all(ehi <= fhi)
    assert np.median((ehi - elo) / (fhi - flo)) < 0.95


def _pair_samples(model, pts):
    """Sampled :math:`q = a - b` and :math:`\\partial_k q` of every GroupSort pair of every hidden layer."""
    plain = to_plain(model).double()
    body = plain.net.body if hasattr(plain, "net") else plain.body
    linears = [m for m in body if isinstance(m, torch.nn.Linear)][:-1]
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in linears]
    n, m, d = pts.shape
    x = torch.tensor(pts.reshape(-1, d), requires_grad=True)
    plain(x)
    for hook in hooks:
        hook.remove()
    out = []
    for z in seen:
        h = z.shape[1] // 2
        q = z[:, :h] - z[:, h:]
        e = torch.stack([torch.autograd.grad(q[:, j].sum(), x, retain_graph=True)[0] for j in range(h)], -1)
        out.append((q.detach().numpy().reshape(n, m, h), e.numpy().reshape(n, m, d, h)))
    return out


@pytest.mark.parametrize("fused", [True, False], ids=["kernel", "torch-step"])
@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort"])
def test_layer_ranges_contain_sampled_pair_differences(model, fused, rng, monkeypatch):
    """The ranges of a - b and d(a - b)/dx_k that the backward pass reads, from the fused kernel
    (default) and from the torch step's :func:`layer_ranges`, hold at sampled points of each box."""
    from lipsurrogate.bounds import _pair_kernel
    from lipsurrogate.bounds.affine import _forms
    from lipsurrogate.bounds.network import extract_chain

    model = _inflate(copy.deepcopy(model))
    monkeypatch.setattr(_pair_kernel, "ENABLED", fused)
    d = model.in_features
    lo, width = _boxes(d, 120, rng)
    centre, half = box_centres(lo, lo + width)
    record = {}
    _forms(model, extract_chain(model), centre, half, torch.float32, record=record)
    pts = lo[:, None, :] + rng.uniform(size=(len(lo), 25, d)) * width[:, None, :]
    for r, (q, e) in zip(record["layers"], _pair_samples(model, pts)):
        assert np.all(q >= r.q_lower[:, None]) and np.all(q <= r.q_upper[:, None])
        e_lower, e_upper = np.moveaxis(r.e_lower, 0, 1), np.moveaxis(r.e_upper, 0, 1)  # (n, d, h)
        assert np.all(e >= e_lower[:, None]) and np.all(e <= e_upper[:, None])
    assert len(record["layers"]) == len(extract_chain(model).weights) - 1


def test_kernel_ranges_match_the_torch_step(rng):
    """Both enclosures come from the same forms: they differ by rounding margins only."""
    from lipsurrogate.bounds import _pair_kernel
    from lipsurrogate.bounds.affine import _forms
    from lipsurrogate.bounds.network import extract_chain

    model = _inflate(_features())
    lo, width = _boxes(3, 100, rng)
    centre, half = box_centres(lo, lo + width)
    fused, step = {}, {}
    _forms(model, extract_chain(model), centre, half, torch.float64, record=fused)
    with _pair_kernel.disabled():
        _forms(model, extract_chain(model), centre, half, torch.float64, record=step)
    for a, b in zip(fused["layers"], step["layers"]):
        for name in ("q_lower", "q_upper", "e_lower", "e_upper"):
            x, y = getattr(a, name), getattr(b, name)
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9 * np.abs(y).max())


def test_certify_uses_the_backward_bounds_on_its_blocks(rng):
    """With the backward bounds (the default for GroupSort(2) networks) every cell's bound is at most
    the forms-only one and smaller on most cells, every cell still holds at sampled points, and the
    certificate says where they were used."""
    from lipsurrogate.bounds import certify
    from lipsurrogate.bounds.cells import locate_cells

    ref, model, box = _heat_problem(rng)
    kwargs = dict(box=box, cells=[16, 16, 8], local_block=(1, 1, 2), slopes="affine", tighten="all")
    with backward.disabled():
        forms = certify(model, ref, **kwargs)
    tight = certify(model, ref, **kwargs)
    assert forms.document["backward_bounds"] is None and "section 14" in tight.document["backward_bounds"]
    before, after = forms.cells.per_cell, tight.cells.per_cell
    assert np.all(after <= before) and np.mean(after < before) > 0.5
    pts = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, 1.0], size=(5000, 3))
    with torch.no_grad():
        err = np.abs(to_plain(model).double()(torch.from_numpy(pts))[:, 0].numpy() - ref.values(pts)[0])
    assert np.all(err <= after[locate_cells(pts, tight.cells.edges)])
    refined = certify(model, ref, **kwargs, refine_budget=5000)
    assert refined.bound <= tight.bound


def _relax_reference(y, q_lower, q_upper, e_lower, e_upper, dz, rows, d):
    """The compiled relaxation step as it was written before stop 36: one scalar loop with branches
    and running sums (Python's min/max pick the first argument on ties and NaN as numba's do)."""
    U, TINY = 2.0**-53, 1e-300  # noqa: N806
    s_count, n, w = y.shape
    h = w // 2
    c, terms, c_rows = np.empty_like(y), np.zeros((s_count, n)), np.zeros((s_count, n))
    nmin = lambda a, b: b if b < a else a  # noqa: E731 - numba's builtin min
    nmax = lambda a, b: b if b > a else a  # noqa: E731
    for sk in range(s_count):
        k = sk % d
        for i in range(n):
            acc_mu = acc_err = acc_rows = 0.0
            for j in range(h):
                alpha, beta = y[sk, i, j], y[sk, i, j + h]
                g = beta - alpha
                el, eu = e_lower[k, i, j], e_upper[k, i, j]
                p1, p2 = g * el, g * eu
                eta = 3 * U * abs(g) * nmax(abs(el), abs(eu)) + TINY
                yl, yu = nmin(p1, p2) - eta, nmax(p1, p2) + eta
                if q_lower[i, j] >= 0:
                    lam, mu = 1.0, 0.0
                elif q_upper[i, j] <= 0:
                    lam, mu = 0.0, 0.0
                else:
                    if yl >= 0:
                        lam = 1.0
                    elif yu <= 0:
                        lam = 0.0
                    else:
                        span = yu - yl
                        lam = nmin(nmax(yu / (span if span > 0 else 1.0), 0.0), 1.0)
                    mu = nmax(0.0, nmax(-lam * yl, (1 - lam) * yu)) * (1 + 4 * U)
                lg = lam * g
                ca, cb = alpha + lg, beta - lg
                c[sk, i, j], c[sk, i, j + h] = ca, cb
                err = 4 * U * (abs(alpha) + abs(beta) + 2 * abs(lg))
                acc_mu += mu
                acc_err += err * (dz[k, j] + dz[k, j + h])
                acc_rows += abs(ca) * rows[j, k] + abs(cb) * rows[j + h, k]
            terms[sk, i] = acc_mu + acc_err
            c_rows[sk, i] = acc_rows
    return c, terms, c_rows


@pytest.mark.skipif(not backward.ENABLED, reason="numba is not installed (the numpy step is tested above)")
def test_compiled_relaxation_step_equals_its_scalar_definition_bit_for_bit(rng):
    """Note [selects, then sums in order]: the vectorised kernel gives the same bits as the scalar
    loop with branches, on pairs decided either way (exactly at 0 too), intervals of e on either
    side of 0, g = 0, an empty e interval and a NaN."""
    d, n, w = 3, 9, 22
    h = w // 2
    y = rng.standard_normal((2 * d, n, w))
    q_lower = rng.standard_normal((n, h))
    q_upper = q_lower + np.abs(rng.standard_normal((n, h))) * rng.choice([0.1, 3.0], (n, h))
    q_lower[0, :3], q_upper[1, :3] = 0.0, 0.0  # exactly on the decisions
    e_lower = rng.standard_normal((d, n, h)) * rng.choice([0.0, 1.0], (d, n, h))
    e_upper = e_lower + np.abs(rng.standard_normal((d, n, h))) * rng.choice([0.0, 0.2, 5.0], (d, n, h))
    e_lower[:, 2, :2], e_upper[:, 2, :2] = -0.0, 0.0
    y[:, 3, :4] = y[:, 3, h:h + 4]  # g = 0
    y[1, 4, 5] = np.nan
    dz = np.abs(rng.standard_normal((d, w)))
    rows = np.abs(rng.standard_normal((w, d)))
    expected = _relax_reference(y, q_lower, q_upper, e_lower, e_upper, dz, rows, d)
    rows_t = np.ascontiguousarray(rows.T)
    got = backward._relax_kernel(y, q_lower, q_upper, e_lower, e_upper, dz, rows_t, d, np.arange(n))
    for a, b in zip(got, expected):
        assert np.array_equal(a.view(np.int64), b.view(np.int64))
    # a subset of the boxes, in another order and with a repeat (the padding): read through the
    # index, the same bits as on copies of those boxes' ranges
    boxes = np.array([4, 0, 7, 7, 2])
    y_sub = np.ascontiguousarray(y[:, boxes])
    through_index = backward._relax_kernel(y_sub, q_lower, q_upper, e_lower, e_upper, dz, rows_t, d, boxes)
    on_copies = backward._relax_kernel(y_sub, q_lower[boxes], q_upper[boxes], np.ascontiguousarray(e_lower[:, boxes]),
                                       np.ascontiguousarray(e_upper[:, boxes]), dz, rows_t, d, np.arange(len(boxes)))
    for a, b in zip(through_index, on_copies):
        assert np.array_equal(a.view(np.int64), b.view(np.int64))
    assert not np.array_equal(through_index[0], backward._relax_kernel(
        y_sub, q_lower, q_upper, e_lower, e_upper, dz, rows_t, d, np.arange(len(boxes)))[0])  # the index matters


def test_the_input_tangent_bound_holds_at_sampled_points(rng):
    """input_tangent_bound (the backward bounds' rounding terms scale with it) bounds
    |d v_0 / d x_k| of the first layer's inputs everywhere in the domain: Fourier features and
    passed-through inputs, against autograd."""
    from lipsurrogate.bounds.affine import input_tangent_bound
    from lipsurrogate.bounds.network import extract_chain

    model = _features()
    domain = np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]])
    bound = input_tangent_bound(model, extract_chain(model), domain)
    pts = torch.tensor(rng.uniform(domain[:, 0], domain[:, 1], size=(400, 3)), requires_grad=True)
    feats = to_plain(model).double().features(pts)
    assert bound.shape == (3, feats.shape[1])
    for unit in range(feats.shape[1]):
        (g,) = torch.autograd.grad(feats[:, unit].sum(), pts, retain_graph=True)
        assert np.all(np.abs(g.numpy()) <= bound[:, unit])
    # and tight: |d cos(w.x) / dx_k| <= |w_k| (sin likewise), |d (s (x_j - o)) / dx_k| = |s| [k = j]
    feats = model.features
    waves = np.abs(feats.frequencies.double().numpy().T)  # (d, waves)
    rest = np.zeros((3, len(feats.passthrough)))
    for row, j in enumerate(feats.passthrough):
        rest[j, row] = abs(float(feats.scale[j]))
    np.testing.assert_allclose(bound, np.concatenate([waves, waves, rest], 1), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", ["interval", "affine", "both"])
def test_a_box_gets_the_same_slope_range_in_any_batch(method, rng):
    """The certifier recomputes subsets of its blocks (Note [screened blocks]): a box's range must
    not depend on the other boxes of the batch, their number or its place among them, bit for bit
    (the backward bounds' rounding terms use a bound over the domain, the reference's pads are per
    box, and the batches are padded to whole BLAS row tiles)."""
    from lipsurrogate.bounds.certifier import _error_slopes

    ref = HeatSolution(random_periodic_modes(rng, n_modes=3, k_max=2), 0.05)
    model = _inflate(_features(), 2.0)
    box = np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]])
    lo = rng.uniform(box[:, 0], box[:, 1] - 0.3, size=(301, 3))
    hi = lo + rng.choice([0.01, 0.1, 0.3], size=(301, 1))
    full = _error_slopes(model, ref, lo, hi, box, method=method)
    for keep in (np.sort(rng.choice(301, 37, replace=False)), np.arange(5, 6), np.arange(250, 301)):
        part = _error_slopes(model, ref, lo[keep], hi[keep], box, method=method)
        for a, b in zip(full, part):
            np.testing.assert_array_equal(a[keep], b)


@pytest.mark.parametrize("compiled", [True, False])
def test_backward_bounds_of_some_boxes_read_through_an_index_equal_those_on_copies(compiled, rng):
    """tangent_bounds(..., boxes=rows): the records of the whole batch read through the index (the
    certifier's screened blocks) give the bits of the records copied to those rows, with the compiled
    relaxation step and with the numpy one."""
    from lipsurrogate.bounds.affine import _forms, input_tangent_bound
    from lipsurrogate.bounds.backward import LayerRanges, tangent_bounds
    from lipsurrogate.bounds.network import extract_chain
    from lipsurrogate._compiled import flag_off

    if compiled and not backward.ENABLED:
        pytest.skip("numba is not installed")
    model = _inflate(_features(), 2.0)
    chain = extract_chain(model)
    lo, width = _boxes(3, 64, rng, widths=(0.02, 0.2))
    centre, half = box_centres(lo, lo + width)
    record = {}
    _forms(model, chain, centre, half, torch.float32, record=record)
    bound = input_tangent_bound(model, chain, np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 7.0]]))
    rows = np.array([3, 17, 17, 40, 0, 63, 5, 5])
    inputs = tuple(x[rows] for x in record["inputs"])
    copies = [LayerRanges(x.q_lower[rows], x.q_upper[rows], x.e_lower[:, rows], x.e_upper[:, rows])
              for x in record["layers"]]
    with flag_off(backward, "ENABLED") if not compiled else contextlib.nullcontext():
        through_index = tangent_bounds(chain.weights, record["layers"], inputs, half[rows], bound, boxes=rows)
        on_copies = tangent_bounds(chain.weights, copies, inputs, half[rows], bound)
    for field in ("lower_centre", "lower_slope", "upper_centre", "upper_slope"):
        assert np.array_equal(getattr(through_index, field), getattr(on_copies, field))
    with pytest.raises(ValueError, match="boxes"):
        tangent_bounds(chain.weights, record["layers"], inputs, half[rows], bound, boxes=rows[:3])
