"""The toy problems reproduce the paper's qualitative findings (quick settings, fixed seeds)."""

import json

import numpy as np
import pytest

from lipsurrogate.nn import load_model
from lipsurrogate.tasks import toys


def test_outlier_is_ignored_by_lipschitz_fit_and_chased_by_unconstrained(tmp_path):
    r = toys.run_outlier(tmp_path, seed=0, quick=True, progress=False)["results"]
    assert r["lipschitz"]["deviation_at_outlier"] < 0.1
    assert r["unconstrained"]["deviation_at_outlier"] > 0.5
    assert r["lipschitz"]["certified_lipschitz"] <= 1.0
    assert (tmp_path / "figures" / "outlier.png").stat().st_size > 1000


def test_monotone_fit_is_monotone_everywhere_including_gap_and_tail(tmp_path):
    r = toys.run_monotone(tmp_path, seed=0, quick=True, progress=False)["results"]
    assert r["monotonic"]["decreasing_steps_on_grid"] == 0
    assert r["monotonic"]["certified_slope_interval"][0] >= 0
    assert r["monotonic"]["rmse_vs_log_data"] < 0.2
    # the saved model is still monotone after a round trip, far beyond the data
    model = load_model(tmp_path / "models" / "monotone")
    import torch

    x = torch.linspace(-100, 1000, 20001).unsqueeze(1)
    with torch.no_grad():
        y = model.double()(x.double())[:, 0].numpy()
    assert np.all(np.diff(y) >= -1e-9 * (1 + np.abs(y[1:])))


def test_groupsort_fits_abs_where_relu_cannot(tmp_path):
    r = toys.run_abs(tmp_path, seed=0, quick=True, progress=False)["results"]
    assert r["groupsort"]["max_error"] < 0.05
    # a lambda = 1 ReLU network has left slope + right slope <= 1: max error >= 0.25 - fit noise
    assert r["relu"]["max_error"] > 0.2
    assert r["groupsort"]["certified_lipschitz"] <= 1.0 and r["relu"]["certified_lipschitz"] <= 1.0


def test_circle_regression(tmp_path):
    r = toys.run_circle(tmp_path, seed=0, quick=True, progress=False)["results"]
    assert r["certified_lipschitz_l1"] <= 2.0
    assert r["test_rmse"] < 0.15  # quick run; the full run reaches about 0.03


def test_moons_objectives(tmp_path):
    r = toys.run_moons(tmp_path, seed=0, quick=True, progress=False)["results"]
    assert set(r) == set(toys.MOONS_OBJECTIVES)
    assert r["dynamic hinge"]["val_accuracy"] >= 0.95
    # a small fixed margin buys accuracy with a small certified radius; margin 1 the reverse
    assert r["hinge m=1"]["mean_certified_l1_radius"] > r["hinge m=0.1"]["mean_certified_l1_radius"]
    for v in r.values():
        assert v["certified_lipschitz_l1"] <= 1.0


@pytest.mark.slow
def test_fit_toys_cli_writes_a_complete_run_folder(tmp_path):
    from lipsurrogate.cli import main

    out = tmp_path / "run"
    assert main(["fit", "toys", "--quick", "--no-progress", "--out", str(out)]) == 0
    for name in ["config.json", "environment.json", "summary.json", "report.html"]:
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"outlier", "monotone", "circle", "abs", "moons"}
    assert "data:image/png;base64" in (out / "report.html").read_text()
