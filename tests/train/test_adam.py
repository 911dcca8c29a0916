"""lipsurrogate's Adam is torch.optim.Adam (single-tensor path) with LambdaLR, bit for bit, without torch.optim."""

import math

import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.train.adam import Adam


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_updates_are_torch_adams_with_lambda_lr_bit_for_bit(weight_decay):
    steps = 25
    schedule = lambda k: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))  # noqa: E731
    ours, theirs = _model(0), _model(0)
    opt = Adam(ours.parameters(), lr=3e-2, weight_decay=weight_decay, schedule=schedule)
    ref = torch.optim.Adam(theirs.parameters(), lr=3e-2, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(ref, schedule)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(64, 3, generator=gen)
        y = torch.sin(x.sum(1, keepdim=True))
        for model, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad(set_to_none=True)
            ((model(x) - y) ** 2).mean().backward()
            optimizer.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(ours.parameters()), next(_model(0).parameters()))  # it did train


def test_parameters_without_gradients_are_left_alone_and_bad_settings_refused():
    model = _model(0)
    frozen = model[0].weight.detach().clone()
    opt = Adam([model[0].weight, model[2].weight], lr=0.1)
    model[2].weight.grad = torch.ones_like(model[2].weight)
    opt.step()
    assert torch.equal(model[0].weight, frozen)
    opt.zero_grad(set_to_none=False)
    assert torch.count_nonzero(model[2].weight.grad) == 0
    with pytest.raises(ConfigurationError, match="betas"):
        Adam(model.parameters(), lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ConfigurationError, match="at least one"):
        Adam([], lr=0.1)
