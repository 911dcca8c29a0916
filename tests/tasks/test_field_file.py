"""`fit field` on a user's own file and `fit_field` on a DataArray: certificate, load, export."""

import json

import numpy as np
import pytest

import lipsurrogate
from lipsurrogate._io import sha256_of
from lipsurrogate.bounds import MultilinearInterpolant
from lipsurrogate.cli import main
from lipsurrogate.data.dataset import save_dataset
from lipsurrogate.data.examples import example_field
from lipsurrogate.data.gridded import gridded_field

onnxruntime = pytest.importorskip("onnxruntime")  # in the test extra; skipped only where it cannot install


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("field")
    path = save_dataset(example_field(), tmp / "user.nc")
    out = tmp / "run"
    assert main(["fit", "field", str(path), "--var", "temperature", "--quick", "--no-progress", "--out", str(out)]) == 0
    return path, out


def _random_points(box, n, rng):
    return box[:, 0] + rng.uniform(size=(n, len(box))) * (box[:, 1] - box[:, 0])


def test_a_users_file_is_certified_in_its_own_names_and_order(field_run, rng):
    path, out = field_run
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "field" and config["inputs"] == ["time", "kappa", "position"]
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["level"].startswith("level 1") and cert["grid"]["cells"] == [20, 8, 64]
    assert json.loads((out / "verification.json").read_text())["violations"] == 0
    surrogate = lipsurrogate.load(out)
    assert surrogate.inputs == ["time", "kappa", "position"]
    grid = gridded_field(example_field())
    interp = MultilinearInterpolant(grid.axes, grid.values)
    points = _random_points(surrogate.box, 20_000, rng)
    values, bounds = surrogate.predict(points, with_bound=True)
    assert np.all(np.abs(values - interp(points)) <= bounds) and np.all(bounds <= surrogate.bound)
    assert (out / "report.html").is_file()
    before = json.loads((out / "certificate.json").read_text())["bound"]
    assert main(["certify", str(out)]) == 0
    assert json.loads((out / "certificate.json").read_text())["bound"] == before  # recomputed, deterministic
    assert main(["verify", str(out), "--density", "2"]) == 0
    assert main(["report", str(out)]) == 0


def test_fit_field_takes_a_dataarray_and_any_input_order(tmp_path, rng):
    data = example_field(times=11, kappas=5, positions=33)["temperature"]
    surrogate = lipsurrogate.fit_field(data, inputs="position,kappa,time", out=tmp_path / "run", quick=True,
                                       progress=False)
    assert surrogate.inputs == ["position", "kappa", "time"]
    assert np.allclose(surrogate.box, [[0, 1], [0.02, 0.1], [0, 0.5]])
    grid = gridded_field(data, inputs=surrogate.inputs)
    interp = MultilinearInterpolant(grid.axes, grid.values)
    points = _random_points(surrogate.box, 20_000, rng)
    assert np.abs(surrogate.predict(points) - interp(points)).max() <= surrogate.bound
    assert (tmp_path / "run" / "data.nc").is_file()  # the in-memory data are stored with the run
    assert json.loads((tmp_path / "run" / "config.json").read_text())["file"] is None
    with pytest.raises(lipsurrogate.exceptions.DataSchemaError, match="expects an xarray"):
        lipsurrogate.fit_field(np.zeros((3, 3)), out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_the_onnx_export_runs_the_certified_weights(field_run, tmp_path, rng, dtype, tolerance):
    _, out = field_run
    target = tmp_path / "surrogate.onnx"
    assert main(["export", str(out), "--format", "onnx", "--dtype", dtype, "--out", str(target)]) == 0
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    surrogate = lipsurrogate.load(out)
    points = _random_points(surrogate.box, 5000, rng).astype(np.float32)
    points = np.clip(points, surrogate.box[:, 0], surrogate.box[:, 1]).astype(np.float32)
    (values,) = session.run(None, {"points": points})
    expected = surrogate.predict(points.astype(np.float64))
    assert values.shape == (5000,) and values.dtype == np.dtype(dtype)
    assert np.abs(values - expected).max() <= tolerance * max(1.0, np.abs(expected).max())
    meta = session.get_modelmeta().custom_metadata_map
    assert float(meta["bound"]) == surrogate.bound
    assert json.loads(meta["inputs"]) == surrogate.inputs
    assert np.allclose(json.loads(meta["box"]), surrogate.box)
    assert meta["level"].startswith("level 1")
    assert json.loads(meta["sha256"])["model.safetensors"] == sha256_of(out / "model.safetensors")


def test_the_numpy_export_of_a_run_matches_predict(field_run, tmp_path, rng):
    from lipsurrogate.export import load_numpy

    _, out = field_run
    assert main(["export", str(out), "--format", "numpy", "--dtype", "float64", "--out", str(tmp_path / "net")]) == 0
    net = load_numpy(tmp_path / "net")
    surrogate = lipsurrogate.load(out)
    points = _random_points(surrogate.box, 5000, rng)
    assert np.abs(net(points)[:, 0] - surrogate.predict(points)).max() <= 1e-12
    assert net.meta["certificate"]["bound"] == surrogate.bound


def test_each_task_lists_only_its_own_options(capsys):
    for task, own, foreign in [("field", "--var", "--diffusivity"), ("heat2d", "--diffusivity", "--var")]:
        with pytest.raises(SystemExit):
            main(["fit", task, "--help"])
        text = capsys.readouterr().out
        assert own in text and foreign not in text and "(default: None)" not in text


def _readme_block(marker: str) -> str:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if marker in b]
    return block


def test_the_readme_runs_an_exported_model_with_onnxruntime_alone(field_run, tmp_path, monkeypatch, capsys):
    _, out = field_run
    assert main(["export", str(out), "--out", str(tmp_path / "surrogate.onnx")]) == 0
    monkeypatch.chdir(tmp_path)
    code = _readme_block("ort.InferenceSession")
    assert "import lipsurrogate" not in code and "from lipsurrogate" not in code  # onnxruntime alone
    exec(compile(code, "README.md", "exec"), {})
    assert "['time', 'kappa', 'position']" in capsys.readouterr().out


def test_the_readme_certifies_a_users_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_block("lipsurrogate.certify("), "README.md", "exec"), namespace)
    assert namespace["check"].violations == 0 and (tmp_path / "runs" / "mine" / "certificate.json").is_file()


def test_a_level_1_certificate_is_bound_to_its_data(field_run, tmp_path, capsys):
    import shutil

    import xarray as xr

    _, out = field_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    cert = json.loads((copy / "certificate.json").read_text())
    assert "data.nc" in cert["files"]
    ds = xr.load_dataset(copy / "data.nc", engine="h5netcdf")
    ds["temperature"][0, 0, 0] += 1e-6
    (copy / "data.nc").unlink()
    ds.to_netcdf(copy / "data.nc", engine="h5netcdf")
    assert main(["verify", str(copy)]) == 2
    assert "data.nc changed after it was certified" in capsys.readouterr().err
