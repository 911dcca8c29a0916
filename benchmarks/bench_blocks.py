"""Slope blocks, the fused pair step and the backward bounds (issues 16 and 17): bound, per-cell tightness, seconds.

The error's slope range is bounded once per *block* of cells (theory/cell-bounds.md sections
4 and 12). Small boxes leave fewer GroupSort pairs undecided, so the affine forms tighten much
faster than linearly as the block shrinks, but there are more blocks to propagate. The backward
linear bounds (section 14) choose each undecided pair's relaxation for the sign of its
coefficient and are intersected with the forward forms' range. This benchmark certifies the same
trained networks with:

* the default before 2026-12-03: blocks of 2 cells per axis, ``slopes="both"``, the torch pair
  step, forward forms only (the ratio column's baseline);
* the default of 2026-12-03: small blocks, forward forms only (``backward.disabled()``);
* the default now: the same blocks with the backward bounds (refinement's children use the
  forms alone);
* other blocks and slope methods with the backward bounds; for the 4-input case also finer
  certificate grids whose blocks keep the physical size of the earlier ones (the slope ranges
  cost the same, the cells' half-widths halve; cheap since the per-cell program is compiled);

each with the run's refinement budget, one after the other in this process (so the seconds are
comparable: the ratio column divides by the first variant's measured in the same run). The first
variant also takes the numpy path of the per-cell program (``_lp_kernel.disabled()``), as before
2026-12-07; every variant uses today's refinement (which spends the budget that is left on the
largest boxes when a whole round does not fit).
Cases: ``heat2d`` (the default fit, L_8 loss), ``heat2d-mse`` (the same with the MSE loss),
``heat2d-kappa`` (4 inputs, the default fit, L_8 loss) and ``heat2d-kappa-mse`` (the same with
the MSE loss, its default before the backward bounds). Every bound is certified; observed errors
are measurements.

Run: ``python benchmarks/bench_blocks.py [--cases heat2d,heat2d-mse,heat2d-kappa,heat2d-kappa-mse] [--work DIR]``
(about 30 minutes on 2 cores; fitted runs are kept in ``--work``).
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
    "heat2d-kappa-mse": ("heat2d-kappa", {"loss": "mse"}),
}
VARIANTS = {  # label, cells (None: the run's), blocks, slopes, fused pair step, backward bounds, compiled LP
    3: [("2 x 2 x 2, both, torch step, forms only (before 2026-12-03)", None, 2, "both", False, False, False),
        ("1 x 1 x 4, affine, forms only (2026-12-03)", None, [1, 1, 4], "affine", True, False, True),
        ("1 x 1 x 4, affine (default)", None, [1, 1, 4], "affine", True, True, True),
        ("1 x 1 x 8, affine", None, [1, 1, 8], "affine", True, True, True),
        ("1 x 1 x 2, affine", None, [1, 1, 2], "affine", True, True, True)],
    4: [("64 x 64 x 16 x 8 cells, 2 x 2 x 2 x 2, both, torch step, forms only (before 2026-12-03)",
         [64, 64, 16, 8], 2, "both", False, False, False),
        ("64 x 64 x 16 x 8 cells, 1 x 1 x 2 x 2, both (default until 2026-12-07)",
         [64, 64, 16, 8], [1, 1, 2, 2], "both", True, True, True),
        ("128 x 128 x 16 x 8 cells, 2 x 2 x 2 x 2, both (default)", [128, 128, 16, 8], [2, 2, 2, 2], "both",
         True, True, True),
        ("128 x 128 x 16 x 8 cells, 2 x 2 x 2 x 2, affine", [128, 128, 16, 8], [2, 2, 2, 2], "affine", True, True,
         True),
        ("128 x 128 x 16 x 16 cells, 2 x 2 x 2 x 4, both", [128, 128, 16, 16], [2, 2, 2, 4], "both", True, True,
         True),
        ("128 x 128 x 32 x 16 cells, 2 x 2 x 4 x 4, both", [128, 128, 32, 16], [2, 2, 4, 4], "both", True, True,
         True)],
}


def main() -> None:
    from lipsurrogate.bounds import _lp_kernel, _pair_kernel, backward, certify

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
        for label, cells, block, slopes, fused, backward_bounds, compiled_lp in VARIANTS[d]:
            grid = dict(kwargs, cells=cells) if cells is not None else kwargs
            with (contextlib.nullcontext() if fused else _pair_kernel.disabled(),
                  contextlib.nullcontext() if backward_bounds else backward.disabled(),
                  contextlib.nullcontext() if compiled_lp else _lp_kernel.disabled()):
                start = time.perf_counter()
                cert = certify(model, reference, local_block=block, slopes=slopes, **grid)
                seconds = time.perf_counter() - start
            baseline = baseline or seconds
            cell = bench_tight._per_cell_tightness(cert, model, reference, np.random.default_rng(1))
            ladder, secs = cert.document["ladder"], cert.document["seconds"]
            rows.append((case, label, 100 * ladder["exact_local"] / u_max, 100 * cert.bound / u_max,
                         100 * observed / u_max, cert.bound / observed, cell, secs["local_constants"],
                         secs.get("refinement", 0.0), seconds, seconds / baseline))
            print(f"{case:13s} {label:45s} bound {rows[-1][3]:6.2f}%  per-cell {cell:5.2f}  {seconds:6.1f} s "
                  f"({seconds / baseline:.2f}x)", flush=True)
    lines = header("Slope blocks, the fused pair step and the backward bounds (issues 16, 17)", [
        "same trained network per case (seed 0, the task's refinement budget); only the certifier's grid (4 inputs), "
        "blocks, slope method, pair step, backward bounds and per-cell program change; every bound is certified",
        "observed = the run's verification max error (dense + random + adversarial: a lower bound on the true max)",
        "per-cell = median over cells of bound / largest sampled error in the cell (vertices + 8 random points)",
        "seconds: slope ranges (local constants), refinement, whole certificate; ratio = whole / the first "
        "variant's, measured one after the other in this run",
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
