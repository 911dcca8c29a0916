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
