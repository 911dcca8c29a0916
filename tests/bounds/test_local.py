"""Local derivative intervals contain every sampled derivative (autograd, float64)."""

import copy

import numpy as np
import pytest
import torch

from lipsurrogate.bounds import lipschitz_bounds
from lipsurrogate.bounds.local import cos_range, network_derivative_intervals
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP, to_plain


def test_cos_range_matches_dense_sampling(rng):
    c = rng.uniform(-20, 20, size=2000)
    r = rng.choice([1e-3, 0.1, 1.0, 4.0], size=2000)
    lo, hi = cos_range(c, r)
    t = np.linspace(-1, 1, 2001)
    vals = np.cos(c[:, None] + r[:, None] * t[None])
    assert np.all(vals.min(1) >= lo) and np.all(vals.max(1) <= hi)
    assert np.all(hi - vals.max(1) < 1e-5) and np.all(vals.min(1) - lo < 1e-5)  # tight


def _models():
    yield FeatureLipschitzMLP(3, 1, (32, 32, 32), periods=[2 * np.pi, 2 * np.pi, None], harmonics=3,
                              offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[3, 3, 1], seed=1)
    yield LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, seed=2)
    yield LipschitzMLP(2, 1, (16, 16), lipschitz=3.0, activation="relu", seed=3)
    torch.manual_seed(4)  # a user's plain network trained elsewhere
    yield torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1))


@pytest.mark.parametrize("model", list(_models()), ids=["features", "groupsort", "relu", "sequential-tanh"])
def test_intervals_contain_sampled_derivatives(model, rng):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(3)
    d = model.in_features if hasattr(model, "in_features") else model[0].in_features
    n_boxes = 300
    lo = rng.uniform(0, 6, size=(n_boxes, d))
    width = rng.choice([1e-3, 0.05, 0.5], size=(n_boxes, 1)) * np.ones((1, d))
    hi = lo + width
    dlo, dhi = network_derivative_intervals(model, lo, hi)
    plain = to_plain(model).double() if hasattr(model, "config") else copy.deepcopy(model).double()
    pts = lo[:, None, :] + rng.uniform(size=(n_boxes, 50, d)) * width[:, None, :]
    x = torch.tensor(pts.reshape(-1, d), requires_grad=True)
    (g,) = torch.autograd.grad(plain(x).sum(), x)
    g = g.numpy().reshape(n_boxes, 50, d)
    assert np.all(g >= dlo[:, None, :] - 1e-12) and np.all(g <= dhi[:, None, :] + 1e-12)
    # never worse than the global certified constants, and much tighter on small boxes
    glob = lipschitz_bounds(model).per_input[0]
    small = width[:, 0] == 1e-3
    local = np.maximum(np.abs(dlo), np.abs(dhi))
    assert np.median(local[small] / glob) < 0.9


@pytest.mark.parametrize("model", list(_models())[:2], ids=["features", "groupsort"])
def test_compiled_pair_layer_computes_the_torch_step(model, rng):
    """The fused GroupSort(2) pass of the interval bounds gives the torch step's numbers bit for bit,
    also with weights inflated so that many pairs stay undecided, and a NaN weight gives NaN."""
    from lipsurrogate.bounds import _interval_kernel

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(3)
    d = model.in_features
    lo = rng.uniform(0, 6, size=(300, d))
    hi = lo + rng.choice([1e-3, 0.05, 0.5], size=(300, 1))
    fused = network_derivative_intervals(model, lo, hi)
    with _interval_kernel.disabled():
        step = network_derivative_intervals(model, lo, hi)
    assert np.array_equal(fused[0], step[0]) and np.array_equal(fused[1], step[1])
    assert np.any(fused[1] - fused[0] > 1e-3)  # undecided pairs: the hulls are exercised
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("original")).view(-1)[0] = float("nan")
    nan_lo, nan_hi = network_derivative_intervals(model, lo[:20], hi[:20])
    assert np.isnan(nan_lo).any() and np.isnan(nan_hi).any()


def test_feature_intervals_on_grid_blocks_are_computed_once_per_run_with_the_same_results(monkeypatch):
    """Blocks of a grid in C order repeat their periodic coordinates along time: the waves' intervals
    are computed once per run of blocks and copied, giving the per-box computation's intervals bit
    for bit; they still contain the derivatives sampled in the boxes."""
    from lipsurrogate.bounds import local
    from lipsurrogate.bounds.tiles import block_boxes

    model = next(_models())
    edges = [np.linspace(0, 2 * np.pi, 17), np.linspace(0, 2 * np.pi, 17), np.linspace(0, 1, 9)]
    lo, hi, _ = block_boxes(edges, (2, 2, 2))
    lo, hi = np.repeat(lo, 4, axis=0), np.repeat(hi, 4, axis=0)  # runs of 16 boxes; 64 of them
    computed = []
    waves = local._wave_intervals

    def counting(feats, xc, xr):
        computed.append(len(xc))
        return waves(feats, xc, xr)

    monkeypatch.setattr(local, "_wave_intervals", counting)
    once = network_derivative_intervals(model, lo, hi)
    assert computed == [8 * 8]
    monkeypatch.setattr(local, "runs_of_equal_rows", lambda x, columns: None)
    every_box = network_derivative_intervals(model, lo, hi)
    assert computed[-1] == len(lo)
    assert np.array_equal(once[0], every_box[0]) and np.array_equal(once[1], every_box[1])
    monkeypatch.undo()
    # containment, by autograd at points sampled in a few boxes
    rng = np.random.default_rng(0)
    picks = rng.choice(len(lo), size=40, replace=False)
    x = torch.tensor(rng.uniform(lo[picks], hi[picks]), dtype=torch.float64, requires_grad=True)
    plain = to_plain(copy.deepcopy(model)).double()
    (grad,) = torch.autograd.grad(plain(x).sum(), x)
    assert np.all(grad.numpy() >= once[0][picks]) and np.all(grad.numpy() <= once[1][picks])


def test_rowwise_products_depend_on_each_row_alone_and_round_within_gamma_d(rng, monkeypatch):
    """A row's products are the same bits in any table (a BLAS product's need not be: Note
    [repeated periodic coordinates]), and within gamma_d |a| |b|^T of the exact products."""
    from lipsurrogate._repeated_rows import rowwise_products

    a = rng.standard_normal((1683, 3)) * np.array([1.0, 1e3, 1e-3])
    b = rng.standard_normal((24, 3))
    full = rowwise_products(a, b)
    for rows in (slice(0, 187), slice(5, 6), slice(1000, 1683, 9)):
        assert np.array_equal(rowwise_products(a[rows], b), full[rows])
    from lipsurrogate import _repeated_rows

    monkeypatch.setattr(_repeated_rows, "_ROWWISE", None)  # the numpy expression: the same bits
    assert np.array_equal(rowwise_products(a, b), full)
    exact = np.einsum("nj,wj->nw", a.astype(np.longdouble), b.astype(np.longdouble))
    gamma = 3 * 2.0**-53 / (1 - 3 * 2.0**-53)
    assert np.all(np.abs(full - exact) <= gamma * (np.abs(a) @ np.abs(b).T))
