"""End-to-end time of the default runs against an earlier commit's, run alternately.

Issue 16 asks that tighter certificates come "no slower end to end". This compares the default
``lipsurrogate fit TASK`` of this checkout with that of ``--commit`` (by default 639e502, stop 30,
before the issue's levers), each run a fresh process from the command line as a user starts it:

- the earlier commit is checked out into a temporary ``git worktree`` and run through
  ``PYTHONPATH``; both checkouts first run every task once with ``--quick``, so that numba's
  on-disk kernel caches are warm and neither side pays compilation the other does not;
- then ``--pairs`` pairs per task, the order alternating (earlier first in even pairs), because
  this shared 2-core machine drifts by 1.2x within minutes;
- the ratio is the sum of this checkout's wall times over the sum of the earlier commit's; the
  bound (% of max|u|) and tightness come from each run's ``summary.json``.

Usage::

    python benchmarks/bench_defaults.py [--commit 639e502] [--tasks heat2d,burgers1d] [--pairs 2] [--out PATH]

Task names are those of ``lipsurrogate fit``; ``heat2d:deeponet`` means ``fit heat2d --model deeponet``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _markdown import header, write

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).parent / "results" / "defaults.md"
DEFAULT_TASKS = "heat2d,heat2d-kappa,burgers1d,heat2d:deeponet"


def fit_command(task: str) -> list[str]:
    """``heat2d:deeponet`` -> ``["heat2d", "--model", "deeponet"]``."""
    name, _, model = task.partition(":")
    return [name, "--model", model] if model else [name]


def run_fit(checkout: Path, task: str, out: Path, quick: bool = False) -> tuple[float, dict]:
    """Wall seconds of one ``lipsurrogate fit`` from ``checkout`` and its summary."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "lipsurrogate", "fit", *fit_command(task), "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command + (["--quick"] if quick else []), check=True, env=env, cwd=checkout,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    return seconds, json.loads((out / "summary.json").read_text())


def _bound(summaries: list[dict]) -> str:
    """The distinct bounds of these runs, "% of max|u| (tightness)" each."""
    texts = [f"{100 * s['bound_relative']:.2f}% ({s['tightness']:.2f})" for s in summaries]
    return " / ".join(dict.fromkeys(texts))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", default="639e502", help="the earlier commit [639e502, stop 30]")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated [{DEFAULT_TASKS}]")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.pairs < 1 or not tasks:
        parser.error("--pairs must be >= 1 and --tasks must name at least one task")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.commit], check=True)
        try:
            checkouts = {"earlier": base, "this": ROOT}
            for task in tasks:
                for side, checkout in checkouts.items():
                    run_fit(checkout, task, tmp / f"warm-{side}-{task.replace(':', '-')}", quick=True)
            for task in tasks:
                seconds = {"earlier": [], "this": []}
                summaries = {"earlier": [], "this": []}
                for pair in range(args.pairs):
                    order = ("earlier", "this") if pair % 2 == 0 else ("this", "earlier")
                    for side in order:
                        out = tmp / f"{side}-{task.replace(':', '-')}-{pair}"
                        s, summary = run_fit(checkouts[side], task, out)
                        seconds[side].append(s)
                        summaries[side].append(summary)
                        print(f"{task} {side} pair {pair}: {s:.1f} s, {_bound([summary])}", file=sys.stderr)
                ratio = sum(seconds["this"]) / sum(seconds["earlier"])
                rows.append((task, seconds, ratio, summaries))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)

    lines = ["| task | earlier: s per run | earlier: bound (tightness) | this: s per run | this: bound (tightness) "
             "| time ratio this / earlier |",
             "|---|---|---|---|---|---:|"]
    for task, seconds, ratio, summaries in rows:
        lines.append(f"| `fit {' '.join(fit_command(task))}` | {', '.join(f'{s:.1f}' for s in seconds['earlier'])} "
                     f"| {_bound(summaries['earlier'])} | {', '.join(f'{s:.1f}' for s in seconds['this'])} "
                     f"| {_bound(summaries['this'])} | {ratio:.2f}x |")
    table = "\n".join(lines)
    print(table)
    write(args.out, "\n".join([
        *header("Default runs end to end: this checkout against an earlier commit, alternately",
                [f"earlier commit: {args.commit} (a git worktree, run through PYTHONPATH); this checkout: "
                 f"{subprocess.run(['git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}"
                 " (plus any uncommitted change)",
                 "each run a fresh `python -m lipsurrogate fit TASK --out DIR --no-progress`, timed from start to exit; "
                 "every task first ran once with --quick on both sides (numba caches warm)",
                 f"{args.pairs} pairs per task, the order alternating; ratio = sum of this checkout's times / "
                 "sum of the earlier commit's; bound = % of max|u| (tightness), the distinct values over "
                 "each side's runs (seed 0)"]),
        table,
        "",
    ]))


if __name__ == "__main__":
    main()
