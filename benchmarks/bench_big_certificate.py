"""Big certificate grids on a 4-input case: tiles in bounded memory, in this process and on Dask.

The case is heat2d-kappa's: a FeatureLipschitzMLP of (x, y, t, kappa) against the closed-form heat
solution with kappa as the fourth input (level 2), box [0, 2 pi]^2 x [0, 1] x [0.02, 0.1], blocks of
2 cells per axis, default slopes (affine forms intersected with intervals), refinement budget
100,000 evaluations. The network has random weights (speed and memory do not depend on training;
its bound is not the point here). Each configuration runs in its own process, so its peak resident
memory (``ru_maxrss``) is its own; Dask workers report theirs.

Rows
----
``identity``
    n^4 cells certified in one piece, in tiles here, and in the same tiles on a LocalCluster of
    2 worker processes: the largest relative difference of the per-cell bounds (one piece against
    tiles: the BLAS sums other batches in another order) and whether the tiles on Dask are the
    same bits as the tiles here.
``memory``
    peak memory in one piece against 16 tiles, at 32^4 = 1M cells.
``scale``
    big grids in tiles (blocks of 4 cells per axis): 56^4 = 9.8M cells here, 100^4 = 10^8 cells on 2
    Dask workers: wall time, cells per second, peak memory of the driver and the workers. On 2 cores, 2 workers can only split
    the same 2 cores; the row shows that the distributed path runs at the machine's throughput,
    not that it is faster here.

Usage::

    python benchmarks/bench_big_certificate.py [--cells 100] [--quick] [--out benchmarks/results/big_certificate.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _markdown  # noqa: E402

DEFAULT_OUT = Path(__file__).parent / "results" / "big_certificate.md"
BOX = [[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, 1.0], [0.02, 0.1]]


def _case():
    from lipsurrogate.bounds import HeatSolution
    from lipsurrogate.data.heat import random_periodic_modes
    from lipsurrogate.nn import FeatureLipschitzMLP

    model = FeatureLipschitzMLP(4, 1, (64, 64), periods=[2 * np.pi, 2 * np.pi, None, None], harmonics=2,
                                offset=[0, 0, 0.5, 0.06], scale=[1, 1, 2, 25], input_budget=[3, 3, 1, 1],
                                seed=0).eval()
    return model, HeatSolution(random_periodic_modes(np.random.default_rng(0), n_modes=3, k_max=2))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def run_one(spec: dict) -> dict:
    """One configuration, in this (fresh) process: certify, report time, bound, peak memory."""
    from lipsurrogate.bounds import certify

    model, reference = _case()
    n = spec["cells"]
    options = dict(local_block=spec.get("local_block", 2), refine_budget=100_000, tile_cells=spec.get("tile_cells"))
    start = time.perf_counter()
    workers_peak = None
    if spec.get("dask"):
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            start = time.perf_counter()
            cert = certify(model, reference, BOX, [n] * 4, scheduler=client, **options)
            seconds = time.perf_counter() - start
            workers_peak = sorted(client.run(_peak_mb).values())
    else:
        cert = certify(model, reference, BOX, [n] * 4, **options)
        seconds = time.perf_counter() - start
    if spec.get("save"):
        np.save(spec["save"], cert.cells.per_cell, allow_pickle=False)
    return {"seconds": seconds, "bound": cert.bound, "tiles": cert.document["grid"]["tiles"], "cells": n**4,
            "peak_mb": _peak_mb(), "workers_peak_mb": workers_peak,
            "refined_cells": (cert.document["refinement"] or {}).get("refined_cells")}


def spawn(spec: dict, threads: int) -> dict:
    env = dict(os.environ, LIPSURROGATE_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--run", json.dumps(spec)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"configuration {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100, help="cells per axis of the big grid on Dask [100: 10^8 cells]")
    parser.add_argument("--cells-here", type=int, default=56, help="cells per axis of the big grid here [56: 9.8M cells]")
    parser.add_argument("--local-block", type=int, default=4, help="cells per block and axis on the big grids [4]")
    parser.add_argument("--identity-cells", type=int, default=24, help="cells per axis of the identity check [24]")
    parser.add_argument("--quick", action="store_true", help="small grids (seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--run", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run is not None:
        print(json.dumps(run_one(json.loads(args.run))))
        return
    import torch

    from lipsurrogate._threads import default_threads

    torch.set_num_threads(1)
    threads = default_threads()
    big, here, small, memory = (16, 12, 8, 16) if args.quick else (args.cells, args.cells_here, args.identity_cells, 32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {k: str(Path(tmp) / f"{k}.npy") for k in ("piece", "tiles", "dask")}
        piece = spawn({"cells": small, "tile_cells": 10**12, "save": paths["piece"]}, threads)
        tile = max(256, small**4 // 16)
        tiles = spawn({"cells": small, "tile_cells": tile, "save": paths["tiles"]}, threads)
        dask = spawn({"cells": small, "tile_cells": tile, "dask": True, "save": paths["dask"]}, 1)
        a, b, c = (np.load(paths[k], allow_pickle=False) for k in ("piece", "tiles", "dask"))
        rel = float(np.max(np.abs(a - b) / np.abs(a)))
        same_bits = bool(np.array_equal(b, c))
        for name, r in (("one piece", piece), (f"{tiles['tiles']} tiles, here", tiles),
                        (f"{dask['tiles']} tiles, 2 Dask workers", dask)):
            rows.append(("identity", name, r))
        print(f"identity: max relative difference one piece vs tiles {rel:.2e}; tiles here == on Dask: {same_bits}",
              file=sys.stderr)
    mem_piece = spawn({"cells": memory, "tile_cells": 10**12}, threads)
    mem_tiles = spawn({"cells": memory, "tile_cells": memory**4 // 16}, threads)
    rows += [("memory", "one piece", mem_piece), ("memory", f"{mem_tiles['tiles']} tiles, here", mem_tiles)]
    print(f"memory at {memory}^4: one piece {mem_piece['peak_mb']:.0f} MB, tiles {mem_tiles['peak_mb']:.0f} MB",
          file=sys.stderr)
    scale_here = spawn({"cells": here, "tile_cells": None, "local_block": args.local_block}, threads)
    print(f"scale here: {scale_here}", file=sys.stderr)
    scale_dask = spawn({"cells": big, "tile_cells": None, "dask": True, "local_block": args.local_block}, 1)
    print(f"scale dask: {scale_dask}", file=sys.stderr)
    rows += [("scale", f"{scale_here['tiles']} tiles, here ({threads} threads)", scale_here),
             ("scale", f"{scale_dask['tiles']} tiles, 2 Dask workers (1 thread each)", scale_dask)]

    lines = _markdown.header("Big certificate grids in tiles (issue 17)", [
        "4-input heat2d-kappa case, FeatureLipschitzMLP 2 x 64 (random weights), refinement budget 100,000",
        f"local blocks of 2 cells per axis (identity, memory) and {args.local_block} (scale)",
        "each configuration in its own process; peak memory = ru_maxrss",
    ])
    lines += ["| check | configuration | cells | tiles | seconds | cells/s | certified bound | peak MB (driver) | "
              "peak MB (workers) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for check, name, r in rows:
        workers = ", ".join(f"{w:.0f}" for w in r["workers_peak_mb"]) if r["workers_peak_mb"] else ""
        lines.append(f"| {check} | {name} | {r['cells']:,} | {r['tiles']} | {r['seconds']:.1f} | "
                     f"{r['cells'] / r['seconds']:,.0f} | {r['bound']:.6g} | {r['peak_mb']:.0f} | {workers} |")
    lines += ["", f"Identity ({small}^4 cells): largest relative difference of the per-cell bounds between one piece "
              f"and tiles {rel:.1e} (last bits of the BLAS sums; both certified); tiles on Dask equal the tiles here "
              f"bit for bit: {'yes' if same_bits else 'NO'}.", ""]
    _markdown.write(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
