"""The L_p regression loss: its limits, its value, and that it trains the max error down."""

import numpy as np
import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.tasks._common import check_config
from lipsurrogate.tasks.heat2d import Heat2DConfig
from lipsurrogate.train import train
from lipsurrogate.train.loop import lp_loss, resolve_loss


def test_lp_loss_is_the_squared_lp_norm_and_tends_to_the_squared_max(rng):
    r = torch.from_numpy(rng.normal(size=1000))
    zero = torch.zeros_like(r)
    assert float(lp_loss(2)(r, zero)) == pytest.approx(float(torch.mean(r**2)), rel=1e-12)
    assert float(lp_loss(4)(r, zero)) == pytest.approx(float(torch.mean(r**4) ** 0.5), rel=1e-12)
    big = float(lp_loss(400)(r, zero))
    assert float(r.abs().max()) ** 2 * 0.9 < big <= float(r.abs().max()) ** 2 * (1 + 1e-12)
    assert torch.isfinite(lp_loss(64)(r * 1e30, zero))  # scaled by the max: no overflow


def test_resolve_loss_names_and_errors():
    assert resolve_loss("l8").__name__ == "l8" and resolve_loss("mse") is not None
    for bad in ("l", "lx", "l0.5", "huber"):
        with pytest.raises(ConfigurationError, match="loss"):
            resolve_loss(bad)
    with pytest.raises(ConfigurationError, match="--loss"):
        check_config(Heat2DConfig(loss="lq"))


def test_training_with_a_high_p_lowers_the_max_error_against_mse():
    """Same network, data and steps: L_8 trades a little RMSE for a smaller worst-case error."""
    x = torch.linspace(-1, 1, 400).reshape(-1, 1)
    y = torch.sign(x) * torch.sqrt(x.abs())  # a cusp at 0 where the worst error sits
    out = {}
    for name in ("mse", "l8"):
        net = LipschitzMLP(1, 1, (32, 32), lipschitz=4.0, seed=0)
        train(net, x, y, name, steps=1500, batch_size=400, lr=5e-3, seed=0)
        with torch.no_grad():
            out[name] = float((net(x) - y).abs().max())
    assert out["l8"] < out["mse"]


def test_weighted_cross_entropies_match_repeated_rows():
    """Integer weights equal repeating rows (mean over the weight total = n); softmax of 2 logits = BCE of their difference."""
    import torch
    import torch.nn.functional as F

    from lipsurrogate.train.losses import bce_with_temperature, softmax_cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0, 2])
    w = torch.tensor([1.0, 2.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # sums to n = 6
    rep = torch.repeat_interleave(torch.arange(6), w.long())
    torch.testing.assert_close(softmax_cross_entropy(logits, labels, 0.5, weights=w),
                               F.cross_entropy(logits[rep] / 0.5, labels[rep]))
    two = logits[:, :2]
    binary = (labels[:2] * 0 + torch.tensor([0, 1])).repeat(3)
    torch.testing.assert_close(softmax_cross_entropy(two, binary),
                               bce_with_temperature(two[:, 1] - two[:, 0], binary.double()))
    torch.testing.assert_close(bce_with_temperature(logits[:, 0], (labels > 0).double(), weights=w),
                               bce_with_temperature(logits[rep, 0], (labels[rep] > 0).double()))
    with pytest.raises(ValueError, match="n class indices"):
        softmax_cross_entropy(logits[:, 0], labels)
