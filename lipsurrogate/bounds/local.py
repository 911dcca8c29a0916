r"""Local (per-cell) bounds on derivatives, by interval propagation through the network.

On a box cell :math:`C` the network's activation pattern is often fixed: a GroupSort pair
:math:`(a, b)` whose value intervals do not overlap sorts the same way everywhere in :math:`C`.
Propagating intervals of values **and** of the directional derivatives
:math:`\partial z / \partial x_k` through the layers gives, per cell, an interval that contains
:math:`\partial f / \partial x_k` wherever it exists in :math:`C`:

* linear layers: centre/radius form, :math:`c' = W c`, :math:`r' = |W| r`;
* a GroupSort pair decided on :math:`C` permutes the derivatives; an undecided pair outputs, at
  almost every point, one of the two input derivatives, so both outputs lie in the hull of the
  two input intervals;
* Fourier features: exact ranges of :math:`\cos` and :math:`\sin` over the phase interval.

Along any segment parallel to axis :math:`k` inside :math:`C`, the network is piecewise smooth and
absolutely continuous, so its slope there is bounded by the derivative interval: the result is a
**certified** local Lipschitz bound. Every linear step widens the radii by Higham's bound on the
float64 rounding error (Note [rigorous widening]); GroupSort, min/max and ReLU are exact in
floating point. Combined with the
same interval for the true solution, :math:`|\partial_k (f - u)| \le \max(|\overline{f'} - \underline{u'}|,
|\underline{f'} - \overline{u'}|)` bounds the error's slope by the *difference* of the two ranges
rather than the sum of two global constants.
"""

from __future__ import annotations

import numpy as np
import torch

from .._repeated_rows import rowwise_products, runs_of_equal_rows
from ..exceptions import CertificationError
from ..nn.activations import GroupSort
from . import _interval_kernel
from .network import extract_chain

__all__ = ["cos_range", "input_intervals", "network_derivative_intervals", "network_intervals"]

def cos_range(centre: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact range of :math:`\\cos` over :math:`[c - r, c + r]` (elementwise), slightly widened."""
    a, b = centre - radius, centre + radius
    cos_a, cos_b = np.cos(a), np.cos(b)
    lo = np.minimum(cos_a, cos_b)
    hi = np.maximum(cos_a, cos_b)
    # a maximum 2 pi n or a minimum (2n + 1) pi inside the interval
    has_max = np.floor(b / (2 * np.pi)) >= np.ceil(a / (2 * np.pi))
    has_min = np.floor((b - np.pi) / (2 * np.pi)) >= np.ceil((a - np.pi) / (2 * np.pi))
    hi = np.where(has_max | (radius >= np.pi), 1.0, hi)
    lo = np.where(has_min | (radius >= np.pi), -1.0, lo)
    pad = 1e-12 * (1 + np.abs(centre) + radius)  # argument rounding and libm error
    return np.maximum(lo - pad, -1.0), np.minimum(hi + pad, 1.0)


def check_interval_support(model):
    """The model's :func:`~lipsurrogate.bounds.extract_chain` if :func:`network_derivative_intervals`
    supports it; else :class:`~lipsurrogate.exceptions.CertificationError` saying why (nothing is
    computed: the certifier asks before it plans its tiles)."""
    chain = extract_chain(model)
    if chain.out_scale is not None or chain.aux is not None or chain.residual is not None or chain.out_features != 1:
        raise CertificationError("Local derivative bounds support single-output networks without scale/aux/residual heads.")
    act = chain.activation
    if not (act is None or (isinstance(act, GroupSort) and act.group_size == 2) or type(act).__name__ in ("ReLU", "Tanh")):
        raise CertificationError(f"Local derivative bounds support GroupSort(2), ReLU and Tanh; got {act!r}.")
    return chain


def network_derivative_intervals(model, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Certified intervals of :math:`\\partial f / \\partial x_k` on each box ``[lo, hi]``.

    Parameters
    ----------
    model : FeatureLipschitzMLP or LipschitzMLP (head ``"lipschitz"``, GroupSort pairs or ReLU)
    lo, hi : ndarray, shape (n, d)
        The boxes (cells).

    Returns
    -------
    dlo, dhi : ndarray, shape (n, d)
        For every x in box i (where the derivative exists), ``dlo[i, k] <= d f / d x_k <= dhi[i, k]``.
    """
    chain = check_interval_support(model)
    act = chain.activation
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    d = lo.shape[1]
    zlo, zhi, dlo, dhi = input_intervals(model, chain, lo, hi)

    # the layer loop runs in torch (float64): multi-threaded BLAS and elementwise kernels. The
    # derivatives are stored (n, k, unit), units last, so each product with W is one matrix product
    # over n * d rows and the GroupSort halves are contiguous.
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    zlo, zhi, dlo, dhi = t(zlo), t(zhi), t(dlo), t(dhi)
    n = len(lo)
    n_layers = len(chain.weights)
    vc, vr, dc, dr, c_max, d_max = _centres_and_radii(zlo, zhi, dlo, dhi)
    # GroupSort(2) layers go through one compiled pass from the products to the next layer's
    # inputs (_interval_kernel: the same operations as the torch step below, in the same order)
    fused = _interval_kernel.ENABLED and isinstance(act, GroupSort) and act.group_size == 2
    for i, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        gamma = (w.shape[1] + 2) * 2.0**-53
        rows = t(np.abs(w).sum(axis=1))  # (out,): bounds |W_j.| . |v| <= rows_j * max|v|
        wt, awt, b = t(w.T), t(np.abs(w).T), t(b)
        mc, mr = vc @ wt, vr @ awt
        gc = (dc.reshape(-1, dc.shape[-1]) @ wt).reshape(n, d, -1)
        g_abs = (dr.reshape(-1, dr.shape[-1]) @ awt).reshape(n, d, -1)
        if fused and i < n_layers - 1:
            outs = _interval_kernel.pair_layer(mc.numpy(), mr.numpy(), gc.numpy(), g_abs.numpy(), b.numpy(),
                                               b.abs().numpy(), rows.numpy(), gamma, c_max.numpy().reshape(n),
                                               d_max.numpy().reshape(n, d))
            vc, vr, dc, dr, c_max, d_max = (torch.from_numpy(a) for a in outs)
            c_max, d_max = c_max[:, None], d_max[:, :, None]
            continue
        yc = mc + b
        # Note [rigorous widening]: the float64 error of W c + b is at most
        # gamma_{n+1} (|W||c| + |b|) <= gamma (rows * max|c| + |b|) (Higham 3.5, any order of the
        # sums), and |W| r is computed with relative error at most gamma; both are added to the radius.
        yr = mr * (1 + 2 * gamma) + gamma * (rows * c_max + b.abs()) + 1e-300
        gr = g_abs * (1 + 2 * gamma) + gamma * rows[None, None, :] * d_max + 1e-300
        zlo, zhi, dlo, dhi = yc - yr, yc + yr, gc - gr, gc + gr
        if i == n_layers - 1:
            break
        vc, vr, dc, dr, c_max, d_max = _centres_and_radii(*_activation(act, zlo, zhi, dlo, dhi))
    return dlo[:, :, 0].numpy(), dhi[:, :, 0].numpy()


def _wave_intervals(feats, xc: np.ndarray, xr: np.ndarray):
    """Intervals of the cos and sin features and of their derivatives on the boxes ``xc +- xr``:
    ``lo, hi`` (n, 2 waves) and ``dlo, dhi`` (n, d, 2 waves), derivatives units last."""
    d = xc.shape[1]
    freq = feats.frequencies.double().numpy()  # (waves, d)
    gamma = (d + 2) * 2.0**-53  # rounding of the d-term phase dot products
    # summed over the inputs in order, row by row: a row's intervals are the same in any table
    # (Note [repeated periodic coordinates] of FourierFeatures)
    abs_freq = np.abs(freq)
    pc = rowwise_products(xc, freq)
    pr = rowwise_products(xr, abs_freq) * (1 + 2 * gamma) + gamma * rowwise_products(np.abs(xc), abs_freq) + 1e-300
    cos_lo, cos_hi = cos_range(pc, pr)
    sin_lo, sin_hi = cos_range(pc - np.pi / 2, pr)
    # d cos(p)/dx_k = -sin(p) w_k ; d sin(p)/dx_k = cos(p) w_k; derivatives are stored (n, k, unit)
    w = freq.T[None, :, :]  # (1, d, waves)
    d_cos = _interval_times_scalar(-sin_hi[:, None, :], -sin_lo[:, None, :], w)
    d_sin = _interval_times_scalar(cos_lo[:, None, :], cos_hi[:, None, :], w)
    return (np.concatenate([cos_lo, sin_lo], 1), np.concatenate([cos_hi, sin_hi], 1),
            np.concatenate([d_cos[0], d_sin[0]], 2), np.concatenate([d_cos[1], d_sin[1]], 2))


def _centres_and_radii(zlo, zhi, dlo, dhi):
    """A layer's input in centre/radius form, values (n, w) and derivatives (n, d, w), with the row
    maxima ``max|c|`` (n, 1) and ``max_j |dc_kj|`` (n, d, 1) that its rounding bound uses."""
    vc, vr = (zlo + zhi) / 2, (zhi - zlo) / 2
    dc, dr = (dlo + dhi) / 2, (dhi - dlo) / 2
    return vc, vr, dc, dr, vc.abs().amax(1, keepdim=True), dc.abs().amax(2, keepdim=True)


def input_intervals(model, chain, lo: np.ndarray, hi: np.ndarray):
    """Certified intervals of the first layer's inputs and of their derivatives on the boxes ``[lo, hi]``.

    Returns ``zlo, zhi`` (n, units) and ``dlo, dhi`` (n, d, units), units last: the Fourier
    features' cos waves, sin waves and passed-through inputs, or the scaled inputs of a plain chain.
    Each box's intervals depend on that box alone.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    d = lo.shape[1]
    xc, xr = (lo + hi) / 2, (hi - lo) / 2
    if getattr(model, "features", None) is not None:
        feats = model.features
        both = np.concatenate([xc, xr], axis=1)
        runs = runs_of_equal_rows(both, list(feats.periodic) + [d + k for k in feats.periodic])
        if runs is None:
            wave_lo, wave_hi, wave_dlo, wave_dhi = _wave_intervals(feats, xc, xr)
        else:  # Note [repeated periodic coordinates] of FourierFeatures: the waves once per run of boxes
            starts, run = runs
            wave_lo, wave_hi, wave_dlo, wave_dhi = (a[run] for a in _wave_intervals(feats, xc[starts], xr[starts]))
        pas = feats.passthrough
        off = feats.offset.double().numpy()[pas]
        sc = feats.scale.double().numpy()[pas]
        rest_c = (xc[:, pas] - off) * sc
        rest_r = xr[:, pas] * np.abs(sc) * (1 + 4 * 2.0**-53) + 4 * 2.0**-53 * (np.abs(xc[:, pas]) + np.abs(off)) * np.abs(sc)
        zlo = np.concatenate([wave_lo, rest_c - rest_r], 1)
        zhi = np.concatenate([wave_hi, rest_c + rest_r], 1)
        d_rest = np.zeros((len(xc), d, len(pas)))
        for row, j in enumerate(pas):
            d_rest[:, j, row] = sc[row]
        dlo = np.concatenate([wave_dlo, d_rest], 2)
        dhi = np.concatenate([wave_dhi, d_rest], 2)
    else:
        zc = (xc - chain.in_offset) * chain.in_scale
        u = 2.0**-53
        zr = xr * np.abs(chain.in_scale) * (1 + 4 * u) + 4 * u * (np.abs(xc) + np.abs(chain.in_offset)) * np.abs(chain.in_scale)
        zlo, zhi = zc - zr, zc + zr
        eye = np.broadcast_to(np.diag(chain.in_scale), (len(xc), d, d))  # [n, k, unit]: diagonal either way
        dlo, dhi = eye.copy(), eye.copy()
    return zlo, zhi, dlo, dhi


def network_intervals(model, lo: np.ndarray, hi: np.ndarray, chunk: int = 8160) -> tuple[np.ndarray, np.ndarray]:
    """:func:`network_derivative_intervals` in chunks of ``chunk`` boxes (bounded memory), same result.

    ``chunk`` is a multiple of 48 (:data:`~lipsurrogate.bounds.affine.ROW_ALIGN`), so that
    a box's intervals do not depend on its place in the batch."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    flo, fhi = np.empty_like(lo), np.empty_like(lo)
    for s in range(0, len(lo), chunk):
        flo[s : s + chunk], fhi[s : s + chunk] = network_derivative_intervals(model, lo[s : s + chunk], hi[s : s + chunk])
    return flo, fhi


def _interval_times_scalar(lo, hi, s):
    a, b = lo * s, hi * s
    return np.minimum(a, b), np.maximum(a, b)


def _tanh_range(zlo: torch.Tensor, zhi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Range of tanh over [zlo, zhi] (monotone), widened by the libm error (32 ulps of 1 < 1e-13)."""
    pad = 1e-13
    return torch.clamp(torch.tanh(zlo) - pad, min=-1.0), torch.clamp(torch.tanh(zhi) + pad, max=1.0)


def _activation(act, zlo, zhi, dlo, dhi):
    if type(act).__name__ == "Tanh":
        # chain rule: d tanh(z) = s dz with s = 1 - tanh(z)^2 in [s_lo, s_hi], 0 <= s_lo <= s_hi <= 1
        vlo, vhi = _tanh_range(zlo, zhi)
        near = torch.where((zlo <= 0) & (zhi >= 0), torch.zeros_like(zlo), torch.minimum(zlo.abs(), zhi.abs()))
        far = torch.maximum(zlo.abs(), zhi.abs())
        s_hi = torch.clamp(1 - torch.tanh(near) ** 2 + 1e-13, max=1.0).unsqueeze(1)
        s_lo = torch.clamp(1 - torch.tanh(far) ** 2 - 1e-13, min=0.0).unsqueeze(1)
        cands = torch.stack([s_lo * dlo, s_lo * dhi, s_hi * dlo, s_hi * dhi])
        widen = 4 * 2.0**-53 * cands.abs().amax(0)
        return vlo, vhi, cands.amin(0) - widen, cands.amax(0) + widen
    if type(act).__name__ == "ReLU":
        on = (zlo >= 0).unsqueeze(1)
        off = (zhi <= 0).unsqueeze(1)
        new_dlo = torch.where(on, dlo, torch.where(off, 0.0, torch.clamp(dlo, max=0.0)))
        new_dhi = torch.where(on, dhi, torch.where(off, 0.0, torch.clamp(dhi, min=0.0)))
        return torch.clamp(zlo, min=0.0), torch.clamp(zhi, min=0.0), new_dlo, new_dhi
    h = zlo.shape[1] // 2
    alo, ahi, blo, bhi = zlo[:, :h], zhi[:, :h], zlo[:, h:], zhi[:, h:]
    a_le_b = (ahi <= blo).unsqueeze(1)  # min = a, max = b on the whole cell
    b_le_a = (bhi <= alo).unsqueeze(1)  # min = b, max = a
    da_lo, da_hi, db_lo, db_hi = dlo[..., :h], dhi[..., :h], dlo[..., h:], dhi[..., h:]
    hull_lo, hull_hi = torch.minimum(da_lo, db_lo), torch.maximum(da_hi, db_hi)
    min_dlo = torch.where(a_le_b, da_lo, torch.where(b_le_a, db_lo, hull_lo))
    min_dhi = torch.where(a_le_b, da_hi, torch.where(b_le_a, db_hi, hull_hi))
    max_dlo = torch.where(a_le_b, db_lo, torch.where(b_le_a, da_lo, hull_lo))
    max_dhi = torch.where(a_le_b, db_hi, torch.where(b_le_a, da_hi, hull_hi))
    zlo = torch.cat([torch.minimum(alo, blo), torch.maximum(alo, blo)], 1)
    zhi = torch.cat([torch.minimum(ahi, bhi), torch.maximum(ahi, bhi)], 1)
    return zlo, zhi, torch.cat([min_dlo, max_dlo], -1), torch.cat([min_dhi, max_dhi], -1)
