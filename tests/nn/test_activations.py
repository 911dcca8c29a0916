import pytest
import torch

from lipsurrogate._compiled import flag_off
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import GroupSort, activations


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


@pytest.mark.skipif(not activations.USE_COMPILED, reason="numba is not installed (the torch path is tested above)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("half", [6, 37])  # 37: vectorised loop bodies and their remainders
def test_compiled_pair_layer_equals_the_torch_path_bit_for_bit(dtype, half, torch_gen):
    """Note [compiled pair layer]: same forward values (ties, infinities and NaN included) and the
    gradient routed to the winner exactly, in both dtypes and for inputs of any leading shape."""
    x = torch.randn(6, 5, 2 * half, generator=torch_gen, dtype=dtype)
    x[0, 0, :half] = x[0, 0, half:]  # ties
    x[0, 1, 0], x[0, 1, half] = -0.0, 0.0  # a tie of signed zeros (equal values; the signs may differ)
    x[1, 0, 0], x[1, 0, half], x[1, 1, 1], x[1, 2, half + 2] = float("inf"), -float("inf"), float("nan"), float("nan")
    x[2, 3, half - 1] = float("nan")  # the last pair (a loop's remainder)
    g = torch.randn(6, 5, 2 * half, generator=torch_gen, dtype=dtype)
    results = {}
    for compiled in (True, False):
        z = x.clone().requires_grad_()
        if compiled:
            out = GroupSort(2)(z)
        else:
            with flag_off(activations, "USE_COMPILED"):
                out = GroupSort(2)(z)
        (grad,) = torch.autograd.grad(out, z, g)
        results[compiled] = (out.detach(), grad)
    out_c, grad_c = results[True]
    out_t, grad_t = results[False]
    assert torch.equal(out_c.isnan(), out_t.isnan()) and torch.equal(out_c.nan_to_num(), out_t.nan_to_num())
    # the winner takes its gradient exactly; the torch formula g_min + (g_max - g_min) rounds
    a, b = x.chunk(2, dim=-1)
    g_min, g_max = g.chunk(2, dim=-1)
    a_won = a > b
    expected = torch.cat([torch.where(a_won, g_max, g_min), torch.where(a_won, g_min, g_max)], dim=-1)
    assert torch.equal(grad_c, expected)
    torch.testing.assert_close(grad_c, grad_t, rtol=0, atol=4 * torch.finfo(dtype).eps * g.abs().max().item())


def test_non_contiguous_and_double_backward_inputs_take_the_torch_path(torch_gen):
    x = torch.randn(8, 10, generator=torch_gen, dtype=torch.float64).t()  # not contiguous
    assert not x.is_contiguous()
    assert torch.equal(GroupSort(2)(x), GroupSort(2).exact(x))
    z = x.contiguous().requires_grad_()
    assert torch.autograd.gradgradcheck(GroupSort(2), (z,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pair_sort_with_abs_max_sorts_in_place_and_gives_each_rows_largest_absolute_value(dtype, torch_gen):
    """The float64 certificate's fused pass: GroupSort.exact's values in place, and max_j |y_ij| of
    the row (a NaN row gives NaN), the same from the compiled pass and the torch path."""
    y = torch.randn(300, 130, generator=torch_gen, dtype=dtype) * 3
    y[0, :65] = y[0, 65:]  # ties
    y[1, 3], y[2, 10], y[3, 0] = float("nan"), -float("inf"), -50.0
    y[4] = -0.0  # |-0| = +0 (Note [row maxima on the bits])
    tiny = torch.finfo(dtype).tiny
    y[5] = tiny * torch.linspace(-0.5, 0.25, 130, dtype=dtype)  # subnormals only: the largest is -0.5 tiny
    y[6, 129] = float("nan")  # the last column (the loops' remainder)
    expected = GroupSort(2).exact(y)
    top = torch.maximum(y.amax(dim=1), -y.amin(dim=1))
    assert top[5] == 0.5 * tiny and top[5] > 0
    for compiled in (True, False):
        z = y.clone()
        if compiled:
            out, m = activations.pair_sort_with_abs_max_(z)
        else:
            with flag_off(activations, "USE_COMPILED"):
                out, m = activations.pair_sort_with_abs_max_(z)
        assert out.data_ptr() == z.data_ptr()  # in place
        assert torch.equal(out.isnan(), expected.isnan()) and torch.equal(out.nan_to_num(), expected.nan_to_num())
        assert torch.isnan(m[1]) and torch.equal(m.nan_to_num(), top.nan_to_num())
        assert m[3] == 50.0 and m[2] == float("inf") and torch.isnan(m[6])
        assert m[4] == 0 and not torch.signbit(m[4]) and m[5] == 0.5 * tiny
    with pytest.raises(ConfigurationError, match="even width"):
        activations.pair_sort_with_abs_max_(torch.zeros(3, 5))
    with pytest.raises(ConfigurationError, match="without gradient"):
        activations.pair_sort_with_abs_max_(torch.zeros(3, 4, requires_grad=True))
