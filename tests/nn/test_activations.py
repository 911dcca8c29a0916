import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import GroupSort


@pytest.mark.parametrize("group_size", [2, 3, 4, None])
def test_groupsort_sorts_groups_and_matches_exact(group_size, torch_gen):
    x = torch.randn(50, 12, generator=torch_gen, dtype=torch.float64)
    gs = GroupSort(group_size)
    out, exact = gs(x), gs.exact(x)
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-14)
    # a permutation of each row: same multiset of values
    torch.testing.assert_close(out.sort(-1).values, x.sort(-1).values, rtol=0, atol=1e-14)


def test_groupsort_pairs_are_min_then_max(torch_gen):
    x = torch.randn(10, 8, generator=torch_gen)
    out = GroupSort(2).exact(x)
    a, b = x[:, :4], x[:, 4:]
    assert torch.equal(out[:, :4], torch.minimum(a, b))
    assert torch.equal(out[:, 4:], torch.maximum(a, b))


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_groupsort_is_one_lipschitz(p, torch_gen):
    gs = GroupSort(4)
    x = torch.randn(200, 16, generator=torch_gen, dtype=torch.float64)
    y = torch.randn(200, 16, generator=torch_gen, dtype=torch.float64)
    lhs = torch.linalg.vector_norm(gs(x) - gs(y), ord=p, dim=1)
    rhs = torch.linalg.vector_norm(x - y, ord=p, dim=1)
    assert torch.all(lhs <= rhs + 1e-12)


@pytest.mark.parametrize("bad", [1, 0, -2, 2.5, True, "2"])
def test_bad_group_size(bad):
    with pytest.raises(ConfigurationError, match="group_size"):
        GroupSort(bad)


def test_width_not_divisible():
    with pytest.raises(ConfigurationError, match="divisible"):
        GroupSort(3)(torch.zeros(2, 8))


def test_pair_forward_is_exact_min_max_in_float32(torch_gen):
    """The training forward of GroupSort(2) is the certified function itself, bit for bit."""
    x = torch.randn(300, 64, generator=torch_gen)
    gs = GroupSort(2)
    assert torch.equal(gs(x), gs.exact(x))


def test_pair_backward_routes_each_gradient_to_the_winner(torch_gen):
    x = torch.randn(7, 10, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(GroupSort(2), (x,))
    # against autograd through exact min/max (no ties in random data); g_min + (g_max - g_min)
    # rounds once, so the two agree to an ulp of the gradients
    g = torch.randn(3, 5, 8, generator=torch_gen, dtype=torch.float64)
    z = torch.randn(3, 5, 8, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    (ours,) = torch.autograd.grad(GroupSort(2)(z), z, g)
    (reference,) = torch.autograd.grad(GroupSort(2).exact(z), z, g)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-15)
    # at a tie the gradient is that of (min, max) = (a, b): finite, and it sums to the upstream total
    tie = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    up = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    (grad,) = torch.autograd.grad(GroupSort(2)(tie), tie, up)
    assert torch.equal(grad, up)


def test_pair_gradient_can_be_differentiated_again(torch_gen):
    """PINN residuals backpropagate through df/dx: the hand-written backward is itself differentiable."""
    x = torch.randn(5, 6, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, generator=torch_gen, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad((GroupSort(2)(x * w)).sum(), x, create_graph=True)
    (ours,) = torch.autograd.grad((g**2).sum(), w)
    (gr,) = torch.autograd.grad((GroupSort(2).exact(x * w)).sum(), x, create_graph=True)
    (reference,) = torch.autograd.grad((gr**2).sum(), w)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    assert torch.autograd.gradgradcheck(GroupSort(2), (x.detach().requires_grad_(),))


@pytest.mark.parametrize("group_size", [2, 4])
def test_exact_writes_into_out_the_same_values(group_size):
    x = torch.randn(64, 16, dtype=torch.float64)
    gs = GroupSort(group_size)
    out = torch.full_like(x, float("nan"))
    assert gs.exact(x, out=out) is out
    assert torch.equal(out, gs.exact(x))
