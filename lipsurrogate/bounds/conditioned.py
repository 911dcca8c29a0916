r"""Certified derivative bounds of conditioned networks, in the inputs and in the condition.

:class:`~lipsurrogate.nn.conditioning.ConditionedLipschitzMLP` multiplies activations by a
condition-dependent scale, so a product of weight norms no longer bounds it: the constant in
:math:`x` depends on how large :math:`1 + S c` gets over the condition range, and the constant
in :math:`c` on how large the activations get over the input box. Both are handled by
propagating intervals of the values and of the derivatives with respect to every input
(:math:`x` and :math:`c`) through the layers, on a box:

* linear maps: centre/radius arithmetic, :math:`c' = Wc + b`, :math:`r' = |W| r`, widened by
  Higham's bound for the float64 rounding (as in :mod:`lipsurrogate.bounds.local`);
* :math:`h \odot s`: interval products of values, and :math:`d(h s) = dh\, s + h\, ds` with
  interval products, widened by a relative :math:`8u` of the magnitudes;
* GroupSort pairs: exact interval min/max and the derivative hull (``local._activation``).

Splitting the box into sub-boxes and taking the largest magnitude over them gives certified
per-input constants over the whole box (:func:`conditioned_constants`): every point of the box
lies in some sub-box, and on each sub-box the interval contains the derivative wherever it
exists (the network is piecewise smooth, so difference quotients along an axis stay inside).

A slope bound in the condition is an interpolation guarantee: from the network's values at two
conditions :math:`c_a < c < c_b`, :func:`condition_interval` gives the certified interval in
which :math:`f(x; c)` must lie, with the slope over the whole box (the last entry of
:func:`conditioned_constants`) or, tighter, over each event's own segment
(:func:`segment_condition_slopes`).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..exceptions import CertificationError
from .local import _activation

__all__ = ["conditioned_derivative_intervals", "conditioned_constants", "segment_condition_slopes", "condition_interval"]

_U = 2.0**-53


def _linear(w, b, zlo, zhi, dlo, dhi):
    gamma = (w.shape[1] + 2) * _U
    rows = w.abs().sum(dim=1)
    aw = w.abs()
    vc, vr = (zlo + zhi) / 2, (zhi - zlo) / 2
    yc = vc @ w.T + (b if b is not None else 0.0)
    babs = b.abs() if b is not None else 0.0
    yr = vr @ aw.T * (1 + 2 * gamma) + gamma * (rows * vc.abs().amax(1, keepdim=True) + babs) + 1e-300
    dc, dr = (dlo + dhi) / 2, (dhi - dlo) / 2
    gc = torch.einsum("oi,nik->nok", w, dc)
    gr = (torch.einsum("oi,nik->nok", aw, dr) * (1 + 2 * gamma)
          + gamma * rows[None, :, None] * dc.abs().amax(1, keepdim=True) + 1e-300)
    return yc - yr, yc + yr, gc - gr, gc + gr


def _mul(alo, ahi, blo, bhi):
    """Interval product, widened by the rounding of the products."""
    p = torch.stack([alo * blo, alo * bhi, ahi * blo, ahi * bhi])
    lo, hi = p.amin(0), p.amax(0)
    pad = 4 * _U * torch.maximum(lo.abs(), hi.abs()) + 1e-300
    return lo - pad, hi + pad


def _add(alo, ahi, blo, bhi):
    lo, hi = alo + blo, ahi + bhi
    pad = 2 * _U * torch.maximum(lo.abs(), hi.abs()) + 1e-300
    return lo - pad, hi + pad


def _weights(layer):
    b = layer.bias.detach().double() if layer.bias is not None else None
    return layer.weight.detach().double(), b


def conditioned_derivative_intervals(model, lo: np.ndarray, hi: np.ndarray,
                                     wrt: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Certified intervals of :math:`\\partial f / \\partial z_k` on each box, :math:`z = (x, c)`.

    Parameters
    ----------
    model : ConditionedLipschitzMLP with one output
    lo, hi : ndarray, shape (n, in_features + cond_features)
    wrt : {"all", "condition"}
        The derivatives carried: with respect to every input, or to the condition(s) only
        (each column is propagated independently, so these are the same certified intervals up
        to the order of float64 sums, for ``(in_features + cond_features) / cond_features``
        times less work).

    Returns
    -------
    dlo, dhi : ndarray, shape (n, in_features + cond_features), or (n, cond_features) for ``wrt="condition"``
    """
    from ..nn.conditioning import ConditionedLipschitzMLP

    if not isinstance(model, ConditionedLipschitzMLP) or model.out_features != 1:
        raise CertificationError("Expected a single-output ConditionedLipschitzMLP.")
    if model.activation.group_size != 2:
        raise CertificationError("Conditioned interval bounds support GroupSort(2).")
    lo = torch.as_tensor(np.asarray(lo, dtype=np.float64))
    hi = torch.as_tensor(np.asarray(hi, dtype=np.float64))
    d, m = model.in_features, model.cond_features
    if lo.dim() != 2 or lo.shape[1] != d + m or lo.shape != hi.shape or torch.any(hi < lo):
        raise CertificationError(f"Expected boxes lo <= hi of shape (n, {d + m}). Got {tuple(lo.shape)}.")
    if wrt not in ("all", "condition"):
        raise CertificationError(f"'wrt' must be 'all' or 'condition'. Got {wrt!r}.")
    n = len(lo)
    with torch.no_grad():
        xs = model.input_scale.double()
        cs = model.cond_scale.double()
        co = model.cond_offset.double()
        # inputs: x * scale and (c - offset) * scale, exact up to one rounding each
        xlo, xhi = torch.minimum(lo[:, :d] * xs, hi[:, :d] * xs), torch.maximum(lo[:, :d] * xs, hi[:, :d] * xs)
        clo, chi = (lo[:, d:] - co) * cs, (hi[:, d:] - co) * cs
        pad_x = 2 * _U * torch.maximum(xlo.abs(), xhi.abs())
        pad_c = 4 * _U * (torch.maximum(clo.abs(), chi.abs()) + co.abs() * cs)
        xlo, xhi, clo, chi = xlo - pad_x, xhi + pad_x, clo - pad_c, chi + pad_c
        eye = torch.eye(d + m, dtype=torch.float64)
        dx = (eye[:d] * torch.cat([xs, torch.zeros(m, dtype=torch.float64)]))[None].expand(n, d, d + m)
        dcond = (eye[d:] * torch.cat([torch.zeros(d, dtype=torch.float64), cs]))[None].expand(n, m, d + m)
        if wrt == "condition":  # keep the condition's columns only: x does not depend on c
            dx, dcond = dx[..., d:], dcond[..., d:]

        zlo, zhi, dlo, dhi = xlo, xhi, dx.clone(), dx.clone()
        last = len(model.linears) - 1
        for i, layer in enumerate(model.linears):
            concat = model.mechanism == "concat" and (i in model.sites if model.position != "end" else i - 1 in model.sites)
            if concat:
                zlo, zhi = torch.cat([zlo, clo], 1), torch.cat([zhi, chi], 1)
                dlo, dhi = torch.cat([dlo, dcond], 1), torch.cat([dhi, dcond], 1)
            w, b = _weights(layer)
            zlo, zhi, dlo, dhi = _linear(w, b, zlo, zhi, dlo, dhi)
            if i == last:
                break
            if i in model.sites and model.mechanism != "concat":
                if str(i) in model.scale_maps:
                    sw, _ = _weights(model.scale_maps[str(i)])
                    slo, shi, sdlo, sdhi = _linear(sw, None, clo, chi, dcond, dcond)
                    slo, shi = slo + 1, shi + 1  # exact enough: widened by the product's padding below
                    slo, shi = slo - 2 * _U * shi.abs(), shi + 2 * _U * shi.abs()
                    # d(h s) = dh s + h ds
                    t1lo, t1hi = _mul(dlo, dhi, slo[..., None], shi[..., None])
                    t2lo, t2hi = _mul(zlo[..., None], zhi[..., None], sdlo, sdhi)
                    dlo, dhi = _add(t1lo, t1hi, t2lo, t2hi)
                    zlo, zhi = _mul(zlo, zhi, slo, shi)
                if str(i) in model.bias_maps:
                    bw, _ = _weights(model.bias_maps[str(i)])
                    blo, bhi, bdlo, bdhi = _linear(bw, None, clo, chi, dcond, dcond)
                    zlo, zhi = _add(zlo, zhi, blo, bhi)
                    dlo, dhi = _add(dlo, dhi, bdlo, bdhi)
            # local._activation takes derivatives as (n, k, unit): the same elementwise operations
            zlo, zhi, dlo, dhi = _activation(model.activation, zlo, zhi, dlo.transpose(1, 2), dhi.transpose(1, 2))
            dlo, dhi = dlo.transpose(1, 2), dhi.transpose(1, 2)
    return dlo[:, 0, :].numpy(), dhi[:, 0, :].numpy()


def conditioned_constants(model, box, splits: int = 4) -> np.ndarray:
    """Certified :math:`\\sup |\\partial f / \\partial z_k|` over ``box`` (a (low, high) per input, condition last).

    The box is split into ``splits`` pieces per axis (finer: tighter, slower); the result is the
    largest magnitude of the certified derivative intervals over the pieces.
    """
    box = np.asarray(box, dtype=np.float64)
    D = box.shape[0]
    if box.shape != (D, 2) or np.any(box[:, 1] < box[:, 0]):
        raise CertificationError(f"'box' must be (low, high) per input with low <= high. Got {box.tolist()}.")
    if splits < 1:
        raise CertificationError(f"'splits' must be positive. Got {splits}.")
    edges = [np.linspace(a, b, splits + 1) for a, b in box]
    idx = np.array(list(itertools.product(range(splits), repeat=D)))
    lo = np.stack([edges[k][idx[:, k]] for k in range(D)], 1)
    hi = np.stack([edges[k][idx[:, k] + 1] for k in range(D)], 1)
    dlo, dhi = conditioned_derivative_intervals(model, lo, hi)
    return np.maximum(np.abs(dlo), np.abs(dhi)).max(axis=0)


def segment_condition_slopes(model, x, c_low, c_high, chunk: int = 4096) -> np.ndarray:
    r"""Certified :math:`\sup |\partial f / \partial c_k|` along each row's own segment of conditions.

    For each row :math:`x_i`, the box :math:`\{x_i\} \times [c_{low}, c_{high}]` (a degenerate box
    in :math:`x`) goes through :func:`conditioned_derivative_intervals`: a **bound** on the slope
    in the condition at that event only, between the two conditions, usually much smaller than
    the slope over the whole data box.

    Parameters
    ----------
    model : ConditionedLipschitzMLP with one output
    x : ndarray, shape (n, in_features)
        The events, exactly as the model receives them (float64 copies of its inputs).
    c_low, c_high : float or ndarray, shape (cond_features,)
        The ends of the segment, in the units the model takes its condition in (its ``cond_range``
        units, e.g. GeV), ``c_low <= c_high``.
    chunk : int
        Rows per interval propagation.

    Returns
    -------
    ndarray, shape (n, cond_features)
        Bounds on :math:`|\partial f / \partial c_k|` per unit of the model's condition input.
    """
    x = np.asarray(x, dtype=np.float64)
    m = model.cond_features
    c_low = np.broadcast_to(np.asarray(c_low, dtype=np.float64), (m,))
    c_high = np.broadcast_to(np.asarray(c_high, dtype=np.float64), (m,))
    if x.ndim != 2 or x.shape[1] != model.in_features:
        raise CertificationError(f"Expected 'x' of shape (n, {model.in_features}). Got {x.shape}.")
    if np.any(c_high < c_low) or not (np.all(np.isfinite(c_low)) and np.all(np.isfinite(c_high))):
        raise CertificationError(f"Expected finite c_low <= c_high. Got {c_low.tolist()} and {c_high.tolist()}.")
    if chunk < 1:
        raise CertificationError(f"'chunk' must be positive. Got {chunk}.")
    out = []
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        lo = np.c_[xs, np.tile(c_low, (len(xs), 1))]
        hi = np.c_[xs, np.tile(c_high, (len(xs), 1))]
        dlo, dhi = conditioned_derivative_intervals(model, lo, hi, wrt="condition")
        out.append(np.maximum(np.abs(dlo), np.abs(dhi)))
    return np.concatenate(out) if out else np.zeros((0, m))


def condition_interval(f_low, f_high, c_low, c_high, c, slope_low, slope_high=None) -> tuple[np.ndarray, np.ndarray]:
    r"""Certified interval of :math:`f(x; c)` from :math:`f` at two conditions around :math:`c` and slope bounds.

    If :math:`|\partial f / \partial c| \le L_a` on :math:`[c_a, c]` and :math:`\le L_b` on
    :math:`[c, c_b]` (for a piecewise smooth Lipschitz :math:`f`, the mean value inequality
    along the segment), then with :math:`d_a = c - c_a`, :math:`d_b = c_b - c`

    .. math::
        \max(f_a - L_a d_a,\; f_b - L_b d_b) \le f(x; c) \le \min(f_a + L_a d_a,\; f_b + L_b d_b).

    The interval is a **bound** (computed in float64 and rounded outward by a few units in the
    last place); it is never empty when the slope bounds hold. Its width is at most
    :math:`2 \min(L_a d_a, L_b d_b)`, and 0 where :math:`f` changes at the full bounded rate from
    one end to the other.

    Parameters
    ----------
    f_low, f_high : float or ndarray
        :math:`f(x; c_a)` and :math:`f(x; c_b)` (e.g. per event).
    c_low, c, c_high : float
        The conditions, :math:`c_a \le c \le c_b`, in the units the slope bounds are per.
    slope_low, slope_high : float or ndarray
        Bounds on :math:`|\partial f / \partial c|` on :math:`[c_a, c]` and :math:`[c, c_b]`
        (``slope_high`` defaults to ``slope_low``: one bound over the whole range, e.g. the last
        entry of :func:`conditioned_constants`).

    Returns
    -------
    lo, hi : ndarray
        The certified interval of :math:`f(x; c)`, broadcast over the inputs.
    """
    c_low, c, c_high = float(c_low), float(c), float(c_high)
    if not (np.isfinite(c_low) and np.isfinite(c_high) and c_low <= c <= c_high):
        raise CertificationError(f"Expected finite c_low <= c <= c_high. Got {c_low}, {c}, {c_high}.")
    la = np.asarray(slope_low, dtype=np.float64)
    lb = la if slope_high is None else np.asarray(slope_high, dtype=np.float64)
    if np.any(~(la >= 0)) or np.any(~(lb >= 0)):
        raise CertificationError("Slope bounds must be finite and >= 0 (got a negative or NaN one).")
    fa, fb = np.asarray(f_low, dtype=np.float64), np.asarray(f_high, dtype=np.float64)
    # half-widths rounded up: one rounding in c - c_a, one in the product (relative 2u each, doubled)
    ha = la * (c - c_low) * (1 + 8 * _U)
    hb = lb * (c_high - c) * (1 + 8 * _U)
    lo = np.maximum(fa - ha, fb - hb)
    hi = np.minimum(fa + ha, fb + hb)
    # the sums are rounded once each: widen by 2u of their magnitude
    return lo - 2 * _U * np.abs(lo) - 1e-300, hi + 2 * _U * np.abs(hi) + 1e-300
