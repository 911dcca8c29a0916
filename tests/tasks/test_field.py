"""End-to-end field tasks: `fit pdebench FILE` and `fit advection1d` (level-1 certificate, level-3 estimate)."""

import json

import h5py
import numpy as np
import pytest

import lipsurrogate
from lipsurrogate.bounds.interpolant import MultilinearInterpolant
from lipsurrogate.cli import main
from lipsurrogate.data.generators import generate_expression
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.pipeline import fit


def _smooth_pdebench(path, n=2, nt=9, nx=24):
    """A 1-D PDEBench 'tensor' file holding travelling waves u = sin(2 pi (x - t)) + sample offsets."""
    x = np.linspace(1 / (2 * nx), 1 - 1 / (2 * nx), nx)
    t = np.linspace(0, 0.5, nt + 1)  # PDEBench stores nt + 1 times for nt frames
    with h5py.File(path, "w") as f:
        f["tensor"] = np.stack([np.sin(2 * np.pi * (x[None] - t[:nt, None])) + 0.1 * s for s in range(n)]).astype(np.float32)
        f["x-coordinate"] = x.astype(np.float32)
        f["t-coordinate"] = t.astype(np.float32)
    return path


@pytest.fixture(scope="module")
def pdebench_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("field")
    file = _smooth_pdebench(root / "1D_Advection_Sols_beta0.1.hdf5")
    out = root / "run"
    assert main(["fit", "pdebench", str(file), "--sample", "1", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_pdebench_run_is_certified_at_level_1(pdebench_run):
    cert = json.loads((pdebench_run / "certificate.json").read_text())
    ver = json.loads((pdebench_run / "verification.json").read_text())
    assert cert["level"].startswith("level 1")
    assert "interpolant" in cert["bound_kind"]
    ladder = cert["ladder"]
    assert ladder["refined"] <= ladder["exact_local"] <= ladder["pair_local"]
    assert ladder["exact_global"] <= ladder["pair_global"] <= ladder["naive_global"]
    assert ver["violations"] == 0 and ver["max_error_observed"] <= cert["bound"]
    assert ver["level3"]["kind"].startswith("estimate")
    assert (pdebench_run / "report.html").stat().st_size > 10_000


def test_bounds_hold_against_the_interpolant_at_fresh_points(pdebench_run, rng):
    """Independent of the verification module: the library API, the stored data, fresh random points."""
    from lipsurrogate.data.dataset import load_dataset
    from lipsurrogate.tasks.field import field_arrays

    ds = load_dataset(pdebench_run / "data.nc")
    assert int(ds.attrs["sample_index"]) == 1
    _, inputs, axes, values = field_arrays(ds, None)
    interp = MultilinearInterpolant(axes, values)
    surrogate = lipsurrogate.load(pdebench_run)
    pts = interp.lower + rng.uniform(size=(20_000, 2)) * (interp.upper - interp.lower)
    f, bound = surrogate.predict(pts, with_bound=True)
    assert np.all(np.abs(f.reshape(-1) - interp(pts)) <= bound)


def test_cli_recomputes_a_field_run(pdebench_run, capsys):
    assert main(["certify", str(pdebench_run)]) == 0
    assert main(["verify", str(pdebench_run), "--seed", "3"]) == 0
    assert "violations 0" in capsys.readouterr().out
    assert main(["report", str(pdebench_run)]) == 0


def test_advection_reference_is_exact_and_level3_is_checked(tmp_path):
    ds = generate_expression("advection1d", grid=24, frames=6, t_end=0.5, reference=True, progress=False, backend="numpy")
    assert ds.u_reference.shape == (6, 72) and ds.u_reference.attrs["kind"].startswith("exact")
    summary = fit("advection1d", out=tmp_path / "adv", quick=True, progress=False, grid=24, frames=6, t_end=0.5,
                  steps=150, refine_budget=2000, backend="numpy")
    l3 = summary["level3"]
    assert summary["violations"] == 0
    assert l3["solver_error"] == 0.0 and l3["reference_points"] > 0
    assert l3["bound_estimate"] == pytest.approx(summary["bound"] + l3["interpolant_gap"])
    assert l3["max_error_observed"] <= l3["bound_estimate"] and l3["exceedances"] == 0


def test_bad_configurations_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="needs the PDEBench FILE"):
        fit("pdebench", out=tmp_path / "a", quick=True, progress=False)
    with pytest.raises(ConfigurationError, match="Only 'field' and 'pdebench' take a file"):
        fit("burgers1d", out=tmp_path / "b", quick=True, progress=False, file="x.h5")
    with pytest.raises(ConfigurationError, match="Unknown field-task option"):
        fit("burgers1d", out=tmp_path / "c", quick=True, progress=False, diffusivity=1.0)
    with pytest.raises(ConfigurationError, match="single samples only"):
        generate_expression("advection1d", samples=2, reference=True, progress=False)
    assert not (tmp_path / "a").exists()


def test_burgers1d_trains_longer_by_default_unless_told_or_quick():
    from lipsurrogate.tasks.field import SOURCE_STEPS, FieldConfig

    assert FieldConfig.from_options(False, 0, {"source": "burgers1d"}).steps == SOURCE_STEPS["burgers1d"] == 6000
    assert FieldConfig.from_options(False, 0, {"source": "allen-cahn1d"}).steps == FieldConfig().steps == 3000
    assert FieldConfig.from_options(False, 0, {"source": "burgers1d", "steps": 1234}).steps == 1234
    assert FieldConfig.from_options(True, 0, {"source": "burgers1d"}).steps == FieldConfig.quick().steps
