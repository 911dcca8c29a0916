"""The hepmass task: per-mass metrics by hand, certified mass slopes, run folder, CLI with a real-format file."""

import json

import numpy as np
import pytest
import torch

from lipsurrogate.bounds.conditioned import conditioned_constants
from lipsurrogate.cli import main
from lipsurrogate.data.hepmass import COLUMNS, HepmassData, synthetic_hepmass
from lipsurrogate.exceptions import ConfigurationError
from lipsurrogate.nn import load_model
from lipsurrogate.tasks import TASKS, hepmass

TINY = dict(n_train=3000, n_test=3000, seeds=2, steps=25, hidden=[8, 8], batch_size=64,
            combinations=["affine/all", "concat/begin"], ablation=False)


def test_per_mass_metrics_match_a_hand_computation():
    # background scores 0.1 0.4 0.35 0.8; signal at 500: 0.9 0.3; signal at 1000: 0.6
    f0 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.3, 0.6], dtype=np.float32)
    data = HepmassData(np.c_[f0, np.zeros((7, 26), np.float32)], np.array([0, 0, 0, 0, 1, 1, 1], np.int8),
                       np.array([500, 1000, 500, 1000, 500, 500, 1000.0]), np.array([0, 0, 0, 0, -1, -1, -1], np.int8))
    seen = []

    def score(events, m):
        seen.append((m, len(events), int(events.label.sum())))
        return events.features[:, 0]

    out = hepmass.evaluate_per_mass(score, data, [500.0, 1000.0])
    assert seen == [(500.0, 6, 2), (1000.0, 5, 1)]  # all background at every mass hypothesis
    # 500: signal beats background in 4 + 1 of 8 pairs; AP = 0.5 * 1 + 0.5 * 2/5; best cut keeps 1 s, 0 b
    assert out[500.0]["auroc"] == pytest.approx(5 / 8)
    assert out[500.0]["aupr"] == pytest.approx(0.7)
    assert out[500.0]["significance_ratio"] == pytest.approx(1 / np.sqrt(2))
    # 1000: 3 of 4 pairs; AP = 1/2; best cut keeps 1 s and 1 b: (1/sqrt 2) / sqrt 1
    assert out[1000.0]["auroc"] == pytest.approx(3 / 4)
    assert out[1000.0]["aupr"] == pytest.approx(0.5)
    assert out[1000.0]["significance_ratio"] == pytest.approx(1 / np.sqrt(2))
    assert hepmass._average(out, [500.0, 1000.0])["auroc"] == pytest.approx((5 / 8 + 3 / 4) / 2)


def test_run_writes_table_report_and_certified_model(tmp_path):
    summary = hepmass.run(tmp_path, seed=0, quick=True, progress=False, **TINY)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert set(doc["table"]) == {"affine/all", "concat/begin", "per mass", "no mass"}
    row = doc["table"]["affine/all"]
    assert len(row["classification"]["auroc"]["values"]) == 2 and row["classification"]["auroc"]["std"] >= 0
    assert set(row["per_mass"]["interpolation"]) == {"500.0", "750.0", "1000.0", "1250.0", "1500.0"}
    assert row["violations"] == 0 and row["sampled_mass_slope_max"] <= row["certified_mass_slope"] * (1 + 1e-9)
    assert {f["verdict"] for f in doc["findings"]} <= {"confirmed", "contradicted", "not tested"}
    for name in ("roc", "metric_vs_mass", "combinations"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert "Table 1" in html and "confirms or contradicts" in html and "oracle" in html
    assert "affine/all" in summary["text"] and "findings" in summary["text"]

    # the saved conditioned network respects its certified constants on random pairs of the box
    model = load_model(tmp_path / "model")
    pre = json.loads((tmp_path / "preprocessing.json").read_text())
    assert len(pre["mean"]) == 27
    rng = np.random.default_rng(1)
    box = np.array([[-3.0, 3.0]] * 27 + [[500.0, 1500.0]])
    L = conditioned_constants(model, box, splits=1)
    a = box[:, 0] + rng.uniform(size=(3000, 28)) * (box[:, 1] - box[:, 0])
    b = box[:, 0] + rng.uniform(size=(3000, 28)) * (box[:, 1] - box[:, 0])
    b[:1500, :27] = a[:1500, :27]  # half the pairs differ only in the mass
    plain = model.plain_float64()
    with torch.no_grad():
        fa, fb = plain(torch.from_numpy(a))[:, 0].numpy(), plain(torch.from_numpy(b))[:, 0].numpy()
    assert np.all(np.abs(fa - fb) <= np.abs(a - b) @ L + 1e-10 * (1 + np.abs(fa) + np.abs(fb)))
    assert L[-1] > 0  # the mass is used


def test_options_are_checked(tmp_path):
    with pytest.raises(ConfigurationError, match="Unknown hepmass option"):
        hepmass.run(tmp_path / "a", quick=True, progress=False, grid=3)
    with pytest.raises(ConfigurationError, match="'balance' must be one of"):
        hepmass.run(tmp_path / "b", quick=True, progress=False, balance="mass")
    with pytest.raises(ConfigurationError, match="'combinations' must be among"):
        hepmass.run(tmp_path / "c", quick=True, progress=False, combinations=["film/all"])
    with pytest.raises(ConfigurationError, match="both a FILE"):
        hepmass.run(tmp_path / "d", quick=True, progress=False, file="a.csv", data="b.csv")
    with pytest.raises(ConfigurationError, match=r"--hidden\) must be a list.*Got '32,32'"):
        hepmass.run(tmp_path / "e", quick=True, progress=False, hidden="32,32")  # the CLI's form, from Python
    assert "hepmass" in TASKS


def _write_hepmass_csv(data: HepmassData, path):
    """Events written in exactly the HEPMASS format (500 GeV as 499.99997)."""
    lines = [",".join(COLUMNS)]
    for f, y, m in zip(data.features, data.label, data.mass):
        mass = "499.99997" if m == 500 else f"{m:g}"
        lines.append(f"{int(y)}," + ",".join(f"{v:.6f}" for v in f) + f",{mass}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_fit_hepmass_with_a_data_file(tmp_path, capsys):
    events = synthetic_hepmass(2400, seed=4)  # balanced masses, so every half has signal at every mass
    csv = _write_hepmass_csv(events, tmp_path / "all_test.csv")
    out = tmp_path / "run"
    code = main(["fit", "hepmass", "--data", str(csv), "--quick", "--steps", "10", "--hidden", "8,8",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert "HEPMASS file(s)" in text and "affine/all" in text
    doc = json.loads((out / "metrics.json").read_text())
    assert sum(doc["counts"]["train"]["signal"].values()) + sum(doc["counts"]["test"]["signal"].values()) == int(
        events.label.sum())
    assert json.loads((out / "config.json").read_text())["data"] == str(csv)
    # a malformed file stops the run with the line and the column, and leaves no run folder
    bad = tmp_path / "bad.csv"
    bad.write_text(csv.read_text().replace(",499.99997\n", ",499.5\n", 1))
    assert main(["fit", "hepmass", "--data", str(bad), "--quick", "--out", str(tmp_path / "r2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "column 'mass'" in err and ", line " in err
    assert not (tmp_path / "r2").exists()


@pytest.mark.slow
def test_cli_quick_run(tmp_path, capsys):
    assert main(["fit", "hepmass", "--quick", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    assert "smoke-sized" in capsys.readouterr().out
    doc = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert len([k for k in doc["table"] if "/" in k]) == 12 and len(doc["ablation"]) == 20
