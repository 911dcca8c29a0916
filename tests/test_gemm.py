"""lipsurrogate._gemm: float32 products through oneDNN or torch's BLAS, within the rounding bound."""

import numpy as np
import pytest
import torch

from lipsurrogate import _gemm
from lipsurrogate._compiled import flag_off


def _gamma_bound(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None):
    """The exact product (float64 of float32 data: exact products, sums far below float32 rounding)
    and Higham's bound gamma_{k+1} (|a| |w|^T + |b|) on the float32 result's error, any summation order."""
    a64, w64 = a.double(), w.double()
    exact = a64 @ w64.T + (0 if b is None else b.double())
    k = a.shape[1] + 1
    u = 2.0**-24
    gamma = k * u / (1 - k * u)
    return exact, gamma * (a64.abs() @ w64.abs().T + (0 if b is None else b.double().abs())) + 1e-30


@pytest.mark.parametrize("shape", [(4096, 128, 128), (300, 49, 128), (64, 128, 16), (5, 7, 128), (1000, 128, 1)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_is_the_product_within_the_rounding_bound_on_either_path(shape, with_bias, torch_gen):
    """Note [any order of summation]: both libraries' results lie within gamma_k |a| |w|^T of the exact
    product, the bound every certified use of a product takes."""
    m, k, n = shape
    a = torch.randn(m, k, generator=torch_gen)
    w = torch.randn(n, k, generator=torch_gen)
    b = torch.randn(n, generator=torch_gen) if with_bias else None
    exact, bound = _gamma_bound(a, w, b)
    fast = _gemm.linear(a, w, b)
    with flag_off(_gemm, "USE_ONEDNN"):
        plain = _gemm.linear(a, w, b)
    for result in (fast, plain):
        assert result.shape == (m, n) and result.dtype == torch.float32
        assert torch.all((result.double() - exact).abs() <= bound)
    # torch's BLAS path is torch's product itself
    reference = a @ w.T if b is None else torch.addmm(b, a, w.T)
    assert torch.equal(plain, reference)


def test_linear_takes_torch_for_other_dtypes_gradients_and_thin_products(torch_gen):
    a64 = torch.randn(50, 8, dtype=torch.float64, generator=torch_gen)
    w64 = torch.randn(20, 8, dtype=torch.float64, generator=torch_gen)
    assert torch.equal(_gemm.linear(a64, w64), a64 @ w64.T)
    a = torch.randn(50, 8, generator=torch_gen)
    assert not _gemm._takes(a, torch.randn(_gemm.MIN_OUTPUTS - 1, 8))
    assert not _gemm._takes(a.requires_grad_(), torch.randn(32, 8))
    if _gemm.onednn_available():
        assert _gemm._takes(a.detach(), torch.randn(32, 8))
    with flag_off(_gemm, "USE_ONEDNN"):
        assert not _gemm.onednn_available()
