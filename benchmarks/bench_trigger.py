"""Trigger inference throughput: the exported monotonic Lipschitz network against LightGBM's predict.

Every predictor scores the same batch of 100 000 simulated two-track candidates
(:func:`lipsurrogate.data.trigger.simulate_trigger`, seed 1) on **one thread**
(``torch.set_num_threads(1)``, numpy's BLAS limited to one thread with threadpoolctl when it is
installed, LightGBM ``num_threads=1``).

Predictors
----------
``numpy export (float32)`` / ``(float64)``
    :func:`lipsurrogate.export.numpy_forward` on the arrays written by
    :func:`lipsurrogate.export.export_numpy`: the dependency-free deployment form.
``torch plain (float32)``
    The same weights as an ordinary torch module (:func:`lipsurrogate.nn.to_plain`), no grad.
``torch training form (float32)``
    The parametrized :class:`~lipsurrogate.nn.LipschitzMLP` (weight norms recomputed per call).
``LightGBM``, ``LightGBM monotone``
    ``LGBMClassifier(n_estimators=1000, num_leaves=25, learning_rate=0.05)`` without and with
    ``monotone_constraints=[1, 1, 1, 0]``, trained without early stopping so that all 1000 trees
    are evaluated, ``booster.predict(X, raw_score=True, num_threads=1)``.

The network is the task's 4 -> 20 -> 20 -> 20 -> 1 GroupSort network (lambda = 2, Eq. 2.8,
monotone in sumpt, minipchi2, fdchi2), trained for a few hundred steps (the weights do not change
the cost). Method: one warm-up call each, then ``rounds`` interleaved rounds (round-robin over
the predictors); events/s = batch / median time over rounds; ratios to LightGBM come from the
same run. LightGBM is optional (``pip install -c constraints.txt -e ".[trigger]"``); without it the
BDT rows say "not installed".

Usage
-----
::

    python benchmarks/bench_trigger.py            # writes benchmarks/results/trigger.md
    python benchmarks/bench_trigger.py --quick    # 200 trees, 3 rounds, smaller training sample
    python benchmarks/bench_trigger.py --out PATH
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _markdown import header, write

from lipsurrogate import LipschitzClassifier
from lipsurrogate.data.trigger import MONOTONIC, simulate_trigger, trigger_arrays
from lipsurrogate.export import export_numpy, load_numpy

DEFAULT_OUT = Path("benchmarks") / "results" / "trigger.md"
BATCH = 100_000


def _limit_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None, "numpy BLAS threads not limited (threadpoolctl not installed)"
    return threadpool_limits(1), "numpy BLAS limited to 1 thread (threadpoolctl)"


def build(quick: bool) -> tuple[dict, list[str]]:
    """Train the network and the BDTs; return {name: predict(X)} and notes."""
    notes = []
    x, y = trigger_arrays(simulate_trigger(50_000 if quick else 200_000, seed=0, signal_fraction=0.3))
    # lipschitz=2 as `fit trigger` (TriggerConfig.lipschitz), not the estimator's default
    clf = LipschitzClassifier(monotonic_constraints=MONOTONIC, lipschitz=2.0, early_stopping=False, steps=300,
                              batch_size=1024, lr=1e-2, random_state=0).fit(x, y)
    tmp = Path(tempfile.mkdtemp())
    export_numpy(clf.model_, tmp / "f32", dtype="float32")
    export_numpy(clf.model_, tmp / "f64", dtype="float64")
    net32, net64 = load_numpy(tmp / "f32"), load_numpy(tmp / "f64")
    plain = clf.model_.float().eval()
    from lipsurrogate.nn import LipschitzMLP

    training_form = LipschitzMLP(**clf.model_.config).eval()
    predictors = {
        "numpy export (float32)": lambda b: net32(b),
        "numpy export (float64)": lambda b: net64(b),
        "torch plain (float32)": lambda b: _torch(plain, b),
        "torch training form (float32)": lambda b: _torch(training_form, b),
    }
    try:
        import lightgbm
    except ImportError:
        notes.append("LightGBM not installed: BDT rows skipped (pip install -c constraints.txt -e \".[trigger]\")")
        return predictors, notes
    trees = 200 if quick else 1000
    for name, constraints in (("LightGBM", None), ("LightGBM monotone", list(MONOTONIC))):
        params = dict(n_estimators=trees, num_leaves=25, learning_rate=0.05, n_jobs=1, verbose=-1,
                      deterministic=True, force_row_wise=True, random_state=0)
        if constraints:
            params["monotone_constraints"] = constraints
        booster = lightgbm.LGBMClassifier(**params).fit(x, y).booster_
        predictors[f"{name} ({booster.num_trees()} trees)"] = (
            lambda b, bo=booster: bo.predict(b.astype(np.float64), raw_score=True, num_threads=1))
    return predictors, notes


def _torch(model, batch):
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()


def measure(predictors: dict, rounds: int) -> dict[str, list[float]]:
    """Median-ready times (s) per predictor on one 100k batch, interleaved rounds."""
    batch = np.ascontiguousarray(
        trigger_arrays(simulate_trigger(BATCH, seed=1, signal_fraction=0.3))[0].astype(np.float32))
    for fn in predictors.values():
        fn(batch[:1000])
    times = {name: [] for name in predictors}
    for r in range(rounds):
        for name, fn in predictors.items():
            start = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return times


def table(times: dict) -> str:
    rates = {name: BATCH / statistics.median(t) for name, t in times.items()}
    bdt = next((name for name in rates if name.startswith("LightGBM (")), None)
    lines = ["| predictor | events/s | ratio to LightGBM predict |", "|---|---:|---:|"]
    for name, rate in rates.items():
        ratio = f"{rate / rates[bdt]:.3g}x" if bdt else "–"
        lines.append(f"| {name} | {rate:.3g} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 trees, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    torch.set_num_threads(1)
    limiter, blas_note = _limit_blas()
    predictors, notes = build(args.quick)
    times = measure(predictors, rounds)
    if limiter is not None:
        limiter.restore_original_limits()
    text = table(times)
    print(text)
    versions = [f"torch {torch.__version__} (torch.set_num_threads(1))", f"numpy {np.__version__}"]
    try:
        import lightgbm

        versions.append(f"lightgbm {lightgbm.__version__} (num_threads=1)")
    except ImportError:
        versions.append("lightgbm not installed")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    extra = [", ".join(versions), blas_note, f"load average at the end (1, 5, 15 min): {load} (other work shares the CPUs)",
             f"batch: {BATCH} simulated candidates (simulate_trigger seed 1), 4 features",
             f"method: one warm-up call each, {rounds} interleaved rounds, events/s = batch / median time; "
             "ratio = events/s / LightGBM (unconstrained) events/s from the same run",
             "network: 4 -> 20 -> 20 -> 20 -> 1 GroupSort, lambda 2, Eq. 2.8 norms, monotone in sumpt, minipchi2, "
             "fdchi2; numpy export = lipsurrogate.export.numpy_forward (features-major chunks of 4096)",
             *notes]
    write(args.out, "\n".join(header("Trigger inference throughput (one thread)", extra) + [text, ""]))


if __name__ == "__main__":
    main()
