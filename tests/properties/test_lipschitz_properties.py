"""Property tests: certified constants are never exceeded, for random architectures and weights.

Models are evaluated through their plain export in float64: the float32 weights the network
uses, converted exactly, so the only slack is float64 rounding (tolerance 1e-9 relative).
"""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipsurrogate.bounds import lipschitz_bounds
from lipsurrogate.nn import LipschitzMLP, to_plain
from lipsurrogate.train import train

NORMS = ["l1", "l1-column", "linf-row", "mixed", "spectral"]


@st.composite
def architectures(draw, monotone=False):
    d = draw(st.integers(1, 4))
    out = draw(st.integers(1, 2))
    n_hidden = draw(st.integers(0, 3))
    activation = draw(st.sampled_from(["groupsort", "fullsort", "relu"]))
    group_size = draw(st.sampled_from([2, 4])) if activation == "groupsort" else 2
    width = draw(st.sampled_from([4, 8, 16]))
    heads = ["lipschitz", "free", "scale", "aux"] if n_hidden else ["lipschitz", "scale", "aux"]
    head = "lipschitz" if monotone else draw(st.sampled_from(heads))
    norm = draw(st.sampled_from([n for n in NORMS if n != "spectral"] if monotone else NORMS))
    monotonic = None
    if head == "lipschitz" and norm != "spectral" and (monotone or draw(st.booleans())):
        monotonic = draw(
            st.lists(st.sampled_from([-1, 0, 1]), min_size=d, max_size=d).filter(lambda m: any(m) or not monotone)
        )
    return dict(
        in_features=d,
        out_features=out,
        hidden=[width] * n_hidden,
        lipschitz=draw(st.floats(0.1, 5.0)),
        norm=norm,
        norm_variant=draw(st.sampled_from(["clip", "rescale"])) if norm == "l1" else "clip",
        activation=activation,
        group_size=group_size,
        input_scale=draw(st.lists(st.sampled_from([0.1, 1.0, 3.0, -2.0]), min_size=d, max_size=d)),
        monotonic=monotonic,
        head=head,
        output_scale_init=draw(st.floats(-3.0, 3.0)),
        seed=draw(st.integers(0, 10_000)),
    )


def _inflate(model, factor, gen):
    """Random raw weights, large enough that the norm constraints are active."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original") or name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * factor)


def _check(model, seed):
    gen = np.random.default_rng(seed)
    d = model.in_features
    box = np.array([[-3.0, 3.0]] * d)
    bounds = lipschitz_bounds(model, domain=box)
    plain = to_plain(model).double()
    x = gen.uniform(-3, 3, size=(256, d))
    y = np.clip(x + gen.normal(size=(256, d)) * gen.choice([1e-3, 0.1, 2.0], size=(256, 1)), -3, 3)
    fx = plain(torch.from_numpy(x)).detach().numpy()
    fy = plain(torch.from_numpy(y)).detach().numpy()
    diff = np.abs(fx - fy)  # (n, out)
    weighted = np.abs(x - y) @ bounds.per_input.T
    l2 = np.linalg.norm(x - y, axis=1)[:, None] * bounds.l2[None, :]
    tol = 1e-9 * (1 + np.abs(fx) + np.abs(fy))
    assert np.all(diff <= weighted + tol)
    assert np.all(diff <= l2 + tol)
    # partial derivatives inside their certified intervals (autograd in float64)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = plain(xt)
    for k in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, k].sum(), xt, retain_graph=True)
        g = g.numpy()
        assert np.all(g >= bounds.partial_lower[k] - 1e-9)
        assert np.all(g <= bounds.partial_upper[k] + 1e-9)
    return bounds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=architectures(), factor=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 2**31))
def test_certified_constants_hold_on_random_networks(config, factor, seed):
    model = LipschitzMLP(**config)
    _inflate(model, factor, torch.Generator().manual_seed(seed))
    model.eval()
    bounds = _check(model, seed)
    if config["monotonic"] is not None:
        signs = np.asarray(config["monotonic"]) * np.sign(config["input_scale"])
        for k in range(config["out_features"]):
            assert np.all(bounds.partial_lower[k][signs > 0] >= 0)
            assert np.all(bounds.partial_upper[k][signs < 0] <= 0)


@settings(max_examples=15, deadline=None)
@given(config=architectures(), seed=st.integers(0, 2**31))
def test_certified_constants_hold_after_training_steps(config, seed):
    gen = torch.Generator().manual_seed(seed)
    model = LipschitzMLP(**config)
    x = torch.randn(128, config["in_features"], generator=gen)
    y = torch.randn(128, config["out_features"], generator=gen) * 5
    train(model, x, y, steps=20, batch_size=32, lr=0.05, seed=seed, progress=False)
    _check(model, seed)


@settings(max_examples=30, deadline=None)
@given(config=architectures(monotone=True), seed=st.integers(0, 2**31))
def test_monotonic_inputs_stay_monotone_far_from_data(config, seed):
    model = LipschitzMLP(**config)
    _inflate(model, 10.0, torch.Generator().manual_seed(seed))
    plain = to_plain(model).double()
    gen = np.random.default_rng(seed)
    d = config["in_features"]
    x = gen.normal(size=(512, d)) * gen.choice([1.0, 100.0, 1e4], size=(512, 1))
    signs = np.asarray(config["monotonic"]) * np.sign(config["input_scale"])
    for j in np.flatnonzero(signs):
        step = np.zeros(d)
        step[j] = abs(gen.normal()) + 1e-3
        up = plain(torch.from_numpy(x + step)).detach().numpy()
        base = plain(torch.from_numpy(x)).detach().numpy()
        change = (up - base) * signs[j]
        assert np.all(change >= -1e-9 * (1 + np.abs(base)))


@settings(max_examples=25, deadline=None)
@given(
    harmonics=st.integers(1, 3),
    width=st.sampled_from([4, 8, 16]),
    depth=st.integers(1, 3),
    budget=st.lists(st.floats(0.1, 5.0), min_size=3, max_size=3),
    lam=st.floats(0.2, 3.0),
    factor=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**31),
)
def test_feature_network_constants_hold(harmonics, width, depth, budget, lam, factor, seed):
    from lipsurrogate.nn import FeatureLipschitzMLP

    model = FeatureLipschitzMLP(3, 1, [width] * depth, periods=[2 * np.pi, 3.0, None], harmonics=harmonics,
                                offset=[0, 0, 0.5], scale=[1, 1, 2.0], input_budget=budget, lipschitz=lam, seed=seed % 1000)
    _inflate(model, factor, torch.Generator().manual_seed(seed))
    bounds = lipschitz_bounds(model)
    # by construction: slope in x_j at most lambda * budget_j
    assert np.all(bounds.per_input[0] <= lam * np.asarray(budget) * (1 + 1e-9))
    plain = to_plain(model).double()
    gen = np.random.default_rng(seed)
    x = gen.uniform(-5, 10, size=(256, 3))
    y = x + gen.normal(size=(256, 3)) * gen.choice([1e-3, 0.1, 3.0], size=(256, 1))
    fx = plain(torch.from_numpy(x)).detach().numpy()[:, 0]
    fy = plain(torch.from_numpy(y)).detach().numpy()[:, 0]
    assert np.all(np.abs(fx - fy) <= np.abs(x - y) @ bounds.per_input[0] + 1e-9 * (1 + np.abs(fx)))
