"""Scaling: family generation and training time against samples and workers, on this machine.

Every configuration runs in a fresh Python process (imports, cluster start-up and process
spawning included, as a user pays them) on heat2d families of 32x32 cells, 21 frames,
``t in [0, 1]``, ``kappa`` uniform in [0.2, 0.5], numpy backend (no numba compilation):

Generation (seconds from process start to a finished dataset file)
    ``heat2d + save_dataset`` in one process (``workers=1``: **the baseline** of the ratios),
    ``heat2d(workers=2)`` (the process-pool option), and
    :func:`lipsurrogate.data.distributed.generate_family` on a local Dask cluster with 1 and 2
    worker processes (chunks of 16 samples), for each number of samples.
Training (``--steps`` Adam steps, batch ``--batch-size``, LipschitzMLP 4 -> 64 -> 64 -> 1)
    In memory (``load_dataset`` then every grid point as a tensor, **the baseline**) against
    streamed from the file (:class:`~lipsurrogate.train.streaming.FieldStream`, 2**18-point
    shuffle buffer); set-up time, training time and peak resident memory of the process.
DDP
    ``torchrun --nproc_per_node P -m lipsurrogate.train.distributed`` with P = 1 (baseline) and
    2, the same steps and per-rank batch (so P = 2 sees twice the points per step); throughput
    in points per second of the training loop.

Usage::

    python benchmarks/bench_scaling.py [--samples 50 100 200 400] [--steps 300] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _markdown import header, write

DEFAULT_OUT = Path(__file__).parent / "results" / "scaling.md"
OPTIONS = dict(grid=32, frames=21, t_end=1.0, diffusivity_range=(0.2, 0.5), backend="numpy")

GEN_HEAT2D = """
from lipsurrogate.data.generators import heat2d
from lipsurrogate.data.dataset import save_dataset
save_dataset(heat2d(samples={n}, seed=0, workers={workers}, progress=False, **{options}), {out!r})
"""

GEN_DASK = """
from lipsurrogate.data.distributed import generate_family
if __name__ == "__main__":
    generate_family(samples={n}, out={out!r}, chunk=16, n_workers={workers}, seed=0, progress=False, **{options})
"""

TRAIN = """
import json, resource, time
import numpy as np, torch
torch.set_num_threads(1)
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.train import train
from lipsurrogate.train.streaming import FieldStream, train_streaming
start = time.perf_counter()
stream = FieldStream({path!r}, batch_size={batch}, epochs=None, seed=0)
lo, hi = stream.input_ranges()
model = LipschitzMLP(4, 1, [64, 64], lipschitz=8.0, input_offset=(lo + hi) / 2, input_scale=2 / (hi - lo), seed=0)
if {streamed}:
    setup = time.perf_counter() - start
    history = train_streaming(model, stream, steps={steps}, lr=3e-3, seed=0, progress=False)
else:
    from lipsurrogate.data.dataset import load_dataset
    ds = load_dataset({path!r})
    S, T, X, Y = np.meshgrid(np.arange(ds.sizes["sample"]), ds.t.values, ds.x.values, ds.y.values, indexing="ij")
    points = torch.tensor(np.stack([X.ravel(), Y.ravel(), T.ravel(), ds.diffusivity.values[S.ravel()]], 1),
                          dtype=torch.float32)
    values = torch.tensor(ds.u.values.reshape(-1, 1), dtype=torch.float32)
    del ds, S, T, X, Y
    setup = time.perf_counter() - start
    history = train(model, points, values, steps={steps}, batch_size={batch}, lr=3e-3, seed=0, progress=False)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"setup": setup, "train": history.seconds, "rss_mb": rss, "loss": history.losses[-1]}}))
"""


def run_code(code: str) -> tuple[float, str]:
    """Seconds for a fresh interpreter to run ``code``, and its last line of output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stdout.strip().splitlines()
    return time.perf_counter() - start, (lines[-1] if lines else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ddp(nproc: int, path: Path, out: Path, steps: int, batch: int) -> tuple[float, dict]:
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        raise RuntimeError("torchrun is not on PATH")
    start = time.perf_counter()
    subprocess.run([torchrun, "--nproc_per_node", str(nproc), "--master_port", str(free_port()), "-m",
                    "lipsurrogate.train.distributed", "--data", str(path), "--out", str(out), "--steps", str(steps),
                    "--batch-size", str(batch), "--hidden", "64,64", "--lipschitz", "8", "--no-progress"],
                   check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    return wall, json.loads(out.with_name(out.name + ".training.json").read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="samples 16 32, 30 steps: a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.steps = [16, 32], 30
    options = repr(OPTIONS)
    load_before = os.getloadavg()
    gen_rows, train_rows, ddp_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        tmp = Path(tmp)
        files = {}
        for n in args.samples:
            base, _ = run_code(GEN_HEAT2D.format(n=n, workers=1, options=options, out=str(tmp / f"base-{n}.nc")))
            gen_rows.append((n, "heat2d + save_dataset, 1 process (baseline)", base, base))
            pool, _ = run_code(GEN_HEAT2D.format(n=n, workers=2, options=options, out=str(tmp / f"pool-{n}.nc")))
            gen_rows.append((n, "heat2d(workers=2) + save_dataset", pool, base))
            for workers in (1, 2):
                path = tmp / f"dask{workers}-{n}.nc"
                seconds, _ = run_code(GEN_DASK.format(n=n, workers=workers, options=options, out=str(path)))
                gen_rows.append((n, f"generate_family, Dask LocalCluster, {workers} worker(s)", seconds, base))
            files[n] = tmp / f"dask2-{n}.nc"
            print(f"generation {n} samples done", file=sys.stderr)
        for n in args.samples:
            mem = json.loads(run_code(TRAIN.format(path=str(files[n]), batch=args.batch_size, steps=args.steps,
                                                   streamed=False))[1])
            streamed = json.loads(run_code(TRAIN.format(path=str(files[n]), batch=args.batch_size, steps=args.steps,
                                                        streamed=True))[1])
            train_rows.append((n, mem, streamed))
        largest = files[max(args.samples)]
        for nproc in (1, 2):
            wall, report = run_ddp(nproc, largest, tmp / f"ddp{nproc}", args.steps, args.batch_size)
            ddp_rows.append((nproc, wall, report))

    points_per_sample = OPTIONS["frames"] * OPTIONS["grid"] ** 2
    lines = ["## Generation", "",
             "Marginal: the extra seconds per extra sample against the previous sample count of the same "
             "configuration (start-up costs cancel).", "",
             "| samples | configuration | total s | s per sample | marginal s per sample | speed-up vs baseline |",
             "|---:|---|---:|---:|---:|---:|"]
    previous: dict = {}
    for n, name, seconds, base in gen_rows:
        marginal = "" if name not in previous else f"{(seconds - previous[name][1]) / (n - previous[name][0]):.3f}"
        previous[name] = (n, seconds)
        lines.append(f"| {n} | {name} | {seconds:.1f} | {seconds / n:.3f} | {marginal} | {base / seconds:.2f}x |")
    lines += ["", "## Training: in memory vs streamed from the file", "",
              f"{args.steps} steps of batch {args.batch_size}; {points_per_sample} points per sample.", "",
              "| samples | points | in memory: set-up s / train s / peak MB | streamed: set-up s / train s / peak MB "
              "| train time streamed / in memory | peak memory streamed / in memory |",
              "|---:|---:|---|---|---:|---:|"]
    for n, mem, st in train_rows:
        lines.append(
            f"| {n} | {n * points_per_sample:,} | {mem['setup']:.1f} / {mem['train']:.1f} / {mem['rss_mb']:.0f} "
            f"| {st['setup']:.1f} / {st['train']:.1f} / {st['rss_mb']:.0f} | {st['train'] / mem['train']:.2f}x "
            f"| {st['rss_mb'] / mem['rss_mb']:.2f}x |")
    lines += ["", f"## DDP (torchrun, gloo, CPU) on the {max(args.samples)}-sample file", "",
              f"{args.steps} steps, batch {args.batch_size} per rank, one torch thread per rank.", "",
              "| processes | wall s (incl. start-up) | training loop s | points/s | throughput vs 1 process |",
              "|---:|---:|---:|---:|---:|"]
    base_rate = None
    for nproc, wall, report in ddp_rows:
        rate = nproc * args.batch_size * args.steps / report["seconds"]
        base_rate = base_rate or rate
        lines.append(f"| {nproc} | {wall:.1f} | {report['seconds']:.1f} | {rate:,.0f} | {rate / base_rate:.2f}x |")
    table = "\n".join(lines)
    print(table)
    text = "\n".join([
        *header("Scaling benchmark: heat2d family generation (Dask) and training (streamed, DDP)",
                ["each row is a fresh process (imports, cluster start-up, process spawning included)",
                 f"families: {OPTIONS}, chunk 16 samples per Dask task",
                 "OMP_NUM_THREADS=1 in every process; ratios are against the baseline measured in the same run",
                 "load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f} "
                 "(above the CPU count, other work competed for the cores)".format(*load_before, *os.getloadavg())]),
        table,
        "",
    ])
    write(args.out, text)


if __name__ == "__main__":
    main()
