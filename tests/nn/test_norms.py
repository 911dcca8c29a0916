import contextlib

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


# --- the compiled training pass of the column and row norms (lipsurrogate.nn._fused_norms) ---

from lipsurrogate._compiled import flag_off  # noqa: E402
from lipsurrogate.nn import _fused_norms  # noqa: E402

needs_fused = pytest.mark.skipif(not _fused_norms.USE_FUSED, reason="numba is not installed (the torch formula is tested above)")


def _line_weight(gen, shape):
    """Lines above and below the bound, an exact zero (sgn 0), a line of one large entry, and
    magnitudes over many binades (a float64 sum of them rounds: its order matters)."""
    w = torch.randn(*shape, generator=gen) * 0.3 * torch.exp(3 * torch.randn(*shape, generator=gen))
    w[:, 0] *= 40
    w[0, :] *= 40
    w[-1, -1] = 0.0
    return w


def _analytic_gradient(w: torch.Tensor, g: torch.Tensor, axis: int, target: float) -> torch.Tensor:
    """The module docstring's gradient in float64 from its definition (not through autograd)."""
    w64, g64 = w.double(), g.double()
    n = w64.abs().sum(dim=axis, keepdim=True)
    q = n / target
    f = 1.0 / torch.clamp(q, min=1.0)
    s = (g64 * w64).sum(dim=axis, keepdim=True)
    d = torch.where(q >= 1.0, -s * f * f / target, torch.zeros_like(s))
    return g64 * f + torch.sign(w64) * d


@needs_fused
@pytest.mark.parametrize("constraint, axis, shape", [(ColumnL1Norm(0.9), 0, (33, 20)), (RowLinfNorm(0.9), 1, (20, 33)),
                                                    (ColumnL1Norm(1.3), 0, (1, 7)), (RowLinfNorm(0.5), 1, (7, 1))])
def test_fused_training_pass_gives_the_torch_weight_and_the_analytic_gradient(constraint, axis, shape, torch_gen):
    """Training takes one compiled pass each way (Note [the same bits as the torch formula]): the
    weight and the gradient are the torch formula's bit for bit, the constraint holds exactly, and
    the gradient is d(W f(n))/dW within float32 rounding of the float64 derivative."""
    w = _line_weight(torch_gen, shape).requires_grad_()
    g = torch.randn(*shape, generator=torch_gen)
    out = constraint(w)
    assert type(out.grad_fn).__name__ == "_LineL1ScaleBackward"  # the compiled pass ran
    with torch.no_grad():
        reference = constraint(w)  # evaluation: the torch formula
    assert torch.equal(out, reference)
    assert torch.all(out.detach().double().abs().sum(dim=axis) <= constraint.max_norm)
    (grad,) = torch.autograd.grad(out, w, g)
    expected = _analytic_gradient(w.detach(), g, axis, constraint._target())
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=4e-7 * expected.abs().max().item())
    with flag_off(_fused_norms, "USE_FUSED"):
        (grad_torch,) = torch.autograd.grad(constraint(w), w, g)
    assert torch.equal(grad, grad_torch)


@needs_fused
def test_fused_pass_serves_training_only(torch_gen):
    """Evaluation mode, float64 weights and weights without gradient take the torch formula."""
    constraint = ColumnL1Norm(0.8)
    w = _line_weight(torch_gen, (6, 5))
    assert constraint(w).grad_fn is None
    w_grad = w.clone().requires_grad_()
    assert type(constraint(w_grad).grad_fn).__name__ == "_LineL1ScaleBackward"
    assert type(constraint.eval()(w_grad).grad_fn).__name__ != "_LineL1ScaleBackward"
    constraint.train()
    assert type(constraint(w.double().requires_grad_()).grad_fn).__name__ != "_LineL1ScaleBackward"
    with torch.no_grad():
        assert not _fused_norms.can_fuse(w.requires_grad_())
    assert _fused_norms.can_fuse(w)


@needs_fused
def test_fused_pass_can_be_differentiated_twice(torch_gen):
    """Note [double backward]: a gradient taken with create_graph=True follows the torch formula,
    so that it can be differentiated again (second derivatives as the torch formula's)."""
    constraint = RowLinfNorm(0.7)
    w = _line_weight(torch_gen, (5, 6)).requires_grad_()
    x = torch.randn(6, generator=torch_gen)
    (first,) = torch.autograd.grad((constraint(w) @ x).pow(2).sum(), w, create_graph=True)
    (second,) = torch.autograd.grad(first.pow(2).sum(), w)
    with flag_off(_fused_norms, "USE_FUSED"):
        (first_t,) = torch.autograd.grad((constraint(w) @ x).pow(2).sum(), w, create_graph=True)
        (second_t,) = torch.autograd.grad(first_t.pow(2).sum(), w)
    torch.testing.assert_close(first, first_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second, second_t, rtol=1e-4, atol=1e-5)


@needs_fused
def test_fused_pass_trains_a_network_as_the_torch_formula_does_within_its_bound(torch_gen):
    """Adam steps through the compiled pass from the same start as through the torch formula: the
    same losses and weights bit for bit, and every column sum at most the per-layer bound (exactly)."""
    from lipsurrogate.nn import LipschitzMLP

    x = torch.randn(256, 2, generator=torch_gen)
    y = x[:, :1].sin() + 0.5 * x[:, 1:].abs()
    histories, weights = {}, {}
    for fused in (True, False):
        model = LipschitzMLP(2, 1, [16, 16], norm="l1-column", lipschitz=2.0, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        with contextlib.nullcontext() if fused else flag_off(_fused_norms, "USE_FUSED"):
            took = type(model.linears[1].weight.grad_fn).__name__
            assert (took == "_LineL1ScaleBackward") == fused
            for _ in range(60):
                opt.zero_grad()
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        histories[fused] = losses
        weights[fused] = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for layer in model.modules():
                constraint = weight_constraint(layer)
                if constraint is not None:
                    assert torch.all(layer.weight.double().abs().sum(dim=0) <= constraint.max_norm)
    assert histories[True][-1] < 0.2 * histories[True][0]
    assert histories[True] == histories[False]
    assert all(torch.equal(a, b) for a, b in zip(weights[True], weights[False]))
