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
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..exceptions import CertificationError
from .local import _activation

__all__ = ["conditioned_derivative_intervals", "conditioned_constants"]

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


def conditioned_derivative_intervals(model, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Certified intervals of :math:`\\partial f / \\partial z_k` on each box, :math:`z = (x, c)`.

    Parameters
    ----------
    model : ConditionedLipschitzMLP with one output
    lo, hi : ndarray, shape (n, in_features + cond_features)

    Returns
    -------
    dlo, dhi : ndarray, shape (n, in_features + cond_features)
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
            zlo, zhi, dlo, dhi = _activation(model.activation, zlo, zhi, dlo, dhi)
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
