"""Per-block derivative bounds: ours against auto_LiRPA's (issue 16).

The certificate's slope term needs, on every block of cells, a range of each partial derivative
:math:`\\partial_k f` of the network. We bound it with interval propagation
(``lipsurrogate.bounds.local``), with forward affine forms (``lipsurrogate.bounds.affine``) and,
since this benchmark showed what CROWN gains, with backward linear bounds on the forms' layer
ranges (``lipsurrogate.bounds.backward``, theory/cell-bounds.md section 14), all certified with
their rounding. auto_LiRPA (PyPI ``auto-lirpa``) bounds a network's *outputs*
with IBP, CROWN-IBP and CROWN. It has no Jacobian operator in its PyPI release, so this
benchmark writes the derivative as a network of its own: the tangent :math:`\\dot v` rides with
the value :math:`v` through every layer (:class:`Tangent`), and at a GroupSort pair
:math:`(a, b)` with tangents :math:`(\\dot a, \\dot b)`

.. math:: \\dot{\\min} = \\dot a - H(a - b)(\\dot a - \\dot b), \\qquad
          \\dot{\\max} = \\dot b + H(a - b)(\\dot a - \\dot b)

(H the Heaviside step; at ties any value in [0, 1] is a Clarke derivative, and auto_LiRPA
bounds H by [0, 1] wherever the order of a and b is not decided). The graph is checked against
autograd before it is bounded.

Measured, on random blocks of the task's default certificate grid and blocks (seed 0):

* network derivative ranges: median width / the range of 256 sampled gradients in the block
  (sampled: an inner estimate, so every certified width is >= 1x), whether every sampled
  gradient lies inside (it must), and blocks per second (one process, same run);
* the slope term of the error :math:`e = f - u`: the median over blocks of
  :math:`\\sum_k \\max|\\partial_k e|\\, h_k / 2`, from the certifier's ranges (``slopes="both"``)
  without the backward bounds (``backward=False``: affine forms of f' - u' and interval
  ranges), with them, and with these intersected with auto_LiRPA CROWN's range of f' minus the
  reference's range of u';
* one sub-box around the worst cell of the run's certificate, certified without refinement the
  same three ways (same grid, same blocks). **The CROWN rows are estimates, not certificates**:
  auto_LiRPA computes in float64 without outward rounding, so its ranges carry no proven rounding
  margin.

Where auto_LiRPA does not run: ``auto-lirpa`` 0.3 (the PyPI release) requires torch < 1.13 and
numpy 1; install it without its dependencies (``pip install --no-deps auto-lirpa==0.3 appdirs``)
and this script shims what changed (``numpy.lib.arraysetops``, ``torch.onnx`` internals of
torch 2, ``torch._C.Node`` attributes, ``Module._named_members``, the Heaviside node's missing
interval rule). Only output bounds exist there (the Jacobian bounds of later GitHub versions are
not on PyPI), nothing runs in float64 with directed rounding, and its CROWN computes every
intermediate bound by a backward pass, so it runs at a few blocks per second: hours for one of
our certificates.

Run: ``python benchmarks/bench_lirpa.py [--cases heat2d,heat2d-kappa] [--work DIR]``
(about 10 minutes on 2 cores; fitted runs are shared with ``bench_blocks.py``).
"""

from __future__ import annotations

import contextlib
import sys
import time
import types

import numpy as np
import torch
from torch import nn

import bench_tight
from _markdown import header, write

CASES = {"heat2d": ("heat2d", {}), "heat2d-kappa": ("heat2d-kappa", {})}
BLOCKS = {"heat2d": [1, 1, 4], "heat2d-kappa": [1, 1, 2, 2]}  # the tasks' defaults when measured (2026-12-07)
SUB_BOX = {"heat2d": [8, 8, 32], "heat2d-kappa": [8, 8, 4, 4]}  # cells of the certified sub-box
METHODS = ("IBP", "CROWN-IBP", "CROWN")


def import_auto_lirpa():
    """auto_LiRPA 0.3 with the shims it needs on torch 2 and numpy 2 (see the module docstring)."""
    sys.modules.setdefault("numpy.lib.arraysetops", types.SimpleNamespace(isin=np.isin))
    import torch.onnx.symbolic_helper as helper

    if not hasattr(helper, "_set_opset_version"):
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        helper._set_opset_version = lambda v: setattr(GLOBALS, "export_onnx_opset_version", v)
    torch._C.Node.__getitem__ = lambda node, key: getattr(node, node.kindOf(key))(key)
    import auto_LiRPA
    from auto_LiRPA import bound_general
    from auto_LiRPA.operators import activation

    members = bound_general.BoundedModule._named_members
    bound_general.BoundedModule._named_members = (
        lambda self, get, prefix="", recurse=True, **_: members(self, get, prefix, recurse))

    def heaviside_interval(self, *v):  # a non-decreasing step: [H(l), H(u)], ties anywhere in [0, 1]
        low, up = v[0]
        return (torch.heaviside(low, torch.zeros((), dtype=low.dtype)),
                torch.heaviside(up, torch.ones((), dtype=up.dtype)))

    activation.BoundATenHeaviside.interval_propagate = heaviside_interval
    return auto_LiRPA


class Tangent(nn.Module):
    """:math:`x \\mapsto \\partial f / \\partial x_k` of a Fourier-feature GroupSort network, as a plain graph.

    The layers are split into the two halves of each GroupSort pair (two linear maps instead of
    a slice: auto_LiRPA 0.3 propagates slices in the wrong dtype).
    """

    def __init__(self, model, k: int) -> None:
        super().__init__()
        from lipsurrogate.bounds.network import extract_chain

        chain = extract_chain(model)
        feats = model.features
        freq = feats.frequencies.double()
        d = freq.shape[1]
        keep = list(feats.passthrough)
        select = torch.zeros(len(keep), d, dtype=torch.float64)
        select[torch.arange(len(keep)), keep] = 1.0
        offset, scale = feats.offset.double()[keep], feats.scale.double()[keep]

        def fixed(t):
            return nn.Parameter(torch.as_tensor(t, dtype=torch.float64).clone().contiguous(), requires_grad=False)

        self.freq, self.freq_k = fixed(freq), fixed(freq[:, k].reshape(1, -1))
        self.pass_w, self.pass_b = fixed(select * scale[:, None]), fixed(-offset * scale)
        self.zero, self.pass_dot = fixed(0 * select), fixed(select[:, k] * scale)
        weights = [torch.from_numpy(w) for w in chain.weights]
        biases = [torch.from_numpy(b.copy()) for b in chain.biases]
        h = [w.shape[0] // 2 for w in weights[:-1]]
        self.w_a = nn.ParameterList([fixed(w[:n]) for w, n in zip(weights, h)])
        self.w_b = nn.ParameterList([fixed(w[n:]) for w, n in zip(weights, h)])
        self.b_a = nn.ParameterList([fixed(b[:n]) for b, n in zip(biases, h)])
        self.b_b = nn.ParameterList([fixed(b[n:]) for b, n in zip(biases, h)])
        self.w_out = fixed(weights[-1])

    def forward(self, x):
        lin = nn.functional.linear
        phase = lin(x, self.freq)
        cos, sin = torch.cos(phase), torch.sin(phase)
        v = torch.cat([cos, sin, lin(x, self.pass_w, self.pass_b)], 1)
        dv = torch.cat([-sin * self.freq_k, cos * self.freq_k, lin(x, self.zero, self.pass_dot)], 1)
        half = torch.tensor(0.5, dtype=torch.float64)
        for wa, wb, ba, bb in zip(self.w_a, self.w_b, self.b_a, self.b_b):
            a, b, da, db = lin(v, wa, ba), lin(v, wb, bb), lin(dv, wa), lin(dv, wb)
            q = a - b
            r = torch.relu(q)
            t = torch.heaviside(q, half) * (da - db)
            v, dv = torch.cat([a - r, b + r], 1), torch.cat([da - t, db + t], 1)
        return lin(dv, self.w_out)


def lirpa_partials(model, lo, hi, method: str, chunk: int = 256):
    """auto_LiRPA's (lower, upper) of every :math:`\\partial_k f` on the boxes ``[lo, hi]`` (float64, no rounding margin)."""
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

    n, d = lo.shape
    lower, upper = np.empty((n, d)), np.empty((n, d))
    for k in range(d):
        bounded = BoundedModule(Tangent(model, k), torch.zeros(1, d, dtype=torch.float64),
                                bound_opts={"conv_mode": "matrix"}, verbose=False)
        for a in range(0, n, chunk):
            xl, xu = torch.from_numpy(lo[a : a + chunk]), torch.from_numpy(hi[a : a + chunk])
            x = BoundedTensor(0.5 * (xl + xu), PerturbationLpNorm(norm=float("inf"), x_L=xl, x_U=xu))
            with torch.no_grad():
                low, up = bounded.compute_bounds(x=(x,), method=method)
            lower[a : a + chunk, k], upper[a : a + chunk, k] = low[:, 0].numpy(), up[:, 0].numpy()
    return lower, upper


def _check_graph(model, rng) -> None:
    """The tangent graph equals autograd's gradient (else nothing below means anything)."""
    x = torch.from_numpy(rng.random((64, model.features.in_features)) * 0.9).requires_grad_(True)
    grad = torch.autograd.grad(model(x).sum(), x)[0]
    with torch.no_grad():
        for k in range(x.shape[1]):
            got = Tangent(model, k)(x.detach())[:, 0]
            if not torch.allclose(got, grad[:, k], rtol=1e-9, atol=1e-9):
                raise AssertionError(f"the tangent graph of input {k} differs from autograd by "
                                     f"{float((got - grad[:, k]).abs().max()):.3g}")


def _blocks(box, cells, block, n, rng):
    steps = np.asarray(cells) // np.asarray(block)
    width = (box[:, 1] - box[:, 0]) / steps
    lo = box[:, 0] + rng.integers(0, steps, size=(n, len(cells))) * width
    return lo, lo + width, width


def _ranges(model, reference, lo, hi, box):
    """Every method's (lower, upper, seconds) of the network's partials on the blocks."""
    from lipsurrogate.bounds.affine import box_centres, network_derivative_forms
    from lipsurrogate.bounds.local import network_derivative_intervals

    out = {}
    centre, half = box_centres(lo[:4], hi[:4])  # compile and warm every path before timing it
    network_derivative_intervals(model, lo[:4], hi[:4])
    network_derivative_forms(model, centre, half, with_backward=True)
    start = time.perf_counter()
    low, up = network_derivative_intervals(model, lo, hi)
    out["ours: interval propagation"] = (low, up, time.perf_counter() - start)
    start = time.perf_counter()
    centre, half = box_centres(lo, hi)
    low, up = network_derivative_forms(model, centre, half).intervals(half)
    out["ours: affine forms"] = (low, up, time.perf_counter() - start)
    start = time.perf_counter()
    forms, tangents = network_derivative_forms(model, centre, half, with_backward=True)
    (f_lo, f_hi), (b_lo, b_hi) = forms.intervals(half), tangents.intervals(half)
    out["ours: affine forms and backward bounds"] = (np.maximum(f_lo, b_lo), np.minimum(f_hi, b_hi),
                                                   time.perf_counter() - start)
    for method in METHODS:
        start = time.perf_counter()
        low, up = lirpa_partials(model, lo, hi, method)
        out[f"auto_LiRPA {method}"] = (low, up, time.perf_counter() - start)
    return out


def _slope_term(low, up, width) -> float:
    return float(np.median((np.maximum(np.abs(low), np.abs(up)) * width / 2).sum(1)))


def _with_crown(model):
    """A ``slopes`` function for the certifier: its ``"both"`` ranges intersected with CROWN's f' minus u' (an estimate)."""
    from lipsurrogate.bounds import certifier
    from lipsurrogate.bounds.affine import error_slopes

    original = certifier._error_slopes

    def slopes(model_, reference, lo, hi, box, method="both", backward=True):
        # "both" spelled out: the original's "both" looks up _error_slopes by name, which is this function now
        a_lo, a_hi = error_slopes(model_, reference, lo, hi, box, backward=backward)
        i_lo, i_hi = original(model_, reference, lo, hi, box, "interval")
        f_lo, f_hi = lirpa_partials(model, lo, hi, "CROWN")
        u_lo, u_hi = reference.derivative_intervals(lo, hi, box)
        return np.maximum.reduce([a_lo, i_lo, f_lo - u_hi]), np.minimum.reduce([a_hi, i_hi, f_hi - u_lo])

    return original, slopes


def _sub_box(run, box, cells, block, size):
    """The cells of ``size`` around the worst cell of the run's saved certificate: (box, cells)."""
    from lipsurrogate.bounds import Certificate

    per_cell = Certificate.load(run).cells.per_cell
    worst = np.array(np.unravel_index(int(np.argmax(per_cell)), per_cell.shape))
    size = np.asarray(size)
    first = np.clip(worst - size // 2, 0, np.asarray(cells) - size)
    first -= first % np.asarray(block)
    width = (box[:, 1] - box[:, 0]) / np.asarray(cells)
    return np.stack([box[:, 0] + first * width, box[:, 0] + (first + size) * width], 1), size.tolist()


def main() -> None:
    from lipsurrogate.bounds import backward, certifier, certify

    args = bench_tight.arguments(__doc__.splitlines()[0], CASES, ".block_runs", "lirpa.md")
    import_auto_lirpa()
    rng = np.random.default_rng(0)
    n_blocks = 150
    lines = header("Per-block derivative bounds: ours against auto_LiRPA (issue 16)", [
        f"{n_blocks} random blocks of each task's default grid and blocks (seed 0); auto_LiRPA 0.3 with the "
        "shims of `bench_lirpa.import_auto_lirpa` (torch 2, numpy 2)",
        "width = median over blocks of (upper - lower) / (range of 256 sampled gradients in the block), per input",
        "auto_LiRPA's ranges are float64 without a rounding margin: **estimates**; ours are certified",
    ])
    for case in args.cases.split(","):
        run = bench_tight._fit(case, args.work, CASES)
        model, reference, kwargs = bench_tight._problem(run)
        model = model.double().eval()
        _check_graph(model, rng)
        box, cells, block = np.asarray(kwargs["box"], float), kwargs["cells"], BLOCKS[case]
        lo, hi, width = _blocks(box, cells, block, n_blocks, rng)
        pts = lo[:, None] + rng.random((n_blocks, 256, len(cells))) * width
        x = torch.from_numpy(pts.reshape(-1, len(cells))).requires_grad_(True)
        grads = torch.autograd.grad(model(x).sum(), x)[0].numpy().reshape(n_blocks, 256, -1)
        g_lo, g_hi = grads.min(1), grads.max(1)
        sampled = np.maximum(g_hi - g_lo, 1e-300)
        names = ["x", "y", "t", "kappa"][: len(cells)]
        lines += [f"## {case}: blocks of {' x '.join(map(str, block))} cells of a {' x '.join(map(str, cells))} grid",
                  "", "| method | " + " | ".join(f"width d/d{n}" for n in names) + " | contains the samples | blocks/s |",
                  "|---|" + "---:|" * len(names) + "---|---:|"]
        ranges = _ranges(model, reference, lo, hi, box)
        for name, (low, up, sec) in ranges.items():
            ok = bool(np.all(low <= g_lo + 1e-12) and np.all(up >= g_hi - 1e-12))
            ratios = np.median((up - low) / sampled, 0)
            lines.append(f"| {name} | " + " | ".join(f"{r:.2f}x" for r in ratios) + f" | {ok} | {n_blocks / sec:,.1f} |")
            print(f"{case} {name:28s} widths {np.round(ratios, 2)} contains {ok} {n_blocks / sec:.1f} blocks/s", flush=True)
        old = certifier._error_slopes(model, reference, lo, hi, box, "both", backward=False)
        both = certifier._error_slopes(model, reference, lo, hi, box, "both")
        u_lo, u_hi = reference.derivative_intervals(lo, hi, box)
        c_lo, c_hi, _ = ranges["auto_LiRPA CROWN"]
        crown = np.maximum(both[0], c_lo - u_hi), np.minimum(both[1], c_hi - u_lo)
        terms = _slope_term(*old, width), _slope_term(*both, width), _slope_term(*crown, width)
        lines += ["", "Slope term of the error, median over the blocks of sum_k max|d_k (f - u)| h_k / 2:", "",
                  f"- forms and intervals (`slopes=\"both\"` before the backward bounds; certified): {terms[0]:.4g}",
                  f"- the same with the backward bounds (`slopes=\"both\"` now; certified): {terms[1]:.4g} "
                  f"({100 * (1 - terms[1] / terms[0]):.0f}% smaller)",
                  f"- that intersected with auto_LiRPA CROWN's f' minus u' (estimate): {terms[2]:.4g} "
                  f"({100 * (1 - terms[2] / terms[0]):.0f}% smaller)", ""]
        sub, sub_cells = _sub_box(run, box, cells, block, SUB_BOX[case])
        results = []
        original, slopes = _with_crown(model)
        variants = (("forms and intervals (certified)", None, True), ("with the backward bounds (certified)", None, False),
                    ("with the backward bounds and auto_LiRPA CROWN (estimate)", slopes, False))
        for label, patch, old_way in variants:
            certifier._error_slopes = patch or original
            try:
                with backward.disabled() if old_way else contextlib.nullcontext():
                    start = time.perf_counter()
                    cert = certify(model, reference, sub, sub_cells, local_block=block, refine_budget=0, progress=False)
                results.append((label, cert.bound, float(np.median(cert.cells.per_cell)), time.perf_counter() - start))
            finally:
                certifier._error_slopes = original
        lines += [f"Sub-box of {' x '.join(map(str, sub_cells))} cells around the worst cell of the run's certificate "
                  "(no refinement):", "", "| slopes | bound on the sub-box | median cell bound | seconds |",
                  "|---|---:|---:|---:|"]
        for label, bound, median, sec in results:
            lines.append(f"| {label} | {bound:.4g} | {median:.4g} | {sec:.1f} |")
            print(f"{case} sub-box {label}: bound {bound:.4g} median cell {median:.4g} {sec:.1f} s", flush=True)
        lines.append("")
    write(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
