"""The optimizer step of the training loops: fused Adam, and the projection after every step."""

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


def test_train_keeps_projected_weights_in_their_constraint():
    """``train`` projects ``enforce="project"`` layers after every step (the projector is built once)."""
    from lipsurrogate.nn import lipschitz_norm
    from lipsurrogate.train import train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    for layer in (model[0], model[2]):
        lipschitz_norm(layer, "linf-row", 0.5, enforce="project")
    x = torch.randn(256, 3)
    y = 10 * x.sum(1, keepdim=True)  # steep: the unconstrained fit would need row sums of about 30
    seen = []

    def check(step, m):
        seen.append(max(float(layer.weight.detach().double().abs().sum(1).max()) for layer in (m[0], m[2])))
        return False

    train(model, x, y, steps=40, batch_size=64, lr=0.5, log_every=1, callback=check, progress=False)
    assert len(seen) == 40 and max(seen) <= 0.5 * (1 + 1e-6)
