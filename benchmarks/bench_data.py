"""Family generation time: 100 heat2d samples on 64x64 with 51 frames, compilation included.

Every configuration runs in a fresh Python process (so numba compilation is counted each time,
as a user would pay it) and is timed from the process start to the dataset in memory:

``pde.solve() per sample``
    The baseline: py-pde's ``DiffusionPDE.solve`` called once per initial condition (numba
    backend, fixed dt, MemoryStorage tracker), on ``--baseline-samples`` samples; its per-sample
    figure is the reference of the ratios.
``lipsurrogate.data.heat2d``
    One compiled stepper reused for every sample (``workers=1``) or one per process
    (``workers=2``).

Target (issue 3): 100 samples in under 30 s on the 2-core machine.

A second table times the generated field problems (``advection1d``, ``burgers1d``,
``allen-cahn1d``, ``reaction-diffusion2d``) on their default grids with the 3x finer reference
solve, as ``lipsurrogate fit`` makes them: py-pde's expressions compiled with numba (the
baseline) against the numpy right-hand sides from py-pde's field operators that
``backend="auto"`` picks (``ExpressionProblem.rate``), each in a fresh process. Both give the same
data to about 1e-15 (the script checks 1e-12).

Usage::

    python benchmarks/bench_data.py [--samples 100] [--baseline-samples 5] [--skip-heat] [--out PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _markdown import header, write

DEFAULT_OUT = Path(__file__).parent / "results" / "data.md"

BASELINE = """
import numpy as np, pde
from lipsurrogate.data.heat import random_periodic_modes
rng = np.random.default_rng(0)
grid = pde.CartesianGrid([[0, 2*np.pi]]*2, [64, 64], periodic=True)
x, y = np.meshgrid(*grid.axes_coords, indexing="ij")
eq = pde.DiffusionPDE(diffusivity=0.05)
for i in range({n}):
    modes = random_periodic_modes(rng)
    state = pde.ScalarField(grid, modes.solution(x, y, 0.0, 0.05))
    storage = pde.MemoryStorage()
    eq.solve(state, t_range=1.0, dt=0.04, solver="euler", backend="numba",
             tracker=[storage.tracker(0.02)])
"""

OURS = """
from lipsurrogate.data.generators import heat2d
ds = heat2d(grid=64, frames=51, t_end=1.0, samples={n}, workers={workers}, backend="numba", progress=False)
assert ds.u.shape == ({n}, 51, 64, 64)
"""


EXPRESSION = """
import numpy as np
from lipsurrogate.data.generators import generate_expression
ds = generate_expression("{name}", seed=0, reference=True, progress=False, backend="{backend}")
np.savez("{out}", **{{v: ds[v].values for v in ds.data_vars}})
"""


def run(code: str) -> float:
    """Seconds for a fresh interpreter to run ``code`` (imports and compilation included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--baseline-samples", type=int, default=5)
    parser.add_argument("--skip-heat", action="store_true", help="only the field problems' table")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    n, nb = args.samples, args.baseline_samples
    expression_table = _expression_table()
    print(expression_table)
    if args.skip_heat:
        write(args.out, "\n".join([
            *header("Data benchmark: the generated field problems, default grids and the 3x finer reference",
                    ["each row is a fresh process: imports and numba compilation included"]),
            expression_table, ""]))
        return

    rows = []
    base = run(BASELINE.format(n=nb))
    base_per_sample = base / nb
    rows.append((f"pde.solve() per sample ({nb} samples)", base, base_per_sample))
    for workers in (1, 2):
        total = run(OURS.format(n=n, workers=workers))
        rows.append((f"lipsurrogate heat2d, {n} samples, workers={workers}", total, total / n))
    lines = [
        "| configuration | total s | s per sample | per-sample speed-up vs pde.solve() |",
        "|---|---:|---:|---:|",
    ]
    for name, total, per in rows:
        lines.append(f"| {name} | {total:.1f} | {per:.3f} | {base_per_sample / per:.1f}x |")
    table = "\n".join(lines)
    print(table)
    text = "\n".join([
        *header("Data benchmark: heat2d family generation (64x64, 51 frames, t in [0, 1], kappa 0.05)",
                ["each row is a fresh process: imports and numba compilation included"]),
        table,
        "",
        "## The generated field problems, default grids and the 3x finer reference",
        "",
        expression_table,
        "",
    ])
    write(args.out, text)


def _expression_table() -> str:
    """Numba-compiled expressions against the numpy rates, per field problem, fresh processes."""
    import tempfile

    import numpy as np

    from lipsurrogate.data.generators import PROBLEMS

    lines = ["| problem | numba, expressions: s | numpy rates (`auto`): s | speed-up | max abs difference |",
             "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in PROBLEMS:
            files = {b: str(Path(tmp) / f"{name}-{b}.npz") for b in ("numba", "auto")}
            seconds = {b: run(EXPRESSION.format(name=name, backend=b, out=f)) for b, f in files.items()}
            with np.load(files["numba"]) as a, np.load(files["auto"]) as b:
                diff = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
            if diff > 1e-12:
                raise AssertionError(f"{name}: the numpy rates differ from the expressions by {diff:.3g}")
            lines.append(f"| {name} | {seconds['numba']:.1f} | {seconds['auto']:.1f} | "
                         f"{seconds['numba'] / seconds['auto']:.1f}x | {diff:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
