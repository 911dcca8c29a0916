import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lipsurrogate.exceptions import ModelFileError
from lipsurrogate.nn import LipschitzMLP, load_model, save_model, to_plain


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(norm="spectral"),
        dict(head="aux"),
        dict(head="scale"),
        dict(monotonic=[1, 0], enforce="project"),
        dict(input_scale=[2.0, 3.0], input_offset=[1.0, -1.0]),
    ],
)
def test_round_trip_reproduces_outputs(tmp_path, kwargs):
    model = LipschitzMLP(2, 1, (8, 8), seed=0, **kwargs).eval()
    weights, arch = save_model(model, tmp_path / "model")
    assert weights.name == "model.safetensors" and arch.name == "model.json"
    loaded = load_model(tmp_path / "model.safetensors")
    x = torch.randn(32, 2)
    assert torch.equal(loaded(x), model(x))


def test_plain_round_trip(tmp_path):
    plain = to_plain(LipschitzMLP(2, 1, (8,), seed=0))
    save_model(plain, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert getattr(loaded, "is_plain", False)
    x = torch.randn(8, 2)
    assert torch.equal(loaded(x), plain(x))


def test_wrong_shape_names_the_tensor(tmp_path):
    save_model(LipschitzMLP(2, 1, (8,), seed=0), tmp_path / "m")
    tensors = load_file(tmp_path / "m.safetensors")
    key = "body.0.bias"
    tensors[key] = torch.zeros(5)
    save_file(tensors, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match=r"body\.0\.bias.*\(5,\)"):
        load_model(tmp_path / "m")


def test_missing_tensor_and_corrupted_files(tmp_path):
    save_model(LipschitzMLP(2, 1, (8,), seed=0), tmp_path / "m")
    tensors = load_file(tmp_path / "m.safetensors")
    del tensors["body.2.bias"]
    save_file(tensors, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="missing tensors"):
        load_model(tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_model(tmp_path / "m")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(tmp_path / "m")
    (tmp_path / "m.json").write_text(json.dumps({"class": "os.system", "config": {}}))
    with pytest.raises(ModelFileError, match="known model class"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "absent")


def test_save_rejects_unknown_modules(tmp_path):
    with pytest.raises(ModelFileError, match="LipschitzMLP"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "m")
