"""End-to-end `fit heat2d --quick`: the run-folder contract, the bound against the exact solution,
and clear errors on corrupted run folders."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import lipsurrogate
from lipsurrogate.cli import main
from lipsurrogate.data.heat import HeatModes
from lipsurrogate.exceptions import CertificationError, ModelFileError
from lipsurrogate.tasks import heat2d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("heat") / "run"
    assert main(["fit", "heat2d", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_run_folder_contract(run_dir):
    for name in ["config.json", "environment.json", "data.nc", "model.safetensors", "model.json",
                 "certificate.json", "certificate.nc", "verification.json", "report.html"]:
        assert (run_dir / name).is_file(), name
    for fig in ["solution", "bound_vs_error", "training", "tightness"]:
        assert (run_dir / "figures" / f"{fig}.png").stat().st_size > 2000
    cert = json.loads((run_dir / "certificate.json").read_text())
    for key in ["bound", "per_cell", "lipschitz_f", "lipschitz_u", "lipschitz_u_source", "grid", "level", "method"]:
        assert key in cert
    assert "maximum principle" in cert["lipschitz_u_source"]
    # the quick run screens its blocks (tighten="dominant", the default) and says how many it tightened
    assert 0 < cert["tightened"]["blocks"] <= cert["tightened"]["of"] == 32 * 32 * 8
    # local constants (interval propagation) never loosen the global-constant bound
    assert cert["bound"] <= cert["bound_global_constants"] <= cert["naive_bound"]
    ver = json.loads((run_dir / "verification.json").read_text())
    # the quick settings keep the comparison grid (the defaults have none): certified too
    assert cert["coarse"]["grid"]["cells"] == [16, 16, 4] and cert["coarse"]["bound"] >= ver["max_error_observed"]
    for key in ["violations", "max_error_observed", "bound", "tightness", "samples"]:
        assert key in ver
    assert ver["violations"] == 0
    assert set(ver["samples"]) == {"dense", "random", "adversarial"}
    assert ver["tightness"] >= 1.0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and HeatModes.from_json(config["initial_condition_modes"]).cos.size == 4
    html = (run_dir / "report.html").read_text()
    assert "certified" in html and "data:image/png;base64" in html


def test_bound_holds_on_independent_random_points(run_dir):
    """Recompute the exact solution from config.json alone and compare with load().predict."""
    config = json.loads((run_dir / "config.json").read_text())
    d = json.loads(config["initial_condition_modes"])
    k = np.asarray(d["wavevectors"], float)
    a, b = np.asarray(d["cos"]), np.asarray(d["sin"])
    kappa, t_end = config["diffusivity"], config["t_end"]
    rng = np.random.default_rng(12345)
    pts = rng.uniform([0, 0, 0], [2 * np.pi, 2 * np.pi, t_end], size=(50_000, 3))
    phase = pts[:, :2] @ k.T
    u = np.sum(np.exp(-kappa * np.sum(k**2, 1)[None] * pts[:, 2:3]) * (a * np.cos(phase) + b * np.sin(phase)), axis=1)
    surrogate = lipsurrogate.load(run_dir)
    values, bounds = surrogate.predict(pts, with_bound=True)
    assert np.all(np.abs(values - u) <= bounds)
    assert np.all(bounds <= surrogate.bound)


def test_predict_refuses_points_outside_the_box(run_dir):
    surrogate = lipsurrogate.load(run_dir)
    with pytest.raises(CertificationError, match="outside the certified box"):
        surrogate.predict(np.array([[1.0, 1.0, 5.0]]))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        surrogate.predict(np.zeros((2, 2)))


def test_certify_and_verify_commands_rerun(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = json.loads((copy / "certificate.json").read_text())["bound"]
    assert main(["certify", str(copy)]) == 0
    assert json.loads((copy / "certificate.json").read_text())["bound"] == pytest.approx(before, rel=1e-12)
    assert main(["verify", str(copy), "--density", "2"]) == 0
    assert "violations 0" in capsys.readouterr().out


def test_certify_command_on_another_grid_in_tiles_on_dask(run_dir, tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    copy = tmp_path / "tiles"
    shutil.copytree(run_dir, copy)
    assert main(["certify", str(copy), "--cells", "12,12,4", "--tile-cells", "100", "--scheduler", "local",
                 "--workers", "2", "--no-progress"]) == 0
    document = json.loads((copy / "certificate.json").read_text())
    assert document["grid"]["cells"] == [12, 12, 4] and document["grid"]["tiles"] > 4
    assert main(["verify", str(copy), "--density", "2"]) == 0
    assert "violations 0" in capsys.readouterr().out
    assert main(["certify", str(copy), "--cells", "12,x,4"]) == 2
    assert "--cells expects positive integers" in capsys.readouterr().err


def test_corrupted_run_folders_give_clear_errors(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    tensors = load_file(bad / "model.safetensors")
    key = sorted(tensors)[0]
    tensors[key] = torch.zeros(3)
    save_file(tensors, bad / "model.safetensors")
    for command in (["certify", str(bad)], ["verify", str(bad)], ["report", str(bad)], ["export", str(bad), "--out",
                                                                                        str(tmp_path / "x.onnx")]):
        assert main(command) == 2
        assert "model.safetensors changed after it was certified" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match="model.safetensors changed"):
        lipsurrogate.load(bad)
    (bad / "certificate.json").unlink()
    with pytest.raises(ModelFileError, match="no certificate.json"):
        lipsurrogate.load(bad)
    assert main(["certify", str(bad)]) == 2  # without a certificate to contradict, the broken tensor is named
    assert key in capsys.readouterr().err
    (bad / "config.json").write_text("{}")
    assert main(["certify", str(bad)]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_wrong_constant_makes_certification_refuse(run_dir, monkeypatch):
    import lipsurrogate.bounds.certifier as certifier

    monkeypatch.setattr(lipsurrogate.bounds.HeatSolution, "global_constants", lambda self, box=None: np.zeros(3))
    model = lipsurrogate.nn.load_model(run_dir / "model")
    monkeypatch.setattr(certifier, "lipschitz_bounds", lambda m, domain=None: type("B", (), {
        "per_input": np.zeros((1, 3)), "method": "zero"})())
    with pytest.raises(CertificationError, match="Consistency check failed"):
        heat2d.certify(run_dir, model=model)


def test_unknown_option_is_refused(tmp_path):
    from lipsurrogate.pipeline import fit

    with pytest.raises(ValueError, match="Unknown heat2d option"):
        fit("heat2d", out=tmp_path / "x", quick=True, progress=False, colour="blue")
    assert not (tmp_path / "x").exists()


def test_deeponet_run_certifies_the_operator_on_an_unseen_initial_condition(tmp_path):
    out = tmp_path / "don"
    assert main(["fit", "heat2d", "--quick", "--model", "deeponet", "--operator-steps", "200", "--no-progress",
                 "--cert-cells-coarse", "none", "--out", str(out)]) == 0
    for name in ["operator.safetensors", "operator.json", "operator_fit.json", "model.safetensors", "certificate.json",
                 "verification.json", "report.html"]:
        assert (out / name).is_file(), name
    op = json.loads((out / "operator_fit.json").read_text())
    assert op["family_seed"] == 1 and op["train_samples"] + op["held_out_samples"] == op["family_samples"]
    ver = json.loads((out / "verification.json").read_text())
    assert ver["violations"] == 0
    # no comparison grid asked for: none computed, none reported
    assert json.loads((out / "certificate.json").read_text())["coarse"] is None
    assert json.loads((out / "summary.json").read_text())["bound_coarse"] is None
    # the certified object is the specialised network, and it is what load() evaluates
    s = lipsurrogate.load(out)
    pts = np.array([[1.0, 2.0, 0.3], [4.0, 0.5, 0.9]])
    values, bounds = s.predict(pts, with_bound=True)
    config = json.loads((out / "config.json").read_text())
    assert config["operator_steps"] == 200  # the command line's, not the quick default (300)
    modes = HeatModes.from_json(config["initial_condition_modes"])
    u = modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], config["diffusivity"])
    assert np.all(np.abs(values - u) <= bounds)
    operator = lipsurrogate.nn.load_model(out / "operator")
    assert operator.n_sensors == config["sensor_grid"] ** 2


def test_unknown_model_is_refused():
    with pytest.raises(lipsurrogate.exceptions.ConfigurationError, match="'model' of heat2d"):
        heat2d.Heat2DConfig(model="fno")
    with pytest.raises(lipsurrogate.exceptions.ConfigurationError, match="'tighten' \\(--tighten\\)"):
        heat2d.Heat2DConfig(tighten="some")
    with pytest.raises(lipsurrogate.exceptions.ConfigurationError, match="3 cell counts \\(x, y, t\\) or none"):
        heat2d.Heat2DConfig(cert_cells_coarse=[64, 64])


def test_fast_preset_sits_under_the_options_given():
    from lipsurrogate.cli import build_parser
    from lipsurrogate.exceptions import ConfigurationError

    cfg = heat2d.Heat2DConfig.from_options(False, 0, {"fast": True, "steps": 7})
    assert cfg.fast and cfg.hidden == heat2d.FAST["hidden"] and cfg.cert_cells == heat2d.FAST["cert_cells"]
    assert cfg.steps == 7  # an option given wins over the preset
    default = heat2d.Heat2DConfig.from_options(False, 0, {})
    assert not default.fast and default.hidden != heat2d.FAST["hidden"]
    with pytest.raises(ConfigurationError, match="one of 'quick'"):
        heat2d.Heat2DConfig.from_options(True, 0, {"fast": True})
    args = build_parser().parse_args(["fit", "heat2d", "--fast"])
    assert args.fast is True
    assert build_parser().parse_args(["fit", "heat2d"]).fast is None
    assert build_parser().parse_args(["fit", "heat2d", "--cert-cells-coarse", "none"]).cert_cells_coarse == []
    assert build_parser().parse_args(["fit", "heat2d", "--cert-cells-coarse", "64,64,16"]).cert_cells_coarse == [64, 64, 16]
