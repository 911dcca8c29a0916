r"""The GroupSort(2) / ReLU step of the affine derivative forms, fused in one numba pass.

:func:`lipsurrogate.bounds.affine._pair` states the step in torch: about fifty whole-array
operations per layer, each one a pass over ``(n, d + 1, d + 1, width)`` numbers, so memory traffic,
not arithmetic, sets the speed (profiled: nine tenths of the propagation time outside the matrix
products). :func:`pair_forms` computes the same formulas one box at a time (the box's forms stay
in cache, the units are the inner, vectorised loops), and also returns the three per-row maxima
that the next layer's rounding bound needs. :func:`disabled` switches back to the torch step
(benchmarks compare the two).

**Same proof.** Every formula is the one of ``_pair`` (theory/cell-bounds.md section 12), term
for term, with the unit roundoff ``u`` of the *storage* dtype. The arithmetic is float64 (inputs
are converted exactly) and each result is rounded once to the storage dtype: a chain of ``k``
float64 operations followed by one rounding to float32 is within
:math:`(1 + 2^{-24})(1 + 2^{-53})^k - 1 \le (k + 1) 2^{-24}` relative of the exact value, inside
what the same chain evaluated in float32 may err and what ``_pair``'s margins (``8 u`` and
``(1 + 8u)`` factors per formula) are built to cover. With float64 storage the operations and
their order are those of the torch code. The decisions ``lo >= 0`` / ``hi <= 0`` use an enclosure
``qc +- qrad`` whose rounding term ``eta`` covers the storage dtype's rounding, so a more accurate
``qc`` only decides soundly. Tests: ``tests/bounds/test_affine.py`` (the kernel against the torch
step, and enclosures of sampled derivatives).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np

from .._compiled import HAVE_NUMBA, abs_max_bits, flag_off, magnitude_bits, parallel_kernel
from .._compiled import prange as _prange

__all__ = ["HAVE_KERNEL", "ENABLED", "FormLayout", "disabled", "pack_forms", "pair_forms"]

HAVE_KERNEL = HAVE_NUMBA  # without numba the torch step is used
ENABLED = HAVE_KERNEL
"""Whether :func:`~lipsurrogate.bounds.affine.network_derivative_forms` uses this kernel (see :func:`disabled`)."""


def disabled():
    """Inside the block the affine forms use the torch pair step (same formulas; slower)."""
    return flag_off(sys.modules[__name__], "ENABLED")


BOXES_PER_TASK = 32
"""Boxes per parallel task of the kernel (its scratch arrays are allocated once per task)."""


_MAGNITUDE_64 = magnitude_bits(np.float64)[1]  # the float64 sums of the kernel's scratch


def _pair_forms_py(P, R, s, half_units, relu, u, tiny, out_P, out_R,  # noqa: N803, PLR0913
                   P_bits, R_bits, magnitude, top_c_bits, top_m_bits, top_r_bits, want_ranges, q_range, e_range,
                   starts, columns, store):
    n, entries, _ = P.shape
    rows = len(starts) - 1
    cols = starts[1]  # the value row stores every column
    h = half_units
    # boxes in groups of BOXES_PER_TASK: each task allocates its scratch once (an allocation per box
    # cost about a tenth of the kernel's time)
    n_tasks = (n + BOXES_PER_TASK - 1) // BOXES_PER_TASK
    for task in _prange(n_tasks):
        sb_ = np.empty(cols - 1)
        mass0 = np.empty(h)
        qspread = np.empty(h)
        va, vb, wa, wb = np.empty(h), np.empty(h), np.empty(h), np.empty(h)
        da, db, ea, eb = np.empty(h), np.empty(h), np.empty(h), np.empty(h)
        shift, rfac, radd = np.empty(h), np.empty(h), np.empty(h)
        und = np.empty(h, dtype=np.bool_)
        massa = np.empty(h)
        jump = np.empty(h)
        spread = np.empty(h)
        m_scratch = np.empty(2 * h)
        m_bits = m_scratch.view(np.int64).reshape(1, 2 * h)
        for i in range(task * BOXES_PER_TASK, min(n, (task + 1) * BOXES_PER_TASK)):
            for b in range(1, cols):
                sb_[b - 1] = np.float64(s[i, b - 1])
            # per pair: max = va a + vb b (+ shift), min = wa a + wb b (- shift) for the value row; da, db and
            # ea, eb likewise for the derivative rows; decided pairs get 0/1 coefficients (exact copies)
            for j in range(h):
                mass0[j] = 0.0
                qspread[j] = 0.0
            for b in range(1, cols):  # the value row: entry b is column b
                sb = sb_[b - 1]
                for j in range(h):
                    pa = np.float64(P[i, b, j])
                    pb = 0.0 if relu else np.float64(P[i, b, j + h])
                    mass0[j] += abs(pa) * sb + abs(pb) * sb
                    qspread[j] += abs(pa - pb) * sb
            for j in range(h):
                ca = np.float64(P[i, 0, j])
                cb = 0.0 if relu else np.float64(P[i, 0, j + h])
                ra0 = np.float64(R[i, 0, j])
                rb0 = 0.0 if relu else np.float64(R[i, 0, j + h])
                qc = ca - cb
                eta = 8 * u * (abs(ca) + abs(cb) + mass0[j] + ra0 + rb0)
                qrad = qspread[j] * (1 + 8 * u) + ra0 + rb0 + eta
                lo = qc - qrad
                hi = qc + qrad
                if want_ranges:
                    q_range[0, i, j] = lo
                    q_range[1, i, j] = hi
                if lo >= 0:
                    und[j] = False
                    va[j], vb[j], wa[j], wb[j] = 1.0, 0.0, 0.0, 1.0
                    da[j], db[j], ea[j], eb[j] = 1.0, 0.0, 0.0, 1.0
                    shift[j], rfac[j], radd[j] = 0.0, 1.0, 0.0
                elif hi <= 0:
                    und[j] = False
                    va[j], vb[j], wa[j], wb[j] = 0.0, 1.0, 1.0, 0.0
                    da[j], db[j], ea[j], eb[j] = 0.0, 1.0, 1.0, 0.0
                    shift[j], rfac[j], radd[j] = 0.0, 1.0, 0.0
                else:
                    und[j] = True
                    lam = min(max(hi / (hi - lo), 0.0), 1.0)
                    mu = max(-lam * lo, hi * (1 - lam)) * (1 + 4 * u)
                    va[j], vb[j], wa[j], wb[j] = lam, 1 - lam, 1 - lam, lam
                    da[j], db[j], ea[j], eb[j] = 0.5, 0.5, 0.5, 0.5
                    shift[j], rfac[j] = mu / 2, 1 + 8 * u
                    radd[j] = 8 * u * (abs(ca) + abs(cb) + mass0[j] + ra0 + rb0 + mu) + tiny
            # value row
            for b in range(cols):
                for j in range(h):
                    pa = np.float64(P[i, b, j])
                    pb = 0.0 if relu else np.float64(P[i, b, j + h])
                    sh = shift[j] if b == 0 else 0.0
                    if relu:
                        out_P[i, b, j] = va[j] * pa + vb[j] * pb + sh
                    else:
                        out_P[i, b, j + h] = va[j] * pa + vb[j] * pb + sh
                        out_P[i, b, j] = wa[j] * pa + wb[j] * pb - sh
            for j in range(h):
                ra0 = np.float64(R[i, 0, j])
                rb0 = 0.0 if relu else np.float64(R[i, 0, j + h])
                if relu:
                    out_R[i, 0, j] = (va[j] * ra0 + vb[j] * rb0 + shift[j]) * rfac[j] + radd[j]
                else:
                    out_R[i, 0, j + h] = (va[j] * ra0 + vb[j] * rb0 + shift[j]) * rfac[j] + radd[j]
                    out_R[i, 0, j] = (wa[j] * ra0 + wb[j] * rb0 + shift[j]) * rfac[j] + radd[j]
            # derivative rows: their stored entries, the centre first, the columns in order
            for a in range(1, rows):
                for j in range(h):
                    massa[j] = 0.0
                    jump[j] = 0.0
                    spread[j] = 0.0
                for e in range(starts[a], starts[a + 1]):
                    b = columns[e]
                    k = store[e]  # a shared H_kj = H_jk is written twice, the same numbers
                    sb = 1.0 if b == 0 else sb_[b - 1]
                    for j in range(h):
                        pa = np.float64(P[i, k, j])
                        pb = 0.0 if relu else np.float64(P[i, k, j + h])
                        if relu:
                            out_P[i, k, j] = da[j] * pa + db[j] * pb
                        else:
                            out_P[i, k, j + h] = da[j] * pa + db[j] * pb
                            out_P[i, k, j] = ea[j] * pa + eb[j] * pb
                        gap = abs(pa - pb) * sb
                        jump[j] += gap
                        if b > 0:
                            massa[j] += abs(pa) * sb + abs(pb) * sb
                            spread[j] += gap
                centre = store[starts[a]]
                for j in range(h):
                    rra = np.float64(R[i, a, j])
                    rrb = 0.0 if relu else np.float64(R[i, a, j + h])
                    pa0 = np.float64(P[i, centre, j])
                    pb0 = 0.0 if relu else np.float64(P[i, centre, j + h])
                    hull_r = (rra + rrb + 0.5 * jump[j]) * (1 + 4 * u) + (8 * u * (abs(pa0) + abs(pb0) + massa[j] + rra + rrb) + tiny)
                    if want_ranges:  # e = da - db in (pa0 - pb0) + sum_b (pa_b - pb_b) delta_b +- (rra + rrb)
                        ec = pa0 - pb0
                        erad = (spread[j] * (1 + 8 * u) + rra + rrb
                                + 8 * (cols + 2) * u * (abs(pa0) + abs(pb0) + massa[j] + rra + rrb) + tiny)
                        e_range[0, a - 1, i, j] = ec - erad
                        e_range[1, a - 1, i, j] = ec + erad
                    rmax = hull_r if und[j] else da[j] * rra + db[j] * rrb
                    if relu:
                        out_R[i, a, j] = rmax
                    else:
                        out_R[i, a, j + h] = rmax
                        out_R[i, a, j] = hull_r if und[j] else ea[j] * rra + eb[j] * rrb
            # maxima for the next layer, as integer maxima of the bit patterns (Note [row maxima on
            # the bits] of GroupSort: exact, and a NaN wins), which vectorise where float maxima do not
            w_out = h if relu else 2 * h
            for a in range(rows):
                top_c_bits[i, a] = abs_max_bits(P_bits, i * entries + store[starts[a]], w_out, magnitude)  # rows (box, entry)
                top_r_bits[i, a] = abs_max_bits(R_bits, i * rows + a, w_out, magnitude)  # rows (box, a)
                m = m_scratch
                for jo in range(w_out):
                    m[jo] = 0.0
                for e in range(starts[a] + 1, starts[a + 1]):
                    sb = sb_[columns[e] - 1]
                    k = store[e]
                    for jo in range(w_out):
                        m[jo] += abs(np.float64(out_P[i, k, jo])) * sb
                top_m_bits[i, a] = abs_max_bits(m_bits, 0, w_out, _MAGNITUDE_64)


_kernel = parallel_kernel(_pair_forms_py)


def pair_forms(P: np.ndarray, R: np.ndarray, s: np.ndarray, relu: bool, ranges: bool = False,  # noqa: N803
               layout: "FormLayout | None" = None):
    r"""The forms after a GroupSort(2) (units ``j`` and ``j + w/2`` paired) or ReLU layer.

    Parameters
    ----------
    P : ndarray, shape (n, entries, w), float32 or float64
        The stored entries of the forms (``layout``), units last. Without ``layout``, also the
        whole forms of shape (n, d + 1, d + 1, w): rows (value, :math:`\partial_1`, ...), columns
        (centre, generator_1, ...).
    R : ndarray, shape (n, d + 1, w)
        Radii (non-negative, same dtype).
    s : ndarray, shape (n, d)
        Half-widths of the boxes (same dtype, rounded up).
    relu : bool
        ReLU (the pair ``(z, 0)``, output width ``w``) instead of GroupSort(2).
    ranges : bool
        Also return the certified ranges of every pair's :math:`q = a - b` and
        :math:`\partial_k a - \partial_k b` on the boxes (the backward bounds' input,
        ``theory/cell-bounds.md`` section 14).
    layout : FormLayout, optional
        Which entries ``P`` stores (default: all of them).

    Returns
    -------
    P_out, R_out : ndarrays
        The **certified** forms after the activation (same formulas as ``affine._pair``), in the
        shape of ``P``.
    top_centre, top_mass, top_radius : ndarrays, shape (n, d + 1), float64
        Per row, the maxima over units of :math:`|c|`, :math:`\sum_b |G_b| s_b` and the radius of
        the output (the next layer's rounding bound).
    q_range : ndarray, shape (2, n, w/2), float64
        Only with ``ranges``: lower and upper **bounds** of :math:`a - b` (the enclosure that
        decides the order).
    e_range : ndarray, shape (2, d, n, w/2), float64
        Only with ``ranges``: lower and upper **bounds** of :math:`\partial_k a - \partial_k b`.
    """
    if not HAVE_KERNEL:  # pragma: no cover
        raise RuntimeError("numba is not installed: use the torch step.")
    shape = P.shape
    if layout is None:
        layout = FormLayout.full(R.shape[1] - 1)
    P = P.reshape(shape[0], -1, shape[-1])
    if P.shape[1] != layout.entries or R.shape[1] != layout.rows:
        raise ValueError(f"The forms do not match their layout: {layout.entries} entries and {layout.rows} rows "
                         f"expected, got P {shape} and R {R.shape}.")
    dtype = P.dtype
    u = 2.0**-53 if dtype == np.float64 else 2.0**-24
    tiny = 1e-300 if dtype == np.float64 else 1e-30
    n, _, w = P.shape
    rows = layout.rows
    if not relu and w % 2:
        raise ValueError(f"GroupSort(2) needs an even width. Got {w}.")
    if ranges and relu:
        raise ValueError("Pair ranges exist for GroupSort(2) only, not for ReLU.")
    half_units = w if relu else w // 2
    out_P = np.empty_like(P)
    out_R = np.empty_like(R)
    int_type, magnitude = magnitude_bits(dtype)
    top = np.empty((3, n, rows))
    # the maxima of |c| and of the radii are values of the storage dtype: found there, converted exactly
    top_c, top_r = np.empty((n, rows), dtype=dtype), np.empty((n, rows), dtype=dtype)
    q_range = np.empty((2, n, half_units) if ranges else (2, 0, 0))
    e_range = np.empty((2, rows - 1, n, half_units) if ranges else (2, 0, 0, 0))
    _kernel(P, R, np.ascontiguousarray(s, dtype=dtype), half_units, bool(relu), u, tiny, out_P, out_R,
            out_P.view(int_type).reshape(-1, w), out_R.view(int_type).reshape(-1, w), magnitude, top_c.view(int_type), top[1].view(np.int64),
            top_r.view(int_type), bool(ranges), q_range, e_range, layout.starts, layout.columns, layout.store)
    top[0], top[2] = top_c, top_r  # exact conversions to float64
    out_P = out_P.reshape(shape)
    if ranges:
        return out_P, out_R, top[0], top[1], top[2], q_range, e_range
    return out_P, out_R, top[0], top[1], top[2]


def _pack_py(P, R, s, out_P, out_R, with_tangents, D, H, sigma, starts, columns, store):  # noqa: N803, PLR0913
    n, rows, cols, w = P.shape
    grow = 1 + 2.0**-20
    up = np.float32(1 + 4 * 2.0**-24)
    for i in _prange(n):
        for a in range(rows):
            for j in range(w):
                reach = 0.0  # sum_b |P[a, b]| s_b, b = 1..d, in this order (numpy's einsum)
                for b in range(1, cols):
                    reach += abs(P[i, a, b, j]) * s[i, b - 1]
                moved = 2.0**-24 * (abs(P[i, a, 0, j]) + reach) * grow
                out_R[i, a, j] = np.float32(R[i, a, j] + moved) * up
            for e in range(starts[a], starts[a + 1]):
                b = columns[e]
                k = store[e]  # a shared H_kj = H_jk: the same number written twice
                for j in range(w):
                    out_P[i, k, j] = np.float32(P[i, a, b, j])
        if with_tangents:
            for j in range(w):
                for k in range(rows - 1):
                    D[i, j, k] = P[i, 1 + k, 0, j]
                    sigma[i, j, k] = R[i, 1 + k, j]
                    for m in range(cols - 1):
                        H[i, j, k, m] = P[i, 1 + k, 1 + m, j]


_pack_kernel = parallel_kernel(_pack_py)


def pack_forms(P: np.ndarray, R: np.ndarray, s: np.ndarray, tangents: bool, layout: "FormLayout | None" = None):  # noqa: N803
    r"""The float64 input forms as float32 forms with their conversion added to the radii, in one pass.

    The numbers of ``affine._pack`` (float32 storage) and, with ``tangents``, of
    ``affine._tangent_inputs``, bit for bit: each ``P`` entry rounded to float32; each radius
    :math:`\mathrm{fl}_{32}(R + \delta) (1 + 2^{-22})` with
    :math:`\delta = 2^{-24} (|c| + \sum_b |G_b| s_b) (1 + 2^{-20})`, the sum over the generators in
    their order, as numpy's ``einsum`` takes it (tested equal); and the tangents ``D[n, unit, k]``,
    ``H[n, unit, k, j]``, ``sigma[n, unit, k]`` copied from the float64 forms.

    With ``layout``, ``P32`` holds only the layout's entries, shape (n, entries, w) (the others must
    be zero, :meth:`FormLayout.of`); without, all of them, shape (n, d + 1, d + 1, w).

    Returns ``(P32, R32)`` or ``(P32, R32, (D, H, sigma))``.
    """
    if not HAVE_KERNEL:  # pragma: no cover
        raise RuntimeError("numba is not installed: use the numpy path.")
    n, rows, cols, w = P.shape
    full = layout is None
    layout = FormLayout.full(rows - 1) if full else layout
    out_P = np.empty((n, layout.entries, w), dtype=np.float32)
    out_R = np.empty(R.shape, dtype=np.float32)
    shape = (n, w, rows - 1) if tangents else (0, 0, 0)
    D, sigma = np.empty(shape), np.empty(shape)
    H = np.empty((*shape, cols - 1) if tangents else (0, 0, 0, 0))
    _pack_kernel(np.ascontiguousarray(P), np.ascontiguousarray(R), np.ascontiguousarray(s, dtype=np.float64),
                 out_P, out_R, bool(tangents), D, H, sigma, layout.starts, layout.columns, layout.store)
    if full:
        out_P = out_P.reshape(P.shape)
    return (out_P, out_R, (D, H, sigma)) if tangents else (out_P, out_R)


# Note [zero generators]
# ~~~~~~~~~~~~~~~~~~~~~~
# Entry (a, b), a, b >= 1, of the forms is the generator b of the derivative d/dx_a: a second
# derivative. Where it is zero in every box and unit of the input forms (heat2d: t passes through
# the Fourier features, so every second derivative with t is zero; a plain network's inputs are
# affine, so all of them are), it stays exactly zero in every layer: a linear layer maps a row of
# zeros to zeros (sums of signed zeros are zero); the pair step writes da a + db b (decided or
# hull) from the same entry of the pair, and the value row (the only row with another rule) is
# always stored; the radii and the row maxima add |0| s_b = 0, which changes no float sum. So the
# compiled path drops those entries. Likewise, where H_kj and H_jk are equal bit for bit at the
# input (heat2d's waves: -cos(p) F_x F_y, the same products of small integers), every layer
# computes them with the same operations from equal numbers, so one stored row serves both.
# Fewer rows in every matrix product and pass (10 of 16 on heat2d), every number of the whole
# forms bit for bit (theory/cell-bounds.md section 17; tests/bounds/test_affine.py compares).


@dataclass(frozen=True)
class FormLayout:
    r"""Which entries of the forms ``P[n, a, b, unit]`` are stored: Note [zero generators].

    Row ``a = 0`` (the value) keeps every column, each derivative row ``a >= 1`` its centre
    (``b = 0``) and the generators ``b >= 1`` that :attr:`kept` names. The entries of row ``a``
    are ``starts[a] <= e < starts[a + 1]``, column ``columns[e]`` (increasing within a row, the
    centre first), stored in row ``store[e]`` of the packed array; the second derivatives of
    :attr:`shared` pairs :math:`H_{kj} = H_{jk}` share one stored row.
    """

    kept: tuple  # kept[k][j]: whether the generator j of the derivative d/dx_k is stored
    shared: tuple = ()  # pairs (k, j), k > j: H_kj is stored in the row of H_jk (equal bit for bit)

    @classmethod
    def full(cls, d: int) -> "FormLayout":
        """Every entry stored, each in its own row."""
        return cls(tuple((True,) * d for _ in range(d)))

    @classmethod
    def of(cls, P: np.ndarray) -> "FormLayout":  # noqa: N803
        """The layout of the input forms ``P`` (n, d + 1, d + 1, w) without the derivatives' generators
        that are zero in every box and unit (they stay exactly zero through every layer), and with
        one row for :math:`H_{kj}` and :math:`H_{jk}` where the two are equal bit for bit in every box
        and unit (they stay equal: each layer computes them with the same operations)."""
        nonzero = np.any(P[:, 1:, 1:] != 0, axis=(0, 3))
        d = nonzero.shape[0]
        bits = np.asarray(P, dtype=np.float64)[:, 1:, 1:].view(np.int64)  # equal bit for bit, signed zeros too
        shared = tuple((k, j) for k in range(d) for j in range(k) if nonzero[k, j] and nonzero[j, k]
                       and np.array_equal(bits[:, k, j], bits[:, j, k]))
        return cls(tuple(tuple(bool(v) for v in row) for row in nonzero), shared)

    @functools.cached_property
    def rows(self) -> int:
        """d + 1: the value and the d derivatives."""
        return len(self.kept) + 1

    @functools.cached_property
    def starts(self) -> np.ndarray:
        """First entry of each row, and the number of entries at the end (int64, rows + 1)."""
        sizes = [self.rows] + [1 + sum(row) for row in self.kept]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @functools.cached_property
    def columns(self) -> np.ndarray:
        """The column ``b`` of each entry (int64)."""
        cols = list(range(self.rows))
        for row in self.kept:
            cols += [0] + [1 + j for j, k in enumerate(row) if k]
        return np.array(cols, dtype=np.int64)

    @functools.cached_property
    def store(self) -> np.ndarray:
        """The stored row of each entry (int64): its own, or for a shared :math:`H_{kj}` that of :math:`H_{jk}`."""
        where, store, rows = {}, [], 0
        for a in range(self.rows):
            for e in range(self.starts[a], self.starts[a + 1]):
                b = int(self.columns[e])
                twin = (b, a) if a >= 1 and b >= 1 and (a - 1, b - 1) in self.shared else None
                if twin is not None:
                    store.append(where[twin])
                else:
                    where[(a, b)] = rows
                    store.append(rows)
                    rows += 1
        return np.array(store, dtype=np.int64)

    @property
    def entries(self) -> int:
        """Stored rows per box."""
        return int(self.store.max()) + 1

    def expand(self, P):  # noqa: N803
        """The whole forms ``(n, d + 1, d + 1, w)`` (zeros where nothing is stored) of stored rows
        ``P`` (n, entries, w); a numpy array or a torch tensor."""
        rows = self.rows
        index = np.concatenate([np.full(self.starts[a + 1] - self.starts[a], a) for a in range(rows)]) * rows + self.columns
        if isinstance(P, np.ndarray):
            out = np.zeros((P.shape[0], rows * rows, P.shape[-1]), dtype=P.dtype)
        else:
            import torch

            out = torch.zeros((P.shape[0], rows * rows, P.shape[-1]), dtype=P.dtype)
        out[:, index] = P[:, self.store]
        return out.reshape(P.shape[0], rows, rows, P.shape[-1])
