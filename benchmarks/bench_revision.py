"""Certificate stages of this checkout against an earlier commit's, side by side, alternately.

Speed-ups of a few tens of percent drown in this shared 2-core machine's drift (1.2-1.3x within
minutes) when the two versions are timed at different moments. Here they alternate:

- the earlier commit's ``lipsurrogate`` package is exported with ``git archive``;
- by default every (stage, side, round) runs in a **fresh process** that imports only that
  side's package (``PYTHONPATH``), calls the stage once to compile the kernels and fill the caches
  and then times it (the median of 5 calls; one call for the slopes and whole certificates); the sides alternate (base first in even rounds). Stop 35 found that two
  versions imported into one process (``--same-process``, as this script did in stop 34: the base
  imported as ``lipsurrogate_base``) time unreliably: the very same float32 forward pass took
  1.15x as long on one side as on the other, and a change measured 0.85x in separate processes
  showed no gain at all;
- the table gives the medians over rounds and the ratio of this checkout's to the base's, and,
  since the host's speed drifts even between two processes a minute apart, each stage's time in
  float32 passes: every timed call follows a float32 forward pass over the certificate vertices
  in the same process (issue 17's unit), and the ratio of the two sides' passes cancels the drift;
- every stage also compares the two sides' results: "identical" (bit for bit) or the largest
  relative difference of the certified widths or bounds.

Stages, on the model of a ``lipsurrogate fit heat2d`` run folder (``--run``; fitted here with the
defaults when not given):

1. the float32 forward pass over the 129 x 129 x 33 vertices of the default certificate grid (the
   unit of issue 17's "passes"; the same torch code on both sides, so its ratio shows the drift)
   and the float64 values with their rounding bounds there (``bounds.evaluate_float64``), with
   each side's passes;
2. the error's slope ranges on the default certificate's slope blocks (1 x 1 x 4 cells of the
   128 x 128 x 32 grid: affine forms and backward bounds, ``bounds.affine.error_slopes``);
3. the network's derivative intervals on 2 x 2 x 2 blocks of the same grid (interval propagation,
   ``bounds.local.network_intervals``: networks the affine forms do not support);
4. the whole heat2d certificate (``tasks.heat2d.certify``: the run folder's grid, and its comparison grid
   if it has one, and the refinement);
5. with ``--task-runs``, the whole certificate of other tasks' run folders (their ``certify``).

Usage::

    python benchmarks/bench_revision.py [--base 6ce4f35] [--run RUN_DIR] [--rounds 3] [--out PATH]
        [--task-runs heat2d-kappa=RUN_DIR,burgers1d=RUN_DIR] [--same-process]
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).parent / "results" / "revision.md"
TASK_MODULES = {"heat2d": "heat2d", "heat2d-kappa": "heat2d_kappa", "burgers1d": "field", "advection1d": "field",
                "allen-cahn1d": "field", "reaction-diffusion2d": "field"}
"""Task names of ``--task-runs`` and the ``lipsurrogate.tasks`` module whose ``certify`` re-certifies their runs."""


def export_package(commit: str, folder: Path, name: str = "lipsurrogate") -> Path:
    """Write ``commit``'s ``lipsurrogate`` package into ``folder`` under ``name``; returns ``folder``."""
    archive = subprocess.run(["git", "archive", commit, "lipsurrogate"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    if name != "lipsurrogate":
        (folder / "lipsurrogate").rename(folder / name)
    return folder


def import_base(commit: str, folder: Path):
    """The ``lipsurrogate`` package of ``commit``, imported as ``lipsurrogate_base`` (``--same-process``)."""
    export_package(commit, folder, "lipsurrogate_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("lipsurrogate_base")


def grid_blocks(cells: tuple[int, int, int], block: tuple[int, int, int], t_end: float, package=None):
    """Lower and upper corners of the slope blocks of the heat2d certificate grid (the certifier's
    own ``block_boxes`` on the grid's cell edges)."""
    tiles = importlib.import_module(f"{(package.__name__ if package else 'lipsurrogate')}.bounds.tiles")
    edges = [np.linspace(0, 2 * np.pi, cells[0] + 1), np.linspace(0, 2 * np.pi, cells[1] + 1),
             np.linspace(0, t_end, cells[2] + 1)]
    lo, hi, _ = tiles.block_boxes(edges, block)
    return lo, hi


def compare(a: np.ndarray, b: np.ndarray) -> str:
    """"identical" or the largest relative difference."""
    if np.array_equal(a, b):
        return "identical"
    return f"max relative difference {np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)):.1e}"


def _grids(config: dict) -> str:
    """The certificate grids of a heat2d run folder's config, e.g. "128 x 128 x 32 grid" (and the comparison grid)."""
    grids = [config["cert_cells"]] + ([config["cert_cells_coarse"]] if config.get("cert_cells_coarse") else [])
    return " and ".join(" x ".join(map(str, g)) for g in grids) + (" grids" if len(grids) > 1 else " grid")


def make_stages(package, run: Path, tasks: list[tuple[str, str, Path]]):
    """``[(key, label, count, function(side) -> array)]`` and the side dict for ``package``."""
    import torch

    heat2d = importlib.import_module(f"{package.__name__}.tasks.heat2d")
    config, reference, model = heat2d._load_run(run)
    side = dict(package=package, heat2d=heat2d, config=config, reference=reference, model=model)
    t_end = float(config["t_end"])
    box = np.asarray(config["domain"], dtype=np.float64)
    slope_lo, slope_hi = grid_blocks((128, 128, 32), (1, 1, 4), t_end, package)
    interval_lo, interval_hi = grid_blocks((128, 128, 32), (2, 2, 2), t_end, package)
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
        ("forward32", f"float32 forward pass over the {len(vertices):,} vertices (the same code on both sides: "
         "the machine's drift)", len(vertices), forward32),
        ("vertex_values", f"float64 values + rounding bounds at the {len(vertices):,} vertices (`evaluate_float64`)",
         len(vertices), vertex_values),
        ("slopes", f"error slope ranges, affine forms + backward bounds, {len(slope_lo):,} blocks of 1 x 1 x 4 cells",
         4 * len(slope_lo), slopes),
        ("intervals", f"network derivative intervals, {len(interval_lo):,} blocks of 2 x 2 x 2 cells",
         8 * len(interval_lo), intervals),
        ("heat2d", f"whole heat2d certificate ({_grids(config)}, refinement)", int(np.prod(config["cert_cells"])),
         certificate),
    ]
    for task, module, copy in tasks:
        def whole(side, module=module, copy=copy):
            task_module = importlib.import_module(f"{side['package'].__name__}.tasks.{module}")
            return np.asarray(task_module.certify(copy)["bound"])

        stages.append((f"task:{task}", f"whole `fit {task}` certificate (its run folder's grid, blocks and refinement)",
                       None, whole))
    return stages, side


def child(args) -> None:
    """One stage of one side in this process: warm up, time ``--repeat`` calls, save the result."""
    import torch

    import lipsurrogate
    from lipsurrogate._threads import numpy_blas_threads

    torch.set_num_threads(2)
    stages, side = make_stages(lipsurrogate, args.child_run, json.loads(args.child_tasks))
    (_, _, _, stage), = [s for s in stages if s[0] == args.child]
    (_, _, _, forward32), = [s for s in stages if s[0] == "forward32"]
    with numpy_blas_threads(1):  # as inside the certifier
        stage(side)  # compile the kernels (a fresh export has no numba cache), fill the caches
        forward32(side)
        seconds, passes = [], []
        for _ in range(args.repeat):  # the unit pass right before each timed call: the same moment
            start = time.perf_counter()
            forward32(side)
            middle = time.perf_counter()
            result = stage(side)
            seconds.append(time.perf_counter() - middle)
            passes.append(seconds[-1] / (middle - start))
    np.save(args.child_result, result)
    print(json.dumps({"seconds": float(np.median(seconds)), "passes": float(np.median(passes)),
                      "package": str(Path(lipsurrogate.__file__).parent)}))


def run_child(tree: Path, key: str, run: Path, tasks, result: Path, repeat: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + str(Path(__file__).parent))
    out = subprocess.run([sys.executable, __file__, "--child", key, "--child-run", str(run), "--child-tasks",
                          json.dumps([[t, m, str(c)] for t, m, c in tasks]), "--child-result", str(result),
                          "--repeat", str(repeat)], env=env, check=True, capture_output=True, text=True, cwd=tree)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(report["package"]).resolve() != (tree / "lipsurrogate").resolve():
        raise RuntimeError(f"The child imported {report['package']}, not the package in {tree}.")
    return report["seconds"], report["passes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="6ce4f35", help="the earlier commit (default: stop 34's last)")
    parser.add_argument("--run", type=Path, default=None, help="a heat2d run folder (default: fit one here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--task-runs", default="",
                        help="more whole certificates: TASK=RUN_DIR pairs, comma separated (e.g. heat2d-kappa=runs/kappa)")
    parser.add_argument("--same-process", action="store_true",
                        help="both versions in this process (stop 34's method; unreliable, see the docstring)")
    parser.add_argument("--stages", default="", help="only these stage keys, comma separated (e.g. vertex_values,slopes)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-tasks", default="[]", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from _markdown import header, write

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "heat2d"  # certify writes certificate.* into the folder: work on a copy
        if args.run is not None:
            shutil.copytree(args.run, run)
        else:
            subprocess.run([sys.executable, "-m", "lipsurrogate", "fit", "heat2d", "--out", str(run), "--no-progress"],
                           check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        tasks = []
        for pair in filter(None, args.task_runs.split(",")):
            task, _, folder = pair.partition("=")
            module = TASK_MODULES.get(task)
            if module is None or not folder:
                raise SystemExit(f"--task-runs takes TASK=RUN_DIR with TASK in {sorted(TASK_MODULES)}. Got {pair!r}.")
            shutil.copytree(folder, tmp / task)
            tasks.append((task, module, tmp / task))
        wanted = set(filter(None, args.stages.split(",")))
        rows = _same_process(args, tmp, run, tasks, wanted) if args.same_process else \
            _processes(args, tmp, run, tasks, wanted)
    import torch

    lines = header("Certificate stages against an earlier commit, alternating (issue 17)", [
        f"base: commit {args.base}; this checkout: {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}",
        f"torch {torch.__version__} (2 threads), one numpy BLAS thread (as in the certifier)",
        ("both versions in one process (--same-process)" if args.same_process else
         "each stage, side and round in a fresh process: a warm-up call, then the median of 5 timed calls (1 for the slopes and whole certificates)"),
        f"model: {'the run folder given' if args.run else 'a default `fit heat2d` run fitted by this script'}"
        + (f"; task runs: {', '.join(t for t, _, _ in tasks)}" if tasks else ""),
        f"{args.rounds} rounds per side, alternating; medians; ratio = this checkout / base (below 1: faster)",
    ])
    lines += ["| stage | cells or points | base s | this checkout s | per s (this checkout) | time ratio | "
              "float32 passes, base / this checkout | passes ratio | results |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|", *rows, ""]
    write(args.out, "\n".join(lines))


def _row(label, count, times, results, names, passes=None) -> str:
    """A table row; ``passes`` (per side, per round): the stage's time over the float32 pass timed
    right before it in the same process, whose ratio between the sides cancels the host's drift."""
    base_s, new_s = np.median(times[names[0]]), np.median(times[names[1]])
    same = compare(results[names[1]], results[names[0]])
    passes_text = ratio_text = ""
    if passes is not None:
        base_p, new_p = np.median(passes[names[0]]), np.median(passes[names[1]])
        passes_text, ratio_text = f"{base_p:.2f} / {new_p:.2f}", f"**{new_p / base_p:.2f}**"
    print(f"{label}: base {base_s:.2f} s, this checkout {new_s:.2f} s, ratio {new_s / base_s:.2f}; passes "
          f"{passes_text or '-'}; {same}", file=sys.stderr)
    rate, shown = (f"{count / new_s:,.0f}", f"{count:,}") if count else ("", "")
    return (f"| {label} | {shown} | {base_s:.2f} | {new_s:.2f} | {rate} | {new_s / base_s:.2f} | {passes_text} | "
            f"{ratio_text} | {same} |")


def _processes(args, tmp: Path, run: Path, tasks, wanted) -> list[str]:
    import lipsurrogate

    trees = {"base": export_package(args.base, tmp / "base"), "this checkout": ROOT}
    names = list(trees)
    stages, _ = make_stages(lipsurrogate, run, tasks)
    rows = []
    for key, label, count, _ in stages:
        if wanted and key not in wanted and key != "forward32":
            continue
        times, passes = {name: [] for name in names}, {name: [] for name in names}
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                repeat = 1 if key in ("heat2d", "slopes") or key.startswith("task:") else 5
                path = tmp / f"{key}-{len(times[name])}-{name[:4]}.npy"
                seconds, stage_passes = run_child(trees[name], key, run, tasks, path, repeat=repeat)
                times[name].append(seconds)
                passes[name].append(stage_passes)
        results = {name: np.load(tmp / f"{key}-0-{name[:4]}.npy") for name in names}
        rows.append(_row(label, count, times, results, names, None if key == "forward32" else passes))
    return rows


def _same_process(args, tmp: Path, run: Path, tasks, wanted) -> list[str]:
    import torch

    import lipsurrogate
    from lipsurrogate._threads import numpy_blas_threads

    torch.set_num_threads(2)
    base = import_base(args.base, tmp / "base")
    sides, stage_lists = {}, {}
    for name, package in (("base", base), ("this checkout", lipsurrogate)):
        stage_lists[name], sides[name] = make_stages(package, run, tasks)
    names = list(sides)
    rows = []
    with numpy_blas_threads(1):  # as inside the certifier
        for index, (key, label, count, _) in enumerate(stage_lists["base"]):
            if wanted and key not in wanted and key != "forward32":
                continue
            stage = {name: stage_lists[name][index][3] for name in names}
            for name in names:  # compile the kernels, fill the caches
                stage[name](sides[name])
            times = {name: [] for name in names}
            results = {}
            for r in range(args.rounds):
                for name in (names if r % 2 == 0 else names[::-1]):
                    start = time.perf_counter()
                    results[name] = stage[name](sides[name])
                    times[name].append(time.perf_counter() - start)
            rows.append(_row(label, count, times, results, names))
    return rows


if __name__ == "__main__":
    main()
