r"""``lipsurrogate fit trigger``: a monotonic Lipschitz trigger classifier against a BDT.

The headline application of Kitouni, Nolte & Williams (section 4.1): LHCb's first trigger stage
selects two-track vertices from heavy-flavour decays. The classifier must prefer more displaced
and harder vertices *everywhere*, including beyond the training data, or long-lived particles
are thrown away. The task

1. simulates candidates with :func:`lipsurrogate.data.trigger.simulate_trigger` (training,
   validation, test; plus a signal sample with a flat lifetime distribution for the efficiency
   versus lifetime), all from one seed;
2. trains four models on the same training sample:

   - ``monotonic Lipschitz``: the paper's network, 4 -> 20 -> 20 -> 20 -> 1, GroupSort,
     :math:`\lambda = 2`, Eq. 2.8 norms, monotone increasing in sumpt, minipchi2 and fdchi2
     (:class:`lipsurrogate.LipschitzClassifier`);
   - ``unconstrained NN``: a ReLU network of the same widths;
   - ``BDT`` and ``monotone BDT``: LightGBM, 1000 trees of 25 leaves, learning rate 0.05, early
     stopping (15 rounds) on the validation sample, without and with
     ``monotone_constraints=[1, 1, 1, 0]`` (skipped, with a message, when LightGBM is missing);

3. fixes the working point as the trigger does: per model, the threshold that keeps
   ``background_rate`` of the *validation* background (660 kHz of 30 MHz = 2.2%), and measures on
   the independent test sample the signal efficiency, the background rate actually kept and the
   ROC AUC (all exact on the stated events), and the efficiency versus true lifetime on the flat
   sample (a binomial estimate per bin);
4. checks monotonicity on random pairs (from the test data and from a box that extends beyond
   it) and reports the violations (measured), next to the certified derivative intervals of the
   Lipschitz network (:func:`lipsurrogate.bounds.lipschitz_bounds`, float64 from the weights);
5. exports the network to numpy (:func:`lipsurrogate.export.export_numpy`), checks that it
   reproduces the torch outputs and measures events per second against LightGBM's predict;
6. writes ``metrics.json``, ``efficiency.json``, the models, the figures and ``report.html``.

Models are those after the last training step (never the best test epoch); the BDT's early
stopping uses the validation sample, never the test sample.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._io import write_json
from .._threads import torch_threads
from ..data.trigger import FEATURES, MONOTONIC, simulate_trigger, trigger_arrays
from ..exceptions import ConfigurationError
from ..metrics import roc_auc, roc_curve, threshold_at_background_rate

__all__ = ["TriggerConfig", "run", "monotonicity_violations", "LIGHTGBM_MISSING"]

LIGHTGBM_MISSING = (
    "LightGBM is not installed, so the BDT baselines were skipped. Install the optional dependency "
    "with: pip install 'lipsurrogate[trigger]' (or pip install 'lightgbm>=4.0')."
)
"""The message given when the BDT baselines cannot run."""


@dataclass
class TriggerConfig:
    """Settings of ``lipsurrogate fit trigger`` (defaults: a full run of about 2-3 minutes on 2 cores)."""

    n_train: int = 200_000
    n_val: int = 100_000
    n_test: int = 200_000
    n_lifetime: int = 60_000
    signal_fraction: float = 0.3
    background_rate: float = 660.0 / 30_000.0
    input_rate_mhz: float = 30.0
    hidden: list = field(default_factory=lambda: [20, 20, 20])
    lipschitz: float = 2.0
    temperature: float = 1.0
    steps: int = 4000
    batch_size: int = 1024
    lr: float = 5e-3
    n_estimators: int = 1000
    num_leaves: int = 25
    bdt_learning_rate: float = 0.05
    early_stopping: int = 15
    t_max: float = 15.0
    lifetime_bins: int = 15
    pairs: int = 100_000
    throughput_batch: int = 100_000
    bdt: bool = True
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "TriggerConfig":
        """Smoke-sized run (about 15 s): small samples, few steps, 100 trees."""
        base = dict(n_train=20_000, n_val=20_000, n_test=20_000, n_lifetime=10_000, steps=400, batch_size=512,
                    lr=1e-2, n_estimators=100, pairs=20_000, throughput_batch=20_000)
        return cls(**{**base, **overrides})


# -- models: each has a name, a kind and a float64 score function ---------------------------------

@dataclass
class _Scorer:
    name: str
    kind: str
    score: object  # callable X (n, 4) -> float64 (n,)
    seconds: float
    extra: dict = field(default_factory=dict)


def _train_lipschitz(x, y, cfg: TriggerConfig, progress: bool) -> tuple[_Scorer, object]:
    from ..estimators import LipschitzClassifier

    start = time.perf_counter()
    clf = LipschitzClassifier(hidden=tuple(cfg.hidden), lipschitz=cfg.lipschitz, monotonic_constraints=MONOTONIC,
                              norm="l1-column", temperature=cfg.temperature, steps=cfg.steps,
                              batch_size=cfg.batch_size, lr=cfg.lr, random_state=cfg.seed, verbose=progress,
                              early_stopping=False)  # the task's own validation sample sets the cut
    clf.fit(x, y)
    return _Scorer("monotonic Lipschitz", "network", clf.decision_function, time.perf_counter() - start), clf


def _train_unconstrained(x, y, cfg: TriggerConfig, progress: bool) -> _Scorer:
    import torch

    from ..nn import unconstrained_mlp
    from ..train import bce_with_temperature, train

    start = time.perf_counter()
    mean, std = x.mean(axis=0), x.std(axis=0)
    model = unconstrained_mlp(x.shape[1], 1, tuple(cfg.hidden), seed=cfg.seed)
    with _one_thread():  # as LipschitzClassifier(n_jobs=1): tiny networks train fastest on one thread
        train(model, torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
              bce_with_temperature, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
              progress=progress, description="unconstrained NN")
    model = model.double().eval()

    def score(points):
        with torch.no_grad():
            return model(torch.as_tensor((np.asarray(points, np.float64) - mean) / std))[:, 0].numpy()

    return _Scorer("unconstrained NN", "network", score, time.perf_counter() - start, {"module": model})


def _train_bdts(x, y, xv, yv, cfg: TriggerConfig) -> list[_Scorer]:
    import inspect

    import lightgbm

    out = []
    for name, constraints in (("BDT", None), ("monotone BDT", list(MONOTONIC))):
        start = time.perf_counter()
        params = dict(n_estimators=cfg.n_estimators, learning_rate=cfg.bdt_learning_rate, num_leaves=cfg.num_leaves,
                      random_state=cfg.seed, n_jobs=1, verbose=-1, deterministic=True, force_row_wise=True)
        if constraints is not None:
            params["monotone_constraints"] = constraints
        bdt = lightgbm.LGBMClassifier(**params)
        stop = [lightgbm.early_stopping(cfg.early_stopping, verbose=False)]
        if "eval_X" in inspect.signature(bdt.fit).parameters:  # LightGBM >= 4.7
            bdt.fit(x, y, eval_X=(xv,), eval_y=(yv,), callbacks=stop)
        else:
            bdt.fit(x, y, eval_set=[(xv, yv)], callbacks=stop)
        booster = bdt.booster_

        def score(points, booster=booster):
            return booster.predict(np.asarray(points, np.float64), raw_score=True).astype(np.float64)

        out.append(_Scorer(name, "bdt", score, time.perf_counter() - start,
                           {"booster": booster, "trees": int(booster.num_trees())}))
    return out


def _have_lightgbm() -> bool:
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


# -- evaluation ----------------------------------------------------------------------------------

MONOTONIC_BOX = np.array([[0.0, 60.0], [-8.0, 16.0], [-7.0, 22.0], [0.0, 40.0]])
"""Box for the random-pair monotonicity check: beyond the simulated data in every feature."""


def monotonicity_violations(score, x_data: np.ndarray, n_pairs: int, rng: np.random.Generator,
                            constraints=MONOTONIC, box: np.ndarray = MONOTONIC_BOX) -> dict:
    r"""Count pairs :math:`(x, x + \delta e_j)`, :math:`\delta > 0`, where the score decreases (measured).

    Half of the base points are drawn from ``x_data``, half uniformly from ``box``; ``j`` is a
    random feature with constraint +1 (or -1, then an increase is a violation) and
    :math:`\delta \sim U(0, 0.5\,\mathrm{width}_j)`. A violation is a change against the
    constraint larger than :math:`10^{-9}(1 + |f(x)|)`, so float64 rounding is not counted.
    Returns counts per feature, the total, the number of pairs and the largest violation.
    """
    constraints = np.asarray(constraints)
    features = np.flatnonzero(constraints != 0)
    half = n_pairs // 2
    base = np.concatenate([x_data[rng.integers(0, len(x_data), half)],
                           rng.uniform(box[:, 0], box[:, 1], (n_pairs - half, box.shape[0]))])
    j = features[rng.integers(0, len(features), n_pairs)]
    delta = rng.uniform(0.0, 0.5, n_pairs) * (box[j, 1] - box[j, 0])
    moved = base.copy()
    moved[np.arange(n_pairs), j] += delta
    f0, f1 = score(base), score(moved)
    change = (f1 - f0) * constraints[j]
    bad = change < -1e-9 * (1 + np.abs(f0))
    per_feature = {FEATURES[k]: int(bad[j == k].sum()) for k in features}
    return {"violations": int(bad.sum()), "pairs": int(n_pairs), "per_feature": per_feature,
            "from_data": int(bad[:half].sum()), "from_box": int(bad[half:].sum()),
            "largest": float(max(0.0, -change.min())), "kind": "measured on random pairs"}


def _efficiency_vs_lifetime(passed: np.ndarray, lifetime: np.ndarray, edges: np.ndarray) -> dict:
    idx = np.clip(np.digitize(lifetime, edges) - 1, 0, len(edges) - 2)
    n = np.bincount(idx, minlength=len(edges) - 1)
    k = np.bincount(idx, weights=passed.astype(float), minlength=len(edges) - 1)
    eff = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    err = np.sqrt(np.divide(eff * (1 - eff), n, out=np.zeros_like(k), where=n > 0))
    return {"efficiency": eff.tolist(), "error": err.tolist(), "candidates": n.astype(int).tolist()}


def _throughput(fn, x, repeats: int = 5) -> float:
    fn(x[:1000])
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


@contextlib.contextmanager
def _one_thread():
    """Context in which torch, numpy's BLAS and LightGBM use one thread (as far as they can be told)."""
    with torch_threads(1):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(1):
                yield


# -- the task ------------------------------------------------------------------------------------

def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Simulate, train the four models, evaluate at the trigger's working point, export, report."""
    import torch

    from ..nn import save_model
    from ..export import export_numpy, load_numpy
    from ..report.trigger import write_report

    known = {f.name for f in TriggerConfig.__dataclass_fields__.values()}
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"Unknown trigger option(s) {sorted(unknown)}; known: {sorted(known)}.")
    cfg = (TriggerConfig.quick if quick else TriggerConfig)(**{**options, "seed": seed})
    if not 0 < cfg.background_rate < 1:
        raise ConfigurationError(f"'background_rate' must lie in (0, 1). Got {cfg.background_rate!r} instead.")
    out_dir = Path(out_dir)
    times: dict[str, float] = {}
    start = time.perf_counter()

    # 1. data: independent seeds per sample, all derived from the run seed
    seeds = np.random.SeedSequence(seed).spawn(4)
    rngs = [np.random.default_rng(s) for s in seeds]
    train_ds = simulate_trigger(cfg.n_train, rng=rngs[0], signal_fraction=cfg.signal_fraction)
    val_ds = simulate_trigger(cfg.n_val, rng=rngs[1], signal_fraction=cfg.signal_fraction)
    test_ds = simulate_trigger(cfg.n_test, rng=rngs[2], signal_fraction=cfg.signal_fraction)
    life_ds = simulate_trigger(cfg.n_lifetime, rng=rngs[3], signal_fraction=1.0, lifetime="uniform", t_max=cfg.t_max)
    x, y = trigger_arrays(train_ds)
    xv, yv = trigger_arrays(val_ds)
    xt, yt = trigger_arrays(test_ds)
    xl, _ = trigger_arrays(life_ds)
    lifetime = life_ds["lifetime"].values
    times["data"] = round(time.perf_counter() - start, 2)

    # 2. models
    lip, clf = _train_lipschitz(x, y, cfg, progress)
    models = [lip, _train_unconstrained(x, y, cfg, progress)]
    notes = []
    if cfg.bdt and _have_lightgbm():
        models += _train_bdts(x, y, xv, yv, cfg)
    elif cfg.bdt:
        notes.append(LIGHTGBM_MISSING)
    times["training"] = round(time.perf_counter() - start - times["data"], 2)

    # 3. working point and metrics
    t0 = time.perf_counter()
    edges = np.linspace(0.0, cfg.t_max, cfg.lifetime_bins + 1)
    test_tau = test_ds["lifetime"].values
    rng_pairs = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    pair_rng_state = rng_pairs.bit_generator.state
    rows, efficiency, rocs, responses = {}, {}, {}, {}
    with _one_thread():
        for m in models:
            sv, st, sl = m.score(xv), m.score(xt), m.score(xl)
            thr = threshold_at_background_rate(yv, sv, cfg.background_rate)
            passed_test = st >= thr
            sig = yt == 1
            rng_pairs.bit_generator.state = pair_rng_state  # the same pairs for every model
            mono = monotonicity_violations(m.score, xt, cfg.pairs, rng_pairs)
            long_lived = sig & (test_tau > 5.0)
            rows[m.name] = {
                "kind": m.kind,
                "threshold": float(thr),
                "roc_auc": roc_auc(yt, st),
                "signal_efficiency": float(passed_test[sig].mean()),
                "signal_efficiency_tau_gt_5ps": float(passed_test[long_lived].mean()) if long_lived.any() else None,
                "background_rate_test": float(passed_test[~sig].mean()),
                "output_rate_khz_test": float(passed_test[~sig].mean() * cfg.input_rate_mhz * 1000),
                "signal_efficiency_flat_lifetime": float((sl >= thr).mean()),
            "signal_efficiency_flat_tau_gt_10ps": float((sl[lifetime > 10.0] >= thr).mean())
            if (lifetime > 10.0).any() else None,
                "monotonicity": mono,
                "train_seconds": round(m.seconds, 2),
                **({"trees": m.extra["trees"]} if "trees" in m.extra else {}),
            }
            efficiency[m.name] = _efficiency_vs_lifetime(sl >= thr, lifetime, edges)
            fpr, tpr, _ = roc_curve(yt, st)
            keep = np.unique(np.r_[np.searchsorted(fpr, np.logspace(-5, 0, 300)).clip(0, len(fpr) - 1), len(fpr) - 1])
            rocs[m.name] = (fpr[keep], tpr[keep])
            responses[m.name] = (m.score, np.sort(sv[yv == 0]))
    times["evaluation"] = round(time.perf_counter() - t0, 2)

    # 4. certificate of the Lipschitz network (certified, float64 from the weights)
    bounds = clf.certified_bounds()
    certificate = {
        "kind": "certified (float64 from the weights, lipsurrogate.bounds.lipschitz_bounds)",
        "features": list(FEATURES),
        "constraints": list(MONOTONIC),
        "partial_lower": bounds.partial_lower[0].tolist(),
        "partial_upper": bounds.partial_upper[0].tolist(),
        "monotone_certified": bool(all(bounds.partial_lower[0][j] >= 0 for j, c in enumerate(MONOTONIC) if c > 0)),
        "note": "intervals of d(logit * temperature)/d(feature) in raw feature units, valid for every input",
    }
    rows["monotonic Lipschitz"]["certified_monotone"] = certificate["monotone_certified"]

    # 5. export and throughput
    t0 = time.perf_counter()
    save_model(clf.model_, out_dir / "model")
    npz, _ = export_numpy(clf.model_, out_dir / "export" / "trigger", dtype="float32")
    exported = load_numpy(npz)
    logit_np = exported(xt)[:, 0].astype(np.float64) / cfg.temperature
    logit_torch = clf.decision_function(xt)
    thr_lip = rows["monotonic Lipschitz"]["threshold"]
    export_check = {
        "max_abs_difference_logit": float(np.max(np.abs(logit_np - logit_torch))),
        "max_abs_logit": float(np.max(np.abs(logit_torch))),
        "decisions_differing": int(np.sum((logit_np >= thr_lip) != (logit_torch >= thr_lip))),
        "candidates": int(len(xt)),
        "kind": "measured on the test sample (float32 numpy export vs float64 evaluation of the same weights)",
    }
    batch = np.ascontiguousarray(xt[: cfg.throughput_batch].astype(np.float32))
    throughput = {"batch": int(len(batch)), "threads": 1, "kind": "measured, best of 5, one thread"}
    plain32 = clf.model_.float()
    with _one_thread():
        throughput["numpy export"] = _throughput(exported, batch)
        tb = torch.from_numpy(batch)

        def torch_predict(_):
            with torch.no_grad():
                return plain32(tb)

        throughput["torch"] = _throughput(torch_predict, batch)
        for m in models:
            if m.kind == "bdt":
                booster = m.extra["booster"]
                throughput[m.name] = _throughput(lambda b, bo=booster: bo.predict(b, raw_score=True, num_threads=1),
                                                 batch.astype(np.float64), repeats=2)
    clf.model_.double()
    for m in models:
        if m.kind == "bdt":
            m.extra["booster"].save_model(str(out_dir / f"{m.name.replace(' ', '-').lower()}.txt"))
            throughput[f"ratio numpy export / {m.name}"] = throughput["numpy export"] / throughput[m.name]
    times["export"] = round(time.perf_counter() - t0, 2)

    # 6. files and report
    metrics = {"config": asdict(cfg), "working_point": {
        "background_rate": cfg.background_rate, "input_rate_mhz": cfg.input_rate_mhz,
        "output_rate_khz": cfg.background_rate * cfg.input_rate_mhz * 1000,
        "chosen_on": "validation background (independent of the test sample)"},
        "models": rows, "certificate": certificate, "export": export_check, "throughput": throughput,
        "notes": notes, "timings": times}
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "efficiency.json", {"lifetime_edges_ps": edges.tolist(), "kind":
                                            "binomial estimate per bin on the flat-lifetime signal sample",
                                            "models": efficiency})
    t0 = time.perf_counter()
    write_report(out_dir, metrics, efficiency, edges, rocs, responses, train_ds)
    times["report"] = round(time.perf_counter() - t0, 2)
    write_json(out_dir / "timings.json", times)
    return {"models": rows, "certificate": certificate, "export": export_check, "throughput": throughput,
            "notes": notes, "text": _text(cfg, rows, certificate, export_check, throughput, notes, times)}


def _text(cfg, rows, certificate, export_check, throughput, notes, times) -> str:
    rate = cfg.background_rate
    lines = [
        f"trigger: simulated two-track candidates, working point {rate:.2%} of background "
        f"({rate * cfg.input_rate_mhz * 1000:.0f} kHz of {cfg.input_rate_mhz:.0f} MHz, chosen on the validation sample)",
        f"  {'model':<20} {'AUC':>7} {'eff':>7} {'eff t>5ps':>9} {'t>10ps*':>8} {'bkg kept':>9} {'mono viol.':>14} "
        f"{'train s':>8}",
    ]
    for name, r in rows.items():
        mono = r["monotonicity"]
        e5 = r["signal_efficiency_tau_gt_5ps"]
        e10 = r["signal_efficiency_flat_tau_gt_10ps"]
        lines.append(f"  {name:<20} {r['roc_auc']:7.4f} {r['signal_efficiency']:7.3f} "
                     f"{(e5 if e5 is not None else float('nan')):9.3f} "
                     f"{(e10 if e10 is not None else float('nan')):8.3f} {r['background_rate_test']:9.4f} "
                     f"{mono['violations']:>7d}/{mono['pairs']:<6d} {r['train_seconds']:8.1f}")
    lo, hi = certificate["partial_lower"], certificate["partial_upper"]
    lines.append("  AUC, eff (signal efficiency), bkg kept: exact on the test sample (*t>10ps: on the flat-lifetime "
                 "sample); violations: measured on random pairs")
    lines.append("  certified d(logit)/d(feature) of the Lipschitz network: " + ", ".join(
        f"{f} [{a:.3g}, {b:.3g}]" for f, a, b in zip(FEATURES, lo, hi)))
    lines.append(f"  numpy export: max |logit difference| {export_check['max_abs_difference_logit']:.2e}, "
                 f"{export_check['decisions_differing']} of {export_check['candidates']} decisions differ")
    speed = f"  events/s on {throughput['batch']} candidates, one thread: numpy export {throughput['numpy export']:.3g}, " \
            f"torch {throughput['torch']:.3g}"
    for name in ("BDT", "monotone BDT"):
        if name in throughput:
            speed += (f", {name} ({rows[name]['trees']} trees) {throughput[name]:.3g} "
                      f"(numpy/{name} = {throughput[f'ratio numpy export / {name}']:.0f}x)")
    lines.append(speed)
    lines += [f"  note: {n}" for n in notes]
    lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return "\n".join(lines)
