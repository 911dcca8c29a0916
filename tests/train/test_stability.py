"""The pair-stability penalty: gaps and spreads against autograd, its range, and what training with it does."""

import numpy as np
import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP
from lipsurrogate.train import train
from lipsurrogate.train.stability import PairStability, block_half_widths, pair_gaps


def _feature_net(seed=0):
    return FeatureLipschitzMLP(3, 1, [8, 8], periods=[2 * np.pi, None, None], harmonics=2, offset=[0, 0.5, 0],
                               scale=[1, 2, 1], input_budget=[2.0, 1.0, 0.5], seed=seed).double()


def _pair_inputs(model, x):
    """The inputs of every pair layer, recorded by hooks on the model's own forward pass."""
    seen = []
    body = model.net.body if isinstance(model, FeatureLipschitzMLP) else model.body
    activations = {id(m): m for m in body if not isinstance(m, torch.nn.Linear)}  # one module, used by every layer
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0])) for m in activations.values()]
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("make", [_feature_net, lambda: LipschitzMLP(2, 1, [6, 6, 6], input_scale=[2.0, 0.5],
                                                                         input_offset=[1.0, 0.0], seed=3).double()])
def test_gaps_and_spreads_match_the_models_own_forward_and_autograd(make, rng):
    model = make()
    d = model.in_features
    x = torch.tensor(rng.uniform(-1, 2, (7, d)))
    r = torch.tensor(rng.uniform(0.01, 0.3, d))
    gaps, spreads = pair_gaps(model, x, r)
    inputs = _pair_inputs(model, x)
    assert len(gaps) == len(inputs) == len(model.net.linears if hasattr(model, "net") else model.linears) - 1
    for gap, spread, pre in zip(gaps, spreads, inputs):
        a, b = pre.chunk(2, dim=-1)
        torch.testing.assert_close(gap, a - b, rtol=1e-12, atol=1e-12)
    # the spread is sum_i |d gap / d x_i| r_i, with the Jacobian from reverse-mode autograd
    for k in range(len(gaps)):
        def gap_k(point, k=k):
            pre = _pair_inputs(model, point.unsqueeze(0))[k][0]
            a, b = pre.chunk(2)
            return a - b
        for i in range(x.shape[0]):
            jac = torch.autograd.functional.jacobian(gap_k, x[i])  # (pairs, d)
            torch.testing.assert_close(spreads[k][i], (jac.abs() * r).sum(1), rtol=1e-10, atol=1e-12)


def test_penalty_lies_in_0_1_and_follows_the_block_size(rng):
    model = _feature_net()
    box = [[0, 2 * np.pi], [0, 1], [0, 1]]
    x = torch.tensor(rng.uniform(0, 1, (400, 3)))
    tiny = PairStability(box, [1e-9] * 3, eps=1e-15).penalty(model, x)
    huge = PairStability(box, [1e6] * 3).penalty(model, x)
    middle = PairStability(box, [0.1] * 3).penalty(model, x)
    assert 0 <= float(tiny) < 1e-3 and 0.99 < float(huge) <= 1
    assert float(tiny) < float(middle) < float(huge)
    fractions = PairStability(box, [0.1] * 3).undecided_fraction(model, x)
    assert len(fractions) == 2 and all(0 <= f <= 1 for f in fractions)


def test_training_with_the_penalty_decides_more_pairs():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-1, 1, (2000, 2)), dtype=torch.float32)
    y = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])
    box = [[-1, 1], [-1, 1]]
    probe = torch.tensor(rng.uniform(-1, 1, (2000, 2)), dtype=torch.float32)
    fractions, penalties = {}, {}
    for weight in (0.0, 0.1):
        model = LipschitzMLP(2, 1, [32, 32], lipschitz=4.0, seed=0)
        term = PairStability(box, [0.2, 0.2], weight=weight, batch_size=256)
        history = train(model, x, y, steps=300, batch_size=256, lr=5e-3, seed=0, progress=False,
                        regularizer=term if weight else None)
        assert len(history.regularizer_values) == (len(history.steps) if weight else 0)
        fractions[weight] = np.mean(term.undecided_fraction(model, probe))
        with torch.no_grad():
            penalties[weight] = float(term.penalty(model, probe))
    # measured: 5.7% of the pairs undecided without the penalty, none with it
    assert fractions[0.0] > 0.02 and fractions[0.1] < 0.25 * fractions[0.0]
    assert penalties[0.1] < 0.25 * penalties[0.0]


def test_block_half_widths():
    assert block_half_widths([[0, 2], [0, 1]], [4, 2], [2, 1]) == [0.5, 0.25]
    assert block_half_widths([[0, 1], [0, 1], [1, 3]], [10, 10, 4], 2) == [0.1, 0.1, 0.5]
    with pytest.raises(ConfigurationError, match="2 block sizes"):
        block_half_widths([[0, 2], [0, 1]], [4, 2], [2, 1, 1])


def test_bad_settings_and_networks_are_refused():
    with pytest.raises(ConfigurationError, match="lo < hi"):
        PairStability([[1, 0]], [0.1])
    with pytest.raises(ConfigurationError, match="half_widths"):
        PairStability([[0, 1], [0, 1]], [0.1])
    with pytest.raises(ConfigurationError, match="GroupSort pairs"):
        pair_gaps(LipschitzMLP(2, 1, [4], activation="fullsort"), torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ConfigurationError, match="LipschitzMLP or FeatureLipschitzMLP"):
        pair_gaps(torch.nn.Linear(2, 1), torch.zeros(3, 2), torch.ones(2))


def test_every_evaluates_one_call_in_every_with_the_weight_scaled():
    model = _feature_net().float()
    box = [[0, 2 * np.pi], [0, 1], [0, 1]]
    once = PairStability(box, [0.3] * 3, weight=0.5, batch_size=64)
    thrice = PairStability(box, [0.3] * 3, weight=0.5, batch_size=64, every=3)
    values = [float(thrice(model, torch.Generator().manual_seed(s))) for s in range(6)]
    reference = [float(once(model, torch.Generator().manual_seed(s))) for s in (0, 3)]
    assert values[1:3] == [0.0, 0.0] and values[4:6] == [0.0, 0.0]
    assert values[0] == pytest.approx(3 * reference[0]) and values[3] == pytest.approx(3 * reference[1]) and values[0] > 0
