"""Named recipes that ``lipsurrogate fit TASK`` runs.

Each task is a function ``run(out_dir, *, seed, quick, progress) -> dict`` (the summary) in a
module of this package, registered in :data:`TASKS` with a one-line description. The registry
imports nothing heavy, so listing tasks is instant.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from ..exceptions import ConfigurationError

__all__ = ["TASKS", "get_task", "task_module"]

TASKS: dict[str, tuple[str, str]] = {
    "heat2d": ("lipsurrogate.tasks.heat2d:run", "certified surrogate of the 2D heat equation (the main job)"),
    "heat2d-kappa": ("lipsurrogate.tasks.heat2d_kappa:run",
                     "one heat2d surrogate for a range of diffusivities, certified on (x, y, t, kappa)"),
    "field": ("lipsurrogate.tasks.field:run_field",
              "any gridded file (FILE --var NAME [--inputs a,b,c]): 1 to 4 inputs of any names, level-1 certificate"),
    "pdebench": ("lipsurrogate.tasks.field:run_pdebench", "one sample of a PDEBench file (FILE --sample --field), level-1 certificate"),
    "advection1d": ("lipsurrogate.tasks.field:run_advection1d", "u_t + c u_x = 0 (closed-form reference), level-1 certificate"),
    "burgers1d": ("lipsurrogate.tasks.field:run_burgers1d", "viscous Burgers, level-1 certificate, finer-solve reference"),
    "allen-cahn1d": ("lipsurrogate.tasks.field:run_allen_cahn1d", "Allen-Cahn, level-1 certificate, finer-solve reference"),
    "reaction-diffusion2d": ("lipsurrogate.tasks.field:run_reaction_diffusion2d",
                             "FitzHugh-Nagumo field u, level-1 certificate, finer-solve reference"),
    "trigger": ("lipsurrogate.tasks.trigger:run",
                "monotonic Lipschitz trigger classifier vs unconstrained NN and LightGBM BDTs (simulated LHCb-like data)"),
    "toy-pareto": ("lipsurrogate.tasks.pareto:run", "MDMM vs weighted sums on a concave Pareto front (Fonseca-Fleming)"),
    "toys": ("lipsurrogate.tasks.toys:run_all", "all five toy problems of Kitouni et al. (sections 3 and 5)"),
    "toy-outlier": ("lipsurrogate.tasks.toys:task_outlier", "sin(x) with one outlier: Lipschitz vs unconstrained fit"),
    "toy-monotone": ("lipsurrogate.tasks.toys:task_monotone", "noisy log(x) with a gap and a missing tail: monotone fit"),
    "toy-circle": ("lipsurrogate.tasks.toys:task_circle", "circle with an oscillating radius, GroupSort network"),
    "toy-abs": ("lipsurrogate.tasks.toys:task_abs", "|x| with lambda = 1: GroupSort fits it, ReLU cannot"),
    "toy-moons": ("lipsurrogate.tasks.toys:task_moons", "two moons with six objectives: accuracy and margin"),
    "hepmass": ("lipsurrogate.tasks.hepmass:run",
                "parametric mass-conditioned classifiers, Table 1 of Anzalone et al. (synthetic, or --data FILE)"),
}
"""Task name -> ("module:function", description)."""


def get_task(name: str) -> Callable[..., dict]:
    """The run function of task ``name``."""
    if name not in TASKS:
        raise ConfigurationError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
    target, _ = TASKS[name]
    module, func = target.split(":")
    return getattr(import_module(module), func)


def task_module(run_dir):
    """The task module (with ``certify``, ``verify``, ``report``) that wrote the run folder ``run_dir``."""
    import json
    from pathlib import Path

    from ..exceptions import ModelFileError

    path = Path(run_dir) / "config.json"
    try:
        task = json.loads(path.read_text())["task"]
    except (OSError, KeyError, ValueError) as err:
        raise ModelFileError(f"{run_dir} is not a run folder (config.json missing or unreadable: {err}).") from None
    if task == "heat2d":
        return import_module("lipsurrogate.tasks.heat2d")
    if task == "heat2d-kappa":
        return import_module("lipsurrogate.tasks.heat2d_kappa")
    if task in ("field", "pdebench", "advection1d", "burgers1d", "allen-cahn1d", "reaction-diffusion2d"):
        return import_module("lipsurrogate.tasks.field")
    raise ModelFileError(f"Run folder {run_dir} is from task {task!r}, which has no certificate to recompute.")
