"""The toy problems of Kitouni, Nolte & Williams as runnable tasks (``lipsurrogate fit toy-*``).

Each ``run_*`` function trains the models of one toy problem, writes a figure, the model files
and ``results.json`` into ``out_dir`` and returns a summary with a printable ``text``. Every
"certified" number comes from :func:`lipsurrogate.bounds.lipschitz_bounds`; everything else is a
measured figure on the stated points.

1. ``toy-outlier``: sin(x) with one outlier; the 1-Lipschitz fit ignores it, an unconstrained
   network chases it.
2. ``toy-monotone``: noisy log(x) with a gap and a missing tail; the monotonic residual network
   is monotone everywhere, also where there is no data.
3. ``toy-circle``: level sets that are circles with an oscillating radius (alpha = 0.18),
   regressed by a GroupSort network.
4. ``toy-abs``: |x| with lambda = 1; GroupSort fits it, ReLU cannot (gradient-norm attenuation).
5. ``toy-moons``: two moons with six objectives (MSE, BCE, BCE at high temperature, hinge with
   margins 1 and 0.1, dynamic hinge); validation accuracy and certified margins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import write_json
from ..bounds import lipschitz_bounds
from ..data import toys as toy_data
from ..nn import LipschitzMLP, save_model, unconstrained_mlp
from ..report import HtmlReport, save_figure
from ..train import bce_with_temperature, dynamic_hinge_loss, dynamic_margins, hinge_loss, train

__all__ = ["run_outlier", "run_monotone", "run_circle", "run_abs", "run_moons", "run_all"]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _predict(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(_tensor(x)).numpy()[:, 0].astype(np.float64)


def _figure(nrows: int = 1, ncols: int = 1, size=(6.0, 4.0)):
    from ..report.html import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    return fig, axes, plt


def _finish(out_dir: Path, name: str, fig, plt, results: dict, lines: list[str]) -> dict:
    out_dir = Path(out_dir)
    png = save_figure(fig, out_dir / "figures" / f"{name}.png")
    plt.close(fig)
    write_json(out_dir / f"{name}.json", results)
    return {"name": name, "results": results, "png": png, "text": "\n".join(lines)}


def run_outlier(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
    """sin(x) with one outlier: 1-Lipschitz GroupSort network vs an unconstrained ReLU network."""
    rng = np.random.default_rng(seed)
    x, y, k = toy_data.sine_with_outlier(rng)
    steps = 2000  # the unconstrained network needs them all to reach the outlier; ~1 s each
    lip = LipschitzMLP(1, 1, (64, 64, 64), lipschitz=1.0, norm="mixed", seed=seed)
    free = unconstrained_mlp(1, 1, (64, 64, 64), seed=seed)
    for model, label in ((lip, "lipschitz"), (free, "unconstrained")):
        train(model, _tensor(x), _tensor(y[:, None]), "mae", steps=steps, batch_size=len(x), lr=1e-2,
              seed=seed, progress=progress, description=f"outlier/{label}")
    grid = np.linspace(-3, 3, 601)[:, None]
    results = {"outlier_index": int(k), "outlier_x": float(x[k, 0]), "outlier_y": float(y[k])}
    for model, label in ((lip, "lipschitz"), (free, "unconstrained")):
        results[label] = {
            "deviation_at_outlier": float(abs(_predict(model, x[k : k + 1])[0] - np.sin(x[k, 0]))),
            "rmse_vs_sin": float(np.sqrt(np.mean((_predict(model, grid) - np.sin(grid[:, 0])) ** 2))),
        }
    results["lipschitz"]["certified_lipschitz"] = float(lipschitz_bounds(lip).l1[0])
    save_model(lip, Path(out_dir) / "models" / "outlier-lipschitz")
    fig, axes, plt = _figure()
    ax = axes[0, 0]
    ax.plot(x[:, 0], y, "k.", label="data")
    ax.plot(x[k, 0], y[k], "rx", ms=10, label="outlier")
    ax.plot(grid[:, 0], np.sin(grid[:, 0]), "k:", lw=1, label="sin(x)")
    ax.plot(grid[:, 0], _predict(lip, grid), label="1-Lipschitz GroupSort")
    ax.plot(grid[:, 0], _predict(free, grid), label="unconstrained ReLU")
    ax.set(xlabel="x", ylabel="y", title="sin(x) with one outlier")
    ax.legend()
    lines = [
        "toy-outlier: deviation from sin(x) at the outlier "
        f"(outlier lies {results['outlier_y'] - np.sin(results['outlier_x']):+.2f} off):",
        f"  1-Lipschitz  {results['lipschitz']['deviation_at_outlier']:.3f}  "
        f"(certified Lipschitz constant {results['lipschitz']['certified_lipschitz']:.3f})",
        f"  unconstrained {results['unconstrained']['deviation_at_outlier']:.3f}",
    ]
    return _finish(out_dir, "outlier", fig, plt, results, lines)


def run_monotone(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
    """Noisy log(x) with a gap and a missing tail: monotonic residual network vs unconstrained."""
    rng = np.random.default_rng(seed)
    x, y = toy_data.noisy_log(rng)
    steps = 300 if quick else 2000
    mono = LipschitzMLP(1, 1, (64, 64, 64), lipschitz=1.0, norm="mixed", monotonic=[1], seed=seed)
    free = unconstrained_mlp(1, 1, (64, 64, 64), seed=seed)
    for model, label in ((mono, "monotonic"), (free, "unconstrained")):
        train(model, _tensor(x), _tensor(y[:, None]), "mse", steps=steps, batch_size=len(x), lr=1e-2,
              seed=seed, progress=progress, description=f"monotone/{label}")
    grid = np.linspace(0.5, 10.0, 2001)[:, None]
    regions = {"data": (grid[:, 0] <= 3) | ((grid[:, 0] >= 4) & (grid[:, 0] <= 5)),
               "gap": (grid[:, 0] > 3) & (grid[:, 0] < 4), "tail": grid[:, 0] > 5}
    results = {"grid": [0.5, 10.0, 2001]}
    for model, label in ((mono, "monotonic"), (free, "unconstrained")):
        pred = _predict(model, grid)
        decreasing = np.diff(pred) < 0
        results[label] = {
            "decreasing_steps_on_grid": int(decreasing.sum()),
            "decreasing_steps_in_gap_or_tail": int(decreasing[(grid[1:, 0] > 3) & ~((grid[1:, 0] >= 4) & (grid[1:, 0] <= 5))].sum()),
            **{f"rmse_vs_log_{r}": float(np.sqrt(np.mean((pred[m] - np.log(grid[m, 0])) ** 2))) for r, m in regions.items()},
        }
    bounds = lipschitz_bounds(mono)
    results["monotonic"]["certified_slope_interval"] = [float(bounds.partial_lower[0, 0]), float(bounds.partial_upper[0, 0])]
    save_model(mono, Path(out_dir) / "models" / "monotone")
    fig, axes, plt = _figure()
    ax = axes[0, 0]
    ax.axvspan(3, 4, color="0.9", label="gap (interpolation)")
    ax.axvspan(5, 10, color="0.95", label="missing tail (extrapolation)")
    ax.plot(x[:, 0], y, "k.", label="data")
    ax.plot(grid[:, 0], np.log(grid[:, 0]), "k:", lw=1, label="log(x)")
    ax.plot(grid[:, 0], _predict(mono, grid), label="monotonic Lipschitz")
    ax.plot(grid[:, 0], _predict(free, grid), label="unconstrained ReLU")
    ax.set(xlabel="x", ylabel="y", title="Monotonic fit of a noisy log(x)")
    ax.legend(fontsize=8)
    lo, hi = results["monotonic"]["certified_slope_interval"]
    lines = [
        "toy-monotone: decreasing steps on a 2001-point grid over [0.5, 10]:",
        f"  monotonic     {results['monotonic']['decreasing_steps_on_grid']}  (certified slope in [{lo:.3g}, {hi:.3g}])",
        f"  unconstrained {results['unconstrained']['decreasing_steps_on_grid']}",
    ]
    return _finish(out_dir, "monotone", fig, plt, results, lines)


def run_circle(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
    """Level sets r0 (1 - 0.18 cos(11 theta)), r0 in {1, 1.5, 2}, regressed by a GroupSort network."""
    rng = np.random.default_rng(seed)
    x, y = toy_data.oscillating_circle(rng, n=300)
    x_test, y_test = toy_data.oscillating_circle(np.random.default_rng(seed + 1), n=300)
    steps = 1000 if quick else 3000
    # groups of 16 (as the paper's GroupSort(16) example): much more expressive than pairs here
    model = LipschitzMLP(2, 1, (128, 128, 128), lipschitz=2.0, norm="mixed", group_size=16, seed=seed)
    history = train(model, _tensor(x), _tensor(y[:, None]), "mae", steps=steps, batch_size=256, lr=5e-3,
                    seed=seed, progress=progress, description="circle")
    pred = _predict(model, x_test)
    results = {
        "alpha": 0.18, "frequency": 11, "radii": [1.0, 1.5, 2.0], "lipschitz": 2.0,
        "test_rmse": float(np.sqrt(np.mean((pred - y_test) ** 2))),
        "test_mae": float(np.mean(np.abs(pred - y_test))),
        "certified_lipschitz_l1": float(lipschitz_bounds(model).l1[0]),
        "training_seconds": history.seconds,
    }
    save_model(model, Path(out_dir) / "models" / "circle")
    fig, axes, plt = _figure(size=(5.0, 5.0))
    ax = axes[0, 0]
    g = np.linspace(-2.6, 2.6, 201)
    gx, gy = np.meshgrid(g, g)
    values = _predict(model, np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(gx.shape)
    cs = ax.contourf(gx, gy, values, levels=20, cmap="viridis")
    ax.contour(gx, gy, values, levels=[1.0, 1.5, 2.0], colors="w", linewidths=1.5)
    theta = np.linspace(0, 2 * np.pi, 800)
    for r0 in (1.0, 1.5, 2.0):
        r = r0 * (1 - 0.18 * np.cos(11 * theta))
        ax.plot(r * np.cos(theta), r * np.sin(theta), "r--", lw=0.8)
    fig.colorbar(cs, ax=ax)
    ax.set(aspect="equal", title="level sets: network (white), truth (red)")
    lines = [f"toy-circle: test RMSE {results['test_rmse']:.4f} on radii 1, 1.5, 2 "
             f"(certified upper bound on the l1 Lipschitz constant {results['certified_lipschitz_l1']:.6g}; the "
             "construction's target is lambda = 2, the bound adds a float64 rounding margin)"]
    return _finish(out_dir, "circle", fig, plt, results, lines)


def run_abs(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
    """|x| on [-1, 1] with lambda = 1: GroupSort vs ReLU under the same norms."""
    x, y = toy_data.absolute_value()
    steps = 400 if quick else 2000
    models = {
        act: LipschitzMLP(1, 1, (32, 32, 32), lipschitz=1.0, norm="mixed", activation=act, seed=seed)
        for act in ("groupsort", "relu")
    }
    results = {}
    grid = np.linspace(-1, 1, 2001)[:, None]
    for act, model in models.items():
        train(model, _tensor(x), _tensor(y[:, None]), "mse", steps=steps, batch_size=len(x), lr=1e-2,
              seed=seed, progress=progress, description=f"abs/{act}")
        err = _predict(model, grid) - np.abs(grid[:, 0])
        results[act] = {
            "max_error": float(np.abs(err).max()),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "certified_lipschitz": float(lipschitz_bounds(model).l1[0]),
        }
    fig, axes, plt = _figure()
    ax = axes[0, 0]
    ax.plot(grid[:, 0], np.abs(grid[:, 0]), "k:", label="|x|")
    for act, model in models.items():
        ax.plot(grid[:, 0], _predict(model, grid), label=f"{act} (max error {results[act]['max_error']:.3f})")
    ax.set(xlabel="x", title="|x| with lambda = 1")
    ax.legend()
    lines = ["toy-abs: max error on [-1, 1] with lambda = 1:"] + [
        f"  {act:<9} {r['max_error']:.4f}  (certified Lipschitz constant {r['certified_lipschitz']:.3f})"
        for act, r in results.items()
    ]
    return _finish(out_dir, "abs", fig, plt, results, lines)


MOONS_OBJECTIVES = ("MSE", "BCE", "BCE high temperature", "hinge m=1", "hinge m=0.1", "dynamic hinge")
"""The six objectives of Figure 7 (all on the same 1-Lipschitz GroupSort network)."""


def run_moons(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True) -> dict:
    """Two moons: one 1-Lipschitz network per objective; accuracy and certified l1 margins."""
    rng = np.random.default_rng(seed)
    x, y = toy_data.two_moons(rng, n=1000, noise=0.1)
    x_train, y_train, x_val, y_val = x[:800], y[:800], x[800:], y[800:]
    xt, yt = _tensor(x_train), _tensor(y_train)
    margins = dynamic_margins(xt, yt, p=1) + 0.01
    objectives = {
        "MSE": lambda out, t: torch.mean((torch.sigmoid(out[:, 0]) - t) ** 2),
        "BCE": lambda out, t: bce_with_temperature(out, t, 1.0),
        "BCE high temperature": lambda out, t: bce_with_temperature(out, t, 1.0 / 16),
        "hinge m=1": lambda out, t: hinge_loss(out, t, 1.0),
        "hinge m=0.1": lambda out, t: hinge_loss(out, t, 0.1),
        "dynamic hinge": lambda out, t, m: dynamic_hinge_loss(out, t, m),
    }
    steps = 300 if quick else 1500
    results, models = {}, {}
    for name, loss in objectives.items():
        model = LipschitzMLP(2, 1, (64, 64, 64), lipschitz=1.0, norm="mixed", seed=seed)
        targets = (yt, margins) if name == "dynamic hinge" else (yt,)
        train(model, xt, targets, loss, steps=steps, batch_size=len(xt), lr=5e-3, seed=seed,
              progress=progress, description=f"moons/{name}")
        out = _predict(model, x_val)
        signed = (2 * y_val - 1) * out
        lip = float(lipschitz_bounds(model).l1[0])
        radius = np.where(signed > 0, signed / lip, 0.0)  # certified l1 robustness radius
        results[name] = {
            "val_accuracy": float(np.mean(signed > 0)),
            "mean_certified_l1_radius": float(radius.mean()),
            "certified_lipschitz_l1": lip,
        }
        models[name] = model
    fig, axes, plt = _figure(2, 3, size=(4.0, 3.6))
    g = np.linspace(-2.5, 2.5, 151)
    gx, gy = np.meshgrid(g, g)
    flat = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for ax, (name, model) in zip(axes.ravel(), models.items()):
        v = _predict(model, flat).reshape(gx.shape)
        lim = max(np.abs(v).max(), 1e-6)
        ax.contourf(gx, gy, v, levels=21, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.contour(gx, gy, v, levels=[0.0], colors="k")
        ax.scatter(x_val[:, 0], x_val[:, 1], c=y_val, s=4, cmap="bwr", edgecolors="none")
        r = results[name]
        ax.set_title(f"{name}\nacc {r['val_accuracy']:.3f}, radius {r['mean_certified_l1_radius']:.3f}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    lines = ["toy-moons: validation accuracy and mean certified l1 radius (1-Lipschitz GroupSort network):"] + [
        f"  {name:<21} acc {r['val_accuracy']:.3f}  radius {r['mean_certified_l1_radius']:.4f}"
        for name, r in results.items()
    ]
    return _finish(out_dir, "moons", fig, plt, results, lines)


_ALL = {"outlier": run_outlier, "monotone": run_monotone, "circle": run_circle, "abs": run_abs, "moons": run_moons}


def _report(out_dir: Path, runs: list[dict], title: str) -> None:
    report = HtmlReport(title)
    report.paragraph(
        "Toy problems of Kitouni, Nolte & Williams, 'Robust and Provably Monotonic Networks'. "
        "Numbers called certified come from the weights in float64 (upper bounds); all other "
        "numbers are measured on the stated points."
    )
    for run in runs:
        report.heading(run["name"])
        for line in run["text"].splitlines():
            report.paragraph(line)
        report.figure(run["png"], caption=run["name"])
    report.write(Path(out_dir) / "report.html")


def _summary(runs: list[dict]) -> dict:
    return {"results": {r["name"]: r["results"] for r in runs}, "text": "\n".join(r["text"] for r in runs)}


def _no_options(task: str, options: dict) -> None:
    if options:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"Task {task} takes no options; got {sorted(options)}.")


def _single(name: str):
    def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
        _no_options(f"toy-{name}", options)
        result = _ALL[name](out_dir, seed=seed, quick=quick, progress=progress)
        _report(Path(out_dir), [result], f"lipsurrogate toy problem: {name}")
        return _summary([result])

    run.__name__ = f"run_{name}_task"
    return run


def run_all(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """All five toy problems into one run folder with one report."""
    _no_options("toys", options)
    runs = [func(out_dir, seed=seed, quick=quick, progress=progress) for func in _ALL.values()]
    _report(Path(out_dir), runs, "lipsurrogate: the toy problems of Kitouni et al.")
    return _summary(runs)


# Task entry points of the single toys (each writes its own report and summary).
task_outlier = _single("outlier")
task_monotone = _single("monotone")
task_circle = _single("circle")
task_abs = _single("abs")
task_moons = _single("moons")
