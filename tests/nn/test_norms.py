import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import (
    ColumnL1Norm,
    L1Norm,
    RowLinfNorm,
    SpectralNorm,
    lipschitz_norm,
    project_weights_,
    register_projection,
    weight_constraint,
)
from lipsurrogate.nn.norms import weight_projector


def _big_weight(gen, shape=(16, 8)):
    return torch.randn(*shape, generator=gen) * 3


def test_column_norm_bounds_every_column_exactly(torch_gen):
    w = _big_weight(torch_gen)
    out = ColumnL1Norm(0.7)(w)
    sums = out.double().abs().sum(0)
    assert torch.all(sums <= 0.7)  # exact: float32 weights, float64 sums, no tolerance
    assert torch.all(sums > 0.7 * (1 - 1e-5))  # the large columns were scaled to the bound


def test_column_norm_leaves_small_columns_alone(torch_gen):
    w = torch.randn(4, 3, generator=torch_gen) * 1e-3
    assert torch.equal(ColumnL1Norm(1.0)(w), w)


@pytest.mark.parametrize("variant", ["clip", "rescale"])
def test_l1_norm_variants(variant, torch_gen):
    w = _big_weight(torch_gen)
    out = L1Norm(2.0, variant=variant)(w)
    assert out.double().abs().sum(0).max() <= 2.0
    small = w * 1e-4
    scaled = L1Norm(2.0, variant=variant)(small)
    if variant == "clip":
        assert torch.equal(scaled, small)
    else:  # Eq. 2.7 first form multiplies by lambda^(1/m) when the norm is below one
        torch.testing.assert_close(scaled, small * 2.0 * (1 - 2**-20))


def test_row_norm_bounds_linf_operator_norm(torch_gen):
    out = RowLinfNorm(1.5)(_big_weight(torch_gen))
    assert out.double().abs().sum(1).max() <= 1.5


def test_spectral_estimate_converges_to_exact_svd(torch_gen):
    w = torch.randn(20, 10, generator=torch_gen, dtype=torch.float64)
    norm = SpectralNorm(1.0, shape=(20, 10), n_power_iterations=200, generator=torch_gen).double()
    norm.train()
    out = norm(w)
    exact = torch.linalg.matrix_norm(out, ord=2).item()
    assert exact == pytest.approx(1.0 * (1 - 2**-20), rel=1e-6)


def test_spectral_eval_mode_is_deterministic(torch_gen):
    layer = lipschitz_norm(nn.Linear(5, 7), "spectral", 1.0, generator=torch_gen)
    layer.eval()
    assert torch.equal(layer.weight, layer.weight)
    u = layer.parametrizations.weight[0].u.clone()
    layer.weight  # noqa: B018 - access must not run power iteration in eval mode
    assert torch.equal(u, layer.parametrizations.weight[0].u)


def test_reparametrization_lets_gradients_through_the_norm(torch_gen):
    layer = lipschitz_norm(nn.Linear(4, 4), "l1-column", 0.5)
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10)
    layer(torch.randn(3, 4, generator=torch_gen)).sum().backward()
    assert layer.parametrizations.weight.original.grad is not None
    assert parametrize.is_parametrized(layer, "weight")
    assert isinstance(weight_constraint(layer), ColumnL1Norm)


def test_projection_after_optimizer_step(torch_gen):
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 1))
    for layer in model:
        lipschitz_norm(layer, "linf-row", 1.0, enforce="project")
    assert not parametrize.is_parametrized(model[0])
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    handle = register_projection(opt, model)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(32, 6, generator=torch_gen)).pow(2).sum().neg().backward()
        opt.step()
        for layer in model:
            assert layer.weight.double().abs().sum(1).max() <= 1.0
    handle.remove()
    with torch.no_grad():
        model[0].weight.mul_(100)
    project_weights_(model)
    assert model[0].weight.double().abs().sum(1).max() <= 1.0


def test_weight_projector_projects_what_project_weights_does(torch_gen):
    projected = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 1))
    lipschitz_norm(projected[0], "linf-row", 1.0, enforce="project")
    lipschitz_norm(projected[2], "linf-row", 0.5)  # reparametrized: nothing to project
    twin = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 1))
    lipschitz_norm(twin[0], "linf-row", 1.0, enforce="project")
    lipschitz_norm(twin[2], "linf-row", 0.5)
    twin.load_state_dict(projected.state_dict())
    project = weight_projector(projected)
    with torch.no_grad():
        for model in (projected, twin):
            model[0].weight.copy_(_big_weight(torch_gen, (6, 6)))
            model[2].parametrizations.weight.original.mul_(7)
        twin.load_state_dict(projected.state_dict())
    raw_last = projected[2].parametrizations.weight.original.clone()
    project()
    project_weights_(twin)
    assert projected[0].weight.double().abs().sum(1).max() <= 1.0 + 1e-6
    assert torch.equal(projected[0].weight, twin[0].weight)
    assert torch.equal(projected[2].parametrizations.weight.original, raw_last)  # left alone
    plain = nn.Linear(3, 3)
    before = plain.weight.detach().clone()
    weight_projector(plain)()
    assert torch.equal(plain.weight, before)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="l3"), "kind"),
        (dict(max_norm=-1.0), "max_norm"),
        (dict(max_norm=float("nan")), "max_norm"),
        (dict(enforce="clip"), "enforce"),
        (dict(kind="l1", variant="rescale", enforce="project"), "idempotent"),
        (dict(kind="l1", variant="sometimes"), "variant"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        lipschitz_norm(nn.Linear(3, 3), **kwargs)


def test_rejects_non_linear_and_double_registration():
    with pytest.raises(ConfigurationError, match="nn.Linear"):
        lipschitz_norm(nn.Conv1d(1, 1, 3))
    layer = lipschitz_norm(nn.Linear(2, 2))
    with pytest.raises(ConfigurationError, match="already"):
        lipschitz_norm(layer)


def test_norms_match_numpy_definitions(rng):
    w = torch.from_numpy(rng.normal(size=(9, 5)) * 4)
    c = 1.3
    col = ColumnL1Norm(c)(w).numpy()
    expected = w.numpy() / np.maximum(1.0, np.abs(w.numpy()).sum(0) / (c * (1 - 2**-20)))
    np.testing.assert_allclose(col, expected, rtol=1e-14)


def test_column_max_norm_bounds_l1_to_linf(torch_gen):
    from lipsurrogate.nn import ColumnMaxNorm

    out = ColumnMaxNorm(0.5)(_big_weight(torch_gen))
    assert out.double().abs().max() <= 0.5
