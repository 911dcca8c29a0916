"""The ``lipsurrogate`` command: parses arguments and calls the pipeline; nothing else."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__

__all__ = ["main", "build_parser", "ddp_main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lipsurrogate`` command."""
    from .tasks import TASKS
    from .tasks.options import TASK_OPTIONS

    parser = argparse.ArgumentParser(
        prog="lipsurrogate",
        description="Certified Lipschitz neural surrogates for PDE solvers, with guaranteed max-error bounds.",
    )
    parser.add_argument("--version", action="version", version=f"lipsurrogate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("tasks", help="list the tasks that 'fit' runs")

    fit = sub.add_parser(
        "fit",
        help="run a task: data -> model -> training -> bounds -> report, into a run folder",
        description="Run a task into a run folder. 'lipsurrogate fit TASK --help' lists the options of TASK.",
    )
    tasks = fit.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (_, description) in TASKS.items():
        task = tasks.add_parser(name, help=description, description=description)
        task.add_argument("--out", default=None, help="run folder (default: runs/TASK-TIMESTAMP)")
        task.add_argument("--seed", type=int, default=0, help="seed of every random choice in the run [0]")
        task.add_argument("--quick", action="store_true", help="smoke-sized run (seconds)")
        task.add_argument("--no-progress", action="store_true", help="hide progress bars")
        task.add_argument("--overwrite", action="store_true", help="replace the run folder --out if it holds a run")
        task.add_argument("--device", default=None,
                          help="where the networks train: cpu, cuda, cuda:N or auto; certificates are computed on "
                               "the CPU in float64 either way [cpu]")
        for flag, kwargs in TASK_OPTIONS.get(name, []):
            task.add_argument(flag, **kwargs)

    certify = sub.add_parser("certify", help="recompute the certificate of a run folder")
    certify.add_argument("run", metavar="RUN", help="run folder")
    certify.add_argument("--cells", default=None, help="certificate grid, cells per input, e.g. 256,256,64 "
                                                        "[the run's configuration]")
    certify.add_argument("--tile-cells", type=int, default=None,
                         help="cells per tile: memory stays bounded for any grid [about 1M]")
    certify.add_argument("--scheduler", default=None,
                         help="certify the tiles on Dask: 'local' (a local cluster) or a scheduler address "
                              "tcp://host:8786 [in this process]")
    certify.add_argument("--workers", type=int, default=None, help="worker processes of --scheduler local")
    certify.add_argument("--no-progress", action="store_true", help="hide progress bars")
    verify = sub.add_parser("verify", help="re-verify a run folder's certificate by sampling")
    verify.add_argument("run", metavar="RUN", help="run folder")
    verify.add_argument("--density", type=int, default=None, help="dense-grid refinement per cell (>= 1)")
    verify.add_argument("--seed", type=int, default=None, help="seed of the random samples")
    rep = sub.add_parser("report", help="rewrite the report of a run folder")
    rep.add_argument("run", metavar="RUN", help="run folder")
    export = sub.add_parser(
        "export", help="write a run's certified network as ONNX or numpy, the certificate in its metadata",
        description="Write the network of a run folder for code outside Python: an ONNX graph (input 'points' "
                    "(n, d) float32, output 'values' (n,)) or numpy arrays, with the certified bound, box, input "
                    "names, statement level and file hashes in the metadata.")
    export.add_argument("run", metavar="RUN", help="run folder")
    export.add_argument("--format", dest="fmt", choices=["onnx", "numpy"], default="onnx", help="export format [onnx]")
    export.add_argument("--out", required=True, help="output file (.onnx; .npz/.json stem for numpy)")
    export.add_argument("--dtype", choices=["float64", "float32"], default=None,
                        help="precision of the exported computation [onnx: float64, numpy: float32]")

    data = sub.add_parser(
        "data",
        help="generate a PDE dataset with py-pde, or convert a PDEBench file, to NetCDF/HDF5",
        description="Generate data (heat2d, heat2d-dirichlet, advection1d, burgers1d, allen-cahn1d, "
        "reaction-diffusion2d) or convert a PDEBench file: 'lipsurrogate data pdebench FILE --out OUT.nc'. "
        "Unset options take each generator's defaults.",
    )
    data.add_argument("source", metavar="SOURCE", help="a PDE name or 'pdebench'")
    data.add_argument("file", nargs="?", help="the PDEBench file (only with 'pdebench')")
    data.add_argument("--out", required=True, help="output file (.nc, .h5 or .hdf5)")
    data.add_argument("--grid", type=int, help="cells per axis")
    data.add_argument("--frames", type=int, help="number of stored frames, t = 0 included")
    data.add_argument("--t-end", type=float, help="final time")
    data.add_argument("--dt", type=float, help="time step (default: half the explicit stability limit)")
    data.add_argument("--solver", choices=["euler", "runge-kutta"], help="explicit scheme")
    data.add_argument("--diffusivity", type=float, help="heat2d: kappa")
    data.add_argument("--diffusivity-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="heat2d family: kappa range")
    data.add_argument("--modes", type=int, dest="n_modes", help="heat2d: number of Fourier modes")
    data.add_argument("--k-max", type=int, help="heat2d: largest |k|")
    data.add_argument("--samples", type=int, help="generate a family of this many samples")
    data.add_argument("--seed", type=int, default=0, help="seed of the random initial conditions")
    data.add_argument("--backend", choices=["auto", "numpy", "numba"], default="auto", help="py-pde backend")
    data.add_argument("--workers", type=int, help="heat2d family: processes (with --scheduler local: Dask workers)")
    data.add_argument("--scheduler", default=None,
                      help="heat2d family on Dask: 'local' (a LocalCluster) or a scheduler address such as "
                           "tcp://host:8786; samples are written incrementally to --out (needs the 'scale' extra)")
    data.add_argument("--chunk", type=int, default=16, help="with --scheduler: samples per Dask task [16]")
    data.add_argument("--sample", type=_sample_index, default=None, help="pdebench: sample index, or 'all' (default 0)")
    data.add_argument("--field", default=None, help="pdebench: keep only this field")
    data.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _sample_index(text: str):
    """``--sample``: a non-negative integer or ``all``."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sample index (an integer >= 0) or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a sample index >= 0, got {value}")
    return value


class _Stopped(KeyboardInterrupt):
    """Raised by the SIGTERM handler, so that partial outputs are removed as on Ctrl-C."""


_GRACE_SECONDS = 10.0
"""After SIGINT/SIGTERM, how long the interrupt may take to unwind before the process exits anyway."""


def _emergency_exit(code: int, word: str) -> None:
    """Remove this process's partial run folders and locks, say so in one line, and exit at once."""
    import os

    from ._io import abandon_active_runs

    abandon_active_runs()
    _error(f"interrupted by {word}; nothing partial was left behind")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_without_teardown(code: int) -> None:
    """End the finished command now: atexit handlers and flushed streams, but no module teardown.

    Note [exit without teardown]
        After the work is done the interpreter's finalisation frees, one by one, the modules of
        torch, numba, xarray, py-pde and matplotlib (over 160,000 objects): 1.1-1.3 s of a
        ``fit heat2d`` on the 2-core machine (measured: the same imports ending with ``os._exit``
        instead of a normal exit, four pairs), for nothing the command needs. Like mypy's
        ``hard_exit``, the command's own process ends with :func:`os._exit` once every file is
        written (run folders appear atomically before ``_run`` returns), after the ``atexit``
        handlers (logging, multiprocessing, temporary directories) and a flush of stdout and
        stderr. While another non-daemon Python thread still runs, the normal exit waits for it:
        then this returns and the caller exits as usual.
    """
    import atexit
    import os
    import threading

    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()  # what a normal exit runs first (CPython's atexit module)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _on_signal(signum, frame):  # pragma: no cover - exercised through a subprocess in the tests
    """Raise the interrupt where the main thread is; make sure the process ends even if it is swallowed.

    A signal can land inside a finaliser or a ctypes callback (numba and llvmlite compile with
    both), where Python reports the exception as "unraisable" and carries on. The hook below
    turns exactly that case into an immediate clean exit; a watchdog thread does the same after
    :data:`_GRACE_SECONDS` for any other way the interrupt might get lost.
    """
    import signal
    import threading
    import time

    word = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    code = 128 + signum
    default_hook = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _emergency_exit(code, word)
        default_hook(unraisable)

    sys.unraisablehook = hook
    threading.Thread(target=lambda: (time.sleep(_GRACE_SECONDS), _emergency_exit(code, word)), daemon=True).start()
    raise _Stopped(signum) if signum == signal.SIGTERM else KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lipsurrogate`` command; returns the exit status.

    Exit codes: 0 success; 1 a verification that failed (a violation, a non-finite value); 2 a
    user error (bad option, bad file, a run folder that changed or already exists, an OS error
    such as a read-only or full disk), printed as one line; 130 / 143 interrupted by SIGINT /
    SIGTERM (partial run folders are removed).
    """
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .exceptions import LipsurrogateError

    previous = {}
    if args.command != "tasks":
        from ._allocator import tune_malloc
        from ._threads import configure_threads

        tune_malloc()  # large arrays freed and allocated again in loops: keep them in the heap
        try:  # before py-pde loads numba, so that its pool has the right size
            configure_threads()
        except LipsurrogateError as err:
            _error(str(err))
            return 2
    if argv is None:  # the command itself (not a call from Python): own SIGINT and SIGTERM
        try:
            previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not in the main thread: leave signals alone
            previous = {}
    else:
        try:
            previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
        except ValueError:
            previous = {}
    try:
        code = _run(args, parser)
        if argv is None:  # the command itself: Note [exit without teardown]
            _exit_without_teardown(code)
        return code
    except LipsurrogateError as err:
        _error(str(err))
        return 2
    except OSError as err:
        _error(f"{err.strerror}: {err.filename}" if err.strerror and err.filename else str(err))
        return 2
    except KeyboardInterrupt as err:
        stopped = isinstance(err, _Stopped)
        _error(f"interrupted by {'SIGTERM' if stopped else 'SIGINT'}; nothing partial was left behind")
        code = 143 if stopped else 130
        if argv is None:  # skip finalisers of half-built extension objects (numba, llvmlite): they print noise
            import os

            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _int_list(flag: str, text: str) -> list[int]:
    """``"256,256,64"`` -> ``[256, 256, 64]``, or a ConfigurationError that quotes the text."""
    from .exceptions import ConfigurationError

    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigurationError(f"{flag} expects positive integers separated by commas, e.g. 256,256,64. "
                                 f"Got {text!r}.") from None
    if min(values) < 1:
        raise ConfigurationError(f"{flag} expects positive integers. Got {text!r}.")
    return values


def _error(message: str) -> None:
    print(f"lipsurrogate: error: {' '.join(message.split())}", file=sys.stderr)


def _run(args, parser) -> int:
    if args.command == "tasks":
        from .tasks import TASKS

        width = max(map(len, TASKS))
        for name, (_, description) in TASKS.items():
            print(f"{name:<{width}}  {description}")
        return 0
    if args.command == "fit":
        from .pipeline import fit

        common = {"command", "task", "out", "seed", "quick", "no_progress", "overwrite", "device"}
        options = {k: v for k, v in vars(args).items() if k not in common and v is not None}
        summary = fit(args.task, out=args.out, seed=args.seed, quick=args.quick, progress=not args.no_progress,
                      overwrite=args.overwrite, device=args.device, **options)
        print(summary["text"])
        print(f"\nRun folder: {summary['run_dir']}")
        if summary.get("violations") or summary.get("non_finite"):
            _error(f"verification FAILED ({summary.get('violations', 0)} violation(s)): the bound does not hold; "
                   f"see {summary['run_dir']}/verification.json")
            return 1
        return 0
    if args.command in ("certify", "verify", "report"):
        from .tasks import task_module

        module = task_module(args.run)
        if args.command == "certify":
            where = {"tile_cells": args.tile_cells, "scheduler": args.scheduler, "n_workers": args.workers}
            if args.cells is not None:
                where["cells"] = _int_list("--cells", args.cells)
            doc = module.certify(args.run, progress=not args.no_progress, **where)
            print(f"certified bound {doc['bound']:.4g} on {doc['grid']['cells']} cells -> {args.run}/certificate.json")
        elif args.command == "verify":
            doc = module.verify(args.run, density=args.density, seed=args.seed)
            print(f"violations {doc['violations']}, non-finite {doc.get('non_finite', 0)}, observed max "
                  f"{doc['max_error_observed']:.4g}, bound {doc['bound']:.4g}, tightness {doc['tightness']:.2f} "
                  f"-> {args.run}/verification.json")
            if not doc.get("passed", doc["violations"] == 0):
                _error("verification FAILED: the certificate does not hold for the sampled points")
                return 1
        else:
            print(f"wrote {module.report(args.run)}")
        return 0
    if args.command == "export":
        from .export import export_run

        paths = export_run(args.run, args.out, args.fmt, dtype=args.dtype)
        print(f"wrote {', '.join(map(str, paths))}")
        return 0
    if args.command == "data":
        print(_data(args))
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


def _data(args) -> str:
    import time

    from pathlib import Path

    from .data.dataset import SUFFIXES, save_dataset
    from .exceptions import ConfigurationError

    if Path(args.out).suffix not in SUFFIXES:  # fail before minutes of solving, not after
        raise ConfigurationError(f"--out must end in one of {SUFFIXES}. Got '{args.out}'.")
    start = time.perf_counter()
    if args.source == "pdebench":
        from .data.pdebench import load_pdebench

        if not args.file:
            raise ConfigurationError("'lipsurrogate data pdebench' needs the PDEBench FILE to convert.")
        ds = load_pdebench(args.file, sample=0 if args.sample is None else args.sample, field=args.field)
    elif args.scheduler is not None:
        from .data.distributed import generate_family

        if args.samples is None:
            raise ConfigurationError("--scheduler needs --samples N (a family).")
        names = ["grid", "frames", "t_end", "dt", "solver", "diffusivity", "diffusivity_range", "n_modes", "k_max"]
        options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        path = generate_family(args.source, samples=args.samples, out=args.out, chunk=args.chunk,
                               scheduler=None if args.scheduler == "local" else args.scheduler,
                               n_workers=args.workers, seed=args.seed, backend=args.backend,
                               progress=not args.no_progress, **options)
        return f"wrote {path} in {time.perf_counter() - start:.1f} s ({args.samples} samples on Dask)"
    else:
        from .data.generators import generate

        if args.file:
            raise ConfigurationError(f"Unexpected argument {args.file!r}: only 'pdebench' takes a file.")
        names = ["grid", "frames", "t_end", "dt", "solver", "diffusivity", "diffusivity_range", "n_modes",
                 "k_max", "samples", "workers"]
        options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        if "diffusivity_range" in options:
            options["diffusivity_range"] = tuple(options["diffusivity_range"])
        ds = generate(args.source, seed=args.seed, backend=args.backend, progress=not args.no_progress, **options)
    path = save_dataset(ds, args.out)
    lines = [f"wrote {path} in {time.perf_counter() - start:.1f} s"]
    lines += [f"  {name}: {dict(zip(var.dims, var.shape))}" for name, var in ds.data_vars.items()]
    if "solver_max_error" in ds.attrs:
        lines.append(f"  solver max error {ds.attrs['solver_max_error']:.3g} ({ds.attrs['solver_error_kind']})")
    return "\n".join(lines)


def ddp_main(argv: list[str] | None = None) -> int:
    """``torchrun --nproc_per_node N -m lipsurrogate.train.distributed ...``: train, then print rank 0's summary as JSON."""
    import json

    from .train.distributed import run_from_arguments

    summary = run_from_arguments(argv)
    if summary is not None:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
