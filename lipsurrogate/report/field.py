"""The report of a field run (generated 1-D/2-D PDEs and PDEBench samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._format import up
from .html import HtmlReport, plot_training, pyplot, run_documents, save_figure
from .statement import add_statement, percent, percent_up, run_status

__all__ = ["write_report"]


def write_report(run_dir: Path) -> Path:
    """Figures into ``run_dir/figures`` and ``run_dir/report.html``."""
    import torch

    from ..data.dataset import load_dataset
    from ..nn import load_model, to_plain
    from ..data.gridded import field_arrays

    run_dir = Path(run_dir)
    status = run_status(run_dir)  # refuses a run folder whose files changed, before any figure is drawn
    plt = pyplot()
    config, cert, ver, fit, history = run_documents(run_dir)
    ds = load_dataset(run_dir / "data.nc")
    cells = load_dataset(run_dir / "certificate.nc")
    name, inputs, axes, values = field_arrays(ds, config["field"], config["inputs"] if config["source"] == "file" else None)
    model = to_plain(load_model(run_dir / "model")).double()
    pngs = {}

    # 1. data, surrogate and error at the vertices (1-D: space-time images; 2-D: the last frame)
    points = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], 1)
    with torch.no_grad():
        f = model(torch.from_numpy(points))[:, 0].numpy().reshape(values.shape)
    fig, panels = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    d = len(axes)
    titles = ["data u", "surrogate f", "f - u at the data points"]
    if d == 1:
        for ax, field, title in zip(panels, [values, f, f - values], titles):
            ax.plot(axes[0], field)
            ax.set(title=title, xlabel=inputs[0])
        caption = "Data, surrogate and their difference"
    else:
        if d == 2:
            show = [values, f, f - values]
            extent = dict(x=axes[1], y=axes[0])
            labels = (inputs[1], inputs[0])
            caption = f"Data, surrogate and their difference over ({inputs[0]}, {inputs[1]})"
        else:
            middle = [len(a) // 2 for a in axes[2:]]
            cut = (slice(None), slice(None), *middle)
            show = [values[cut].T, f[cut].T, (f - values)[cut].T]
            extent = dict(x=axes[0], y=axes[1])
            labels = (inputs[0], inputs[1])
            fixed = ", ".join(f"{n} = {a[i]:.4g}" for n, a, i in zip(inputs[2:], axes[2:], middle))
            caption = f"Data, surrogate and their difference at {fixed} (the middle grid value of each)"
        vmax = np.abs(values).max()
        for ax, field, title in zip(panels, show, titles):
            lim = vmax if title != titles[2] else np.abs(show[2]).max()
            im = ax.pcolormesh(extent["x"], extent["y"], field, cmap="RdBu_r" if lim == vmax else "PuOr",
                               vmin=-lim, vmax=lim, shading="auto")
            ax.set(title=title, xlabel=labels[0], ylabel=labels[1])
            fig.colorbar(im, ax=ax, shrink=0.9)
    pngs["fields"] = (save_figure(fig, run_dir / "figures" / "fields.png"), caption)
    plt.close(fig)

    # 2. per-cell bound map (max over the other axes) and the ladder of bounds
    bound = cells.bound.values
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
    if bound.ndim == 1:
        ax0.plot(bound)
        ax0.set(title="certified per-cell bound", xlabel=f"{inputs[0]} cell", ylabel="bound")
        im = None
    else:
        rest = tuple(range(2, bound.ndim))
        im = ax0.pcolormesh(bound.max(axis=rest).T if rest else bound.T, cmap="magma", shading="auto")
        over = f" (max over {', '.join(inputs[2:])})" if rest else ""
        ax0.set(title=f"certified per-cell bound{over}", xlabel=f"{inputs[0]} cell", ylabel=f"{inputs[1]} cell")
    if im is not None:
        fig.colorbar(im, ax=ax0)
    keys = list(cert["ladder"])
    ax1.barh(range(len(keys)), [cert["ladder"][k] for k in keys], color="tab:blue")
    ax1.axvline(ver["max_error_observed"], color="k", ls="--", label="observed max |f - u_I|")
    ax1.set_yticks(range(len(keys)), [k.replace("_", " ") for k in keys])
    ax1.set(xscale="log", title="certified bounds (level 1)", xlabel="bound")
    ax1.legend(loc="lower right")
    pngs["bounds"] = (save_figure(fig, run_dir / "figures" / "bounds.png"),
                      "Where the bound is large, and how each refinement of the method tightens it")
    plt.close(fig)

    # 3. training curve
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    plot_training(ax, history, config.get("loss"))
    pngs["training"] = (save_figure(fig, run_dir / "figures" / "training.png"), "Training loss")
    plt.close(fig)

    u_max = fit["u_max"]
    observed = ver["max_error_observed"]
    source = {"pdebench": f"PDEBench file {config['file']} (sample {config['sample']})",
              "file": f"file {ds.attrs.get('source', config['file'])}"}.get(config["source"], config["source"])
    title = config["field"] if config["source"] == "file" else config["source"]
    report = HtmlReport(f"lipsurrogate: surrogate of {title}")
    about = (f"{source}: field '{name}' over ({', '.join(inputs)}) on {'x'.join(map(str, cert['grid']['vertices']))} "
             f"points (stored in data.nc); equation: {ds.attrs.get('equation', 'as in the file')}"
             + (f"; notes on the data: {ds.attrs['notes']}" if ds.attrs.get("notes") else ""))
    add_statement(report, run_dir, status, about, u_max)
    word = "certified" if status["certified"] else "claimed (NOT valid: see the top)"
    report.heading("Level 1: against the data's multilinear interpolant")
    report.paragraph(f"Method: {cert['method']}.")
    report.table(
        ["quantity", "value", "% of max|u|", "kind"],
        [["fit RMSE (data grid)", fit["rmse"], percent(fit["rmse"], u_max), "measured"],
         ["observed max |f - u_I|", observed, percent(observed, u_max), "measured (a lower bound of the true max)"],
         ["bound", up(cert["bound"], 4), percent_up(cert["bound"], u_max), f"{word}, rounded up"],
         ["tightness = bound / observed max", f"{ver['tightness']:.2f}", "", "ratio (1 is ideal)"],
         ["violations", ver["violations"], "", "must be 0"]],
    )
    report.table(
        ["bound", "value", "% of max|u|", "tightness"],
        [[k.replace("_", " "), up(v, 4), percent_up(v, u_max), f"{v / observed:.2f}"] for k, v in cert["ladder"].items()],
    )
    report.table(
        ["input", "L_f (certified, weights)", "L_u_I (exact, data)"],
        [[n, up(a, 4), up(b, 4)] for n, a, b in zip(inputs, cert["lipschitz_f"], cert["lipschitz_u"])],
    )
    l3 = ver.get("level3")
    if l3:
        report.heading("Level 3: an estimate against the true solution")
        rows = [["reference", l3["reference_kind"], ""],
                ["max |u_I - u_ref|", l3["interpolant_gap"], l3["interpolant_gap_kind"]],
                ["solver error", l3["solver_error"], l3["solver_error_kind"]],
                ["bound estimate (level 1 + the two above)", l3["bound_estimate"], l3["kind"]]]
        if l3.get("max_error_observed") is not None:
            rows += [["observed max |f - u_ref| (reference points)", l3["max_error_observed"], "measured"],
                     ["points above the estimate", l3["exceedances"], "an estimate can be exceeded; 0 expected"]]
        report.table(["quantity", "value", "kind"], rows)
    for png, caption in pngs.values():
        report.figure(png, caption)
    return report.write(run_dir / "report.html")
