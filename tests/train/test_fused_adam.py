"""``fused_adam``: torch's fused Adam where it exists, the same algorithm as the unfused one."""

import torch
from torch import nn

from lipsurrogate.train.loop import fused_adam


def _fit(make_optimizer, steps=50):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(64, 3)
    y = x.sum(1, keepdim=True).sin()
    opt = make_optimizer(model.parameters())
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fused_adam_is_adam():
    fused = _fit(lambda p: fused_adam(p, lr=1e-2))
    plain = _fit(lambda p: torch.optim.Adam(p, lr=1e-2))
    start = _fit(lambda p: torch.optim.Adam(p, lr=1e-2), steps=0)
    assert (plain - start).abs().max() > 0.05  # the steps moved the weights
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)  # rounding apart, the same steps


def test_fused_adam_uses_the_fused_kernel_where_torch_has_one():
    opt = fused_adam([nn.Parameter(torch.zeros(3))], lr=0.1, betas=(0.8, 0.9))
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.8, 0.9)
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 4):  # CPU kernels since torch 2.4
        assert opt.defaults["fused"] is True
