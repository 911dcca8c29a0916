"""Certification speed on the default heat2d certificate grid, as ratios to evaluating the network.

Stages timed on the same grid (128 x 128 x 32 cells, 129 x 129 x 33 vertices) with the default
4 x 128 FeatureLipschitzMLP (random weights: speed does not depend on training):

``network forward (float32 torch)``
    The baseline: one plain forward pass over all vertices, in chunks of 8,192 points (the
    fastest chunking measured here; one call over all 549,153 points takes about 2.5 times as
    long and is shown as well, since it was the baseline until stop 32).
``vertex values + rounding bounds (float64)``
    :func:`lipsurrogate.bounds.evaluate_float64` over all vertices, and the same with the row blocks
    of before stop 32 (65,536 rows at a time).
``per-cell pair bound`` / ``exact per-cell bound``
    :func:`lipsurrogate.bounds.cells.cell_bounds` with ``method="pair"`` (closed form) and
    ``method="exact"`` (the linear program through its 38 dual vertices, plus the closed form),
    consistency check included.
``exact LP kernel``
    :func:`lipsurrogate.bounds.cell_lp.exact_abs_bounds` alone on 1M cells.
``signed per-cell program``
    :func:`lipsurrogate.bounds.cell_lp.signed_abs_bounds` (the program every cell with local
    slopes runs) on random 3-D and 4-D cells, compiled (``_lp_kernel``) and on the numpy path.
``local constants (interval propagation)``
    :func:`lipsurrogate.bounds.local.network_derivative_intervals` plus the solution's derivative
    intervals (:class:`~lipsurrogate.bounds.HeatSolution`), combined as the certifier does
    (``lipsurrogate.bounds.certifier._error_slopes``, interval method), on blocks of 2 x 2 x 2 cells
    and, separately, the network's intervals alone per cell on a sample; then the affine forms
    (``"affine"``) with the torch pair step and with the fused numba one, their intersection with
    the intervals (``"both"``, the old default), and the affine forms on blocks of 1 x 1 x 4 cells
    (``fit heat2d``'s default now).
``whole certificate``
    :func:`lipsurrogate.bounds.certify` with the old heat2d settings (2 x 2 x 2 blocks, ``"both"``)
    and with the current ones (1 x 1 x 4 blocks, ``"affine"``), refinement budget 250,000
    evaluations, everything included. On this random network the refinement does different work
    than on a trained one; the figure is a ratio of the same order.

The forward baseline and the vertex values are medians of 5 passes. Everything runs with one
numpy BLAS thread, as the certifier does (``lipsurrogate._threads.numpy_blas_threads``), and
with glibc's malloc thresholds of the ``lipsurrogate`` command (:mod:`lipsurrogate._allocator`;
``--default-malloc`` leaves them, for comparison).

Usage::

    python benchmarks/bench_certify.py [--out benchmarks/results/certify.md]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from _markdown import header, write

from lipsurrogate._allocator import tune_malloc
from lipsurrogate._threads import numpy_blas_threads
from lipsurrogate.bounds import HeatSolution, evaluate_float64, extract_chain
from lipsurrogate.bounds.cells import cell_bounds
from lipsurrogate.bounds.local import network_derivative_intervals
from lipsurrogate.data.heat import random_periodic_modes
from lipsurrogate.nn import FeatureLipschitzMLP, to_plain

DEFAULT_OUT = Path(__file__).parent / "results" / "certify.md"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@contextlib.contextmanager
def _blocks_of(rows: int):
    """evaluate_float64 with another row-block size inside the block."""
    from lipsurrogate.bounds import network

    previous = network.ROWS_PER_BLOCK
    network.ROWS_PER_BLOCK = rows
    try:
        yield
    finally:
        network.ROWS_PER_BLOCK = previous


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's own malloc thresholds")
    args = parser.parse_args(argv)
    args.malloc = "glibc defaults" if args.default_malloc or not tune_malloc() else "tuned (lipsurrogate._allocator)"
    with numpy_blas_threads(1):
        _run(args)


def _run(args) -> None:
    model = FeatureLipschitzMLP(3, 1, (128,) * 4, periods=[2 * np.pi, 2 * np.pi, None], harmonics=3,
                                offset=[0, 0, 0.5], scale=[1, 1, 2], input_budget=[3, 3, 1], seed=0).eval()
    modes = random_periodic_modes(np.random.default_rng(0))
    edges = [np.linspace(0, 2 * np.pi, 129), np.linspace(0, 2 * np.pi, 129), np.linspace(0, 1, 33)]
    X, Y, T = np.meshgrid(*edges, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), T.ravel()], 1)
    n_vertices, n_cells = len(pts), 128 * 128 * 32
    plain = to_plain(model)
    x32 = torch.tensor(pts, dtype=torch.float32)
    def forward(rows):
        with torch.no_grad():
            for s in range(0, len(x32), rows):
                plain(x32[s : s + rows])

    forward(8192)
    t_forward = float(np.median([timed(lambda: forward(8192))[1] for _ in range(5)]))
    t_forward_whole = float(np.median([timed(lambda: forward(len(x32)))[1] for _ in range(5)]))
    chain = extract_chain(model)

    def vertex_values():
        return evaluate_float64(chain, pts)[0][:, 0]

    vertex_values()
    t_values = float(np.median([timed(vertex_values)[1] for _ in range(5)]))
    with _blocks_of(65_536):
        t_values_old_blocks = float(np.median([timed(vertex_values)[1] for _ in range(5)]))
    f = vertex_values()
    errors = (f - modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], 0.05)).reshape(X.shape)
    _, t_pairs = timed(lambda: cell_bounds(errors, edges, [60.0, 60.0, 60.0], method="pair"))
    _, t_exact = timed(lambda: cell_bounds(errors, edges, [60.0, 60.0, 60.0], method="exact"))
    from lipsurrogate.bounds.cell_lp import exact_abs_bounds

    rng = np.random.default_rng(2)
    kernel_e, kernel_a = rng.normal(size=(1_000_000, 8)), rng.uniform(size=(1_000_000, 3))
    _, t_kernel = timed(lambda: exact_abs_bounds(kernel_e, 1e-12, kernel_a))
    from lipsurrogate.bounds import _lp_kernel
    from lipsurrogate.bounds.cell_lp import signed_abs_bounds

    def signed(d, n, compiled=True):
        e, s = rng.normal(size=(n, 2**d)), rng.uniform(0, 0.05, size=(n, d))
        lo = rng.normal(size=(n, d))
        with contextlib.nullcontext() if compiled else _lp_kernel.disabled():
            signed_abs_bounds(e[:8], 1e-12, s[:8], lo[:8], lo[:8] + 0.5)  # compiled before timing
            return timed(lambda: signed_abs_bounds(e, 1e-12, s, lo, lo + rng.uniform(size=(n, d))))[1]

    t_signed = {(d, c): signed(d, n, c) for d, n in ((3, 1_000_000), (4, 200_000)) for c in (True, False)}
    from lipsurrogate.bounds.certifier import _error_slopes
    from lipsurrogate.bounds.tiles import block_boxes

    reference = HeatSolution(modes, 0.05)
    box = np.array([[e[0], e[-1]] for e in edges])

    def local_constants(block=2, method="interval", fused=True, backward=False):
        # per-cell constants as certify(..., local_block=block) builds them: one range per block
        from lipsurrogate.bounds import _pair_kernel

        step = [block] * 3 if np.isscalar(block) else list(block)
        lo, hi, shape = block_boxes(edges, step)
        with contextlib.nullcontext() if fused else _pair_kernel.disabled():
            out = _error_slopes(model, reference, lo, hi, box, method, backward=backward)[1].reshape(*shape, 3)
        for axis, k in enumerate(step):
            out = np.repeat(out, k, axis=axis)
        return out

    _, t_local = timed(local_constants)
    _, t_affine_torch = timed(lambda: local_constants(method="affine", fused=False))
    _, t_affine = timed(lambda: local_constants(method="affine"))
    _, t_both = timed(lambda: local_constants(method="both"))
    _, t_affine_114 = timed(lambda: local_constants(block=(1, 1, 4), method="affine"))
    _, t_backward_114 = timed(lambda: local_constants(block=(1, 1, 4), method="affine", backward=True))
    from lipsurrogate.bounds import certify

    _, t_certify_old = timed(lambda: certify(model, reference, box, [128, 128, 32], local_block=2, slopes="both",
                                             refine_budget=250_000))
    heat2d = dict(local_block=(1, 1, 4), slopes="affine", refine_budget=250_000)
    every, t_certify_all = timed(lambda: certify(model, reference, box, [128, 128, 32], tighten="all", **heat2d))
    screened, t_certify = timed(lambda: certify(model, reference, box, [128, 128, 32], **heat2d))
    if screened.bound != every.bound:  # Note [screened blocks]: the same bound, bit for bit where the BLAS allows
        print(f"note: the screened bound {screened.bound!r} differs from the unscreened {every.bound!r}")
    sample = 16384
    lo = np.random.default_rng(1).uniform([0, 0, 0], [6.2, 6.2, 0.95], size=(sample, 3))
    _, t_local_cells = timed(lambda: network_derivative_intervals(model, lo, lo + [0.049, 0.049, 0.031]))

    rows = [
        ("network forward (float32 torch) in chunks of 8,192 points, baseline", n_vertices, t_forward),
        ("network forward (float32 torch), one call over all vertices (baseline until stop 32)", n_vertices,
         t_forward_whole),
        ("vertex values + rounding bounds (float64)", n_vertices, t_values),
        ("the same in blocks of 65,536 rows (before stop 32)", n_vertices, t_values_old_blocks),
        ("per-cell pair bound (closed form) + consistency check", n_cells, t_pairs),
        ("exact per-cell bound (LP) + closed form + consistency check", n_cells, t_exact),
        ("exact LP kernel alone, 1M random cells", 1_000_000, t_kernel),
        ("signed per-cell program (slope ranges), 3-D, compiled pass, 1M random cells", 1_000_000, t_signed[3, True]),
        ("the same, numpy path (before 2026-12-07)", 1_000_000, t_signed[3, False]),
        ("signed per-cell program, 4-D (256 dual vertices), compiled pass, 200k random cells", 200_000,
         t_signed[4, True]),
        ("the same, numpy path (before 2026-12-07)", 200_000, t_signed[4, False]),
        ("local constants (intervals) on 2x2x2 blocks", n_cells, t_local),
        ("local constants per cell (intervals, sample)", sample, t_local_cells),
        ("local slopes on 2x2x2 blocks, affine forms, torch pair step", n_cells, t_affine_torch),
        ("local slopes on 2x2x2 blocks, affine forms (fused pair step)", n_cells, t_affine),
        ("local slopes on 2x2x2 blocks, affine and interval (old default)", n_cells, t_both),
        ("local slopes on 1x1x4 blocks, affine forms (heat2d default until 2026-12-07)", n_cells, t_affine_114),
        ("local slopes on 1x1x4 blocks, affine forms and backward bounds (heat2d default)", n_cells, t_backward_114),
        ("whole certificate, old heat2d settings (2x2x2 blocks, both)", n_cells, t_certify_old),
        ("whole certificate, heat2d settings, every block tightened (tighten='all', before stop 37)", n_cells,
         t_certify_all),
        ("whole certificate, heat2d settings (1x1x4 blocks, affine, backward bounds on the dominant blocks)", n_cells,
         t_certify),
    ]
    lines = ["| stage | items | seconds | items per second | time / network forward |", "|---|---:|---:|---:|---:|"]
    for name, n, sec in rows:
        lines.append(f"| {name} | {n} | {sec:.2f} | {n / sec:,.0f} | {sec / t_forward * n_vertices / n:.2f} (per item) |")
    text = "\n".join([
        *header("Certification speed (default heat2d grid, 4 x 128 network)", [
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), one numpy BLAS thread, malloc {args.malloc}",
            "last column: seconds per item relative to the float32 forward pass per vertex",
        ]),
        *lines,
        "",
        f"Whole certificate / one float32 forward pass over the vertices: {t_certify / t_forward:.1f}x "
        f"(old heat2d settings: {t_certify_old / t_forward:.1f}x); against the one-call pass, "
        f"{t_certify / t_forward_whole:.1f}x. Vertex values: {t_values / t_forward:.2f}x the chunked pass. "
        f"Screening (tighten='dominant'): {screened.document['tightened']['blocks']:,} of "
        f"{screened.document['tightened']['of']:,} blocks tightened, bound {screened.bound!r} "
        f"({'the same bits' if screened.bound == every.bound else 'tighten=all: ' + repr(every.bound)}), "
        f"{t_certify / t_certify_all:.2f}x the time of tighten='all'.",
        "",
    ])
    print(text)
    write(args.out, text)


if __name__ == "__main__":
    main()
