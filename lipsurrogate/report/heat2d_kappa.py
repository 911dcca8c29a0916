"""The heat2d-kappa report: one surrogate for a range of diffusivities, certified on (x, y, t, kappa)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._format import up
from .html import HtmlReport, pyplot, run_documents, save_figure
from .statement import add_statement, percent, percent_up, run_status

__all__ = ["write_report"]


def write_report(run_dir: Path) -> Path:
    """The ladder of bounds and the bound and error per diffusivity, as ``run_dir/report.html``."""
    from ..data.dataset import load_dataset

    run_dir = Path(run_dir)
    status = run_status(run_dir)  # refuses a run folder whose files changed, before any figure is drawn
    config, cert, ver, fit, _ = run_documents(run_dir)
    cells = load_dataset(run_dir / "certificate.nc")
    plt = pyplot()
    bound = cells.bound.values  # (cx, cy, ct, ckappa)
    kap = cells.vkappa.values
    err = np.abs(cells.vertex_error.values)
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(0.5 * (kap[1:] + kap[:-1]), bound.max(axis=(0, 1, 2)), "o-", label="bound per kappa cell (max over x, y, t)")
    ax.plot(kap, err.max(axis=(0, 1, 2)), "s--", label="|f - u| at the vertices (measured)")
    for k in np.linspace(config["kappa_min"], config["kappa_max"], config["n_kappa"]):
        ax.axvline(k, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="diffusivity kappa (grey: training values)", ylabel="error", yscale="log",
           title="one surrogate for the whole range")
    ax.legend()
    png = save_figure(fig, run_dir / "figures" / "bound_vs_kappa.png")
    plt.close(fig)

    u_max = fit["u_max"]
    rep = HtmlReport("lipsurrogate: heat2d surrogate conditioned on the diffusivity")
    about = (f"u_t = kappa Laplace(u) on [0, 2 pi]^2, t in [0, {config['t_end']:g}], kappa in [{config['kappa_min']}, "
             f"{config['kappa_max']}]; one initial condition (seed {config['seed']}, config.json: "
             "initial_condition_modes); the network takes (x, y, t, kappa)")
    add_statement(rep, run_dir, status, about, u_max)
    word = "certified" if status["certified"] else "claimed (NOT valid: see the top)"
    rep.heading("Result")
    rep.table(["quantity", "value", "% of max|u|", "kind"], [
        ["fit RMSE (training grid)", fit["rmse"], percent(fit["rmse"], u_max), "measured"],
        ["observed max |f - u|", ver["max_error_observed"], percent(ver["max_error_observed"], u_max), "measured"],
        ["bound", up(cert["bound"], 4), percent_up(cert["bound"], u_max), f"{word}, rounded up"],
        ["tightness", f"{ver['tightness']:.2f}", "", "ratio (1 is ideal)"],
        ["violations", ver["violations"], "", "must be 0"]])
    rep.table(["bound", "value", "% of max|u|", "what it is"],
              [[k.replace("_", " "), up(v, 4), percent_up(v, u_max), cert["ladder_kinds"][k]]
               for k, v in cert["ladder"].items()])
    rep.table(["input", "L_f (certified)", "L_u (theory)"],
              [[n, up(a, 4), up(b, 4)] for n, a, b in zip(cert["inputs"], cert["lipschitz_f"], cert["lipschitz_u"])])
    rep.figure(png, "Bound and vertex error across the diffusivity range (between the training values too).")
    return rep.write(run_dir / "report.html")
