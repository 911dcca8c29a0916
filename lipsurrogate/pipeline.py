"""``fit(task)``: run a named task into an atomically written run folder.

The stages (data -> model -> training -> bounds -> verification -> report) live in the task
recipes and the subpackages; this module only names the folder, seeds, records the environment
and config, and makes the folder appear only when the run succeeded.
"""

from __future__ import annotations

import time
from pathlib import Path

from ._io import atomic_directory, write_json
from .environment import environment
from .tasks import get_task

__all__ = ["fit", "default_run_dir"]


def default_run_dir(task: str, root: str | Path = "runs") -> Path:
    """``runs/<task>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{task}-{stamp}"
    k = 1
    while path.exists():
        path = Path(root) / f"{task}-{stamp}-{k}"
        k += 1
    return path


def fit(
    task: str,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    **options,
) -> dict:
    """Run ``task`` and return its summary (with ``run_dir`` and a printable ``text``).

    ``options`` go to the task (e.g. ``grid=32, steps=1000`` for heat2d); a task refuses
    options it does not know. The run folder appears only when every stage succeeded.
    """
    run = get_task(task)
    run_dir = Path(out) if out is not None else default_run_dir(task)
    start = time.perf_counter()
    with atomic_directory(run_dir) as tmp:
        write_json(tmp / "config.json", {"task": task, "seed": seed, "quick": quick, **options})
        write_json(tmp / "environment.json", environment())
        summary = run(tmp, seed=seed, quick=quick, progress=progress, **options)
        summary["seconds"] = time.perf_counter() - start
        write_json(tmp / "summary.json", {k: v for k, v in summary.items() if k != "text"})
    summary["run_dir"] = str(run_dir)
    return summary
