"""Affine derivative forms contain every sampled derivative (autograd, float64), and beat intervals."""

import copy

import numpy as np
import pytest
import torch

from lipsurrogate.bounds import HeatSolution
from lipsurrogate.bounds.affine import (DerivativeForms, box_centres, error_slopes, network_derivative_forms,
                                        supports_forms)
from lipsurrogate.bounds.local import network_derivative_intervals
from lipsurrogate.data.heat import random_periodic_modes
from lipsurrogate.exceptions import CertificationError
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP, to_plain


def _models():
    yield FeatureLipschitzMLP(3, 1, (32, 32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=3,
                              offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[3, 3, 1], seed=1)
    yield LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, seed=2)
    yield LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, activation="relu", seed=3)
    torch.manual_seed(4)  # a user's plain ReLU network
    yield torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def _plain(model):
    return to_plain(model).double() if hasattr(model, "config") else copy.deepcopy(model).double()


def _inflated_boxes(model, n, rng):
    """Scale the model's weights by 3 in place (more undecided pairs: a harder test); random boxes of three sizes."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(3)
    d = model.in_features if hasattr(model, "in_features") else model[0].in_features
    lo = rng.uniform(0, 6, size=(n, d))
    width = rng.choice([1e-3, 0.05, 0.5], size=(n, 1)) * np.ones((1, d))
    return (lo, width, *box_centres(lo, lo + width))


def _sampled_gradients(model, lo, width, rng, per_box=40):
    d = lo.shape[1]
    pts = lo[:, None, :] + rng.uniform(size=(len(lo), per_box, d)) * width[:, None, :]
    x = torch.tensor(pts.reshape(-1, d), requires_grad=True)
    (g,) = torch.autograd.grad(_plain(model)(x).sum(), x)
    return pts, g.numpy().reshape(len(lo), per_box, d)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort", "relu", "sequential-relu"])
def test_forms_contain_sampled_derivatives_pointwise(model, dtype, rng):
    lo, width, centre, half = _inflated_boxes(model, 240, rng)
    forms = network_derivative_forms(model, centre, half, dtype=dtype)
    pts, g = _sampled_gradients(model, lo, width, rng)
    affine = forms.centre[:, None, :] + np.einsum("nkj,npj->npk", forms.generators, pts - centre[:, None, :])
    assert np.all(np.abs(g - affine) <= forms.radius[:, None, :])
    flo, fhi = forms.intervals(half)
    assert np.all(g >= flo[:, None]) and np.all(g <= fhi[:, None])


def test_forms_are_tighter_than_intervals_on_small_boxes(rng):
    model = next(_models())
    lo = rng.uniform(0, 5, size=(400, 3))
    hi = lo + np.array([2 * np.pi / 128, 2 * np.pi / 128, 1 / 32])
    centre, half = box_centres(lo, hi)
    flo, fhi = network_derivative_forms(model, centre, half).intervals(half)
    ilo, ihi = network_derivative_intervals(model, lo, hi)
    assert np.median((fhi - flo) / (ihi - ilo)) < 0.8


def test_float32_and_float64_forms_agree(rng):
    model = next(_models())
    lo = rng.uniform(0, 5, size=(100, 3))
    centre, half = box_centres(lo, lo + 0.05)
    a = network_derivative_forms(model, centre, half, dtype=torch.float64)
    b = network_derivative_forms(model, centre, half, dtype=torch.float32)
    wa = np.subtract(*a.intervals(half)[::-1])
    wb = np.subtract(*b.intervals(half)[::-1])
    # float32 pays its rounding in the radius (and a pair at the edge may become undecided): wider, barely
    assert np.median(wb / wa) >= 1.0 and np.median(wb / wa) < 1.01


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort", "relu", "sequential-relu"])
def test_fused_kernel_computes_the_torch_step(model, dtype, rng):
    """The numba pass (default) and the torch step give the same forms: equal centres and generators
    (decided pairs are copied, undecided ones averaged), radii within a few roundings."""
    from lipsurrogate.bounds import _pair_kernel
    from lipsurrogate.bounds.affine import _forms
    from lipsurrogate.bounds.network import extract_chain

    assert _pair_kernel.HAVE_KERNEL  # numba is a dependency
    _, _, centre, half = _inflated_boxes(model, 300, rng)
    chain = extract_chain(model)
    fused = _forms(model, chain, centre, half, dtype, fused=True)
    step = _forms(model, chain, centre, half, dtype, fused=False)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(fused[:2], step[:2]):  # centres, generators
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
    np.testing.assert_allclose(fused[2], step[2], rtol=100 * tol)
    assert np.median(fused[2] / step[2]) == pytest.approx(1.0, abs=tol)


@pytest.mark.parametrize("model", list(_models())[:2], ids=["features", "groupsort"])
def test_compiled_packing_equals_the_numpy_packing_bit_for_bit(model, rng):
    """The float32 packing of the input forms (the conversion moved into the radii) and the backward
    bounds' tangent copies, in one compiled pass, are the numpy code's numbers bit for bit."""
    from lipsurrogate.bounds import _pair_kernel
    from lipsurrogate.bounds.affine import _input_forms, _pack, _tangent_inputs
    from lipsurrogate.bounds.network import extract_chain

    _, _, centre, half = _inflated_boxes(model, 300, rng)
    P, R = _input_forms(model, extract_chain(model), centre, half)
    P_np, R_np = _pack(P, R, half, torch.float32)
    P_k, R_k, tangents = _pair_kernel.pack_forms(P, R, half, tangents=True)
    assert np.array_equal(P_k, P_np.numpy()) and np.array_equal(R_k, R_np.numpy())
    assert np.all(R_k.astype(np.float64) >= R)  # the radii only grow
    for compiled, copied in zip(tangents, _tangent_inputs(P, R)):
        assert np.array_equal(compiled, copied)
    assert _pair_kernel.pack_forms(P, R, half, tangents=False)[1].tobytes() == R_k.tobytes()


@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort", "relu", "sequential-relu"])
def test_forms_without_their_zero_generators_are_the_whole_forms_bit_for_bit(model, rng, monkeypatch):
    """Note [zero generators]: storing only the derivatives' generators that are not zero at the
    input, and the equal H_xy and H_yx once, gives the forms, the backward bounds' layer ranges and
    input tangents of the whole forms, bit for bit (the dropped entries stay exactly zero through
    every layer, the shared ones equal)."""
    from lipsurrogate.bounds import _pair_kernel
    from lipsurrogate.bounds.affine import _forms, _input_forms
    from lipsurrogate.bounds.network import extract_chain

    _, _, centre, half = _inflated_boxes(model, 240, rng)
    chain = extract_chain(model)
    layout = _pair_kernel.FormLayout.of(_input_forms(model, chain, centre, half)[0])
    d = centre.shape[1]
    # the Fourier features depend on (x, y) only, t passes through: t's second derivatives are zero;
    # the plain networks' inputs are affine: every second derivative is zero
    expected = [[True, True, False], [True, True, False], [False, False, False]] if d == 3 else [[False] * d] * d
    assert [list(row) for row in layout.kept] == expected
    # the waves' d2/dxdy and d2/dydx are the same products of integer frequencies: one stored row
    assert layout.shared == (((1, 0),) if d == 3 else ())
    assert layout.entries == (10 if d == 3 else (d + 1) + d)  # of (d + 1)^2

    def run():
        record = {}
        return _forms(model, chain, centre, half, torch.float32, record=record), record

    compact, compact_record = run()
    monkeypatch.setattr(_pair_kernel.FormLayout, "of", classmethod(lambda cls, P: cls.full(P.shape[1] - 1)))
    whole, whole_record = run()
    for a, b in zip(compact, whole):
        assert np.array_equal(a, b)
    for a, b in zip(compact_record["inputs"], whole_record["inputs"]):
        assert np.array_equal(a, b)
    assert len(compact_record["layers"]) == len(whole_record["layers"])
    for a, b in zip(compact_record["layers"], whole_record["layers"]):
        for field in ("q_lower", "q_upper", "e_lower", "e_upper"):
            assert np.array_equal(getattr(a, field), getattr(b, field))


def test_form_layouts_store_what_they_say(rng):
    from lipsurrogate.bounds._pair_kernel import FormLayout, pack_forms, pair_forms

    kept = ((True, False), (False, False))
    layout = FormLayout(kept)
    assert layout.rows == 3 and layout.entries == 3 + 2 + 1
    assert layout.starts.tolist() == [0, 3, 5, 6] and layout.columns.tolist() == [0, 1, 2, 0, 1, 0]
    P = rng.normal(size=(5, 3, 3, 4))
    P[:, 1, 2] = 0
    P[:, 2, 1:] = 0
    assert FormLayout.of(P) == layout
    half = rng.uniform(0.1, 1, size=(5, 2))
    R = rng.uniform(size=(5, 3, 4))
    stored, R32 = pack_forms(P, R, half, tangents=False, layout=layout)
    whole, R_whole = pack_forms(P, R, half, tangents=False)
    assert stored.shape == (5, 6, 4) and np.array_equal(layout.expand(stored), whole)
    assert np.array_equal(layout.expand(torch.from_numpy(stored)).numpy(), whole)
    assert np.array_equal(R32, R_whole)
    with pytest.raises(ValueError, match="layout"):
        pair_forms(whole, R_whole, half.astype(np.float32), relu=False, layout=layout)
    # H_xy = H_yx bit for bit: one stored row, both entries expand from it
    P[:, 2, 1] = P[:, 1, 2] = rng.normal(size=(5, 4))
    shared = FormLayout.of(P)
    assert shared == FormLayout(((True, True), (True, False)), ((1, 0),)) and shared.entries == 3 + 3 + 2 - 1
    assert shared.store.tolist() == [0, 1, 2, 3, 4, 5, 6, 5]
    stored, _ = pack_forms(P, R, half, tangents=False, layout=shared)
    assert np.array_equal(shared.expand(stored), pack_forms(P, R, half, tangents=False)[0])
    P[0, 2, 1, 0] = np.nextafter(P[0, 1, 2, 0], np.inf)  # one ulp apart: two rows
    assert FormLayout.of(P).shared == ()


def test_unsupported_networks_are_refused():
    torch.manual_seed(0)
    tanh = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    assert not supports_forms(tanh)
    with pytest.raises(CertificationError, match="GroupSort"):
        network_derivative_forms(tanh, np.zeros((1, 2)), np.ones((1, 2)))


@pytest.mark.parametrize("parametric", [False, True])
def test_heat_forms_and_hessians_contain_autograd(parametric, rng):
    modes = random_periodic_modes(rng, n_modes=4, k_max=3)
    ref = HeatSolution(modes, None if parametric else 0.05)
    d = ref.in_features
    box = np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0], [0.02, 0.1]])[:d]
    lo = box[:, 0] + rng.uniform(size=(300, d)) * (box[:, 1] - box[:, 0]) * 0.9
    width = rng.choice([1e-3, 0.05, 0.3], size=(300, 1)) * (box[:, 1] - box[:, 0]) * 0.1
    hi = lo + width
    centre, half = box_centres(lo, hi)
    forms = ref.derivative_forms(lo, hi, centre, half, box)
    pts = lo[:, None, :] + rng.uniform(size=(300, 30, d)) * width[:, None, :]
    x = torch.tensor(pts.reshape(-1, d), requires_grad=True)
    (g,) = torch.autograd.grad(ref.torch(x).sum(), x, create_graph=True)
    hess = np.stack([torch.autograd.grad(g[:, k].sum(), x, retain_graph=True)[0].detach().numpy() for k in range(d)], 1)
    g = g.detach().numpy().reshape(300, 30, d)
    affine = forms.centre[:, None, :] + np.einsum("nkj,npj->npk", forms.generators, pts - centre[:, None, :])
    assert np.all(np.abs(g - affine) <= forms.radius[:, None, :])
    kap = (lo[:, 3:4], hi[:, 3:4]) if parametric else (np.full((300, 1), 0.05),) * 2
    hlo, hhi = modes.hessian_intervals(lo[:, :3], hi[:, :3], *kap)
    hess = hess.reshape(300, 30, d, d)
    assert np.all(hess >= hlo[:, None, :d, :d]) and np.all(hess <= hhi[:, None, :d, :d])


def test_error_slopes_contain_sampled_error_slopes_and_keep_the_cancellation(rng):
    """A network that equals u up to a small residual: the error's range is far narrower than f's."""
    modes = random_periodic_modes(rng, n_modes=3, k_max=2)
    ref = HeatSolution(modes, 0.05)
    model = FeatureLipschitzMLP(3, 1, (32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[6, 6, 2], seed=5)
    box = np.array([[0, 2 * np.pi], [0, 2 * np.pi], [0, 1.0]])
    lo = box[:, 0] + rng.uniform(size=(200, 3)) * (box[:, 1] - box[:, 0] - 0.05)
    hi = lo + 0.05
    elo, ehi = error_slopes(model, ref, lo, hi, box)
    pts = lo[:, None, :] + rng.uniform(size=(200, 30, 3)) * 0.05
    x = torch.tensor(pts.reshape(-1, 3), requires_grad=True)
    (g,) = torch.autograd.grad((_plain(model)(x)[:, 0] - ref.torch(x)).sum(), x)
    g = g.numpy().reshape(200, 30, 3)
    assert np.all(g >= elo[:, None]) and np.all(g <= ehi[:, None])
    # against the difference of the two interval ranges
    flo, fhi = network_derivative_intervals(model, lo, hi)
    ulo, uhi = ref.derivative_intervals(lo, hi, box)
    assert np.median((ehi - elo) / ((fhi - ulo) - (flo - uhi))) < 0.9


def test_constant_forms_from_intervals_round_outwards():
    lo = np.array([[0.1, -3.0]])
    hi = np.array([[0.3, 7.0]])
    forms = DerivativeForms.from_intervals(lo, hi)
    a, b = forms.intervals(np.ones((1, 2)))
    assert np.all(a <= lo) and np.all(b >= hi) and np.all(forms.generators == 0)


@pytest.mark.parametrize("model", list(_models())[:2], ids=["features", "groupsort"])
def test_packed_input_forms_contain_the_first_layer_inputs_and_their_derivatives(model, rng):
    """The packed input forms (rows: value, d/dx_k; columns: centre, generator_j) against autograd in
    float64: the centre column is the feature map's value and gradient at the box centre, and the
    forms contain the values and gradients sampled inside the boxes."""
    from lipsurrogate.bounds.affine import _input_forms, _tangent_inputs
    from lipsurrogate.bounds.network import extract_chain

    chain = extract_chain(model)
    d = model.in_features
    lo = rng.uniform(0, 6, size=(50, d))
    width = rng.choice([1e-3, 0.05, 0.5], size=(50, 1)) * np.ones((1, d))
    centre, half = box_centres(lo, lo + width)
    P, R = _input_forms(model, chain, centre, half)
    if getattr(model, "features", None) is not None:
        features = copy.deepcopy(model.features).double()
    else:
        offset, scale = torch.tensor(chain.in_offset), torch.tensor(chain.in_scale)
        features = lambda x: (x - offset) * scale  # noqa: E731
    pts = lo[:, None, :] + rng.uniform(size=(50, 30, d)) * width[:, None, :]
    x = torch.tensor(np.concatenate([centre[:, None], pts], 1).reshape(-1, d), requires_grad=True)
    phi = features(x)
    grads = torch.stack([torch.autograd.grad(phi[:, i].sum(), x, retain_graph=True)[0]
                         for i in range(phi.shape[1])], 1)  # (points, unit, k)
    phi = phi.detach().numpy().reshape(50, 31, -1)
    grads = grads.numpy().reshape(50, 31, -1, d)
    np.testing.assert_allclose(P[:, 0, 0], phi[:, 0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.moveaxis(P[:, 1:, 0], 1, 2), grads[:, 0], rtol=0, atol=1e-13)
    delta = pts - centre[:, None]
    value_form = P[:, None, 0, 0] + np.einsum("nju,npj->npu", P[:, 0, 1:], delta)
    assert np.all(np.abs(phi[:, 1:] - value_form) <= R[:, None, 0])
    slope_form = np.moveaxis(P[:, None, 1:, 0], 2, 3) + np.einsum("nkju,npj->npuk", P[:, 1:, 1:], delta)
    assert np.all(np.abs(grads[:, 1:] - slope_form) <= np.moveaxis(R[:, None, 1:], 2, 3))
    D, H, sigma = _tangent_inputs(P, R)  # noqa: N806 - the backward bounds' layout of the same numbers
    assert np.array_equal(D, np.moveaxis(P[:, 1:, 0], 1, 2)) and np.array_equal(sigma, np.moveaxis(R[:, 1:], 1, 2))
    assert np.array_equal(np.einsum("nukj->nkju", H), P[:, 1:, 1:])


def test_input_forms_once_per_run_of_periodic_coordinates_are_those_of_every_box(rng):
    """Boxes that share their periodic coordinates (heat2d's blocks along t) get the waves' forms
    computed once per run (Note [repeated periodic coordinates]): the same bits, signed zeros
    included, as when every box is computed on its own (a shuffled batch has no runs)."""
    from lipsurrogate.bounds.affine import _input_forms
    from lipsurrogate.bounds.network import extract_chain

    model = next(_models())
    xy = rng.uniform(0, 2 * np.pi, size=(300, 2))
    lo = np.concatenate([np.repeat(xy, 8, axis=0), np.tile(np.linspace(0, 0.875, 8), 300)[:, None]], 1)
    centre, half = box_centres(lo, lo + [0.05, 0.05, 0.125])
    runs = _input_forms(model, extract_chain(model), centre, half)
    order = rng.permutation(len(lo))
    alone = _input_forms(model, extract_chain(model), centre[order], half[order])
    for a, b in zip(runs, alone):
        np.testing.assert_array_equal(a[order].view(np.int64), b.view(np.int64))
