"""HEPMASS interpolation (issue 19): why the parametric networks did not interpolate, and what fixes it.

Everything runs on the task's synthetic HEPMASS-IMB-like data with the task's protocols and
metrics (:mod:`lipsurrogate.tasks.hepmass`: the same data, training sets, balanced batches,
per-mass evaluation and certificate): *classification* (signal at every mass trained, AUROC
averaged over the five masses) and *interpolation* (750, 1000 and 1250 GeV held out, only 500
and 1500 GeV trained, AUROC averaged over the three held-out masses). AUROC is exact on the test
events; mean +- sample standard deviation over seeds; final weights, nothing selected on test data.

Models
------
``oracle (likelihood ratio)``
    :func:`lipsurrogate.data.hepmass.synthetic_log_likelihood_ratio`: the generator's own density
    ratio at each mass hypothesis (quadrature), the Bayes-optimal ranking of these test events.
``paper baseline``
    An unconstrained 300-150-100-50 ReLU network with 25% dropout, he_uniform initialisation,
    Adam at 5e-4, batches of 1024, L2 penalties 1e-5 (weights) and 1e-6 (biases) added to the
    binary cross-entropy (Anzalone et al.), the mass concatenated to the standardised features;
    a fixed budget of ``--paper-steps`` steps (this machine: minutes, not "to convergence").
``ConditionedLipschitzMLP``
    The task's networks (32 x 32, lambda 4, 400 steps, ``full`` balance), at the old task defaults
    (``mass_encoding="range"``, ``background_mass="identical"``), at the new ones (``"feature"``,
    ``"uniform"``) and at single changes of one setting: the diagnosis.

Beyond the papers: for each held-out mass, the **certified** range of the response between it
and its trained neighbours, :math:`|f(x, m) - f(x, m')| \\le L_m |m - m'|` with :math:`L_m` the
certified bound on :math:`|\\partial f / \\partial m|` over the data box, against the **measured**
change over the test events.

Usage
-----
::

    python benchmarks/bench_hepmass.py            # writes benchmarks/results/hepmass.md (about 12 min)
    python benchmarks/bench_hepmass.py --quick    # smoke test (about 1 min): prints, writes nothing
    python benchmarks/bench_hepmass.py --out PATH

Runs on one thread (``LIPSURROGATE_THREADS=1``, ``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import os

os.environ.setdefault("LIPSURROGATE_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _markdown import header, write  # noqa: E402
from torch import nn  # noqa: E402

from lipsurrogate import __version__  # noqa: E402
from lipsurrogate.data.hepmass import SYNTHETIC_FEATURES, synthetic_log_likelihood_ratio  # noqa: E402
from lipsurrogate.nn import unconstrained_mlp  # noqa: E402
from lipsurrogate.tasks.hepmass import (HepmassConfig, MassEncoding, ModelInputs, average_metrics,  # noqa: E402
                                        certificate_box, conditioned_model, evaluate_per_mass, mass_certificate,
                                        mass_encoding, predict_logits, task_data, train_classifier, training_set)

DEFAULT_OUT = Path("benchmarks") / "results" / "hepmass.md"
PROTOCOLS = ("classification", "interpolation")
PAPER = {("affine/all", "classification"): 93.05, ("affine/all", "interpolation"): 91.50,
         ("concat/begin", "interpolation"): 89.2}
"""Anzalone et al., HEPMASS-IMB, AUROC in % (shared/references.md)."""


@dataclass
class Variant:
    """One row: a model and the settings that differ from the task's (new) defaults."""

    name: str
    group: str
    model: str = "lipschitz"
    """``"lipschitz"`` (ConditionedLipschitzMLP) or ``"paper"`` (the unconstrained baseline)."""
    combo: str = "affine/all"
    encoding: object = "feature"
    """``"feature"``, ``"range"`` or ``(offset GeV, GeV per unit)`` for a fixed :class:`MassEncoding`."""
    background: str = "uniform"
    balance: str = "full"
    data: str = "default"
    protocols: tuple = PROTOCOLS
    options: dict = field(default_factory=dict)
    """HepmassConfig overrides (steps, lipschitz, cond_strength, hidden)."""


def variants() -> list[Variant]:
    """The rows of the benchmark, grouped as in the report."""
    old = dict(encoding="range", background="identical")
    out = [
        Variant("paper baseline, mass in [-1, 1] (range)", "paper", model="paper", combo="concat/begin", encoding="range"),
        Variant("paper baseline, mass as m_WWbb (feature)", "paper", model="paper", combo="concat/begin"),
    ]
    for combo in ("affine/all", "bias/all", "concat/begin"):
        out.append(Variant(f"{combo}, old defaults (range, identical)", "defaults", combo=combo, **old))
        out.append(Variant(f"{combo}, new defaults (feature, uniform)", "defaults", combo=combo))
    out += [
        Variant("range, uniform background", "background mass", encoding="range"),
        Variant("feature, identical background", "background mass", background="identical"),
        Variant("c = (m - 500)/250", "where c = 0", encoding=(500.0, 250.0), protocols=("interpolation",)),
        Variant("c = (m - 1000)/250", "where c = 0", encoding=(1000.0, 250.0), protocols=("interpolation",)),
        Variant("c = (m - 1500)/250", "where c = 0", encoding=(1500.0, 250.0), protocols=("interpolation",)),
        Variant("range, cond_strength 4", "slope budget", encoding="range", protocols=("interpolation",),
                options={"cond_strength": 4.0}),
        Variant("range, lambda 16", "slope budget", encoding="range", protocols=("interpolation",),
                options={"lipschitz": 16.0}),
        Variant("feature, lambda 16", "slope budget", protocols=("interpolation",), options={"lipschitz": 16.0}),
        Variant("range, 3000 steps", "training length", encoding="range", options={"steps": 3000}),
        Variant("feature, 3000 steps", "training length", options={"steps": 3000}),
        Variant("range, identical, 5x training events", "data", data="200k", protocols=("interpolation",), **old),
        Variant("feature, 5x training events", "data", data="200k", protocols=("interpolation",)),
        Variant("range, identical, no imbalance", "data", data="balanced", **old),
        Variant("feature, no imbalance", "data", data="balanced"),
        Variant("feature, balance 'class'", "balancing", balance="class", protocols=("interpolation",)),
        Variant("feature, balance 'none'", "balancing", balance="none", protocols=("interpolation",)),
        Variant("feature, 64 x 64", "capacity", protocols=("interpolation",), options={"hidden": [64, 64]}),
    ]
    return out


RANGE_ROWS = ("affine/all, old defaults (range, identical)", "affine/all, new defaults (feature, uniform)",
              "bias/all, new defaults (feature, uniform)", "concat/begin, new defaults (feature, uniform)",
              "range, 3000 steps", "feature, 3000 steps")
"""Models whose certified and measured response ranges the report shows (interpolation protocol)."""


class EncodedMass(nn.Module):
    """``net([x, c(m)])`` from inputs ``[x, m in GeV]``: the mass concatenated after its encoding."""

    def __init__(self, net: nn.Module, encoding: MassEncoding) -> None:
        super().__init__()
        self.net, self.offset, self.gev_per_unit = net, encoding.offset, encoding.gev_per_unit

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([inputs[:, :-1], (inputs[:, -1:] - self.offset) / self.gev_per_unit], dim=1))


def paper_loss(mlp: nn.Sequential):
    """Binary cross-entropy on logits plus 1e-5 * sum W^2 + 1e-6 * sum b^2 (Keras' L2 regularisers)."""
    linears = [m for m in mlp if isinstance(m, nn.Linear)]

    def loss(outputs, targets):
        penalty = sum(1e-5 * (m.weight**2).sum() + 1e-6 * (m.bias**2).sum() for m in linears)
        return F.binary_cross_entropy_with_logits(outputs.reshape(-1), targets.reshape(-1)) + penalty

    return loss


def _encoding(variant: Variant, data, inputs: ModelInputs, mass_range) -> MassEncoding:
    if isinstance(variant.encoding, tuple):
        return MassEncoding("fixed", *map(float, variant.encoding))
    return mass_encoding(variant.encoding, data, inputs, mass_range)


def response_ranges(score, test, held_out, neighbours, slope) -> list[dict]:
    """Certified and measured change of the response between each held-out mass and its neighbours.

    ``score(events, m)`` is the logit; ``slope`` the certified bound on |d logit / d m| per GeV
    (None: no certificate). Measured over every test event: the largest and the median
    |f(x, m) - f(x, m')| (exact on these events), and the 5-95% spread of f(x, m) for scale.
    """
    rows = []
    for m in held_out:
        f = score(test, m)
        for n in neighbours[m]:
            change = np.abs(f - score(test, n))
            rows.append({"mass": m, "neighbour": n, "certified": None if slope is None else slope * abs(m - n),
                         "measured_max": float(change.max()), "measured_median": float(np.median(change)),
                         "spread": float(np.subtract(*np.percentile(f, [95, 5])))})
    return rows


def fit_one(variant: Variant, protocol: str, seed: int, env: dict, cfg: HepmassConfig, paper_steps: int) -> dict:
    """Train one model of ``variant`` for ``protocol`` and measure it; returns a record."""
    train, test, inputs = env["data"][variant.data]
    masses, mass_range = env["masses"], env["mass_range"]
    held = cfg.held_out if protocol == "interpolation" else []
    data = training_set(train, protocol, held, variant.background, np.random.default_rng([cfg.seed, 4]))
    encoding = _encoding(variant, data, inputs, mass_range)
    options = dict(variant.options)
    if env["quick"] and "steps" in options:
        options["steps"] = max(1, options["steps"] // 10)
    c = dataclasses.replace(cfg, **options)
    if variant.model == "paper":
        mlp = unconstrained_mlp(28, 1, (300, 150, 100, 50), dropout=0.25, init="he_uniform", seed=seed)
        net = EncodedMass(mlp, encoding)
        c = dataclasses.replace(c, lr=5e-4, batch_size=1024, steps=paper_steps)
        seconds = train_classifier(net, inputs(data), data, c, seed, variant.balance, loss=paper_loss(mlp))
        cert = None
    else:
        net = conditioned_model(c, variant.combo, encoding, seed)
        seconds = train_classifier(net, inputs(data), data, c, seed, variant.balance)
        cert = mass_certificate(net, env["box"][variant.data], test, inputs, np.random.default_rng([seed, 9]), masses)
    net.eval()
    score = lambda ev, m: predict_logits(net, inputs(ev, m))  # noqa: E731
    per_mass = evaluate_per_mass(score, test, masses)
    evaluated = masses if protocol == "classification" else cfg.held_out
    record = {"variant": variant.name, "protocol": protocol, "seed": seed, "seconds": seconds,
              "auroc": {m: v["auroc"] for m, v in per_mass.items()},
              "average": average_metrics(per_mass, evaluated)["auroc"],
              "held_out_average": average_metrics(per_mass, cfg.held_out)["auroc"],
              "encoding": dataclasses.asdict(encoding), "certificate": cert}
    # the end-point classifiers f(x, 500) and f(x, 1500) applied at the held-out masses (AUROC is invariant
    # to their offsets): what the network would score without moving its selection with the mass
    ends = {e: score(test, e) for e in (min(masses), max(masses))}
    per_end = [evaluate_per_mass({m: f for m in masses}, test, cfg.held_out) for f in ends.values()]
    best = [max(e[m]["auroc"] for e in per_end) for m in cfg.held_out]
    record["end_point"] = float(np.mean(best))
    if cert is not None and variant.group in ("defaults", "training length"):
        trained = sorted(set(masses) - set(held))
        neighbours = {m: [max(t for t in trained if t < m), min(t for t in trained if t > m)] for m in cfg.held_out}
        record["ranges"] = response_ranges(score, test, cfg.held_out, neighbours, cert["certified_mass_slope"])
    return record


def oracle(env: dict, step: float) -> dict:
    """AUROC of the generator's likelihood ratio at each mass (an estimate by quadrature, ranking exact otherwise)."""
    _, test, _ = env["data"]["default"]
    start = time.perf_counter()
    ratio = synthetic_log_likelihood_ratio(test, env["masses"], step=step)
    per_mass = evaluate_per_mass(ratio, test, env["masses"])
    return {"auroc": {m: v["auroc"] for m, v in per_mass.items()}, "seconds": time.perf_counter() - start}


def _stats(values) -> tuple[float, float]:
    v = 100 * np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _pm(values) -> str:
    mean, std = _stats(values)
    return f"{mean:.2f} ± {std:.2f}"


def _rows(records, name, protocol):
    return [r for r in records if r["variant"] == name and r["protocol"] == protocol]


def report(records: list[dict], orc: dict, cfg: HepmassConfig, env: dict, args, seconds: dict) -> str:
    """The markdown report."""
    masses, held = env["masses"], cfg.held_out
    train = env["data"]["default"][0]
    lines = header("HEPMASS interpolation (issue 19): parametric networks at unseen masses", [
        f"lipsurrogate {__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}",
        f"data: the task's synthetic HEPMASS-IMB-like events (seed {cfg.seed}): {cfg.n_train} training and "
        f"{cfg.n_test} test events before signal thinning; training signal per mass "
        + ", ".join(f"{m:g}: {n}" for m, n in train.counts()["signal"].items()) + " (the same in the test set)",
        f"seeds {args.seeds}; Lipschitz networks {cfg.hidden}, lambda {cfg.lipschitz}, {cfg.steps} steps of "
        f"{cfg.batch_size}, lr {cfg.lr}, temperature {cfg.temperature}; paper baseline {args.paper_steps} steps",
        f"wall time: oracle {seconds['oracle']:.0f} s, Lipschitz networks {seconds['lipschitz']:.0f} s, paper "
        f"baseline {seconds['paper']:.0f} s, total {seconds['total']:.0f} s",
    ])
    if args.quick:
        lines += ["**Smoke-sized run (--quick): the numbers only show that the script works.**", ""]

    def cell(name, protocol, key="average"):
        rows = _rows(records, name, protocol)
        return _pm([r[key] for r in rows]) if rows else ""

    def cert(name):
        c = [r["certificate"]["certified_mass_slope"] for r in records if r["variant"] == name and r["certificate"]]
        return f"{1000 * np.mean(c):.0f}" if c else ""

    # -- main table
    lines += ["## AUROC in % (mean ± std over seeds)", "",
              "classification: trained on all five masses, averaged over them; interpolation: 750, 1000, 1250 GeV "
              "never seen, averaged over them; 'class. at 750-1250': the classification-protocol network at the "
              "held-out masses (a network oracle: it saw them). Certified |df/dm|: the bound per TeV over the "
              "data box, mean over the seeds and protocols of that row.", "",
              "| model | classification | interpolation | class. at 750-1250 | gap (class. - interp.) | "
              "certified \\|df/dm\\| /TeV | paper (Anzalone et al.) |", "|---|---|---|---|---|---|---|"]
    o = orc["auroc"]
    o_all, o_held = np.mean([o[m] for m in masses]), np.mean([o[m] for m in held])
    lines.append(f"| oracle: the generator's likelihood ratio | {100 * o_all:.2f} | {100 * o_held:.2f} (no training) | "
                 f"{100 * o_held:.2f} | {100 * (o_all - o_held):.2f} | | |")
    main = [v for v in variants() if v.group in ("paper", "defaults")]
    for v in main:
        c_rows, i_rows = _rows(records, v.name, "classification"), _rows(records, v.name, "interpolation")
        gap = ""
        if c_rows and i_rows:
            gap = f"{np.mean([r['average'] for r in c_rows]) * 100 - np.mean([r['average'] for r in i_rows]) * 100:.2f}"
        paper = [f"{p} {PAPER[(v.combo, p)]}" for p in PROTOCOLS if (v.combo, p) in PAPER and v.model != "paper"]
        lines.append(f"| {v.name} | {cell(v.name, 'classification')} | {cell(v.name, 'interpolation')} | "
                     f"{cell(v.name, 'classification', 'held_out_average')} | {gap} | {cert(v.name)} | "
                     f"{', '.join(paper)} |")
    lines += ["", "Per mass (AUROC %, mean over seeds; interpolation rows at the held-out masses were never trained):", "",
              "| model | protocol | " + " | ".join(f"{m:g}" for m in masses) + " |",
              "|---|---|" + "---|" * len(masses)]
    lines.append("| oracle (likelihood ratio) | - | " + " | ".join(f"{100 * o[m]:.2f}" for m in masses) + " |")
    for v in main:
        for p in v.protocols:
            rows = _rows(records, v.name, p)
            lines.append(f"| {v.name} | {p} | " + " | ".join(f"{100 * np.mean([r['auroc'][m] for r in rows]):.2f}"
                                                         for m in masses) + " |")

    # -- diagnosis
    lines += ["", "## Diagnosis: one setting changed at a time (affine/all unless named)", "",
              "Interpolation AUROC at each held-out mass and averaged; classification where it was run. "
              "Best end-point classifier: at each held-out mass, the better AUROC of the same network's two "
              "trained classifiers f(x, 500 GeV) and f(x, 1500 GeV) (averaged over the held-out masses); "
              "interpolation above it means the network moved its selection with the mass, below it that the "
              "intermediate classifiers are worse than either trained one.", "",
              "| group | variant | interp. 750 | interp. 1000 | interp. 1250 | interpolation | best end-point classifier | "
              "classification | certified \\|df/dm\\| /TeV |", "|---|---|---|---|---|---|---|---|---|"]
    for v in variants():
        rows = _rows(records, v.name, "interpolation")
        if not rows:
            continue
        per = " | ".join(f"{100 * np.mean([r['auroc'][m] for r in rows]):.1f}" for m in held)
        lines.append(f"| {v.group} | {v.name} | {per} | {cell(v.name, 'interpolation')} | "
                     f"{cell(v.name, 'interpolation', 'end_point')} | {cell(v.name, 'classification')} | {cert(v.name)} |")
    enc_lines = []
    for p in PROTOCOLS:
        r = next(r for r in records if r["variant"] == "affine/all, new defaults (feature, uniform)" and r["protocol"] == p)
        e = r["encoding"]
        feature = SYNTHETIC_FEATURES[e["feature"]] if e.get("feature") is not None else "-"
        enc_lines.append(f"{p}: follows {feature}, c = (m - {e['offset']:.0f} GeV) / {e['gev_per_unit']:.0f} GeV")
    lines += ["", "Fitted mass encodings ('feature'): " + "; ".join(enc_lines) + ". 'range' is c = (m - 1000) / 500.", ""]

    # -- certified vs measured response ranges
    lines += ["## Certified against measured change of the response between masses", "",
              "Logit f (the network output; probability sigmoid(f / temperature)). For each held-out mass m and "
              "trained neighbour m' of the protocol: certified = (certified |df/dm|) x |m - m'| bounds "
              "|f(x, m) - f(x, m')| for every x in the data box; measured = largest and median |f(x, m) - f(x, m')| "
              "over all test events (exact); spread = 95% - 5% quantile of f(x, m) over the test events, for scale. "
              "Mean over seeds.", "",
              "| model | protocol | m -> m' (GeV) | certified | measured max | measured median | measured max / "
              "certified | spread of f |", "|---|---|---|---|---|---|---|---|"]
    shown = [("affine/all, new defaults (feature, uniform)", "classification")]
    shown += [(name, "interpolation") for name in RANGE_ROWS]
    for name, p in shown:
        for _ in (0,):
            rows = [r for r in _rows(records, name, p) if r.get("ranges")]
            if not rows:
                continue
            for k, first in enumerate(rows[0]["ranges"]):
                cert_v = np.mean([r["ranges"][k]["certified"] for r in rows])
                mx = np.mean([r["ranges"][k]["measured_max"] for r in rows])
                med = np.mean([r["ranges"][k]["measured_median"] for r in rows])
                spread = np.mean([r["ranges"][k]["spread"] for r in rows])
                lines.append(f"| {name} | {p} | {first['mass']:g} -> {first['neighbour']:g} | {cert_v:.2f} | {mx:.2f} | "
                             f"{med:.3f} | {mx / cert_v:.2f} | {spread:.2f} |")
    viol = sum(r["certificate"]["violations"] for r in records if r["certificate"])
    n_cert = sum(1 for r in records if r["certificate"])
    lines += ["", f"Sampled check of the certified slopes: {viol} violations over {n_cert} conditioned networks "
              "(2000 random (event, m1, m2) triples each, `mass_certificate`).", ""]

    # -- timings
    lines += ["## Seconds per model (mean training time)", "", "| variant | protocol | seconds |", "|---|---|---|"]
    for v in variants():
        for p in v.protocols:
            rows = _rows(records, v.name, p)
            if rows and (v.group in ("paper", "training length") or v.name.startswith("affine/all, new")):
                lines.append(f"| {v.name} | {p} | {np.mean([r['seconds'] for r in rows]):.1f} |")
    lines += ["", f"Oracle: {orc['seconds']:.0f} s for {len(env['data']['default'][1])} test events at "
              f"{len(masses)} masses (quadrature step {args.oracle_step}).", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, 2 seeds, few steps; prints, writes nothing")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per model (default 3)")
    parser.add_argument("--paper-steps", type=int, default=None, help="steps of the paper baseline (default 1500)")
    parser.add_argument("--oracle-step", type=float, default=0.06, help="quadrature step of the likelihood ratio")
    parser.add_argument("--out", type=Path, default=None, help=f"report file (default {DEFAULT_OUT}; --quick: none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.quick:
        cfg = HepmassConfig.from_options(False, 0, {"n_train": 8000, "n_test": 8000, "steps": 60})
        args.seeds = args.seeds or 2
        args.paper_steps = args.paper_steps or 60
        args.oracle_step = max(args.oracle_step, 0.08)
        sizes = {"200k": 16_000}
    else:
        cfg = HepmassConfig.from_options(False, 0, {})
        args.seeds = args.seeds or 3
        args.paper_steps = args.paper_steps or 1500
        sizes = {"200k": 5 * cfg.n_train}
    datasets = {}
    for name, options in (("default", {}), ("200k", {"n_train": sizes["200k"]}), ("balanced", {"imbalance": None})):
        train, test, _ = task_data(dataclasses.replace(cfg, **options))
        datasets[name] = (train, test, ModelInputs(train))
    masses = sorted(np.unique(datasets["default"][1].mass[datasets["default"][1].label == 1]).tolist())
    mass_range = (min(masses), max(masses))
    env = {"quick": args.quick, "data": datasets, "masses": masses, "mass_range": mass_range,
           "box": {k: certificate_box(inp, [tr, te], mass_range) for k, (tr, te, inp) in datasets.items()}}
    seconds = {"oracle": 0.0, "lipschitz": 0.0, "paper": 0.0}
    t = time.perf_counter()
    orc = oracle(env, args.oracle_step)
    seconds["oracle"] = time.perf_counter() - t
    print(f"oracle: {orc['seconds']:.0f} s, AUROC {[round(100 * v, 2) for v in orc['auroc'].values()]}", file=sys.stderr)
    records = []
    for v in variants():
        t = time.perf_counter()
        for p in v.protocols:
            for s in range(args.seeds):
                records.append(fit_one(v, p, s, env, cfg, args.paper_steps))
        seconds["paper" if v.model == "paper" else "lipschitz"] += time.perf_counter() - t
        summary = ", ".join(f"{p} {_pm([r['average'] for r in _rows(records, v.name, p)])}" for p in v.protocols)
        print(f"[{time.perf_counter() - start:6.0f} s] {v.name}: {summary}", file=sys.stderr, flush=True)
    seconds["total"] = time.perf_counter() - start
    text = report(records, orc, cfg, env, args, seconds)
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if out is None:
        print(text)
    else:
        write(out, text)


if __name__ == "__main__":
    main()
