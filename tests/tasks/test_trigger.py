"""``lipsurrogate fit trigger``: the smoke-sized run, its guarantees, the report and the BDT fallback."""

import json

import numpy as np
import pytest

from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.tasks import TASKS, trigger


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from lipsurrogate.cli import main

    pytest.importorskip("lightgbm")  # guard only: the test extra installs LightGBM
    out = tmp_path_factory.mktemp("trigger") / "run"
    assert main(["fit", "trigger", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_registered():
    assert TASKS["trigger"][0] == "lipsurrogate.tasks.trigger:run"


def test_quick_run_writes_a_complete_run_folder(quick_run):
    for name in ["config.json", "environment.json", "summary.json", "metrics.json", "efficiency.json",
                 "report.html", "model.safetensors", "model.json", "export/trigger.npz", "export/trigger.json",
                 "bdt.txt", "monotone-bdt.txt", "figures/efficiency_vs_lifetime.png", "figures/response_plane.png",
                 "figures/roc.png", "figures/inputs.png"]:
        assert (quick_run / name).is_file(), name
    html = (quick_run / "report.html").read_text()
    assert html.count("data:image/png;base64") == 4 and "Working point" in html and "certified" in html.lower()


def test_ours_never_violates_monotonicity_others_are_measured(quick_run):
    models = json.loads((quick_run / "metrics.json").read_text())["models"]
    assert set(models) == {"monotonic Lipschitz", "unconstrained NN", "BDT", "monotone BDT"}
    assert models["monotonic Lipschitz"]["monotonicity"]["violations"] == 0
    assert models["monotonic Lipschitz"]["certified_monotone"] is True
    assert models["monotone BDT"]["monotonicity"]["violations"] == 0
    assert models["unconstrained NN"]["monotonicity"]["violations"] > 0  # measured, not by construction
    for r in models.values():
        assert 0.9 < r["roc_auc"] <= 1.0
        assert 0 < r["signal_efficiency"] <= 1
        # threshold chosen on the validation background: the test background rate is near the target
        assert abs(r["background_rate_test"] - 660 / 30000) < 0.006


def test_certificate_and_export(quick_run):
    metrics = json.loads((quick_run / "metrics.json").read_text())
    cert = metrics["certificate"]
    lam = metrics["config"]["lipschitz"]
    for lo, hi, c in zip(cert["partial_lower"], cert["partial_upper"], cert["constraints"]):
        assert lo <= hi
        if c == 1:
            assert lo >= 0
    assert metrics["export"]["decisions_differing"] == 0
    assert metrics["export"]["max_abs_difference_logit"] < 1e-4 * max(1.0, metrics["export"]["max_abs_logit"])
    assert metrics["throughput"]["numpy export"] > 0 and "ratio numpy export / BDT" in metrics["throughput"]
    assert lam == 2.0


def test_saved_model_is_monotone_and_lipschitz_after_reload(quick_run, rng):
    import torch

    from lipsurrogate.bounds import lipschitz_bounds
    from lipsurrogate.nn import load_model

    model = load_model(quick_run / "model").double()
    bounds = lipschitz_bounds(model)
    assert np.all(bounds.partial_lower[0, :3] >= 0)
    std = 1 / model.input_scale.double().numpy()
    assert np.all(bounds.per_input[0, :3] <= 2 * 2.0 / std[:3] * (1 + 1e-9))
    x = rng.uniform([0, -10, -10, 0], [100, 30, 30, 50], size=(5000, 4))
    for j in range(3):
        y = x.copy()
        y[:, j] += rng.uniform(0, 50, len(x))
        with torch.no_grad():
            assert torch.all(model(torch.from_numpy(y)) >= model(torch.from_numpy(x)) - 1e-9)


def test_text_summary(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    assert "text" not in summary and summary["models"]["monotonic Lipschitz"]["monotonicity"]["violations"] == 0


def test_monotonicity_check_detects_decreasing_functions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4))
    up = trigger.monotonicity_violations(lambda p: p[:, 0] + p[:, 1] + p[:, 2], x, 2000, rng)
    down = trigger.monotonicity_violations(lambda p: -p[:, 2], x, 2000, rng)
    assert up["violations"] == 0
    assert down["violations"] == down["per_feature"]["fdchi2"] > 0 and down["per_feature"]["sumpt"] == 0


def test_without_lightgbm_the_bdts_are_skipped_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(trigger, "_have_lightgbm", lambda: False)
    summary = trigger.run(tmp_path, seed=1, quick=True, progress=False, n_train=3000, n_val=3000, n_test=3000,
                          n_lifetime=2000, steps=30, pairs=2000, throughput_batch=2000)
    assert set(summary["models"]) == {"monotonic Lipschitz", "unconstrained NN"}
    assert trigger.LIGHTGBM_MISSING in summary["text"] and "lipsurrogate[trigger]" in summary["text"]
    assert summary["models"]["monotonic Lipschitz"]["monotonicity"]["violations"] == 0


def test_unknown_and_bad_options_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="Unknown trigger option"):
        trigger.run(tmp_path, quick=True, progress=False, grid=4)
    with pytest.raises(ConfigurationError, match="background_rate"):
        trigger.run(tmp_path, quick=True, progress=False, background_rate=2.0)
