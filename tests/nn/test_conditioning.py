"""Conditioned Lipschitz networks: every mechanism and position respects its certified constants."""

import itertools

import numpy as np
import pytest
import torch

from lipsurrogate.bounds.conditioned import conditioned_constants, conditioned_derivative_intervals
from lipsurrogate.exceptions import CertificationError, ConfigurationError
from lipsurrogate.nn.conditioning import MECHANISMS, POSITIONS, ConditionedLipschitzMLP
from lipsurrogate.train import train

BOX = [[-1.0, 1.0], [0.0, 2.0], [0.02, 0.2]]  # x, y and a diffusivity-like condition


def _model(mechanism, position, seed=0, inflate=3.0):
    model = ConditionedLipschitzMLP(2, 1, 1, [16, 16], mechanism=mechanism, position=position,
                                    cond_range=[BOX[2]], lipschitz=2.0, cond_strength=1.5, seed=seed)
    with torch.no_grad():  # raw weights large enough that every norm constraint is active
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(inflate)
    return model


@pytest.mark.parametrize("mechanism, position", list(itertools.product(MECHANISMS, POSITIONS)))
def test_certified_constants_hold_on_random_pairs(rng, mechanism, position):
    model = _model(mechanism, position, seed=int(rng.integers(1000)))
    L = conditioned_constants(model, BOX, splits=2)
    assert np.all(np.isfinite(L)) and L[2] > 0  # the condition matters
    plain = model.plain_float64()
    box = np.asarray(BOX)
    a = box[:, 0] + rng.uniform(size=(4000, 3)) * (box[:, 1] - box[:, 0])
    b = box[:, 0] + rng.uniform(size=(4000, 3)) * (box[:, 1] - box[:, 0])
    b[:2000, :2] = a[:2000, :2]  # half the pairs differ only in the condition
    with torch.no_grad():
        fa, fb = plain(torch.from_numpy(a))[:, 0].numpy(), plain(torch.from_numpy(b))[:, 0].numpy()
    assert np.all(np.abs(fa - fb) <= np.abs(a - b) @ L + 1e-12)
    with torch.no_grad():  # the float32 model computes the same function
        assert np.allclose(model(torch.tensor(a, dtype=torch.float32))[:, 0].numpy(), fa, atol=1e-4)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_derivative_intervals_contain_autograd_gradients(rng, mechanism):
    model = _model(mechanism, "all", seed=3)
    plain = model.plain_float64()
    box = np.asarray(BOX)
    lo = box[:, 0] + rng.uniform(size=(200, 3)) * (box[:, 1] - box[:, 0]) * 0.8
    hi = lo + rng.uniform(0.01, 0.2, size=(200, 3)) * (box[:, 1] - box[:, 0])
    dlo, dhi = conditioned_derivative_intervals(model, lo, hi)
    pts = torch.tensor(lo + rng.uniform(size=lo.shape) * (hi - lo), requires_grad=True)
    (g,) = torch.autograd.grad(plain(pts).sum(), pts)
    assert np.all(g.numpy() >= dlo - 1e-12) and np.all(g.numpy() <= dhi + 1e-12)
    # finer boxes give tighter (never looser) global constants
    assert np.all(conditioned_constants(model, BOX, splits=4) <= conditioned_constants(model, BOX, splits=1) + 1e-12)


def test_a_conditioned_network_learns_a_family(rng):
    """u(x; k) = sin(k x) for k in [1, 3]: the condition is used, and the constants stay certified."""
    x = torch.tensor(rng.uniform(-1, 1, size=(4000, 1)), dtype=torch.float32)
    k = torch.tensor(rng.uniform(1, 3, size=(4000, 1)), dtype=torch.float32)
    y = torch.sin(k * x)
    model = ConditionedLipschitzMLP(1, 1, 1, [32, 32], mechanism="affine", position="all", cond_range=[[1, 3]],
                                    lipschitz=4.0, seed=0)
    train(model, torch.cat([x, k], 1), y, steps=600, batch_size=256, lr=5e-3, progress=False)
    with torch.no_grad():
        rmse = float(torch.sqrt(torch.mean((model(torch.cat([x, k], 1)) - y) ** 2)))
    assert rmse < 0.1
    L = conditioned_constants(model, [[-1, 1], [1, 3]], splits=4)
    assert L[0] < 3 * 4.0 and L[1] > 0.1  # the slope in x stays controlled; the condition is used


def test_bad_configurations_are_refused():
    with pytest.raises(ConfigurationError, match="Unknown conditioning mechanism"):
        ConditionedLipschitzMLP(2, 1, mechanism="film")
    with pytest.raises(ConfigurationError, match="Unknown conditioning position"):
        ConditionedLipschitzMLP(2, 1, position="middle")
    with pytest.raises(ConfigurationError, match="cond_range"):
        ConditionedLipschitzMLP(2, 1, cond_range=[[1.0, 0.0]])
    model = ConditionedLipschitzMLP(2, 1, seed=0)
    with pytest.raises(ConfigurationError, match="plus 1 condition"):
        model(torch.zeros(4, 2))
    with pytest.raises(CertificationError, match="box"):
        conditioned_constants(model, [[0, 1], [0, 1]] + [[1, 0]])


def test_save_load_round_trip(tmp_path):
    from lipsurrogate.nn import load_model, save_model

    model = _model("affine", "end", seed=5)
    save_model(model, tmp_path / "cond")
    back = load_model(tmp_path / "cond")
    z = torch.rand(50, 3)
    with torch.no_grad():
        assert torch.equal(model(z), back(z))
    assert np.array_equal(conditioned_constants(model, BOX, 2), conditioned_constants(back, BOX, 2))
