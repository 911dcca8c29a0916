"""`fit heat2d-kappa --quick`: a certificate over (x, y, t, kappa), checked at fresh diffusivities."""

import json

import numpy as np
import pytest

import lipsurrogate
from lipsurrogate.cli import main
from lipsurrogate.data.heat import HeatModes
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.pipeline import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hk") / "run"
    assert main(["fit", "heat2d-kappa", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_certificate_covers_the_diffusivity_range(run_dir):
    cert = json.loads((run_dir / "certificate.json").read_text())
    ver = json.loads((run_dir / "verification.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    assert cert["inputs"] == ["x", "y", "t", "kappa"] and len(cert["grid"]["cells"]) == 4
    assert cert["domain"][3] == [config["kappa_min"], config["kappa_max"]]
    assert ver["violations"] == 0
    assert cert["ladder"]["refined"] <= cert["ladder"]["exact_local"] <= cert["ladder"]["exact_global"]
    assert "t_end max|Laplace u0|" in cert["lipschitz_u_source"]


def test_bound_holds_at_diffusivities_between_the_training_values(run_dir, rng):
    config = json.loads((run_dir / "config.json").read_text())
    modes = HeatModes.from_json(config["initial_condition_modes"])
    surrogate = lipsurrogate.load(run_dir)
    kappas = np.linspace(config["kappa_min"], config["kappa_max"], config["n_kappa"])
    between = (kappas[:-1] + kappas[1:]) / 2
    n = 20_000
    pts = np.column_stack([rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n),
                           rng.uniform(0, config["t_end"], n), rng.choice(between, n)])
    f, bound = surrogate.predict(pts, with_bound=True)
    u = modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3])
    assert np.all(np.abs(f.reshape(-1) - u) <= bound)


def test_training_penalises_undecided_pairs_by_default(run_dir, tmp_path):
    config = json.loads((run_dir / "config.json").read_text())
    history = json.loads((run_dir / "training.json").read_text())
    assert config["stability"] > 0 and config["stability_every"] >= 1
    assert len(history["regularizer_values"]) == len(history["steps"])
    assert any(v > 0 for v in history["regularizer_values"]) and all(v >= 0 for v in history["regularizer_values"])
    fit("heat2d-kappa", out=tmp_path / "off", quick=True, progress=False, stability=0.0, steps=20,
        refine_budget=0, random_points=100, adversarial_starts=0)
    assert json.loads((tmp_path / "off" / "training.json").read_text())["regularizer_values"] == []
    with pytest.raises(ConfigurationError, match=r"'stability' \(--stability\) must be a finite number >= 0"):
        fit("heat2d-kappa", out=tmp_path / "bad", quick=True, progress=False, stability=-1.0)


def test_bad_ranges_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="kappa_min < kappa_max"):
        fit("heat2d-kappa", out=tmp_path / "a", quick=True, progress=False, kappa_min=0.1, kappa_max=0.05)
    with pytest.raises(ConfigurationError, match=r"'n_kappa' \(--n-kappa\) must be an integer >= 2"):
        fit("heat2d-kappa", out=tmp_path / "b", quick=True, progress=False, n_kappa=1)
