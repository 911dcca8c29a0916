"""Certificate stages of this checkout against an earlier commit's, in one process, alternately.

Speed-ups of a few tens of percent drown in this shared 2-core machine's drift (1.2-1.3x within
minutes) when each side runs in its own process. Here both sides run in the **same** process:

- the earlier commit's ``lipsurrogate`` package is exported with ``git archive`` into a temporary
  folder under the name ``lipsurrogate_base`` (the package imports itself only relatively, so
  both versions load side by side, each with its own numba kernels, compiled once before timing);
- each stage runs ``--rounds`` times per side, the order alternating (base first in even rounds);
  the table gives the medians and the ratio of this checkout's median to the base's;
- every stage also compares the two sides' results: "identical" (bit for bit) or the largest
  relative difference of the certified widths or bounds.

Stages, on the model of a ``lipsurrogate fit heat2d`` run folder (``--run``; fitted here with the
defaults when not given):

0. the float32 forward pass over the 129 x 129 x 33 vertices of the default certificate grid (the
   unit of issue 17's "passes"; the same torch code on both sides, so its ratio shows the drift)
   and the float64 values with their rounding bounds there (``bounds.evaluate_float64``);
1. the error's slope ranges on the default certificate's slope blocks (1 x 1 x 4 cells of the
   128 x 128 x 32 grid: affine forms and backward bounds, ``bounds.affine.error_slopes``);
2. the network's derivative intervals on 2 x 2 x 2 blocks of the same grid (interval propagation,
   ``bounds.local.network_intervals``: networks the affine forms do not support);
3. the whole heat2d certificate (``tasks.heat2d.certify``: both grids and the refinement);
4. with ``--task-runs``, the whole certificate of other tasks' run folders (their ``certify``).

Usage::

    python benchmarks/bench_revision.py [--base a307172] [--run RUN_DIR] [--rounds 3] [--out PATH]
        [--task-runs heat2d-kappa=RUN_DIR,burgers1d=RUN_DIR]
"""

from __future__ import annotations

import argparse
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from _markdown import header, write

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).parent / "results" / "revision.md"
TASK_MODULES = {"heat2d": "heat2d", "heat2d-kappa": "heat2d_kappa", "burgers1d": "field", "advection1d": "field",
                "allen-cahn1d": "field", "reaction-diffusion2d": "field"}
"""Task names of ``--task-runs`` and the ``lipsurrogate.tasks`` module whose ``certify`` re-certifies their runs."""


def import_base(commit: str, folder: Path):
    """The ``lipsurrogate`` package of ``commit``, imported as ``lipsurrogate_base``."""
    archive = subprocess.run(["git", "archive", commit, "lipsurrogate"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "lipsurrogate").rename(folder / "lipsurrogate_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("lipsurrogate_base")


def grid_blocks(cells: tuple[int, int, int], block: tuple[int, int, int], t_end: float):
    """Lower and upper corners of the slope blocks of the heat2d certificate grid (the certifier's
    own ``block_boxes`` on the grid's cell edges)."""
    from lipsurrogate.bounds.tiles import block_boxes

    edges = [np.linspace(0, 2 * np.pi, cells[0] + 1), np.linspace(0, 2 * np.pi, cells[1] + 1),
             np.linspace(0, t_end, cells[2] + 1)]
    lo, hi, _ = block_boxes(edges, block)
    return lo, hi


def compare(a: np.ndarray, b: np.ndarray) -> str:
    """"identical" or the largest relative difference."""
    if np.array_equal(a, b):
        return "identical"
    return f"max relative difference {np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)):.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="a307172", help="the earlier commit (default: stop 33's last)")
    parser.add_argument("--run", type=Path, default=None, help="a heat2d run folder (default: fit one here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task-runs", default="",
                        help="more whole certificates: TASK=RUN_DIR pairs, comma separated (e.g. heat2d-kappa=runs/kappa)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import torch

    import lipsurrogate
    from lipsurrogate._threads import numpy_blas_threads

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        base = import_base(args.base, Path(tmp) / "base")
        run = Path(tmp) / "heat2d"  # certify writes certificate.* into the folder: work on a copy
        if args.run is not None:
            shutil.copytree(args.run, run)
        else:
            subprocess.run([sys.executable, "-m", "lipsurrogate", "fit", "heat2d", "--out", str(run), "--no-progress"],
                           check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        sides = {}
        for name, package in (("base", base), ("this checkout", lipsurrogate)):
            heat2d = importlib.import_module(f"{package.__name__}.tasks.heat2d")
            config, reference, model = heat2d._load_run(run)
            sides[name] = dict(package=package, heat2d=heat2d, config=config, reference=reference, model=model)
        t_end = float(sides["base"]["config"]["t_end"])
        box = np.asarray(sides["base"]["config"]["domain"], dtype=np.float64)
        slope_lo, slope_hi = grid_blocks((128, 128, 32), (1, 1, 4), t_end)
        interval_lo, interval_hi = grid_blocks((128, 128, 32), (2, 2, 2), t_end)

        edges = [np.linspace(0, 2 * np.pi, 129), np.linspace(0, 2 * np.pi, 129), np.linspace(0, t_end, 33)]
        vertices = np.stack([m.ravel() for m in np.meshgrid(*edges, indexing="ij")], axis=1)
        vertices32 = torch.tensor(vertices, dtype=torch.float32)

        def forward32(side):  # the passes' unit: the plain float32 network, chunks of 8,192 points
            plain = side.setdefault("plain", side["package"].nn.to_plain(side["model"]))
            with torch.no_grad():
                return torch.cat([plain(vertices32[s : s + 8192]) for s in range(0, len(vertices32), 8192)]).numpy()

        def vertex_values(side):
            bounds = side["package"].bounds
            chain = side.setdefault("chain", bounds.extract_chain(side["model"]))
            return np.concatenate(bounds.evaluate_float64(chain, vertices), axis=1)

        def slopes(side):
            return np.stack(side["package"].bounds.affine.error_slopes(side["model"], side["reference"], slope_lo,
                                                                       slope_hi, box))

        def intervals(side):
            return np.stack(side["package"].bounds.local.network_intervals(side["model"], interval_lo, interval_hi))

        def certificate(side):
            return np.asarray(side["heat2d"].certify(run)["bound"])

        stages = [
            (f"float32 forward pass over the {len(vertices):,} vertices (the same code on both sides: the "
             "machine's drift)", forward32, len(vertices)),
            (f"float64 values + rounding bounds at the {len(vertices):,} vertices (`evaluate_float64`)",
             vertex_values, len(vertices)),
            (f"error slope ranges, affine forms + backward bounds, {len(slope_lo):,} blocks of 1 x 1 x 4 cells",
             slopes, 4 * len(slope_lo)),
            (f"network derivative intervals, {len(interval_lo):,} blocks of 2 x 2 x 2 cells", intervals,
             8 * len(interval_lo)),
            ("whole heat2d certificate (128 x 128 x 32 and 64 x 64 x 16 grids, refinement)", certificate,
             128 * 128 * 32),
        ]
        for pair in filter(None, args.task_runs.split(",")):
            task, _, folder = pair.partition("=")
            module = TASK_MODULES.get(task)
            if module is None or not folder:
                raise SystemExit(f"--task-runs takes TASK=RUN_DIR with TASK in {sorted(TASK_MODULES)}. Got {pair!r}.")
            copy = Path(tmp) / task
            shutil.copytree(folder, copy)

            def whole(side, module=module, copy=copy):
                task_module = importlib.import_module(f"{side['package'].__name__}.tasks.{module}")
                return np.asarray(task_module.certify(copy)["bound"])

            stages.append((f"whole `fit {task}` certificate (its run folder's grid, blocks and refinement)", whole,
                           None))
        rows = []
        with numpy_blas_threads(1):  # as inside the certifier
            for label, stage, cells in stages:
                for side in sides.values():  # compile the kernels, fill the caches
                    stage(side)
                times = {name: [] for name in sides}
                results = {}
                for r in range(args.rounds):
                    order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                    for name in order:
                        start = time.perf_counter()
                        results[name] = stage(sides[name])
                        times[name].append(time.perf_counter() - start)
                base_s, new_s = np.median(times["base"]), np.median(times["this checkout"])
                same = compare(results["this checkout"], results["base"])
                print(f"{label}: base {base_s:.2f} s, this checkout {new_s:.2f} s, ratio {new_s / base_s:.2f}, {same}",
                      file=sys.stderr)
                rate, count = (f"{cells / new_s:,.0f}", f"{cells:,}") if cells else ("", "")
                if label.startswith("float32 forward"):
                    pass_s = {name: float(np.median(t)) for name, t in times.items()}
                else:
                    same += "; " + ", ".join(f"{name} {np.median(times[name]) / pass_s[name]:.2f} passes" for name in sides)
                rows.append(f"| {label} | {count} | {base_s:.2f} | {new_s:.2f} | {rate} | "
                            f"**{new_s / base_s:.2f}** | {same} |")
    lines = header("Certificate stages against an earlier commit, in one process (issue 17)", [
        f"base: commit {args.base}; this checkout: {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}",
        f"torch {torch.__version__} (2 threads), one numpy BLAS thread (as in the certifier)",
        f"model: {'the run folder given' if args.run else 'a default `fit heat2d` run fitted by this script'}"
        + (f"; task runs: {', '.join(p.partition('=')[0] for p in filter(None, args.task_runs.split(',')))}" if args.task_runs else ""),
        f"{args.rounds} rounds per side, alternating; medians; ratio = this checkout / base (below 1: faster)",
    ])
    lines += ["| stage | cells or points | base s | this checkout s | per s (this checkout) | ratio | results |",
              "|---|---:|---:|---:|---:|---:|---|", *rows, ""]
    write(args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
