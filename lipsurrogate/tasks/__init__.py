"""Named recipes that ``lipsurrogate fit TASK`` runs.

Each task is a function ``run(out_dir, *, seed, quick, progress) -> dict`` (the summary) in a
module of this package, registered in :data:`TASKS` with a one-line description. The registry
imports nothing heavy, so listing tasks is instant.
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from ..exceptions import ConfigurationError

__all__ = ["TASKS", "get_task"]

TASKS: dict[str, tuple[str, str]] = {
    "heat2d": ("lipsurrogate.tasks.heat2d:run", "certified surrogate of the 2D heat equation (the main job)"),
    "toys": ("lipsurrogate.tasks.toys:run_all", "all five toy problems of Kitouni et al. (sections 3 and 5)"),
    "toy-outlier": ("lipsurrogate.tasks.toys:task_outlier", "sin(x) with one outlier: Lipschitz vs unconstrained fit"),
    "toy-monotone": ("lipsurrogate.tasks.toys:task_monotone", "noisy log(x) with a gap and a missing tail: monotone fit"),
    "toy-circle": ("lipsurrogate.tasks.toys:task_circle", "circle with an oscillating radius, GroupSort network"),
    "toy-abs": ("lipsurrogate.tasks.toys:task_abs", "|x| with lambda = 1: GroupSort fits it, ReLU cannot"),
    "toy-moons": ("lipsurrogate.tasks.toys:task_moons", "two moons with six objectives: accuracy and margin"),
}
"""Task name -> ("module:function", description)."""


def get_task(name: str) -> Callable[..., dict]:
    """The run function of task ``name``."""
    if name not in TASKS:
        raise ConfigurationError(f"Unknown task {name!r}. Known tasks: {', '.join(TASKS)}.")
    target, _ = TASKS[name]
    module, func = target.split(":")
    return getattr(import_module(module), func)
