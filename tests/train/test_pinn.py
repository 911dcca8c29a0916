"""PINN residuals: zero for exact solutions, not for perturbed ones; every model and head; training."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lipsurrogate.data.heat import random_periodic_modes
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import FeatureLipschitzMLP, LipschitzMLP
from lipsurrogate.train import PhysicsTerm, collocation_points, pde_residual, train


class Closed(nn.Module):
    """A closed-form function of the inputs as a 'model' (float64), optionally perturbed."""

    def __init__(self, fn, perturb=0.0):
        super().__init__()
        self.fn, self.perturb = fn, perturb
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, p):
        return (self.fn(p) + self.perturb * torch.sin(3 * p[:, 0]))[:, None]


def _heat(modes, kappa):
    k = torch.tensor(np.asarray(modes.wavevectors, float))
    a, b = torch.tensor(modes.cos), torch.tensor(modes.sin)
    rate = kappa * (k**2).sum(1)

    def u(p):
        phase = p[:, :2] @ k.t()
        return (torch.exp(-p[:, 2:3] * rate) * (a * torch.cos(phase) + b * torch.sin(phase))).sum(1)

    return u


CASES = {
    "heat2d": (lambda: _heat(random_periodic_modes(np.random.default_rng(0)), 0.05), {"kappa": 0.05},
               [[0, 2 * math.pi], [0, 2 * math.pi], [0, 1]]),
    "advection1d": (lambda: (lambda p: torch.sin(2 * math.pi * (p[:, 0] - 0.7 * p[:, 1]))), {"speed": 0.7}, [[0, 1], [0, 1]]),
    # viscous Burgers travelling wave u = c - a tanh(a (x - c t) / (2 nu))
    "burgers1d": (lambda: (lambda p: 0.3 - 0.5 * torch.tanh(0.5 * (p[:, 0] - 0.3 * p[:, 1]) / (2 * 0.05))),
                  {"viscosity": 0.05}, [[-1, 1], [0, 1]]),
    # Allen-Cahn stationary kink u = tanh(x / (sqrt(2) eps))
    "allen-cahn1d": (lambda: (lambda p: torch.tanh(p[:, 0] / (math.sqrt(2) * 0.1))), {"epsilon": 0.1}, [[-1, 1], [0, 1]]),
}


@pytest.mark.parametrize("pde", sorted(CASES))
def test_residual_vanishes_for_exact_solutions_and_not_for_perturbed_ones(pde):
    make, params, domain = CASES[pde]
    pts = collocation_points(domain, 2000, torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = pde_residual(Closed(make()), pts, pde, **params)
    perturbed = pde_residual(Closed(make(), perturb=0.05), pts, pde, **params)
    assert exact.abs().max() < 1e-9
    assert perturbed.abs().max() > 1e-2


def _models():
    yield LipschitzMLP(2, 1, [16, 16], lipschitz=2.0, head="lipschitz", seed=0)
    yield LipschitzMLP(2, 1, [16, 16], lipschitz=2.0, head="free", seed=0)
    yield LipschitzMLP(2, 1, [16, 16], lipschitz=2.0, head="scale", seed=0)
    yield LipschitzMLP(2, 1, [16, 16], lipschitz=2.0, head="aux", seed=0, aux_hidden=[8])
    yield LipschitzMLP(2, 1, [16, 16], lipschitz=2.0, monotonic=[0, 1], seed=0)
    yield FeatureLipschitzMLP(2, 1, [16, 16], periods=[1.0, None], input_budget=[3.0, 1.0], seed=0)


@pytest.mark.parametrize("model", list(_models()), ids=lambda m: f"{type(m).__name__}-{getattr(m, 'config', {}).get('head', '')}")
def test_every_model_and_head_trains_through_the_residual(model):
    model = model.double()
    pts = collocation_points([[0, 1], [0, 1]], 64, torch.Generator().manual_seed(0), dtype=torch.float64)
    r = pde_residual(model, pts, "burgers1d", viscosity=0.01)
    assert r.shape == (64,) and torch.all(torch.isfinite(r))
    r.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and torch.any(g != 0) for g in grads)


def test_second_derivatives_match_finite_differences_for_fourier_features():
    model = FeatureLipschitzMLP(2, 1, [32, 32], periods=[1.0, None], input_budget=[3.0, 1.0], seed=3).double().eval()
    pts = collocation_points([[0.1, 0.9], [0.1, 0.9]], 20, torch.Generator().manual_seed(2), dtype=torch.float64)
    # burgers residual with nu = 1 and u u_x removed: compare u_t - u_xx with central differences
    r = pde_residual(model, pts, "burgers1d", viscosity=1.0)
    h = 1e-4
    e0, e1 = torch.tensor([h, 0.0], dtype=torch.float64), torch.tensor([0.0, h], dtype=torch.float64)
    with torch.no_grad():
        f = lambda p: model(p)[:, 0]  # noqa: E731
        u, ut = f(pts), (f(pts + e1) - f(pts - e1)) / (2 * h)
        ux, uxx = (f(pts + e0) - f(pts - e0)) / (2 * h), (f(pts + e0) - 2 * u + f(pts - e0)) / h**2
    # GroupSort kinks can sit inside the stencil: compare at the points where the stencil is smooth
    close = torch.isclose(r.detach(), ut + u * ux - uxx, atol=1e-3, rtol=1e-3)
    assert close.float().mean() > 0.8
    assert (uxx.abs() > 1e-3).any()  # curvature comes from the features


def _advection_data(n=256):
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(n, 2, generator=g)
    return pts, torch.sin(2 * math.pi * (pts[:, :1] - pts[:, 1:]))


@pytest.mark.parametrize("mode", ["weighted", "constraint"])
def test_training_with_a_physics_term_lowers_the_residual(mode):
    pts, y = _advection_data()
    term = PhysicsTerm("advection1d", [[0, 1], [0, 1]], {"speed": 1.0}, batch_size=256, weight=1.0,
                       at_most=1e-2 if mode == "constraint" else None)

    def fresh_residual(model):
        grid = collocation_points([[0, 1], [0, 1]], 4000, torch.Generator().manual_seed(9))
        return float(pde_residual(model, grid, "advection1d", speed=1.0).pow(2).mean().detach())

    def make():
        return FeatureLipschitzMLP(2, 1, [32, 32], periods=[1.0, None], input_budget=[8.0, 8.0], seed=0)

    plain, physics = make(), make()
    train(plain, pts, y, steps=300, batch_size=128, lr=3e-3, progress=False)
    history = train(physics, pts, y, steps=300, batch_size=128, lr=3e-3, progress=False, physics=term)
    assert len(history.residuals) == len(history.steps)
    assert fresh_residual(physics) < 0.5 * fresh_residual(plain)


def test_bad_configurations_are_refused():
    model = LipschitzMLP(2, 1, [8], seed=0)
    pts = torch.rand(4, 2)
    with pytest.raises(ConfigurationError, match="No residual for PDE"):
        pde_residual(model, pts, "wave1d")
    with pytest.raises(ConfigurationError, match="needs the parameters"):
        pde_residual(model, pts, "burgers1d", nu=0.1)
    with pytest.raises(ConfigurationError, match=r"shape \(n, 3\)"):
        pde_residual(LipschitzMLP(3, 1, [8], seed=0), pts, "heat2d", kappa=0.1)
    with pytest.raises(ConfigurationError, match="single-output"):
        pde_residual(LipschitzMLP(2, 2, [8], seed=0), pts, "advection1d", speed=1.0)
    with pytest.raises(ConfigurationError, match="domain of 2"):
        PhysicsTerm("burgers1d", [[0, 1]], {"viscosity": 0.1})
    with pytest.raises(ConfigurationError, match="low < high"):
        collocation_points([[1, 0]], 3, torch.Generator())
