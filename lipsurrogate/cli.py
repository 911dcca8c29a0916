"""The ``lipsurrogate`` command: parses arguments and calls the pipeline; nothing else."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .tasks import TASKS

    parser = argparse.ArgumentParser(
        prog="lipsurrogate",
        description="Certified Lipschitz neural surrogates for PDE solvers, with guaranteed max-error bounds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lipsurrogate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("tasks", help="list the tasks that 'fit' runs")

    fit = sub.add_parser(
        "fit",
        help="run a task: data -> model -> training -> bounds -> report, into a run folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fit.add_argument("task", choices=sorted(TASKS), metavar="TASK", help="one of: " + ", ".join(TASKS))
    fit.add_argument("--out", default=None, help="run folder (default: runs/TASK-TIMESTAMP)")
    fit.add_argument("--seed", type=int, default=0, help="seed of every random choice in the run")
    fit.add_argument("--quick", action="store_true", help="smoke-sized run (seconds)")
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "tasks":
        from .tasks import TASKS

        width = max(map(len, TASKS))
        for name, (_, description) in TASKS.items():
            print(f"{name:<{width}}  {description}")
        return 0
    if args.command == "fit":
        from .exceptions import LipsurrogateError
        from .pipeline import fit

        try:
            summary = fit(args.task, out=args.out, seed=args.seed, quick=args.quick, progress=not args.no_progress)
        except LipsurrogateError as err:
            print(f"lipsurrogate: error: {err}", file=sys.stderr)
            return 2
        print(summary["text"])
        print(f"\nRun folder: {summary['run_dir']}")
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
