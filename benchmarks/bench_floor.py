"""The matrix products alone, in float32 passes: floors under issue 17's certificate targets.

Issue 17 asks for the default heat2d certificate in at most 3 float32 forward passes over its
vertices, the float64 vertex values in at most 2, and local constants at 1e6 cells/s or more. The
certified computation cannot run faster than its own matrix products, so this script times those
products alone, with the shapes the certifier uses, against the float32 forward pass in the same
rounds:

``float32 forward pass``
    The plain network over the 129 x 129 x 33 vertices of the default grid, 8,192 rows at a time
    (issue 17's unit, as in ``bench_certify`` and ``bench_revision``).
``float64 vertex values (products only)``
    Every layer's float64 ``addmm`` on blocks of :data:`lipsurrogate.bounds.network.ROWS_PER_BLOCK`
    rows over the same vertices: what :func:`lipsurrogate.bounds.evaluate_float64` cannot skip.
``float64 vertex values (whole)``
    :func:`~lipsurrogate.bounds.evaluate_float64` itself, for comparison.
``forward affine forms (products only)``
    Every layer's float32 products of the affine forms on the default slope blocks (1 x 1 x 4 cells,
    131,072 blocks): per block the stored entries of the forms (their number read from
    :class:`~lipsurrogate.bounds._pair_kernel.FormLayout` of this network's input forms) and the
    d + 1 radius rows, chunk by chunk (:data:`lipsurrogate.bounds.affine.CHUNK` blocks), through
    :func:`lipsurrogate._gemm.linear` as the certifier calls it. The backward bounds, the pair
    kernel and refinement come on top of this.
``derivative intervals (products only)``
    Every layer's float64 products of interval propagation
    (:func:`lipsurrogate.bounds.local.network_derivative_intervals`) on 2 x 2 x 2 blocks of the same
    grid (65,536 blocks): centres and radii of the value and of the d derivatives, 2 (d + 1) rows
    per block, in the chunks of :func:`~lipsurrogate.bounds.local.network_intervals`.

From these (measured floors, as noisy as any timing here): the certificate takes at least the
vertex values' products plus the forms' products; local constants by the affine forms on 2 x 2 x 2 blocks (the same rows per
block, 8 cells each) cannot run faster than 8 x 131,072 cells in the forms' products' time, and by
interval propagation not faster than its 524,288 cells in its products' time. Random weights (speed does
not depend on training); medians over interleaved rounds, each ratio taken within its round.

Usage::

    python benchmarks/bench_floor.py [--rounds 7] [--out benchmarks/results/floor.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from _markdown import header, write

from lipsurrogate import _gemm
from lipsurrogate._allocator import tune_malloc
from lipsurrogate._threads import configure_threads, numpy_blas_threads
from lipsurrogate.bounds import evaluate_float64, extract_chain
from lipsurrogate.bounds._pair_kernel import FormLayout
from lipsurrogate.bounds.affine import CHUNK, _input_forms, box_centres
from lipsurrogate.bounds.network import ROWS_PER_BLOCK
from lipsurrogate.bounds.tiles import block_boxes
from lipsurrogate.nn import FeatureLipschitzMLP, to_plain

DEFAULT_OUT = Path(__file__).parent / "results" / "floor.md"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tune_malloc()
    threads = configure_threads()
    with numpy_blas_threads(1):
        _run(args, threads)


def _run(args, threads: int) -> None:
    model = FeatureLipschitzMLP(3, 1, (128,) * 4, periods=[2 * np.pi, 2 * np.pi, None], harmonics=3,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[3, 3, 1], seed=0).eval()
    chain = extract_chain(model)
    edges = [np.linspace(0, 2 * np.pi, 129), np.linspace(0, 2 * np.pi, 129), np.linspace(0, 1, 33)]
    vertices = np.stack([m.ravel() for m in np.meshgrid(*edges, indexing="ij")], 1)
    v32 = torch.tensor(vertices, dtype=torch.float32)
    plain = to_plain(model)
    lo, hi, _ = block_boxes(edges, (1, 1, 4))
    n_blocks = len(lo)
    centre, half = box_centres(lo[:CHUNK], hi[:CHUNK])
    P, R = _input_forms(model, chain, centre, half)
    layout = FormLayout.of(P)
    rows = layout.entries + R.shape[1]  # stored entries of the forms and the radius rows, per block
    rng = np.random.default_rng(0)
    w32 = [torch.tensor(w, dtype=torch.float32) for w in chain.weights]
    w64 = [torch.tensor(w, dtype=torch.float64) for w in chain.weights]
    b64 = [torch.tensor(b, dtype=torch.float64) for b in chain.biases]
    forms_in = torch.tensor(rng.standard_normal((CHUNK * rows, w32[0].shape[1])), dtype=torch.float32)
    forms_hidden = torch.tensor(rng.standard_normal((CHUNK * rows, w32[1].shape[1])), dtype=torch.float32)
    vertex_in = torch.tensor(rng.standard_normal((ROWS_PER_BLOCK, w64[0].shape[1])))
    vertex_hidden = torch.tensor(rng.standard_normal((ROWS_PER_BLOCK, w64[1].shape[1])))

    def forward32():
        with torch.no_grad():
            for s in range(0, len(v32), 8192):
                plain(v32[s : s + 8192])

    def vertex_products():
        for s in range(0, len(vertices), ROWS_PER_BLOCK):
            m = min(ROWS_PER_BLOCK, len(vertices) - s)
            torch.addmm(b64[0], vertex_in[:m], w64[0].T)
            for w, b in zip(w64[1:], b64[1:]):
                torch.addmm(b, vertex_hidden[:m], w.T)

    d = vertices.shape[1]
    interval_chunk = 8160  # network_intervals' default
    n_interval_blocks = 64 * 64 * 16
    interval_in = torch.tensor(rng.standard_normal((interval_chunk * d, w64[0].shape[1])))
    interval_hidden = torch.tensor(rng.standard_normal((interval_chunk * d, w64[1].shape[1])))

    def interval_products():
        for s in range(0, n_interval_blocks, interval_chunk):
            m = min(interval_chunk, n_interval_blocks - s)
            for w in w64:
                x = interval_in if w is w64[0] else interval_hidden
                wt, awt = w.T, w.abs().T
                x[:m] @ wt, x[:m] @ awt  # value centres and radii
                x[: m * d] @ wt, x[: m * d] @ awt  # derivative centres and radii

    def vertex_whole():
        evaluate_float64(chain, vertices)

    def forms_products():
        for s in range(0, n_blocks, CHUNK):
            m = min(CHUNK, n_blocks - s) * rows
            _gemm.linear(forms_in[:m], w32[0])
            for w in w32[1:]:
                _gemm.linear(forms_hidden[:m], w)

    stages = {"forward32": forward32, "vertex_products": vertex_products, "vertex_whole": vertex_whole,
              "forms_products": forms_products, "interval_products": interval_products}
    for f in stages.values():  # compile and warm up
        f()
    seconds = {k: [] for k in stages}
    order = list(stages)
    for r in range(args.rounds):
        for k in order[r % len(order):] + order[: r % len(order)]:
            start = time.perf_counter()
            stages[k]()
            seconds[k].append(time.perf_counter() - start)
    passes = {k: [t / p for t, p in zip(seconds[k], seconds["forward32"])] for k in stages}
    med = {k: statistics.median(v) for k, v in passes.items()}
    sec = {k: statistics.median(v) for k, v in seconds.items()}
    floor = statistics.median([a + b for a, b in zip(passes["vertex_products"], passes["forms_products"])])
    cells_per_s = statistics.median([8 * n_blocks / t for t in seconds["forms_products"]])
    interval_cells_per_s = statistics.median([8 * n_interval_blocks / t for t in seconds["interval_products"]])
    labels = {
        "forward32": f"float32 forward pass, {len(vertices):,} vertices (the unit)",
        "vertex_products": f"float64 vertex values: the products only ({ROWS_PER_BLOCK:,}-row blocks)",
        "vertex_whole": "float64 vertex values: `evaluate_float64` whole",
        "forms_products": f"forward affine forms: the float32 products only, {n_blocks:,} blocks x {rows} rows",
        "interval_products": f"derivative intervals: the float64 products only, {n_interval_blocks:,} blocks x "
                             f"{2 * (d + 1)} rows",
    }
    lines = header("Floors under issue 17's certificate targets: the matrix products alone", [
        f"torch {torch.__version__} ({threads} threads), one numpy BLAS thread; network 3 -> 49 features -> "
        "4 x 128 GroupSort -> 1, random weights (seed 0)",
        f"forms per block: {layout.entries} stored entries (of {layout.rows ** 2}) + {R.shape[1]} radius rows",
        f"{args.rounds} interleaved rounds; medians; passes = time / the float32 pass of the same round",
    ])
    lines += ["| stage | s | float32 passes |", "|---|---:|---:|"]
    lines += [f"| {labels[k]} | {sec[k]:.3f} | {med[k]:.2f} |" for k in stages]
    lines += ["",
              f"- the certificate's products alone: **{floor:.1f} passes** (vertex products + forms products, "
              "per round; measured, so as noisy as any timing here); target: 3",
              f"- the vertex values' float64 products alone: **{med['vertex_products']:.2f} passes**; target: 2",
              f"- local constants on 2 x 2 x 2 blocks, the products alone allow at most **{cells_per_s:,.0f} cells/s** "
              "by the affine forms (8 cells per block) and "
              f"**{interval_cells_per_s:,.0f} cells/s** by interval propagation (its float64 products); target: 1,000,000",
              ""]
    text = "\n".join(lines)
    print(text)
    write(args.out, text)


if __name__ == "__main__":
    main()
