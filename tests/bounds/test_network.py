import numpy as np
import pytest
import torch
from torch import nn

from lipsurrogate.bounds import empirical_lipschitz, evaluate_float64, extract_chain, lipschitz_bounds
from lipsurrogate.exceptions import CertificationError
from lipsurrogate.nn import GroupSort, LipschitzMLP


def test_single_layer_bound_is_exact():
    lin = nn.Linear(3, 2)
    b = lipschitz_bounds(nn.Sequential(lin))
    np.testing.assert_allclose(b.per_input, np.abs(lin.weight.detach().double().numpy()), rtol=1e-12)
    np.testing.assert_allclose(b.l2, np.linalg.norm(lin.weight.detach().double().numpy(), axis=1), rtol=1e-12)


def test_two_layer_relu_bound_is_attained_on_linear_region():
    # f(x) = relu(x) with weights [[2]] then [[3]]: slope 6 for x > 0, and the bound must be 6
    first, second = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.fill_(2.0), second.weight.fill_(3.0)
    b = lipschitz_bounds(nn.Sequential(first, nn.ReLU(), second))
    assert b.per_input[0, 0] == pytest.approx(6.0, rel=1e-12)
    assert b.per_input[0, 0] >= 6.0


def test_plain_mlp_bound_exceeds_estimate(torch_gen):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    b = lipschitz_bounds(net)
    est = empirical_lipschitz(net, torch.randn(4000, 2, generator=torch_gen) * 3)
    assert np.all(est <= b.per_input)


def test_estimate_is_below_certified_for_monotonic_net(torch_gen):
    model = LipschitzMLP(4, 1, (16, 16), lipschitz=2.0, monotonic=[1, 1, -1, 0], seed=0)
    b = lipschitz_bounds(model)
    x = torch.randn(2000, 4, generator=torch_gen) * 5
    est = empirical_lipschitz(model, x)
    assert np.all(est <= b.per_input)


def test_aux_head_needs_domain_and_holds_on_it(rng):
    model = LipschitzMLP(2, 1, (8, 8), head="aux", seed=0).eval()
    with pytest.raises(CertificationError, match="domain"):
        lipschitz_bounds(model)
    box = np.array([[-2.0, 2.0], [0.0, 1.0]])
    b = lipschitz_bounds(model, domain=box)
    x = rng.uniform(box[:, 0], box[:, 1], size=(3000, 2))
    y = rng.uniform(box[:, 0], box[:, 1], size=(3000, 2))
    f = lambda p: model.double()(torch.from_numpy(p)).detach().numpy()[:, 0]  # noqa: E731
    lhs = np.abs(f(x) - f(y))
    rhs = np.abs(x - y) @ b.per_input[0]
    assert np.all(lhs <= rhs + 1e-12)


def test_float64_evaluation_error_bound_holds_against_extended_precision(rng):
    model = LipschitzMLP(3, 2, (16, 16), lipschitz=3.0, input_scale=[3.0, 0.3, 1.0],
                         input_offset=[0.1, 0.2, 0.3], monotonic=[1, 0, -1], seed=2)
    chain = extract_chain(model)
    x = rng.normal(size=(500, 3)) * 10
    values, errors = evaluate_float64(chain, x)
    # reference in 80-bit extended precision with the same (exact) weights
    h = (x.astype(np.longdouble) - chain.in_offset.astype(np.longdouble)) * chain.in_scale.astype(np.longdouble)
    z = h
    gs = GroupSort(2)
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        h = h @ w.astype(np.longdouble).T + b.astype(np.longdouble)
        if i < len(chain.weights) - 1:
            a, c = np.split(h, 2, axis=1)
            h = np.concatenate([np.minimum(a, c), np.maximum(a, c)], axis=1)
    h = h + (z @ chain.residual.astype(np.longdouble))[:, None]
    actual = np.abs(values.astype(np.longdouble) - h).astype(np.float64)
    assert np.all(actual <= errors)
    assert np.all(errors < 1e-10)  # and the bound is not vacuous
    del gs


def test_fourier_feature_network_evaluation_bound_holds_against_extended_precision(rng):
    """The feature networks take the identity input map (offset 0, scale 1: no rounding) and the
    in-place GroupSort and max |h| from two reductions; checked against 80-bit arithmetic."""
    from lipsurrogate.nn.features import FeatureLipschitzMLP

    model = FeatureLipschitzMLP(3, 1, (64, 64, 64), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                offset=[0, 0, 0.5], scale=[1, 1, 2.0], input_budget=[3.0, 3.0, 1.0], seed=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))  # move away from the initialisation
    chain = extract_chain(model)
    assert np.all(chain.in_offset == 0) and np.all(chain.in_scale == 1)
    x = rng.uniform(-10, 10, size=(2000, 3))
    values, errors = evaluate_float64(chain, x)
    feats = chain.feature_map.__self__
    xl = x.astype(np.longdouble)
    phase = xl @ feats.frequencies.numpy().astype(np.longdouble).T
    rest = (xl[:, feats.passthrough] - feats.offset.numpy()[feats.passthrough].astype(np.longdouble)) \
        * feats.scale.numpy()[feats.passthrough].astype(np.longdouble)
    h = np.concatenate([np.cos(phase), np.sin(phase), rest], axis=1)
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        h = h @ w.astype(np.longdouble).T + b.astype(np.longdouble)
        if i < len(chain.weights) - 1:
            a, c = np.split(h, 2, axis=1)
            h = np.concatenate([np.minimum(a, c), np.maximum(a, c)], axis=1)
    if chain.out_scale is not None:
        h = h * chain.out_scale.astype(np.longdouble)
    actual = np.abs(values.astype(np.longdouble) - h).astype(np.float64)
    assert np.all(actual <= errors)
    assert np.any(actual > 0) and np.all(errors < 1e-11)


def _longdouble_chain(chain, x, pair_sort=False):
    """The chain in 80-bit extended precision (ReLU or GroupSort(2) hidden layers, out_scale), for the tests."""
    h = (x.astype(np.longdouble) - chain.in_offset.astype(np.longdouble)) * chain.in_scale.astype(np.longdouble)
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        h = h @ w.astype(np.longdouble).T + b.astype(np.longdouble)
        if i < len(chain.weights) - 1 and pair_sort:
            a, c = np.split(h, 2, axis=1)
            h = np.concatenate([np.minimum(a, c), np.maximum(a, c)], axis=1)
        elif i < len(chain.weights) - 1:
            h = np.maximum(h, 0)
    if chain.out_scale is not None:
        h = h * chain.out_scale.astype(np.longdouble)
    return h


@pytest.mark.parametrize("scales", [(1.0, 1.0, 1.0), (10.0, 10.0, 10.0), (1e-150, 1e-160, 1e10)])
def test_fast_rounding_bound_holds_for_wide_relu_layers_scales_and_underflow(rng, scales):
    # a wide layer (the gamma_{n+1} term grows with n), large values (the bound is relative) and
    # weights so small that the second layer's products are subnormal (the absolute term, which
    # the last layer amplifies so that it shows)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 2)).double()
    with torch.no_grad():
        for layer, scale in zip(model[::2], scales):
            layer.weight.mul_(scale)
            layer.bias.mul_(scale if scales[0] >= 1 else 0.0)
    chain = extract_chain(model)
    chain.out_scale = np.array([3.0, -0.5])
    x = rng.normal(size=(3000, 3)) * 7
    values, errors = evaluate_float64(chain, x)
    exact = _longdouble_chain(chain, x)
    actual = np.abs(values.astype(np.longdouble) - exact).astype(np.float64)
    assert np.all(actual <= errors)
    assert np.any(actual > 0)  # rounding did happen, so the check had something to catch
    assert errors.max() <= 1e-11 * np.abs(values).max() + 1e-305  # and the bound is not vacuous


def test_tanh_evaluation_error_bound_holds_against_extended_precision(rng):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 1))
    chain = extract_chain(model)
    x = rng.normal(size=(2000, 3)) * 3
    values, errors = evaluate_float64(chain, x)
    h = x.astype(np.longdouble)
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        h = h @ w.astype(np.longdouble).T + b.astype(np.longdouble)
        if i < len(chain.weights) - 1:
            h = np.tanh(h)  # 80-bit tanh: ~64 bits of precision
    actual = np.abs(values.astype(np.longdouble) - h).astype(np.float64)
    assert np.all(actual <= errors) and np.all(errors < 1e-12)


def test_bounds_json_says_what_the_numbers_are():
    d = lipschitz_bounds(LipschitzMLP(2, 1, (8,), seed=0)).to_dict()
    assert d["kind"] == "certified upper bound"
    assert d["norm"] == "l1" and len(d["per_input"][0]) == 2


def test_unsupported_models_are_refused():
    with pytest.raises(CertificationError, match=r"layer 1 \(Sigmoid\)|Sigmoid"):
        lipschitz_bounds(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1)))
    with pytest.raises(CertificationError, match="Cannot certify"):
        lipschitz_bounds(nn.Linear(2, 2))
    with pytest.raises(CertificationError, match="domain"):
        lipschitz_bounds(LipschitzMLP(2, 1, (8,), head="aux"), domain=[[0, 1]])


def test_evaluation_in_row_blocks_agrees_with_one_pass_and_holds_its_bound(rng, monkeypatch):
    """evaluate_float64 carries ROWS_PER_BLOCK points at a time through the layers. In blocks of 96
    and in one pass of 1000 points the bound holds against 80-bit arithmetic, for a ReLU network
    (hidden maxima from the reductions) and a GroupSort one (maxima from the fused pair pass), and
    the two results agree within their bounds (BLAS may sum in another order for another size)."""
    import lipsurrogate.bounds.network as network

    for activation in ("relu", "groupsort"):
        model = LipschitzMLP(3, 1, (32, 32), activation=activation, lipschitz=3.0, seed=2,
                             input_offset=[0.1, 0.2, 0.3], input_scale=[1.5, 0.5, 2.0])
        chain = extract_chain(model)
        x = rng.uniform(-3, 3, size=(1000, 3))
        exact = _longdouble_chain(chain, x, pair_sort=activation == "groupsort")
        results = [evaluate_float64(chain, x)]
        monkeypatch.setattr(network, "ROWS_PER_BLOCK", 96)
        results.append(evaluate_float64(chain, x))
        monkeypatch.undo()
        for values, errors in results:
            actual = np.abs(values.astype(np.longdouble) - exact).astype(np.float64)
            assert np.all(actual <= errors) and np.any(actual > 0)
        (v1, e1), (v2, e2) = results
        assert np.all(np.abs(v1 - v2) <= e1 + e2)


def test_fourier_features_rounding_bound_holds_for_torch_cos_and_sin(rng):
    """The features' cos and sin come from torch's float64 kernels; their bound (phase error plus 4u)
    against 80-bit arithmetic over many phases, large ones included."""
    from lipsurrogate.nn.features import FourierFeatures

    feats = FourierFeatures(3, periods=[2 * np.pi, 0.7, None], harmonics=4, offset=[0, 0, 0.5], scale=[1, 1, 2.0])
    x = rng.uniform(-40, 40, size=(100_000, 3))
    values, errors = feats.evaluate_float64(x)
    xl = x.astype(np.longdouble)
    phase = xl @ feats.frequencies.numpy().astype(np.longdouble).T
    rest = (xl[:, feats.passthrough] - feats.offset.numpy()[feats.passthrough].astype(np.longdouble)) \
        * feats.scale.numpy()[feats.passthrough].astype(np.longdouble)
    exact = np.concatenate([np.cos(phase), np.sin(phase), rest], axis=1)
    actual = np.abs(values.astype(np.longdouble) - exact).astype(np.float64)
    assert np.all(actual <= errors)
    assert np.any(actual > 0.25 * errors.min())  # the bound is not vacuous: within a factor of the error
    # the assumption itself: torch's float64 cos and sin within the 4u allowed for them
    phases = np.concatenate([rng.uniform(-60, 60, 200_000), rng.uniform(-1e4, 1e4, 50_000)])
    for name in ("cos", "sin"):
        computed = getattr(torch, name)(torch.from_numpy(phases)).numpy().astype(np.longdouble)
        assert np.max(np.abs(computed - getattr(np, name)(phases.astype(np.longdouble)))) <= 4 * 2.0**-53
    torch_values = feats(torch.from_numpy(x)).numpy()
    assert np.allclose(values, torch_values, rtol=0, atol=1e-12)  # the module's own function


def test_fourier_features_on_a_grid_compute_each_run_of_periodic_coordinates_once(rng, monkeypatch):
    """On grid points in C order the waves repeat along the non-periodic axis; they are computed
    once per run of equal periodic coordinates and copied, giving the per-row evaluation's values
    and bounds bit for bit (Note [repeated periodic coordinates]), and rows that do not repeat or
    are not finite take the per-row path."""
    from lipsurrogate._repeated_rows import runs_of_equal_rows
    from lipsurrogate.nn import features
    from lipsurrogate.nn.features import FourierFeatures

    feats = FourierFeatures(3, periods=[2 * np.pi, 0.7, None], harmonics=3, offset=[0, 0, 0.5], scale=[1, 1, 2.0])
    edges = [np.linspace(0, 2 * np.pi, 17), rng.uniform(-2, 2, 11), np.linspace(0, 1, 9)]
    grid = np.stack([m.ravel() for m in np.meshgrid(*edges, indexing="ij")], axis=1)
    rows_computed = []
    waves = features.FourierFeatures._waves_float64

    def counting(self, x, values, errors):
        rows_computed.append(len(x))
        return waves(self, x, values, errors)

    monkeypatch.setattr(features.FourierFeatures, "_waves_float64", counting)
    values, errors = feats.evaluate_float64(grid)
    assert rows_computed == [17 * 11]  # one row per (x, y): 9 times fewer
    monkeypatch.setattr(features, "runs_of_equal_rows", lambda x, columns: None)
    every_row = feats.evaluate_float64(grid)
    assert rows_computed[-1] == len(grid)
    assert np.array_equal(values, every_row[0]) and np.array_equal(errors, every_row[1])
    monkeypatch.undo()
    # the bound itself, against 80-bit arithmetic
    xl = grid.astype(np.longdouble)
    phase = xl @ feats.frequencies.numpy().astype(np.longdouble).T
    exact = np.concatenate([np.cos(phase), np.sin(phase)], axis=1)
    n_waves = 2 * len(feats.frequencies)
    assert np.all(np.abs(values[:, :n_waves].astype(np.longdouble) - exact).astype(np.float64) <= errors[:, :n_waves])
    # an infinite time on one row: 0 * inf is NaN in that row's phase, so every row is computed
    bad = grid.copy()
    bad[5, 2] = np.inf
    assert runs_of_equal_rows(bad, feats.periodic) is None
    assert np.isnan(feats.evaluate_float64(bad)[0][5, :n_waves]).all()
    # shuffled rows do not repeat: no table
    assert runs_of_equal_rows(rng.permutation(grid), feats.periodic) is None


def test_compiled_error_recursion_equals_its_torch_formula_bit_for_bit(rng):
    """evaluate_float64's per-row maxima (on the bit patterns) and error recursion (one compiled
    loop) give the numbers of the torch/numpy expressions they replace, NaN included."""
    from lipsurrogate.bounds import network

    z = rng.normal(size=(500, 49)) * rng.choice([1e-310, 1.0, 1e300], size=(500, 1))
    z[3, 7], z[4] = np.nan, -0.0
    err = np.abs(rng.normal(size=(500, 49))) * 1e-16
    err[9, 48] = np.nan
    m, top = network._input_maxima(z, err)
    assert network._INPUT_MAXIMA is not None  # the compiled path was the one tested
    expected_m = torch.maximum(torch.from_numpy(z).amax(1), -torch.from_numpy(z).amin(1)).numpy()
    expected_top = err.max(axis=1, initial=0.0)
    assert np.array_equal(m, expected_m, equal_nan=True) and np.isnan(m[3]) and m[4] == 0
    assert np.array_equal(top, expected_top, equal_nan=True) and np.isnan(top[9])
    fallback = network._input_maxima(np.asfortranarray(z), err)  # not contiguous: the torch/numpy path
    assert np.array_equal(fallback[0], m, equal_nan=True) and np.array_equal(fallback[1], top, equal_nan=True)
    eps, mt = torch.from_numpy(np.abs(rng.normal(size=500)) * 1e-14), torch.from_numpy(np.nan_to_num(m))
    args = (1.7, 128 * 2.0**-53 * 1.01, 0.3, 129 * 2.0**-1074)
    compiled = network._next_error(eps, mt, *args)
    torch_formula = (args[0] * eps + args[1] * (args[0] * mt + args[2])) * (1 + 8 * 2.0**-53) + args[3]
    assert torch.equal(compiled, torch_formula)
