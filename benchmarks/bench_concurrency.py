"""Concurrent training runs on a small machine: oversubscribed thread pools against the load-aware default.

Each *worker* is a fresh Python process that trains ``fit heat2d``'s network size
(:class:`lipsurrogate.nn.LipschitzMLP`, 3 -> 4 x 128 -> 1, GroupSort, Eq. 2.8 norm) with
:func:`lipsurrogate.train.train` on a fixed random batch of 4096 points and prints its median
milliseconds per step. Scenarios, all in one run:

``alone``
    One worker with the default policy (``threads="auto"``): the baseline (ratio 1.0).
``N concurrent, one thread per core each``
    N workers started together, each with torch threads = available cores (what torch does by
    default, and what ``fit`` did before issue 17): the cores are oversubscribed and OpenMP workers
    spin-wait on each other.
``N concurrent, threads="auto"``
    N workers started together with the default policy
    (:func:`lipsurrogate._threads.threads_for_load`: the cores that other processes leave free).

The figure of merit is *slowdown / load*: the mean time per step under load over the alone time,
divided by the load N. A worker alone keeps every core busy, so N of them can at best share the
machine and each run N times slower: 1.0 is a fair share (the machine's total steps per second
are kept), above 1 is work lost to oversubscription.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _markdown  # noqa: E402

WORKER = r"""
import json, sys, time, torch
from lipsurrogate.nn import LipschitzMLP
from lipsurrogate.train import train
steps, threads = int(sys.argv[1]), sys.argv[2]
threads = "auto" if threads == "auto" else int(threads)
torch.manual_seed(0)
model = LipschitzMLP(3, 1, (128,) * 4, seed=0)
x, y = torch.rand(4096, 3), torch.rand(4096, 1)
times, used = [], []
class Clock:
    def __call__(self, out, target):
        times.append(time.perf_counter())
        used.append(torch.get_num_threads())
        return torch.mean((out - target) ** 2)
train(model, x, y, Clock(), steps=steps, batch_size=4096, progress=False, threads=threads)
gaps = [b - a for a, b in zip(times, times[1:])][5:]
gaps.sort()
print(json.dumps({"ms_per_step": 1e3 * gaps[len(gaps) // 2], "threads": sorted(set(used))}))
"""


def run_workers(n: int, steps: int, threads: str) -> tuple[list[float], list[list[int]]]:
    """Start ``n`` workers together; their median ms per step and the thread counts each used."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LIPSURROGATE_THREADS")}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(steps), threads], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(n)]
    ms, used = [], []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"a worker failed with exit code {p.returncode}")
        doc = json.loads(stdout.strip().splitlines()[-1])
        ms.append(doc["ms_per_step"])
        used.append(doc["threads"])
    return ms, used


def main(argv=None) -> int:
    from lipsurrogate._threads import available_cores

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--load", type=int, default=3, help="concurrent workers [3]")
    parser.add_argument("--quick", action="store_true", help="60 steps, 2 workers")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "concurrency.md")
    args = parser.parse_args(argv)
    steps, load = (60, 2) if args.quick else (args.steps, args.load)
    cores = available_cores()
    alone_ms, alone_used = run_workers(1, steps, "auto")
    alone = alone_ms[0]
    rows = [("alone, threads='auto'", 1, alone_ms, alone_used), ("alone, 1 thread", 1, *run_workers(1, steps, "1"))]
    rows.append((f"{load} concurrent, {cores} thread(s) each (one per core)", load, *run_workers(load, steps, str(cores))))
    rows.append((f"{load} concurrent, threads='auto'", load, *run_workers(load, steps, "auto")))
    lines = _markdown.header("Concurrent training: thread oversubscription", [
        f"available cores: {cores}; worker: LipschitzMLP 3 -> 4 x 128 -> 1, batch 4096, {steps} steps, "
        "median ms per step after 5 warm-up steps",
        f"a fair share for {load} workers is {load}x slower each (slowdown / load = 1.0: the machine's total "
        "steps per second are kept)",
    ])
    lines += ["| scenario | ms per step (each worker) | threads used | mean slowdown vs alone | slowdown / load |",
              "|---|---|---|---:|---:|"]
    for name, n, ms, used in rows:
        slow = statistics.fmean(ms) / alone
        threads = "; ".join("/".join(map(str, u)) for u in used)
        lines.append(f"| {name} | {', '.join(f'{m:.1f}' for m in ms)} | {threads} | {slow:.2f}x | {slow / n:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    _markdown.write(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
