"""The hepmass task: per-mass metrics by hand, certified mass slopes, run folder, CLI with a real-format file."""

import json

import numpy as np
import pytest
import torch

from lipsurrogate.bounds.conditioned import conditioned_constants
from lipsurrogate.cli import main
from lipsurrogate._threads import torch_threads
from lipsurrogate.data.hepmass import COLUMNS, HepmassData, synthetic_hepmass, synthetic_log_likelihood_ratio
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
    assert hepmass.average_metrics(out, [500.0, 1000.0])["auroc"] == pytest.approx((5 / 8 + 3 / 4) / 2)


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

    # the interpolation guarantee: every held-out mass between its nearest trained masses, 0 events outside
    g = row["interpolation_guarantee"]
    assert set(g) == {"interpolation", "interpolation-1000"} and set(g["interpolation"]) == {"750.0", "1000.0", "1250.0"}
    assert {(v["below"], v["above"]) for v in g["interpolation"].values()} == {(500.0, 1500.0)}
    assert (g["interpolation-1000"]["1000.0"]["below"], g["interpolation-1000"]["1000.0"]["above"]) == (750.0, 1250.0)
    for v in (v for per_mass in g.values() for v in per_mass.values()):
        assert v["seeds"] == 2 and v["violations"] == 0 and v["segment_violations"] == 0
        assert v["measured_change_below_max"] <= v["certified_half_width_below"] * (1 + 1e-9)
        assert v["measured_change_above_max"] <= v["certified_half_width_above"] * (1 + 1e-9)
        assert v["certified_width_max"] <= 2 * min(v["certified_half_width_below"], v["certified_half_width_above"]) * (1 + 1e-9)
        assert v["segment_width_max"] <= v["certified_width_max"] * (1 + 1e-9)  # per-event slopes are tighter
        assert -1e-6 <= v["position_p05"] <= v["position_median"] <= v["position_p95"] <= 1 + 1e-6
    assert "Interpolation guarantee" in html and "interpolation guarantee" in summary["text"]
    assert any("certified interpolation interval" in f["claim"] and f["verdict"] == "confirmed" for f in doc["findings"])

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


# ----------------------------------------------------------------------------------------------
# issue 19: how the mass enters, the background masses, the generator's likelihood ratio
# ----------------------------------------------------------------------------------------------


def _small_task(**options):
    cfg = hepmass.HepmassConfig.from_options(False, 0, {"n_train": 40_000, "n_test": 20_000, **options})
    train, test, _ = hepmass.task_data(cfg)
    return cfg, train, test, hepmass.ModelInputs(train)


def test_mass_encoding_follows_the_reconstructed_mass():
    cfg, train, _, inputs = _small_task()
    data = hepmass.training_set(train, "interpolation", cfg.held_out, "uniform", np.random.default_rng(0))
    enc = hepmass.mass_encoding("feature", data, inputs, (500.0, 1500.0))
    assert enc.kind == "feature" and enc.feature == 26  # m_WWbb moves most with the mass
    # c is the standardised m_WWbb of the signal: at the two training masses, and (not fitted) at 1000 GeV
    z = inputs(train, with_mass=False).numpy()[:, 26]
    for m in (500.0, 1000.0, 1500.0):
        peak = z[(train.label == 1) & (train.mass == m)].mean()
        assert enc(m) == pytest.approx(peak, abs=0.05)
    ranged = hepmass.mass_encoding("range", data, inputs, (500.0, 1500.0))
    assert ranged.cond_range == [500.0, 1500.0] and ranged(1000.0) == 0.0
    one_mass = data.subset((data.label == 0) | (data.mass == 500.0))
    assert hepmass.mass_encoding("feature", one_mass, inputs, (500.0, 1500.0)).kind == "range"  # nothing to fit
    with pytest.raises(ConfigurationError, match="'mass_encoding' must be one of"):
        hepmass.HepmassConfig.from_options(True, 0, {"mass_encoding": "log"})


def test_feature_encoding_and_uniform_background_make_interpolation_work():
    """affine/all, 400 steps, held-out 750/1000/1250 GeV: the measured effect of issue 19 (one seed)."""
    cfg, train, test, inputs = _small_task()
    auroc = {}
    for kind, background in (("range", "identical"), ("feature", "uniform")):
        data = hepmass.training_set(train, "interpolation", cfg.held_out, background, np.random.default_rng(4))
        enc = hepmass.mass_encoding(kind, data, inputs, (500.0, 1500.0))
        net = hepmass.conditioned_model(cfg, "affine/all", enc, seed=0)
        with torch_threads(1):
            hepmass.train_classifier(net, inputs(data), data, cfg, 0, "full")
        per_mass = hepmass.evaluate_per_mass(lambda ev, m: hepmass.predict_logits(net, inputs(ev, m)), test, cfg.held_out)
        auroc[kind] = hepmass.average_metrics(per_mass, cfg.held_out)["auroc"]
    assert auroc["range"] < 0.80 and auroc["feature"] > 0.89, auroc


def test_evaluate_per_mass_takes_precomputed_scores():
    data = synthetic_hepmass(400, seed=1)
    scores = {m: data.features[:, 26] * (1 + m / 1000) for m in (500.0, 1500.0)}
    direct = hepmass.evaluate_per_mass(lambda ev, m: ev.features[:, 26] * (1 + m / 1000), data, [500.0, 1500.0])
    assert hepmass.evaluate_per_mass(scores, data, [500.0, 1500.0]) == direct


def test_synthetic_likelihood_ratio_reweights_background_into_signal():
    # for the true ratio w = p_s / p_b: E_b[w] = 1 and E_b[h w] = E_s[h] for any h (the signal's support
    # lies inside the background's); checked within 4 standard errors on generated events at 500 GeV
    events = synthetic_hepmass(12_000, seed=7, masses=[500.0])
    w = np.exp(synthetic_log_likelihood_ratio(events, [500.0], step=0.08)[500.0])
    bkg, sig = events.label == 0, events.label == 1
    x = events.features.astype(np.float64)
    assert abs(w[bkg].mean() - 1) < 4 * w[bkg].std() / np.sqrt(bkg.sum()), w[bkg].mean()
    for h in (x[:, 0] / 500, x[:, 3] / 500, x[:, 26] / 500, x[:, 8], x[:, 22] / 100):  # lepton pT, MET, m_WWbb, b-tag, m_jj
        est = h[bkg] * w[bkg]
        se = np.sqrt(est.var() / bkg.sum() + h[sig].var() / sig.sum())
        assert abs(est.mean() - h[sig].mean()) < 4 * se


def test_synthetic_likelihood_ratio_beats_a_single_feature():
    # it ranks signal above background better than m_WWbb alone, at every mass
    test = synthetic_hepmass(3000, seed=8)
    r = synthetic_log_likelihood_ratio(test, [500.0, 1000.0], step=0.08)
    oracle = hepmass.evaluate_per_mass(r, test, [500.0, 1000.0])
    window = hepmass.evaluate_per_mass(lambda ev, m: -np.abs(ev.features[:, 26] - m), test, [500.0, 1000.0])
    for m in (500.0, 1000.0):
        assert oracle[m]["auroc"] > window[m]["auroc"] + 0.02
    with pytest.raises(ConfigurationError, match="'backgrounds' must be among"):
        synthetic_log_likelihood_ratio(test, [500.0], backgrounds={"qcd": 1.0})


def test_paper_baseline_network():
    from torch import nn

    from lipsurrogate.nn import unconstrained_mlp

    net = unconstrained_mlp(28, 1, (300, 150, 100, 50), dropout=0.25, init="he_uniform", seed=0)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [300, 150, 100, 50, 1]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.25 for m in net) == 4
    for m in linears:
        assert float(m.bias.detach().abs().max()) == 0.0
        bound = (6 / m.in_features) ** 0.5
        assert float(m.weight.detach().abs().max()) <= bound and float(m.weight.detach().abs().max()) > 0.9 * bound
    x = torch.randn(64, 28)
    net.eval()
    assert torch.equal(net(x), net(x))  # dropout off in evaluation mode
    plain = unconstrained_mlp(3, 1, (8,), seed=0)  # the default is unchanged: torch init, no dropout
    assert len(plain) == 3 and float(plain[0].bias.detach().abs().max()) > 0
    with pytest.raises(ConfigurationError, match="'init' must be one of"):
        unconstrained_mlp(3, 1, (8,), init="glorot")


def test_certificate_box_covers_every_event_and_the_mass_range():
    a, b = synthetic_hepmass(500, seed=1), synthetic_hepmass(500, seed=2)
    inputs = hepmass.ModelInputs(a)
    box = np.array(hepmass.certificate_box(inputs, [a, b], (500.0, 1500.0)))
    assert box.shape == (28, 2) and box[-1].tolist() == [500.0, 1500.0]
    z = np.concatenate([inputs(e, with_mass=False).numpy() for e in (a, b)])
    assert np.all(z >= box[:-1, 0]) and np.all(z <= box[:-1, 1])
    assert np.all(z.min(0) == box[:-1, 0]) and np.all(z.max(0) == box[:-1, 1])  # the smallest such box


def test_neighbours_are_the_nearest_trained_masses():
    assert hepmass.neighbours(1000.0, [500.0, 1500.0]) == (500.0, 1500.0)
    assert hepmass.neighbours(1000.0, [500.0, 750.0, 1250.0, 1500.0]) == (750.0, 1250.0)
    assert hepmass.neighbours(1500.0, [500.0, 1000.0]) is None  # extrapolation: no guarantee from two sides


def test_interpolation_guarantee_is_in_gev_and_matches_the_network():
    """A random conditioned network under the 'feature' encoding (about 200 GeV per unit of c): the
    guarantee uses the slope per GeV with distances in GeV, and its measured numbers are the network's."""
    cfg, train, test, inputs = _small_task(n_train=6000, n_test=3000)
    data = hepmass.training_set(train, "interpolation", cfg.held_out, "uniform", np.random.default_rng(4))
    enc = hepmass.mass_encoding("feature", data, inputs, (500.0, 1500.0))
    assert enc.kind == "feature" and enc.gev_per_unit > 20  # c is far from GeV
    net = hepmass.conditioned_model(cfg, "affine/all", enc, seed=3)
    with torch.no_grad():  # raw weights large enough that the constraints are active: a real mass slope
        for name, p in net.named_parameters():
            if name.endswith("original"):
                p.mul_(3.0)
    box = hepmass.certificate_box(inputs, [train, test], (500.0, 1500.0))
    slope = conditioned_constants(net, box, splits=1)[-1]
    g = hepmass.interpolation_guarantee(net, test, inputs, [750.0, 1500.0], [500.0, 1000.0, 1500.0], slope,
                                        np.random.default_rng(0), segment_events=500)
    assert set(g) == {750.0}  # 1500 GeV is a trained mass's neighbour of nothing: left out
    v = g[750.0]
    assert (v["below"], v["above"]) == (500.0, 1000.0) and v["n_events"] == len(test) and v["segment_n_events"] == 500
    assert v["certified_half_width_below"] == pytest.approx(slope * 250.0, rel=1e-12)
    f = {m: hepmass.predict_logits(net, inputs(test, m)).astype(np.float64) for m in (500.0, 750.0, 1000.0)}
    assert v["measured_change_below_max"] == pytest.approx(np.abs(f[750.0] - f[500.0]).max(), rel=1e-4, abs=1e-5)
    assert v["violations"] == 0 and v["segment_violations"] == 0
    # not vacuous: the slope per GeV times distances in units of c would be this much narrower, and violated
    assert v["measured_change_max"] > v["certified_half_width_below"] / enc.gev_per_unit
