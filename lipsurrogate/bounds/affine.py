r"""First-order (affine) enclosures of derivatives on a box: slopes of the *error*, not of each side.

Interval propagation (:mod:`~lipsurrogate.bounds.local`) encloses :math:`\partial_k f` and
:math:`\partial_k u` separately; the error's range is then their difference, whose width is the
*sum* of the two widths although :math:`f' \approx u'` varies in step with :math:`u'` (on the
default heat2d grid the true range of :math:`\partial_k e` on a cell is about 30 times narrower
than the interval difference). Here every derivative is enclosed on a box
:math:`B = \{x : |x - x_c| \le s\}` by an **affine form** in :math:`\delta = x - x_c`,

.. math::

    \partial_k g(x) \in c_k + \textstyle\sum_j G_{kj} \delta_j + [-\rho_k, \rho_k]
    \quad \text{for (almost) every } x \in B,

for the network (:func:`network_derivative_forms`, a zonotope propagation of values and
derivatives through the layers) and for the reference (``Reference.derivative_forms``: the
value of :math:`\nabla u` at the centre plus the Hessian's range, by the mean-value theorem).
The error's form is the difference of the two, and its interval,
:math:`(c^f - c^u)_k \pm (\sum_j |G^f - G^u|_{kj} s_j + \rho^f_k + \rho^u_k)`, keeps the
cancellation of the common linear part. For GroupSort(2) networks :func:`error_slopes` also
subtracts u's form from the backward linear bounds of :mod:`~lipsurrogate.bounds.backward`
(computed from this propagation's layer ranges) and returns the intersection of the two.

The network's propagation (``theory/cell-bounds.md`` section 12):

* values :math:`z \in c + G\delta \pm \rho` and derivatives :math:`\partial_k z \in D_k + H_k \delta \pm \sigma_k`;
* linear layers map centres and generators by :math:`W` and radii by :math:`|W|`;
* a GroupSort pair :math:`(a, b)` is **decided** on the box when :math:`q = a - b`, enclosed by its
  *own* form (generators :math:`G_a - G_b`), keeps one sign; then min/max permute the forms
  exactly. Otherwise :math:`\mathrm{relu}(q) \in \lambda q + [0, \mu]` for any
  :math:`\lambda \in [0, 1]` with :math:`\mu = \max(-\lambda l, u (1 - \lambda))` on
  :math:`q \in [l, u]`, so :math:`\min(a, b) = a - \mathrm{relu}(q)` and
  :math:`\max(a, b) = b + \mathrm{relu}(q)` stay affine (the zonotope relaxation), and both
  derivatives lie in the hull of the two input derivatives,
  :math:`\tfrac12(\partial a + \partial b) \pm \tfrac12 |\partial a - \partial b|`;
* Fourier features: :math:`\cos(p_c + \Delta p) = \cos p_c - \sin p_c\, \Delta p + R`,
  :math:`|R| \le \Delta p^2 / 2`, and the same for the sine and for the derivatives
  :math:`-F_k \sin p`, :math:`F_k \cos p`.

Every computed centre and generator carries its float64 rounding error into the radius
(Higham's :math:`\gamma_n` for the sums, a few ulps elsewhere), so the enclosures are
**certified** for the computed numbers. Supported: the networks of :mod:`lipsurrogate.nn` and
user chains with GroupSort(2) or ReLU and a single output; others raise
:class:`~lipsurrogate.exceptions.CertificationError` and the certifier falls back to intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import _gemm as gemm
from .._repeated_rows import rowwise_products, runs_of_equal_rows
from ..exceptions import CertificationError
from ..nn.activations import GroupSort
from . import _pair_kernel
from . import backward as _backward
from .backward import LayerRanges, TangentBounds, layer_ranges, tangent_bounds
from .network import extract_chain

__all__ = ["DerivativeForms", "box_centres", "error_slopes", "input_tangent_bound", "network_derivative_forms",
           "supports_backward", "supports_forms"]

_U = 2.0**-53
_TINY = 1e-300

ROW_ALIGN = 48
"""Batches of boxes are padded to a multiple of this (and the propagations' chunks are multiples
of it), so that every matrix product has a row count that the BLAS kernels' row tiles divide (4,
6, 8, 12, 16, 24 rows), and a box's numbers do not depend on where it sits in the batch (measured
here: MKL sums a product's last ``M mod 4`` rows in another order; ``theory/cell-bounds.md``
section 16)."""

CHUNK = 42 * ROW_ALIGN
"""Boxes per batch of the propagations (2,016)."""


@dataclass(frozen=True)
class DerivativeForms:
    r"""Affine enclosures :math:`\partial_k g(x) \in c_k + \sum_j G_{kj}\delta_j \pm \rho_k` on boxes.

    Attributes
    ----------
    centre : ndarray, shape (n, d)
    generators : ndarray, shape (n, d, d)
        ``generators[i, k, j]`` multiplies :math:`\delta_j = x_j - x_{c,j}`.
    radius : ndarray, shape (n, d)
        Non-negative; includes every rounding error (**certified** enclosure).
    """

    centre: np.ndarray
    generators: np.ndarray
    radius: np.ndarray

    @classmethod
    def from_intervals(cls, lower: np.ndarray, upper: np.ndarray) -> "DerivativeForms":
        """The constant form of an interval enclosure (no generators), rounded outwards."""
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.asarray(upper, dtype=np.float64)
        centre = 0.5 * (lower + upper)
        radius = np.nextafter(np.maximum(upper - centre, centre - lower), np.inf)
        n, d = lower.shape
        return cls(centre, np.zeros((n, d, d)), np.maximum(radius, 0.0))

    def intervals(self, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Certified ``(lower, upper)`` of each :math:`\\partial_k g` over the box of half-widths ``half`` (n, d)."""
        spread = np.einsum("nkj,nj->nk", np.abs(self.generators), half) + self.radius
        margin = 4 * (half.shape[1] + 3) * _U * (np.abs(self.centre) + spread) + _TINY
        return self.centre - spread - margin, self.centre + spread + margin


def box_centres(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Centres :math:`x_c` and half-widths :math:`s` (rounded up) with :math:`[lo, hi] \subseteq [x_c - s, x_c + s]`."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    centre = 0.5 * (lo + hi)
    half = np.nextafter(np.maximum(hi - centre, centre - lo), np.inf)
    return centre, np.maximum(half, 0.0)


def supports_forms(model) -> bool:
    """Whether :func:`network_derivative_forms` handles this network (else use interval propagation)."""
    try:
        chain = extract_chain(model)
    except CertificationError:
        return False
    act = chain.activation
    return (chain.out_scale is None and chain.aux is None and chain.residual is None and chain.out_features == 1
            and (act is None or (isinstance(act, GroupSort) and act.group_size == 2) or type(act).__name__ == "ReLU"))


def network_derivative_forms(model, centre: np.ndarray, half: np.ndarray, chunk: int = CHUNK,
                             dtype: torch.dtype = torch.float32, with_backward: bool = False,
                             domain: np.ndarray | None = None):
    r"""Certified affine forms of :math:`\partial f / \partial x_k` on the boxes :math:`|x - x_c| \le s`.

    Parameters
    ----------
    model : a network :func:`supports_forms` accepts
    centre, half : ndarray, shape (n, d)
        Box centres and half-widths (see :func:`box_centres`).
    chunk : int
        Boxes per batch (memory is about ``chunk * width * d^2`` numbers per layer); a multiple of
        :data:`ROW_ALIGN` keeps every box's numbers independent of its place in the batch.
    dtype : torch.float32 or torch.float64
        Arithmetic of the propagation. Either is **certified**: every operation's rounding
        (unit roundoff :math:`2^{-24}` or :math:`2^{-53}`) and, in float32, the conversion of the
        float64 weights and forms are added to the radii. float32 runs about twice as fast and
        widens the forms by about :math:`10^{-5}` relative.

    with_backward : bool
        Also return the backward linear bounds of :mod:`~lipsurrogate.bounds.backward`, computed
        from this propagation's layer ranges (GroupSort(2) networks; ``None`` for others).
    domain : array-like of shape (d, 2), optional
        A box that holds every box (default: their hull). The backward bounds' rounding terms use
        :func:`input_tangent_bound` over it, so with the same ``domain`` every box's forms and
        bounds are the same whatever other boxes share the call (tested bit for bit): the
        certifier can recompute any subset of its blocks and get the same numbers.

    Returns
    -------
    DerivativeForms
        For every box and almost every x in it, :math:`\partial_k f(x)` lies in the form.
    TangentBounds or None
        Only with ``with_backward``.
    """
    if not supports_forms(model):
        raise CertificationError("Affine derivative forms support single-output GroupSort(2) or ReLU networks "
                                 "without scale/aux/residual heads.")
    centre = np.asarray(centre, dtype=np.float64)
    half = np.asarray(half, dtype=np.float64)
    n, d = centre.shape
    out_c, out_g, out_r = np.empty((n, d)), np.empty((n, d, d)), np.empty((n, d))
    chain = extract_chain(model)
    backward = with_backward and _backward.ACTIVE and _is_pair_chain(chain)
    if backward and n:
        if domain is None:
            domain = np.stack([(centre - half).min(axis=0), (centre + half).max(axis=0)], 1)
        bound = input_tangent_bound(model, chain, domain)
    tangent_parts = []
    for a in range(0, n, chunk):
        record = {} if backward else None
        xc, s = centre[a : a + chunk], half[a : a + chunk]
        c, g, r = _forms(model, chain, xc, s, dtype, record=record)
        out_c[a : a + chunk], out_g[a : a + chunk], out_r[a : a + chunk] = c, g, r
        if backward:
            tangent_parts.append(tangent_bounds(chain.weights, record["layers"], record["inputs"], s, bound))
    forms = DerivativeForms(out_c, out_g, out_r)
    if not with_backward:
        return forms
    if not backward:
        return forms, None
    return forms, TangentBounds(*(np.concatenate([getattr(t, f) for t in tangent_parts])
                                  for f in ("lower_centre", "lower_slope", "upper_centre", "upper_slope")))


def input_tangent_bound(model, chain, domain) -> np.ndarray:
    r"""Certified bound on :math:`|\partial_k v_0(x)|` over ``domain`` (d, 2), shape (d, units of the first layer).

    :math:`v_0` is the first layer's input (the Fourier features or the scaled inputs); the
    bound comes from their certified derivative intervals over the whole box
    (:func:`~lipsurrogate.bounds.local.input_intervals`), in the units' order of the forms.
    """
    from .local import input_intervals

    domain = np.asarray(domain, dtype=np.float64)
    _, _, dlo, dhi = input_intervals(model, chain, domain[None, :, 0], domain[None, :, 1])
    return np.maximum(np.abs(dlo[0]), np.abs(dhi[0]))


def supports_backward(model) -> bool:
    """Whether :func:`error_slopes` can tighten its ranges with the backward bounds of
    :mod:`~lipsurrogate.bounds.backward`: GroupSort(2) networks of :func:`supports_forms` (and not
    inside :func:`~lipsurrogate.bounds.backward.disabled`)."""
    return _backward.ACTIVE and supports_forms(model) and _is_pair_chain(extract_chain(model))


def _is_pair_chain(chain) -> bool:
    """Whether the backward tangent bounds apply (GroupSort(2) between the layers)."""
    return isinstance(chain.activation, GroupSort) and chain.activation.group_size == 2


def error_slopes(model, reference, lo: np.ndarray, hi: np.ndarray, box: np.ndarray,
                 backward: bool = True, select=None):
    r"""Certified signed ranges of :math:`\partial_k (f - u)` on each box ``[lo, hi]``, from affine forms.

    The error's form is the network's minus the reference's (same centres); its interval keeps
    their common linear part out of the width. With ``backward`` (GroupSort(2) networks) the
    range is intersected with the backward linear bounds of f' minus u's form (section 14): about
    twice the cost, and often much tighter on boxes where GroupSort pairs stay undecided.

    ``select`` (with ``backward``): a function ``(start, stop, lower, upper) -> mask`` that sees
    the forward forms' ranges of the boxes ``start:stop`` (one batch at a time) and says which of
    them get the backward bounds too (the certifier's screening, ``theory/cell-bounds.md``
    section 16); the others keep the forward ranges. Each box's numbers are those of the call
    without ``select``. Returns ``(lower, upper, mask)`` then, else ``(lower, upper)``.
    """
    if select is not None:
        if not (backward and supports_backward(model)):
            raise CertificationError("'select' chooses the boxes that get the backward bounds: it needs them "
                                     "(backward=True and a GroupSort(2) network).")
        return _selected_error_slopes(model, reference, lo, hi, box, select)
    centre, half = box_centres(lo, hi)
    if backward:
        f, tangents = network_derivative_forms(model, centre, half, with_backward=True, domain=box)
    else:
        f, tangents = network_derivative_forms(model, centre, half), None
    u = reference_derivative_forms(reference, lo, hi, centre, half, box)
    lower, upper = _difference(f.centre, f.generators, f.radius, u, half)
    if tangents is None:
        return lower, upper
    return _tightened(lower, upper, tangents, u, half)


def _tightened(lower, upper, tangents: TangentBounds, u: DerivativeForms, half):
    """The forward ranges ``[lower, upper]`` intersected with the backward bounds of f' minus u's form."""
    # the backward bounds are one-sided linear functions: subtract u's form from each side
    _, b_upper = _difference(tangents.upper_centre, tangents.upper_slope, 0.0, u, half)
    b_lower, _ = _difference(tangents.lower_centre, tangents.lower_slope, 0.0, u, half)
    return np.maximum(lower, b_lower), np.minimum(upper, b_upper)


def _selected_error_slopes(model, reference, lo, hi, box, select, chunk: int = CHUNK):
    """:func:`error_slopes` with ``select``: one forward propagation per batch, the backward bounds on
    the selected boxes of the batch from its layer ranges (each box's numbers depend on that box
    alone: the backward batch is padded to whole BLAS row tiles, like the certifier's batches)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    n, d = lo.shape
    chain = extract_chain(model)
    bound = input_tangent_bound(model, chain, box) if n else None
    lower, upper, kept = np.empty((n, d)), np.empty((n, d)), np.zeros(n, dtype=bool)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        centre, half = box_centres(lo[a:b], hi[a:b])
        record: dict = {}
        c, g, r = _forms(model, chain, centre, half, torch.float32, record=record)
        u = reference_derivative_forms(reference, lo[a:b], hi[a:b], centre, half, box)
        f_lower, f_upper = _difference(c, g, r, u, half)
        lower[a:b], upper[a:b] = f_lower, f_upper
        mask = np.asarray(select(a, b, f_lower, f_upper), dtype=bool)
        kept[a:b] = mask
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        rows = np.concatenate([idx, np.repeat(idx[-1:], -len(idx) % ROW_ALIGN)])
        tangents = tangent_bounds(chain.weights, record["layers"], tuple(x[rows] for x in record["inputs"]), half[rows],
                                  bound, boxes=rows)
        m = len(idx)  # the padding rows dropped
        lower[a + idx], upper[a + idx] = _tightened(
            f_lower[idx], f_upper[idx], TangentBounds(tangents.lower_centre[:m], tangents.lower_slope[:m],
                                                         tangents.upper_centre[:m], tangents.upper_slope[:m]),
            DerivativeForms(u.centre[idx], u.generators[idx], u.radius[idx]), half[idx])
    return lower, upper, kept


def _difference(centre, generators, radius, u: DerivativeForms, half):
    r"""Certified interval of (form of f') minus (form of u') over the boxes.

    For a one-sided linear bound (``radius = 0``) the side of the same sign is the bound of the
    difference: e.g. :math:`f' \le C + g\cdot\delta` and :math:`u' \ge c^u + G^u\delta - \rho^u`
    give :math:`f' - u' \le (C - c^u) + (g - G^u)\cdot\delta + \rho^u`."""
    diff = DerivativeForms(centre - u.centre, generators - u.generators, radius + u.radius)
    # the two subtractions above round: |error| <= u (|a| + |b|) per entry, folded into the radius
    spread_err = _U * (np.abs(centre) + np.abs(u.centre)
                       + np.einsum("nkj,nj->nk", np.abs(generators) + np.abs(u.generators), half)) * 2
    diff = DerivativeForms(diff.centre, diff.generators, (diff.radius + spread_err) * (1 + 4 * _U))
    return diff.intervals(half)


def reference_derivative_forms(reference, lo, hi, centre, half, box) -> DerivativeForms:
    """The reference's own forms when it has them, else the constant form of its derivative intervals."""
    method = getattr(reference, "derivative_forms", None)
    if method is not None:
        return method(lo, hi, centre, half, box)
    return DerivativeForms.from_intervals(*reference.derivative_intervals(lo, hi, box))


# --------------------------------------------------------------------------------------------
# the propagation

def _t(a, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(dtype)


def _up(a: np.ndarray, dtype) -> torch.Tensor:
    """Non-negative float64 numbers in ``dtype``, rounded up (never smaller than the input)."""
    if dtype == torch.float64:
        return _t(a)
    return _t(a, dtype) * (1 + 4 * _unit(dtype))


def _unit(dtype) -> float:
    """Unit roundoff of ``dtype``."""
    return 2.0**-53 if dtype == torch.float64 else 2.0**-24


def _tiny(dtype) -> float:
    """A floor added to radii against underflow in ``dtype``."""
    return 1e-300 if dtype == torch.float64 else 1e-30


def _input_forms(model, chain, xc: np.ndarray, s: np.ndarray):
    """Packed float64 forms of the first layer's input: ``P[n, a, b, unit]`` and ``R[n, a, unit]``
    (:func:`_pack`'s layout). Row a = 0 holds the values (c, G, r), rows a = 1..d the derivatives
    (D, H, sigma); column b = 0 the centres, b = 1..d the generators. Written straight into
    the packed arrays (each entry the same float64 operations as the formulas below)."""
    n, d = xc.shape
    feats = getattr(model, "features", None)
    if feats is None:
        off, sc = np.asarray(chain.in_offset, dtype=np.float64), np.asarray(chain.in_scale, dtype=np.float64)
        P = np.zeros((n, d + 1, d + 1, d))
        R = np.zeros((n, d + 1, d))
        P[:, 0, 0] = (xc - off) * sc
        R[:, 0] = 4 * _U * (np.abs(xc) + np.abs(off)) * np.abs(sc) + _TINY
        for k in range(d):  # G = D = diag(sc): the value's generator j and the derivative d/dx_j of unit j
            P[:, 0, 1 + k, k] = sc[k]
            P[:, 1 + k, 0, k] = sc[k]
        return P, R
    freq = feats.frequencies.double().numpy()  # (waves, d)
    waves = len(freq)
    pas = list(feats.passthrough)
    width = 2 * waves + len(pas)
    P = np.empty((n, d + 1, d + 1, width))
    R = np.empty((n, d + 1, width))
    # Note [repeated periodic coordinates] of FourierFeatures: the waves depend on the periodic
    # coordinates of a box alone (the others have frequency 0), so they are computed once per run
    # of boxes that share them (heat2d's slope blocks: 8 along t per x-y cell), with the same
    # operations per box as for every box
    runs = runs_of_equal_rows(np.concatenate([xc, s], 1), list(feats.periodic) + [d + k for k in feats.periodic])
    if runs is None:
        _wave_forms(freq, xc, s, P[..., : 2 * waves], R[..., : 2 * waves])
    else:
        starts, run = runs
        part_p, part_r = np.empty((len(starts), d + 1, d + 1, 2 * waves)), np.empty((len(starts), d + 1, 2 * waves))
        _wave_forms(freq, xc[starts], s[starts], part_p, part_r)
        P[..., : 2 * waves], R[..., : 2 * waves] = part_p[run], part_r[run]
    if pas:
        rest = slice(2 * waves, width)
        off = feats.offset.double().numpy()[pas]
        sc = feats.scale.double().numpy()[pas]
        P[:, :, :, rest] = 0.0
        R[:, 1:, rest] = 0.0
        P[:, 0, 0, rest] = (xc[:, pas] - off) * sc
        R[:, 0, rest] = 4 * _U * (np.abs(xc[:, pas]) + np.abs(off)) * np.abs(sc) + _TINY
        for row, j in enumerate(pas):
            P[:, 0, 1 + j, 2 * waves + row] = sc[row]
            P[:, 1 + j, 0, 2 * waves + row] = sc[row]
    return P, R


def _wave_forms(freq: np.ndarray, xc: np.ndarray, s: np.ndarray, P: np.ndarray, R: np.ndarray) -> None:  # noqa: N803
    """The cos and sin waves' packed forms on the boxes ``xc +- s``, written into ``P`` (n, d + 1,
    d + 1, 2 waves) and ``R`` (n, d + 1, 2 waves): :func:`_input_forms`'s layout, cos waves first.
    Each box's entries depend on that box alone (the phases are summed over the inputs in order,
    :func:`~lipsurrogate._repeated_rows.rowwise_products`)."""
    d = xc.shape[1]
    waves = len(freq)
    pc = rowwise_products(xc, freq)
    eps_p = (d + 2) * _U * rowwise_products(np.abs(xc), np.abs(freq)) * (1 + 4 * _U)  # rounding of the phase
    Pr = rowwise_products(s, np.abs(freq)) * (1 + (d + 2) * _U)  # |delta p| <= Pr
    pad = 1e-12 * (1.0 + np.abs(pc))  # libm error of cos/sin, generously
    # expansion at the computed phase: |p - pc| <= Pr + eps_p, first-order remainder <= (Pr + eps_p)^2 / 2
    rem = 0.5 * (Pr + eps_p) ** 2 * (1 + 4 * _U) + eps_p + pad * (1 + Pr) + 8 * _U * (1 + Pr) * (1 + Pr)
    cos_c, sin_c = np.cos(pc), np.sin(pc)
    cos_part, sin_part = slice(0, waves), slice(waves, 2 * waves)
    # values: cos p ~ cos pc - sin pc (F delta) ; sin p ~ sin pc + cos pc (F delta)
    P[:, 0, 0, cos_part], P[:, 0, 0, sin_part] = cos_c, sin_c
    R[:, 0, cos_part], R[:, 0, sin_part] = rem, rem
    neg_sin, neg_cos = -sin_c, -cos_c
    for j in range(d):
        # the value's generator j equals the derivative d/dx_j at the centre:
        # d cos p / dx_j = -F_j sin p ; d sin p / dx_j = F_j cos p
        P[:, 0, 1 + j, cos_part] = neg_sin * freq[:, j]
        P[:, 0, 1 + j, sin_part] = cos_c * freq[:, j]
        P[:, 1 + j, 0, cos_part] = P[:, 0, 1 + j, cos_part]
        P[:, 1 + j, 0, sin_part] = P[:, 0, 1 + j, sin_part]
        # the derivative's generators: d^2 cos p / dx_k dx_j = -F_k F_j cos p (and sin likewise)
        for k in range(d):
            P[:, 1 + k, 1 + j, cos_part] = neg_cos * freq[:, k] * freq[:, j]
            P[:, 1 + k, 1 + j, sin_part] = neg_sin * freq[:, k] * freq[:, j]
        R[:, 1 + j, cos_part] = rem * np.abs(freq[:, j]) * (1 + 4 * _U)
        R[:, 1 + j, sin_part] = R[:, 1 + j, cos_part]


def _tangent_inputs(P: np.ndarray, R: np.ndarray):
    """The input tangents' forms as :func:`~lipsurrogate.bounds.backward.tangent_bounds` takes them:
    ``D[n, unit, k]``, ``H[n, unit, k, j]``, ``sigma[n, unit, k]`` (views of the packed arrays)."""
    return tuple(np.ascontiguousarray(a) for a in (np.moveaxis(P[:, 1:, 0], 1, 2), np.moveaxis(P[:, 1:, 1:], 3, 1), np.moveaxis(R[:, 1:], 1, 2)))


def _pack(P: np.ndarray, R: np.ndarray, s, dtype):
    """The packed float64 forms ``P[n, a, b, unit]`` (rows a = (value, d/dx_1, ...), columns b =
    (centre, generator_1, ...)) and radii ``R[n, a, unit]`` as tensors of ``dtype``; units last, so
    a layer is one GEMM.

    In float32 the conversion of P moves each form by at most ``u32 (|centre| + sum_j |gen_j| s_j)``,
    which is added to its radius (rounded up)."""
    if dtype == torch.float64:
        return _t(P), _t(R)
    moved = 2.0**-24 * (np.abs(P[:, :, 0]) + np.einsum("nabw,nb->naw", np.abs(P[:, :, 1:]), s)) * (1 + 2.0**-20)
    return _t(P, dtype), _up(R + moved, dtype)


def _mass(P: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_j |P_{a,j}| s_j` (the generators' reach over the box), per row a and unit: (n, a, unit)."""
    return torch.einsum("nabw,nb->naw", P[:, :, 1:].abs(), s)


def _forms(model, chain, xc, s, dtype=torch.float64, fused=True, record: dict | None = None):
    """Forms of the network's derivatives on the boxes; with ``record`` (a dict), also the input
    tangents' forms (``"inputs"``: D, H, sigma) and the certified ranges at every hidden layer
    (``"layers"``: :func:`~lipsurrogate.bounds.backward.layer_ranges`).

    The compiled path stores only the entries of :class:`~lipsurrogate.bounds._pair_kernel.FormLayout`
    (Note [zero generators]): ``P`` is ``(n, entries, units)`` there, ``(n, d + 1, d + 1, units)``
    on the torch path."""
    u, tiny = _unit(dtype), _tiny(dtype)
    P, R = _input_forms(model, chain, xc, s)
    fused = fused and _pair_kernel.ENABLED
    s_t = _up(s, dtype)  # a larger box only widens every enclosure
    layout = None
    if fused and dtype == torch.float32:  # the same numbers as below, in one compiled pass
        layout = _pair_kernel.FormLayout.of(P)
        P, R, *inputs = _pair_kernel.pack_forms(P, R, s, tangents=record is not None, layout=layout)
        P, R = torch.from_numpy(P), torch.from_numpy(R)
        if record is not None:
            record["inputs"], record["layers"] = inputs[0], []
        whole = layout.expand(P)  # the input layer is narrow: its maxima as below, on the whole forms
        slack = whole[:, :, 0].abs().amax(-1) + _mass(whole, s_t).amax(-1)  # (n, a)
    else:
        if record is not None:
            record["inputs"], record["layers"] = _tangent_inputs(P, R), []
        P, R = _pack(P, R, s, dtype)
        # rounding of W P (centres and generators): gamma rows_o (max|centre| + max sum_j |gen_j| s_j)
        slack = P[:, :, 0].abs().amax(-1) + _mass(P, s_t).amax(-1)  # (n, a)
    n, a_rows = P.shape[0], R.shape[1]
    n_layers = len(chain.weights)
    act = chain.activation
    # float32: the stored weights W32 = fl(W) move W z by at most u32 |W| |z| <= u32 rows (max|z|)
    u_conv = 0.0 if dtype == torch.float64 else 2.0**-24
    r_max = R.amax(-1)
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        gamma = (w.shape[1] + 2) * u
        rows = _up(np.abs(w).sum(axis=1), dtype)  # bounds |W_o.| . |v| <= rows_o max|v|
        bt, ab = _t(b, dtype), _up(np.abs(b), dtype)
        shape = (*P.shape[:-1], -1)
        if dtype == torch.float32:  # oneDNN where torch has it (lipsurrogate._gemm): any summation order is covered
            P = gemm.linear(P.reshape(-1, P.shape[-1]), _t(w, dtype)).reshape(shape)
            R = gemm.linear(R.reshape(-1, R.shape[-1]), _t(np.abs(w), dtype)).reshape(n, a_rows, -1) * (1 + 2 * gamma)
        else:
            P = (P.reshape(-1, P.shape[-1]) @ _t(w.T, dtype)).reshape(shape)
            R = (R.reshape(-1, R.shape[-1]) @ _t(np.abs(w).T, dtype)).reshape(n, a_rows, -1) * (1 + 2 * gamma)
        if layout is None:
            P[:, 0, 0] += bt
        else:  # entry 0: the value's centre
            P[:, 0] += bt
        R = R + (gamma * slack + u_conv * (slack + r_max) * (1 + 2 * gamma))[..., None] * rows + tiny
        R[:, 0] += (gamma + 2 * u_conv) * ab
        if i == n_layers - 1:
            break
        relu = type(act).__name__ == "ReLU"
        if record is not None and not (fused and act is not None):
            record["layers"].append(layer_ranges(P if layout is None else layout.expand(P), R, s))
        if fused and act is not None:
            P_np, R_np, top_c, top_m, top_r, *ranges = _pair_kernel.pair_forms(
                P.numpy(), R.numpy(), s_t.numpy(), relu=relu, ranges=record is not None and not relu, layout=layout)
            if ranges:  # the kernel's enclosures of a - b and its derivatives (section 14)
                (q_lo, q_hi), (e_lo, e_hi) = ranges
                record["layers"].append(LayerRanges(q_lo, q_hi, e_lo, e_hi))
            P, R = torch.from_numpy(P_np), torch.from_numpy(R_np)
            # the maxima were summed in float64: (cols + 1) roundings of 2^-53, far below u
            slack = _t((top_c + top_m) * (1 + 2 * (a_rows + 2) * 2.0**-53), dtype)
            r_max = _t(top_r, dtype)
            slack, r_max = slack * (1 + 4 * u), r_max * (1 + 4 * u)  # their rounding to dtype
        else:
            if layout is not None:
                P, layout = layout.expand(P), None
            P, R = _activation(act, P, R, s_t)
            slack = P[:, :, 0].abs().amax(-1) + _mass(P, s_t).amax(-1)
            r_max = R.amax(-1)
    if layout is not None:
        P = layout.expand(P)
    out = P[:, 1:, 0, 0], P[:, 1:, 1:, 0], R[:, 1:, 0]
    return tuple(x.double().numpy() for x in out)


def _pair(Pa, Ra, Pb, Rb, s):
    """min and max of a pair of forms (zonotope relaxation where the order is not decided)."""
    _U, _TINY = _unit(Pa.dtype), _tiny(Pa.dtype)  # noqa: N806
    ca, cb = Pa[:, 0, 0], Pb[:, 0, 0]  # (n, h)
    mass = _mass(Pa, s) + _mass(Pb, s)  # (n, a, h)
    qc = ca - cb
    eta = 8 * _U * (ca.abs() + cb.abs() + mass[:, 0] + Ra[:, 0] + Rb[:, 0])
    qrad = torch.einsum("nbw,nb->nw", (Pa[:, 0, 1:] - Pb[:, 0, 1:]).abs(), s) * (1 + 8 * _U) + Ra[:, 0] + Rb[:, 0] + eta
    lo, hi = qc - qrad, qc + qrad
    a_ge_b, b_ge_a = lo >= 0, hi <= 0
    undecided = ~(a_ge_b | b_ge_a)
    lam = torch.where(undecided, (hi / (hi - lo)).clamp(0.0, 1.0), torch.zeros_like(hi))
    mu = torch.where(undecided, torch.maximum(-lam * lo, hi * (1 - lam)) * (1 + 4 * _U), torch.zeros_like(hi))
    # relu(q) in lam q + [0, mu] for any lam in [0, 1]:
    # min = a - relu(q) = (1 - lam) a + lam b - mu/2 +- mu/2 ; max = b + relu(q) = lam a + (1 - lam) b + mu/2 +- mu/2
    err = 8 * _U * (ca.abs() + cb.abs() + mass[:, 0] + Ra[:, 0] + Rb[:, 0] + mu) + _TINY
    l1, l0 = lam[:, None], (1 - lam)[:, None]
    rel_min_v = l0 * Pa[:, 0] + l1 * Pb[:, 0]  # (n, b, h)
    rel_max_v = l1 * Pa[:, 0] + l0 * Pb[:, 0]
    rel_min_v[:, 0] -= mu / 2
    rel_max_v[:, 0] += mu / 2
    rel_min_r = ((1 - lam) * Ra[:, 0] + lam * Rb[:, 0] + mu / 2) * (1 + 8 * _U) + err
    rel_max_r = (lam * Ra[:, 0] + (1 - lam) * Rb[:, 0] + mu / 2) * (1 + 8 * _U) + err
    # derivatives of an undecided pair: the hull (da + db)/2 +- |da - db|/2, for both outputs
    hull_d = 0.5 * (Pa[:, 1:] + Pb[:, 1:])  # (n, k, b, h)
    diff = Pa[:, 1:] - Pb[:, 1:]
    jump = 0.5 * (diff[:, :, 0].abs() + torch.einsum("nkbw,nb->nkw", diff[:, :, 1:].abs(), s))
    d_err = 8 * _U * (Pa[:, 1:, 0].abs() + Pb[:, 1:, 0].abs() + mass[:, 1:] + Ra[:, 1:] + Rb[:, 1:]) + _TINY
    hull_r = (Ra[:, 1:] + Rb[:, 1:] + jump) * (1 + 4 * _U) + d_err
    rel_min = torch.cat([rel_min_v[:, None], hull_d], 1)
    rel_max = torch.cat([rel_max_v[:, None], hull_d], 1)
    rel_min_R = torch.cat([rel_min_r[:, None], hull_r], 1)
    rel_max_R = torch.cat([rel_max_r[:, None], hull_r], 1)
    m4, m3 = a_ge_b[:, None, None], a_ge_b[:, None]
    k4, k3 = b_ge_a[:, None, None], b_ge_a[:, None]
    P_min = torch.where(m4, Pb, torch.where(k4, Pa, rel_min))
    P_max = torch.where(m4, Pa, torch.where(k4, Pb, rel_max))
    R_min = torch.where(m3, Rb, torch.where(k3, Ra, rel_min_R))
    R_max = torch.where(m3, Ra, torch.where(k3, Rb, rel_max_R))
    return P_min, R_min, P_max, R_max


def _activation(act, P, R, s):
    if type(act).__name__ == "ReLU":  # relu(z) = max(z, 0): the pair (z, 0)
        _, _, P_max, R_max = _pair(P, R, torch.zeros_like(P), torch.zeros_like(R), s)
        return P_max, R_max
    h = P.shape[-1] // 2
    P_min, R_min, P_max, R_max = _pair(P[..., :h], R[..., :h], P[..., h:], R[..., h:], s)
    return torch.cat([P_min, P_max], -1), torch.cat([R_min, R_max], -1)
