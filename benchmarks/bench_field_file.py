"""`fit field` on a user's own 3-input file, with default settings: bound, tightness, time.

The file is :func:`lipsurrogate.data.examples.example_field` written to NetCDF: a variable
``temperature`` over dims ``time``, ``kappa``, ``position`` (in that order), float32 with
units, the closed-form decaying heat modes plus a linear part. The run is exactly what a user
types: ``lipsurrogate fit field FILE --var temperature`` (inputs in file order), then the
figures of the run folder. Also timed in the same run: the same fit with the inputs reordered
(``--inputs position,kappa,time``), which must give a certificate of the same quality.

Usage::

    python benchmarks/bench_field_file.py [--seeds 0] [--out benchmarks/results/field_file.md]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _markdown import header, write

from lipsurrogate.cli import main
from lipsurrogate.data.dataset import save_dataset
from lipsurrogate.data.examples import example_field

DEFAULT_OUT = Path(__file__).parent / "results" / "field_file.md"


def run_case(file: Path, out: Path, seed: int, extra: list[str]) -> dict:
    start = time.perf_counter()
    code = main(["fit", "field", str(file), "--var", "temperature", "--seed", str(seed), "--no-progress",
                 "--out", str(out), *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"fit field failed with exit code {code}")
    summary = json.loads((out / "summary.json").read_text())
    return {"seconds": seconds, **summary}


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "user_field.nc"
        save_dataset(example_field(), file)
        for seed in args.seeds:
            for label, extra in [("file order (time, kappa, position)", []),
                                 ("--inputs position,kappa,time", ["--inputs", "position,kappa,time"])]:
                s = run_case(file, Path(tmp) / f"run-{seed}-{len(rows)}", seed, extra)
                rows.append((label, seed, s))
                print(f"{label}, seed {seed}: bound {100 * s['bound_relative']:.2f}% of max|u|, tightness "
                      f"{s['tightness']:.2f}, violations {s['violations']}, {s['seconds']:.0f} s", flush=True)
    lines = header("fit field on a user's 3-input file (defaults)", [
        "data: lipsurrogate.data.examples.example_field() -> NetCDF, temperature(time=21, kappa=9, position=65), float32",
        "bound: certified (level 1, against the data's multilinear interpolant), rounded up; tightness = bound / "
        "observed max error (measured)"])
    lines += ["| inputs | seed | bound (% of max abs u) | tightness | violations | fit RMSE | end to end (s) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for label, seed, s in rows:
        pct = -(-100 * s["bound_relative"] * 100 // 1) / 100  # round up to 0.01
        lines.append(f"| {label} | {seed} | {pct:.2f} | {s['tightness']:.2f} | {s['violations']} | "
                     f"{s['fit_rmse']:.2e} | {s['seconds']:.0f} |")
    write(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main_cli()
