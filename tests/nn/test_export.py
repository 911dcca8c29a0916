"""The numpy export computes the network's function, loads without pickle, and needs no torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lipsurrogate.bounds import evaluate_float64, extract_chain
from lipsurrogate.exceptions import ConfigurationError, ModelFileError
from lipsurrogate.export import export_numpy, load_numpy, numpy_forward
from lipsurrogate.nn import LipschitzMLP, to_plain


def _model(activation="groupsort", group_size=2, monotonic=(1, 1, 1, 0), out=1, head="lipschitz"):
    model = LipschitzMLP(4, out, (20, 20, 20), lipschitz=2.0, norm="l1-column", activation=activation,
                         group_size=group_size, monotonic=None if monotonic is None else list(monotonic),
                         input_scale=[0.3, 0.5, 0.4, 0.2], input_offset=[5.0, 1.0, 6.0, 1.0], head=head, seed=1)
    with torch.no_grad():  # move away from the initialisation so that every unit matters
        for linear in model.linears:
            linear.bias.add_(0.3)
    return model.eval()


@pytest.mark.parametrize("activation, group_size, monotonic, out", [
    ("groupsort", 2, (1, 1, 1, 0), 1),
    ("groupsort", 4, (1, 0, -1, 0), 1),
    ("fullsort", 2, None, 2),
    ("relu", 2, None, 1),
])
def test_float64_export_matches_certified_float64_evaluation(tmp_path, rng, activation, group_size, monotonic, out):
    model = _model(activation, group_size, monotonic, out)
    export_numpy(model, tmp_path / "net", dtype="float64")
    net = load_numpy(tmp_path / "net.npz")
    x = rng.normal(size=(5000, 4)) * 10  # far outside any data, too
    value, err = evaluate_float64(extract_chain(to_plain(model)), x)
    got = net(x)
    assert got.shape == (5000, out) and got.dtype == np.float64
    # within the certified rounding bound of the float64 evaluation (plus the export's own rounding)
    assert np.all(np.abs(got - value) <= 2 * err + 1e-12 * (1 + np.abs(value)))


def test_float32_export_matches_torch_to_float32_rounding(tmp_path, rng):
    model = _model()
    export_numpy(model, tmp_path / "net")
    net = load_numpy(tmp_path / "net")
    x = rng.normal(size=(20_000, 4)) * 3
    with torch.no_grad():
        ref = model(torch.tensor(x, dtype=torch.float32)).numpy()
    got = net(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_chunking_does_not_change_results(tmp_path, rng):
    export_numpy(_model(), tmp_path / "net", dtype="float64")
    net = load_numpy(tmp_path / "net")
    x = rng.normal(size=(1000, 4))
    full = numpy_forward(net.params, x, "groupsort", 2, chunk=4096)
    small = numpy_forward(net.params, x, "groupsort", 2, chunk=7)
    np.testing.assert_allclose(full, small, rtol=1e-13, atol=1e-13)


def test_export_is_monotone_beyond_the_data(tmp_path, rng):
    export_numpy(_model(), tmp_path / "net", dtype="float64")
    net = load_numpy(tmp_path / "net")
    x = np.repeat(rng.normal(size=(50, 4)) * 5, 200, axis=0)
    x[:, 2] = np.tile(np.linspace(-100, 100, 200), 50)  # fdchi2 swept far outside the data
    f = net(x)[:, 0].reshape(50, 200)
    assert np.all(np.diff(f, axis=1) >= -1e-12 * (1 + np.abs(f[:, 1:])))


def test_files_load_without_pickle_and_carry_metadata(tmp_path):
    npz, meta_path = export_numpy(_model(), tmp_path / "net")
    with np.load(npz, allow_pickle=False) as data:
        assert {"W0", "b3", "input_scale", "input_offset", "residual"} <= set(data.files)
        assert data["W0"].dtype == np.float32
    meta = json.loads(meta_path.read_text())
    assert meta["activation"] == "groupsort" and meta["group_size"] == 2 and meta["layers"] == 4


def test_bad_inputs_and_files_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="expects a LipschitzMLP"):
        export_numpy(torch.nn.Linear(4, 1), tmp_path / "x")
    with pytest.raises(ConfigurationError, match="'lipschitz' and 'free' heads"):
        export_numpy(_model(monotonic=None, head="scale"), tmp_path / "x")
    with pytest.raises(ConfigurationError, match="dtype"):
        export_numpy(_model(), tmp_path / "x", dtype="float16")
    export_numpy(_model(), tmp_path / "net")
    net = load_numpy(tmp_path / "net")
    with pytest.raises(ConfigurationError, match=r"shape \(n, 4\)"):
        net(np.zeros((3, 5)))
    with pytest.raises(ModelFileError, match="does not exist"):
        load_numpy(tmp_path / "missing")
    meta = json.loads((tmp_path / "net.json").read_text())
    meta["layers"] = 5
    (tmp_path / "net.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="missing"):
        load_numpy(tmp_path / "net")


def test_loading_and_evaluating_an_export_needs_no_torch(tmp_path, rng):
    export_numpy(_model(), tmp_path / "net")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from lipsurrogate.export import load_numpy\n"
        f"net = load_numpy({str(tmp_path / 'net')!r})\n"
        "print(net(np.zeros((3, 4))).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 1)"
