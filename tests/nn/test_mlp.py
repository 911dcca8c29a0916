import numpy as np
import pytest
import torch

from lipsurrogate.bounds import lipschitz_bounds
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import LipschitzMLP, to_plain


def test_default_network_shapes_and_config():
    model = LipschitzMLP(3, 2, seed=1)
    out = model(torch.zeros(7, 3))
    assert out.shape == (7, 2)
    assert model.config["hidden"] == [128, 128, 128, 128]
    rebuilt = LipschitzMLP(**model.config)
    assert rebuilt.config == model.config


def test_seed_makes_initialisation_reproducible():
    a, b = LipschitzMLP(2, 1, (8, 8), seed=5), LipschitzMLP(2, 1, (8, 8), seed=5)
    x = torch.randn(4, 2)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), LipschitzMLP(2, 1, (8, 8), seed=6)(x))


@pytest.mark.parametrize("norm", ["l1", "l1-column", "linf-row"])
def test_global_lambda_is_spread_over_layers(norm):
    model = LipschitzMLP(4, 1, (16, 16, 16), lipschitz=8.0, norm=norm, seed=0)
    for layer in model.linears:
        with torch.no_grad():
            layer.parametrizations.weight.original.mul_(1e3)  # make every constraint active
    bounds = lipschitz_bounds(model)
    assert bounds.l1[0] <= 8.0
    assert bounds.l1[0] > 0.5  # not vacuous


def test_monotonic_residual_gives_one_signed_partials():
    model = LipschitzMLP(3, 1, (8, 8), lipschitz=1.5, monotonic=[1, -1, 0], seed=0)
    b = lipschitz_bounds(model)
    assert b.partial_lower[0, 0] >= 0 and b.partial_upper[0, 1] <= 0
    assert b.partial_upper[0, 0] <= 2 * 1.5 and b.partial_lower[0, 1] >= -2 * 1.5
    assert b.per_input[0, 2] <= 1.5


def test_input_scale_sets_per_input_slopes():
    model = LipschitzMLP(2, 1, (8,), lipschitz=1.0, input_scale=[10.0, 0.1], seed=0)
    for layer in model.linears:
        with torch.no_grad():
            layer.parametrizations.weight.original.mul_(1e3)
    b = lipschitz_bounds(model)
    assert b.per_input[0, 0] <= 10.0 and b.per_input[0, 1] <= 0.1


def test_heads_forward():
    x = torch.randn(5, 2)
    for head in ["lipschitz", "free", "scale", "aux"]:
        model = LipschitzMLP(2, 3, (8, 8), head=head, seed=0)
        assert model(x).shape == (5, 3)
    scalar = LipschitzMLP(2, 3, (8,), head="scale", scale_per_output=False)
    assert scalar.output_scale.shape == (1,)


def test_scale_head_multiplies_certified_constant():
    model = LipschitzMLP(2, 1, (8, 8), head="scale", output_scale_init=-4.0, seed=0)
    base = LipschitzMLP(2, 1, (8, 8), seed=0)
    np.testing.assert_allclose(lipschitz_bounds(model).l1, 4.0 * lipschitz_bounds(base).l1, rtol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden=(6,), group_size=4), "divisible"),
        (dict(lipschitz=-1.0), "lipschitz"),
        (dict(lipschitz=0.0), "lipschitz"),
        (dict(norm="l7"), "norm"),
        (dict(norm="l1-linf"), "norm"),
        (dict(head="softmax"), "head"),
        (dict(activation="tanh"), "activation"),
        (dict(monotonic=[1, 0]), "one constraint per input"),
        (dict(monotonic=[1, 0, 2]), r"\+1"),
        (dict(monotonic=[1, 0, 0], head="free"), "head='lipschitz'"),
        (dict(monotonic=[1, 0, 0], norm="spectral"), "spectral"),
        (dict(input_scale=[1.0, 2.0]), "one entry per input"),
        (dict(input_scale=[1.0, 0.0, 1.0]), "non-zero"),
        (dict(hidden=(), head="free"), "hidden"),
        (dict(hidden=(0,)), "hidden"),
    ],
)
def test_bad_configurations(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        LipschitzMLP(3, 1, **{"hidden": (8,), **kwargs})


def test_wrong_input_width():
    with pytest.raises(ConfigurationError, match="3 features"):
        LipschitzMLP(3, 1, (8,))(torch.zeros(4, 2))


@pytest.mark.parametrize("head", ["lipschitz", "free", "scale", "aux"])
@pytest.mark.parametrize("norm", ["l1-column", "spectral"])
def test_plain_export_computes_same_function(head, norm):
    model = LipschitzMLP(3, 2, (8, 8), head=head, norm=norm, seed=3)
    model.train()
    model(torch.randn(4, 3))  # one training-mode pass moves the power-iteration vectors
    model.eval()
    plain = to_plain(model)
    assert not any(hasattr(m, "parametrizations") for m in plain.modules())
    x = torch.randn(64, 3)
    assert torch.equal(plain(x), model(x))


def test_mixed_norm_lets_one_input_fan_out():
    # |x| = max(x, -x): representable with slope 1 under the mixed norms (first layer l1->linf)
    model = LipschitzMLP(1, 1, (2,), lipschitz=1.0, norm="mixed", activation="groupsort")
    with torch.no_grad():
        model.linears[0].parametrizations.weight.original.copy_(torch.tensor([[1.0], [-1.0]]))
        model.linears[0].bias.zero_()
        model.linears[1].parametrizations.weight.original.copy_(torch.tensor([[0.0, 1.0]]))
        model.linears[1].bias.zero_()
    x = torch.linspace(-1, 1, 11).unsqueeze(1)
    torch.testing.assert_close(model(x), x.abs(), atol=1e-5, rtol=0)
    assert lipschitz_bounds(model).l1[0] <= 1.0


def test_feature_network_survives_dtype_round_trip():
    import numpy as np

    from lipsurrogate.nn import FeatureLipschitzMLP

    model = FeatureLipschitzMLP(3, 1, (8, 8), periods=[2 * np.pi, 2 * np.pi, None], harmonics=2,
                                input_budget=[1.0, 1.0, 1.0], seed=0)
    x = torch.rand(5, 3)
    before = model(x)
    model.double()
    model.float()
    torch.testing.assert_close(model(x), before)
    assert lipschitz_bounds(model).per_input.shape == (1, 3)
