"""Training on a device: names resolved with clear errors, the model comes home, a task block applies."""

import pytest
import torch

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.train import resolve_device, train, training_device
from lipsurrogate.train.device import current_device


def test_device_names_resolve_or_are_refused_clearly():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigurationError, match="'device' must be"):
        resolve_device("gpu0")
    with pytest.raises(ConfigurationError, match="CPU or CUDA"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="sees no CUDA device"):
            resolve_device("cuda")


def _data():
    x = torch.linspace(-1, 1, 64)[:, None]
    return x, torch.sin(2 * x)


def test_training_on_a_device_gives_the_same_weights_and_returns_the_model():
    x, y = _data()
    runs = []
    for device in (None, "cpu", "auto"):
        model = LipschitzMLP(1, 1, [16], seed=0)
        history = train(model, x, y, steps=30, batch_size=16, progress=False, device=device)
        assert next(model.parameters()).device.type == "cpu"  # back home for the float64 certificate
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0].device == "cpu" and runs[0][0].to_dict()["device"] == "cpu"
    for p, q in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)  # same seeded batches, same device: same bits
    if not torch.cuda.is_available():
        assert runs[2][0].device == "cpu"


def test_a_training_device_block_applies_to_train_without_a_device():
    assert current_device() is None
    x, y = _data()
    with training_device("cpu") as device:
        assert current_device() == device == torch.device("cpu")
        history = train(LipschitzMLP(1, 1, [8], seed=1), x, y, steps=5, progress=False)
    assert history.device == "cpu" and current_device() is None
    with pytest.raises(ConfigurationError):
        with training_device("tpu"):
            pass
