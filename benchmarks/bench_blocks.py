"""Slope blocks and the fused pair step (issues 16 and 17): bound, per-cell tightness and seconds.

The error's slope range is bounded once per *block* of cells (theory/cell-bounds.md sections
4 and 12). Small boxes leave fewer GroupSort pairs undecided, so the affine forms tighten much
faster than linearly as the block shrinks, but there are more blocks to propagate. This
benchmark certifies the same trained networks with:

* the old default: blocks of 2 cells per axis, ``slopes="both"``, the torch pair step;
* the same with the fused numba pair step (``lipsurrogate/bounds/_pair_kernel.py``; same formulas);
* blocks per axis (``local_block=(1, 1, 4)``: single cells in x and y, 4 in t; the new heat2d
  default), ``(1, 1, 2)`` and single cells, affine forms;

each with the run's grid and refinement budget, one after the other in this process (so the
seconds are comparable: the ratio column divides by the old default's measured in the same run).
Cases: ``heat2d`` (the default fit, L_8 loss), ``heat2d-mse`` (the same with the MSE loss) and
``heat2d-kappa`` (4 inputs). Every bound is certified; observed errors are measurements.

Run: ``python benchmarks/bench_blocks.py [--cases heat2d,heat2d-mse,heat2d-kappa] [--work DIR]``
(about 15 minutes on 2 cores; fitted runs are kept in ``--work``).
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np

import bench_tight
from _markdown import header, write

CASES = {
    "heat2d": ("heat2d", {}),
    "heat2d-mse": ("heat2d", {"loss": "mse"}),
    "heat2d-kappa": ("heat2d-kappa", {}),
}
VARIANTS = {
    3: [("2 x 2 x 2, both, torch step (old default)", 2, "both", False),
        ("2 x 2 x 2, both", 2, "both", True),
        ("1 x 1 x 4, affine (new default)", [1, 1, 4], "affine", True),
        ("1 x 1 x 2, affine", [1, 1, 2], "affine", True),
        ("1 x 1 x 1, affine", 1, "affine", True)],
    4: [("2 x 2 x 2 x 2, both, torch step (old default)", 2, "both", False),
        ("2 x 2 x 2 x 2, both", 2, "both", True),
        ("1 x 1 x 4 x 4, both", [1, 1, 4, 4], "both", True),
        ("1 x 1 x 2 x 2, both (new default)", [1, 1, 2, 2], "both", True),
        ("1 x 1 x 2 x 2, affine", [1, 1, 2, 2], "affine", True)],
}


def main() -> None:
    from lipsurrogate.bounds import _pair_kernel, certify

    args = bench_tight.arguments(__doc__.splitlines()[0], CASES, ".block_runs", "blocks.md")
    rows = []
    for case in args.cases.split(","):
        run = bench_tight._fit(case, args.work, CASES)
        observed = float(json.loads((run / "verification.json").read_text())["max_error_observed"])
        u_max = float(json.loads((run / "fit.json").read_text())["u_max"])
        model, reference, kwargs = bench_tight._problem(run)
        kwargs.pop("local_block")
        d = len(kwargs["cells"]) if "cells" in kwargs else len(kwargs["edges"])
        baseline = None
        for label, block, slopes, fused in VARIANTS[d]:
            with contextlib.nullcontext() if fused else _pair_kernel.disabled():
                start = time.perf_counter()
                cert = certify(model, reference, local_block=block, slopes=slopes, **kwargs)
                seconds = time.perf_counter() - start
            baseline = baseline or seconds
            cell = bench_tight._per_cell_tightness(cert, model, reference, np.random.default_rng(1))
            ladder, secs = cert.document["ladder"], cert.document["seconds"]
            rows.append((case, label, 100 * ladder["exact_local"] / u_max, 100 * cert.bound / u_max,
                         100 * observed / u_max, cert.bound / observed, cell, secs["local_constants"],
                         secs.get("refinement", 0.0), seconds, seconds / baseline))
            print(f"{case:13s} {label:45s} bound {rows[-1][3]:6.2f}%  per-cell {cell:5.2f}  {seconds:6.1f} s "
                  f"({seconds / baseline:.2f}x)", flush=True)
    lines = header("Slope blocks and the fused pair step (issues 16, 17)", [
        "same trained network per case (seed 0, the task's default grid and refinement budget); only the "
        "certifier's blocks, slope method and pair step change; every bound is certified",
        "observed = the run's verification max error (dense + random + adversarial: a lower bound on the true max)",
        "per-cell = median over cells of bound / largest sampled error in the cell (vertices + 8 random points)",
        "seconds: slope ranges (local constants), refinement, whole certificate; ratio = whole / the old default's, "
        "measured one after the other in this run",
    ])
    lines += ["| case | blocks, slopes | before refinement | bound | observed | tightness | per-cell median | "
              "slopes s | refinement s | certificate s | ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case, label, local, bound, obs, tight, cell, s_loc, s_ref, sec, ratio in rows:
        lines.append(f"| {case} | {label} | {local:.2f}% | {bound:.2f}% | {obs:.2f}% | {tight:.2f} | {cell:.2f} | "
                     f"{s_loc:.1f} | {s_ref:.1f} | {sec:.1f} | {ratio:.2f} |")
    write(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
