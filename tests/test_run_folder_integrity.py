"""A certificate cannot be detached from its files, and faults lose nothing (issue 15's table, row by row)."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import lipsurrogate
from lipsurrogate.bounds import Certificate
from lipsurrogate.bounds.verification import verify_certificate
from lipsurrogate.cli import main
from lipsurrogate.exceptions import CertificationError, ModelFileError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("integrity") / "run"
    assert main(["fit", "heat2d", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture
def copy(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def _edit_weights(folder, change):
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors")


def _last_bias(tensors):
    return sorted(k for k in tensors if "bias" in k)[-1]


def _one_weight_times_100(t):
    key = sorted(k for k in t if "weight" in k)[0]
    t[key].view(-1)[0] *= 100


def _bias_plus(amount):
    def change(t):
        t[_last_bias(t)] += amount
    return change


def _one_ulp(t):
    key = _last_bias(t)
    t[key] = torch.nextafter(t[key], t[key] + 1)


def _nan_weight(t):
    key = sorted(k for k in t if "weight" in k)[-1]
    t[key].view(-1)[0] = float("nan")


def _budget_times_3(folder):
    meta = json.loads((folder / "model.json").read_text())
    text = json.dumps(meta)
    assert "input_budget" in text
    config = meta["config"] if "config" in meta else meta
    config["input_budget"] = [3 * b for b in config["input_budget"]]
    (folder / "model.json").write_text(json.dumps(meta))


def _cells_times_09(folder):
    import xarray as xr

    ds = xr.load_dataset(folder / "certificate.nc", engine="h5netcdf")
    ds["bound"] = ds["bound"] * 0.9
    (folder / "certificate.nc").unlink()
    ds.to_netcdf(folder / "certificate.nc", engine="h5netcdf")


TAMPERING = {
    "one weight x100": (lambda f: _edit_weights(f, _one_weight_times_100), "model.safetensors changed"),
    "last bias +0.05": (lambda f: _edit_weights(f, _bias_plus(0.05)), "model.safetensors changed"),
    "last bias +1": (lambda f: _edit_weights(f, _bias_plus(1.0)), "model.safetensors changed"),
    "one ulp": (lambda f: _edit_weights(f, _one_ulp), "model.safetensors changed"),
    "a NaN weight": (lambda f: _edit_weights(f, _nan_weight), "model.safetensors changed"),
    "input budget x3": (_budget_times_3, "model.json changed"),
    "per-cell bounds x0.9": (_cells_times_09, "certificate.nc changed"),
    "config edited": (lambda f: (f / "config.json").write_text((f / "config.json").read_text().replace(
        '"diffusivity": 0.05', '"diffusivity": 0.06')), "config.json changed"),
}


@pytest.mark.parametrize("change", list(TAMPERING), ids=list(TAMPERING))
def test_every_consumer_refuses_a_changed_run_folder(copy, tmp_path, capsys, change):
    edit, message = TAMPERING[change]
    edit(copy)
    with pytest.raises(ModelFileError, match=message):
        lipsurrogate.load(copy)
    for command in (["verify", str(copy)], ["report", str(copy)], ["certify", str(copy)],
                    ["export", str(copy), "--out", str(tmp_path / "x.onnx")]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_an_edited_global_bound_is_caught_against_the_per_cell_bounds(copy, capsys):
    doc = json.loads((copy / "certificate.json").read_text())
    doc["bound"] = 0.01
    (copy / "certificate.json").write_text(json.dumps(doc))
    assert main(["verify", str(copy)]) == 2
    assert "states the bound 0.01, but the per-cell bounds" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match="does not hold together"):
        lipsurrogate.load(copy)


def test_a_certificate_that_does_not_hold_fails_verify_and_its_report_says_so(copy, capsys):
    cert = Certificate.load(copy)
    shrunk = dataclasses.replace(cert.cells, per_cell=cert.cells.per_cell * 0.05)
    document = {**cert.document, "bound": float(shrunk.per_cell.max())}
    Certificate(shrunk, cert.vertex_errors, document).save(copy)  # bound to the files, but wrong
    assert main(["verify", str(copy)]) == 1
    assert "verification FAILED" in capsys.readouterr().err
    ver = json.loads((copy / "verification.json").read_text())
    assert ver["violations"] > 0 and ver["passed"] is False
    assert main(["report", str(copy)]) == 0
    html = (copy / "report.html").read_text()
    top = html[: html.index("What the certificate says")]
    assert 'class="banner fail"' in top and "NOT certified" in top and "Certified:" not in html
    assert "certified heat2d" not in html.lower()


def test_the_report_states_what_it_vouches_for(run_dir):
    html = (run_dir / "report.html").read_text()
    top = html[: html.index("Result")]
    cert = json.loads((run_dir / "certificate.json").read_text())
    assert 'class="banner ok"' in top and "Certified:" in top
    for text in [cert["level"], *cert["assumptions"], cert["files"]["model.safetensors"], "max|u|",
                 "lipsurrogate " + cert["library_version"], "torch", "k = (", "random points in the box"]:
        assert text in top, text
    assert "{'dense'" not in html  # sampling settings in words, not a raw dict


def test_verification_counts_non_finite_errors_as_failures():
    from lipsurrogate.bounds.cells import cell_bounds

    edges = [np.linspace(0, 1, 5)] * 2
    cert = cell_bounds(np.zeros((5, 5)), edges, np.array([1.0, 1.0]))
    result = verify_certificate(cert, lambda p: np.where(p[:, 0] > 0.5, np.nan, 0.0), density=2, dense_cells=16,
                                random_points=100, adversarial_starts=0)
    assert result.non_finite > 0 and not result.passed and result.max_error_observed == np.inf


def test_nan_weights_cannot_be_certified_and_predict_refuses_them(run_dir):
    model = lipsurrogate.nn.load_model(run_dir / "model")
    surrogate = lipsurrogate.load(run_dir)
    with torch.no_grad():
        surrogate.model.net.linears[-1].bias.fill_(float("nan"))
    with pytest.raises(CertificationError, match="not finite"):
        surrogate.predict(np.array([[1.0, 1.0, 0.5]]))
    with torch.no_grad():
        to_break = lipsurrogate.nn.to_plain(model)
        to_break.net.linears[-1].bias.fill_(float("nan"))
    with pytest.raises(CertificationError, match="not finite"):
        lipsurrogate.certify(to_break, lipsurrogate.HeatSolution(*lipsurrogate.tasks.heat2d.exact_solution_of(
            json.loads((run_dir / "config.json").read_text()))), [[0, 6.28], [0, 6.28], [0, 1]], cells=4)


@pytest.mark.parametrize("args, message", [
    (["fit", "heat2d", "--grid", "1"], "'grid' (--grid) must be an integer >= 8"),
    (["fit", "heat2d", "--lr", "-1"], "'lr' (--lr) must be a finite number > 0"),
    (["fit", "heat2d", "--local-block", "-1"], "'local_block' (--local-block) must be an integer >= 0 or 3 integers >= 1"),
    (["fit", "heat2d", "--local-block", "1,0,4"], "'local_block' (--local-block) must be an integer >= 0 or 3 integers"),
    (["fit", "heat2d", "--local-block", "1,4"], "'local_block' (--local-block) must be an integer >= 0 or 3 integers"),
    (["fit", "heat2d", "--refine-budget", "-5"], "'refine_budget' (--refine-budget) must be an integer >= 0"),
    (["fit", "heat2d", "--cert-cells", "4,4"], "needs 3 cell counts"),
    (["fit", "heat2d", "--cert-cells", "1,1,1"], "must hold integers >= 2"),
    (["fit", "burgers1d", "--steps", "0"], "'steps' (--steps) must be an integer >= 1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, args, message):
    start = time.perf_counter()
    assert main([*args, "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not list(tmp_path.iterdir())
    assert time.perf_counter() - start < 20  # no data generation or training happened (they take longer)


@pytest.mark.parametrize("density", ["0", "-3"])
def test_verify_refuses_a_bad_density(run_dir, capsys, density):
    assert main(["verify", str(run_dir), "--density", density]) == 2
    assert "'density' of verify (--density) must be an integer >= 1" in capsys.readouterr().err


def test_data_sample_must_be_an_index(capsys):
    with pytest.raises(SystemExit) as err:
        main(["data", "pdebench", "x.h5", "--sample", "abc", "--out", "x.nc"])
    assert err.value.code == 2 and "expected a sample index" in capsys.readouterr().err


def test_an_existing_run_is_kept_unless_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = (out / "certificate.json").read_text()
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--out", str(out)]) == 2
    assert "Pass --overwrite" in capsys.readouterr().err and (out / "certificate.json").read_text() == before
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--overwrite", "--out", str(out)]) == 0
    assert not (out / "certificate.json").exists() and (out / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock, partial or replaced folder left


def test_an_unwritable_place_is_a_one_line_error(capsys):
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--out", "/proc/lipsurrogate/run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lipsurrogate: error:") and len(err.strip().splitlines()) == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_into_the_same_folder_fails_at_once(tmp_path, capsys):
    (tmp_path / ".run.lock").write_text(f"{os.getpid()}@{socket.gethostname()}")  # a live run holds it
    start = time.perf_counter()
    assert main(["fit", "heat2d", "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert "Another run" in capsys.readouterr().err and time.perf_counter() - start < 10
    assert not (tmp_path / "run").exists()


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next_run(tmp_path):
    owner = f"{_dead_pid()}@{socket.gethostname()}"
    (tmp_path / ".run.lock").write_text(owner)
    partial = tmp_path / f".run.partial@{owner}@abc123"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    alive = tmp_path / f".run.partial@{os.getpid()}@{socket.gethostname()}@live"  # a live run's folder stays
    alive.mkdir()
    assert main(["fit", "toy-abs", "--quick", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "run"]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_ends_a_fit_with_one_line_and_removes_the_partial_folder(tmp_path, sig, code, word):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lipsurrogate.cli", "fit", "heat2d", "--no-progress",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not list(tmp_path.glob(".run.partial@*")) and time.time() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".run.partial@*")), "the run never started"
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert f"interrupted by {word}" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
