"""The heat2d report: what a person reads after ``lipsurrogate fit heat2d``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._format import up
from .._io import read_json
from .html import HtmlReport, plot_training, pyplot, run_documents, save_figure
from .statement import add_statement, percent, percent_up, run_status

__all__ = ["write_report"]


def write_report(run_dir: Path) -> Path:
    """Figures into ``run_dir/figures`` and a self-contained ``run_dir/report.html``."""
    import torch

    from ..data.dataset import load_dataset
    from ..nn import load_model, to_plain
    from ..data.heat import HeatModes

    plt = pyplot()
    run_dir = Path(run_dir)
    status = run_status(run_dir)  # refuses a run folder whose files changed, before any figure is drawn
    config, cert, ver, fit, history = run_documents(run_dir)
    modes, kappa = HeatModes.from_json(config["initial_condition_modes"]), float(config["diffusivity"])
    model = to_plain(load_model(run_dir / "model")).double()
    cells = load_dataset(run_dir / "certificate.nc")
    data = load_dataset(run_dir / "data.nc")
    figures = {}

    # 1. exact solution, surrogate and error at three times
    t_end = float(config["t_end"])
    g = np.linspace(0, 2 * np.pi, 129)
    X, Y = np.meshgrid(g, g, indexing="ij")
    fig, axes = plt.subplots(3, 3, figsize=(12, 10.5), layout="constrained")
    fields = []
    for t in [0.0, t_end / 2, t_end]:
        pts = np.stack([X.ravel(), Y.ravel(), np.full(X.size, t)], 1)
        with torch.no_grad():
            f = model(torch.from_numpy(pts))[:, 0].numpy().reshape(X.shape)
        u = modes.solution(X, Y, t, kappa)
        fields.append((t, u, f))
    # one colour scale per row, shared by the three times (the decay shows), one colour bar each
    lim = max(np.abs(u).max() for _, u, _ in fields)
    err_lim = max(np.abs(f - u).max() for _, u, f in fields)
    for col, (t, u, f) in enumerate(fields):
        for row, (field, title, cmap, vmax) in enumerate([(u, "exact u", "RdBu_r", lim), (f, "surrogate f", "RdBu_r", lim),
                                                           (f - u, "error f - u", "PuOr", err_lim)]):
            ax = axes[row, col]
            im = ax.pcolormesh(g, g, field.T, cmap=cmap, vmin=-vmax, vmax=vmax, shading="auto")
            ax.set(title=f"{title}, t = {t:.2f}", aspect="equal", xticks=[], yticks=[])
            if col == 2:
                fig.colorbar(im, ax=axes[row, :], shrink=0.85)
    figures["solution"] = (fig, "Exact solution, surrogate and error (measured) at three times, each row on one colour scale.")

    # 2. per-cell bound vs observed vertex error at the middle time layer
    bound = cells.bound.values
    err = np.abs(cells.vertex_error.values)
    mid = bound.shape[2] // 2
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    vmax = bound[:, :, mid].max()
    for ax, field, title in [(axes[0], bound[:, :, mid], "certified per-cell bound"),
                             (axes[1], err[:-1, :-1, mid], "|f - u| at the cell's lower vertex (measured)")]:
        im = ax.pcolormesh(cells.vx.values, cells.vy.values, field.T, vmin=0, vmax=vmax, cmap="magma", shading="flat")
        ax.set(title=f"{title}\n(t in [{cells.vt.values[mid]:.2f}, {cells.vt.values[mid + 1]:.2f}])", aspect="equal")
        fig.colorbar(im, ax=ax, shrink=0.85)
    figures["bound_vs_error"] = (fig, "The certified bound of each cell next to the error observed at its vertex.")

    # 3. training curve
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    plot_training(ax, history, config.get("loss"))
    figures["training"] = (fig, "Training curve.")

    # 4. tightness distribution
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    values = ver["per_cell_tightness"].get("values")
    if values:
        ax.hist(values, bins=40)
    ax.axvline(1.0, color="k", lw=1)
    ax.set(xlabel="per-cell bound / largest sampled |f - u| in the cell", ylabel="cells",
           title="tightness of the per-cell bounds (1 = ideal)")
    figures["tightness"] = (fig, "Distribution of per-cell tightness over the densely sampled cells.")

    pngs = {}
    for name, (fig, caption) in figures.items():
        pngs[name] = (save_figure(fig, run_dir / "figures" / f"{name}.png"), caption)
        plt.close(fig)

    u_max = fit["u_max"]
    report = HtmlReport("lipsurrogate: heat2d surrogate")
    problem = (f"u_t = kappa Laplace(u) on the periodic square [0, 2 pi]^2, t in [0, {t_end:g}], kappa = {kappa:g}; "
               f"the initial condition u0 = sum_k a_k cos(k . x) + b_k sin(k . x) drawn with seed {config['seed']}: "
               + "; ".join(f"k = ({k[0]}, {k[1]}): a = {a:.4g}, b = {b:.4g}"
                           for k, a, b in zip(np.asarray(modes.wavevectors).tolist(), modes.cos, modes.sin))
               + " (config.json: initial_condition_modes)")
    add_statement(report, run_dir, status, problem, u_max)
    word = "certified" if status["certified"] else "claimed (NOT valid: see the top)"
    if config.get("model") == "deeponet":
        op = read_json(run_dir / "operator_fit.json")
        report.paragraph(
            f"Surrogate: a Lipschitz DeepONet (branch: {op['sensors']} sensor values of the initial "
            f"condition, trunk: FeatureLipschitzMLP {config['hidden']}, {config['basis']} basis functions) trained on "
            f"{op['train_samples']} other initial conditions (family seed {op['family_seed']}, py-pde grid "
            f"{'x'.join(map(str, op['family_grid']))}), never on this one. Relative RMSE on {op['held_out_samples']} "
            f"held-out family members: {100 * op['held_out_relative_rmse']:.2f}% (measured). The certificate is about "
            "the operator specialised to this initial condition (the branch evaluated once and folded into the trunk's "
            "free last layer), saved as model.safetensors; the operator itself is operator.safetensors."
        )
    else:
        report.paragraph(
            f"Surrogate: FeatureLipschitzMLP {config['hidden']} on Fourier features of (x, y) up to harmonic "
            f"{config['harmonics']} and t."
        )
    report.heading("Result")
    report.table(
        ["quantity", "value", "% of max|u|", "kind"],
        [
            ["py-pde solver max error", data.attrs["solver_max_error"], percent(data.attrs["solver_max_error"], u_max),
             "exact (vs closed form)"],
            ["RMSE on the py-pde grid" + (" (unseen by the operator)" if config.get("model") == "deeponet" else " (training grid)"),
             fit["rmse"], percent(fit["rmse"], u_max), "measured"],
            ["observed max |f - u|", ver["max_error_observed"], percent(ver["max_error_observed"], u_max),
             "measured (a lower bound of the true max)"],
            [f"bound, {'x'.join(map(str, cert['grid']['cells']))} cells", up(cert["bound"], 4), percent_up(cert["bound"], u_max),
             f"{word}, rounded up"],
            *([[f"bound, {'x'.join(map(str, cert['coarse']['grid']['cells']))} cells", up(cert["coarse"]["bound"], 4),
                percent_up(cert["coarse"]["bound"], u_max), f"{word}, rounded up"]] if cert.get("coarse") else []),
            ["tightness = bound / observed max", f"{ver['tightness']:.2f}", "", "ratio (1 is ideal)"],
            ["violations", ver["violations"], "", "must be 0"],
        ],
    )
    if "ladder" in cert:
        report.heading("From the naive bound to the final one (same grid)")
        observed = ver["max_error_observed"]
        report.table(
            ["bound", "value", "% of max|u|", "tightness", "what it is"],
            [[key.replace("_", " "), up(value, 4), percent_up(value, u_max), f"{value / observed:.2f}",
              cert["ladder_kinds"][key]] for key, value in cert["ladder"].items()],
        )
    report.heading("Constants")
    report.paragraph(f"Method: {cert['method']}.")
    report.table(
        ["input", "L_f (certified, from the weights)", "L_u (certified, from theory)"],
        [[name, up(lf, 4), up(lu, 4)] for name, lf, lu in zip(cert["inputs"], cert["lipschitz_f"], cert["lipschitz_u"])],
    )
    for name, (png, caption) in pngs.items():
        report.figure(png, caption)
    return report.write(run_dir / "report.html")
