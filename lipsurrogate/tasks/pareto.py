r"""``lipsurrogate fit toy-pareto``: MDMM reaches constraints where a weighted sum cannot.

The Fonseca-Fleming problem in two variables,

.. math::

    f_1(\theta) = 1 - e^{-\|\theta - \mathbf 1/\sqrt2\|^2}, \qquad f_2(\theta) = 1 - e^{-\|\theta + \mathbf 1/\sqrt2\|^2},

has a **concave** Pareto front (the segment between the two centres maps onto a curve that bulges
towards larger losses). A weighted sum :math:`(1-w) f_1 + w f_2` has its minima only at the ends
of such a front, so no weight reaches a point in the middle; "minimise :math:`f_1` subject to
:math:`f_2 \le \varepsilon`" does, for every :math:`\varepsilon`. The task sweeps both, plots
them on the exact front, and, when the ``mdmm`` package is installed, runs its ``MaxConstraint``
on the same problem for comparison.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .._io import write_json
from ..train.constraints import MDMM, Constraint

__all__ = ["objectives", "front", "solve_weighted", "solve_constrained", "run"]

_C = 1 / np.sqrt(2.0)


def objectives(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`(f_1, f_2)` of the Fonseca-Fleming problem at ``theta`` (2,)."""
    f1 = 1 - torch.exp(-((theta - _C) ** 2).sum())
    f2 = 1 - torch.exp(-((theta + _C) ** 2).sum())
    return f1, f2


def front(n: int = 200) -> np.ndarray:
    """The exact Pareto front: :math:`\\theta = t(1, 1)`, :math:`t \\in [-1/\\sqrt2, 1/\\sqrt2]`; rows (f1, f2)."""
    t = np.linspace(-_C, _C, n)
    return np.stack([1 - np.exp(-2 * (t - _C) ** 2), 1 - np.exp(-2 * (t + _C) ** 2)], 1)


def _start(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(0.3 * torch.randn(2, generator=g, dtype=torch.float64))


def solve_weighted(weight: float, steps: int = 3000, lr: float = 0.02, seed: int = 0) -> tuple[float, float]:
    """Minimise :math:`(1-w) f_1 + w f_2` with Adam; returns the final :math:`(f_1, f_2)`."""
    theta = _start(seed)
    opt = torch.optim.Adam([theta], lr=lr)
    for _ in range(steps):
        f1, f2 = objectives(theta)
        opt.zero_grad()
        ((1 - weight) * f1 + weight * f2).backward()
        opt.step()
    f1, f2 = objectives(theta.detach())
    return float(f1), float(f2)


def solve_constrained(eps: float, steps: int = 3000, lr: float = 0.02, damping: float = 10.0,
                      seed: int = 0) -> tuple[float, float, float]:
    """Minimise :math:`f_1` subject to :math:`f_2 \\le \\varepsilon` with :class:`MDMM` and Adam.

    Returns the final :math:`(f_1, f_2, \\lambda)`; a cosine learning-rate schedule is used on
    every parameter group, multipliers included (what the negative-rate trick cannot do).
    """
    theta = _start(seed)
    mdmm = MDMM([Constraint(kind="at_most", value=eps, damping=damping, name="f2")]).double()
    opt = torch.optim.Adam(mdmm.parameter_groups([theta], lr=lr))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr / 20)
    for _ in range(steps):
        f1, f2 = objectives(theta)
        result = mdmm(f1, [f2])
        opt.zero_grad()
        result.value.backward()
        opt.step()
        schedule.step()
    f1, f2 = objectives(theta.detach())
    return float(f1), float(f2), float(mdmm.constraints[0].multiplier.detach())


def solve_with_mdmm_package(eps: float, steps: int = 3000, lr: float = 0.02, damping: float = 10.0, seed: int = 0):
    """The same problem with ``mdmm.MaxConstraint`` (negative learning rate on the multiplier)."""
    import mdmm as mdmm_package

    theta = _start(seed)
    constraint = mdmm_package.MaxConstraint(lambda: objectives(theta)[1], eps, damping=damping)
    module = mdmm_package.MDMM([constraint]).double()
    opt = module.make_optimizer([theta], optimizer=torch.optim.Adam, lr=lr)
    for _ in range(steps):
        f1, _ = objectives(theta)
        out = module(f1)
        opt.zero_grad()
        out.value.backward()
        opt.step()
    f1, f2 = objectives(theta.detach())
    return float(f1), float(f2)


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Sweep weights and constraint levels, plot both against the exact front."""
    from ..exceptions import ConfigurationError

    if options:
        raise ConfigurationError(f"toy-pareto takes no options. Got {sorted(options)}.")
    out_dir = Path(out_dir)
    steps = 600 if quick else 3000
    n = 5 if quick else 11
    start = time.perf_counter()
    weighted = [(w, *solve_weighted(w, steps, seed=seed)) for w in np.linspace(0.05, 0.95, n)]
    constrained = [(e, *solve_constrained(e, steps, seed=seed)) for e in np.linspace(0.1, 0.9, n)]
    package = None
    try:
        package = [(e, *solve_with_mdmm_package(e, steps, seed=seed)) for e in np.linspace(0.1, 0.9, n)]
    except ImportError:
        pass
    seconds = time.perf_counter() - start
    pf = front()
    # distance of a point to the exact front: how far from Pareto-optimal it is
    def gap(f1, f2):
        return float(np.min(np.hypot(pf[:, 0] - f1, pf[:, 1] - f2)))

    doc = {
        "weighted_sum": [{"weight": w, "f1": a, "f2": b, "front_distance": gap(a, b)} for w, a, b in weighted],
        "mdmm": [{"eps": e, "f1": a, "f2": b, "multiplier": lam, "front_distance": gap(a, b),
                  "constraint_violation": max(0.0, b - e)} for e, a, b, lam in constrained],
        "mdmm_package": None if package is None else [
            {"eps": e, "f1": a, "f2": b, "front_distance": gap(a, b), "constraint_violation": max(0.0, b - e)}
            for e, a, b in package],
        "middle_of_front_reached_by_weighted_sum": bool(any(0.2 < b < 0.8 for _, _, b in weighted)),
        "seconds": round(seconds, 1),
    }
    write_json(out_dir / "pareto.json", doc)
    _plot(out_dir, pf, weighted, constrained, package)
    lines = ["toy-pareto: Fonseca-Fleming (concave front), minimise f1 subject to f2 <= eps",
             "  weighted sum (1-w) f1 + w f2, final f2 for w = " + ", ".join(f"{w:.2f}: {b:.2f}" for w, _, b in weighted),
             "  MDMM, |f2 - eps| per eps = " + ", ".join(f"{e:.2f}: {abs(b - e):.1e}" for e, _, b, _ in constrained)]
    if package is not None:
        lines.append("  mdmm package, |f2 - eps| per eps = " + ", ".join(f"{e:.2f}: {abs(b - e):.1e}" for e, _, b in package))
    else:
        lines.append("  mdmm package not installed: comparison skipped (pip install mdmm)")
    return {**{k: v for k, v in doc.items() if k != "seconds"}, "text": "\n".join(lines)}


def _plot(out_dir: Path, pf, weighted, constrained, package) -> None:
    from ..report.html import pyplot
    from ..report.html import save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(pf[:, 0], pf[:, 1], "k-", lw=1, label="exact Pareto front (concave)")
    ax.plot([r[1] for r in weighted], [r[2] for r in weighted], "s", ms=9, mfc="none", label="weighted sums")
    ax.plot([r[1] for r in constrained], [r[2] for r in constrained], "o", label="MDMM, f2 <= eps")
    if package is not None:
        ax.plot([r[1] for r in package], [r[2] for r in package], "x", label="mdmm package")
    ax.set(xlabel="f1", ylabel="f2", title="constraints reach the whole front")
    ax.legend()
    save_figure(fig, out_dir / "figures" / "pareto.png")
    plt.close(fig)
