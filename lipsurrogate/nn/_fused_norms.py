r"""The per-column and per-row :math:`\ell_1` constraints with one compiled pass each way, for training.

:class:`~lipsurrogate.nn.norms.ColumnL1Norm` (Eq. 2.8) and :class:`~lipsurrogate.nn.norms.RowLinfNorm`
map a raw weight :math:`W` to :math:`W_{ij} f_k` with, for the column (``axis=0``, :math:`k = j`) or
row (``axis=1``, :math:`k = i`) :math:`k`,

.. math::

    n_k = \sum_{\text{line } k} |W_{ij}| \ \text{(float64)}, \qquad
    q_k = n_k / c, \qquad f_k = 1 / \max(1, q_k),

and the weight used is :math:`W_{ij} \cdot \mathrm{fl}_{32}(f_k)`. Through autograd that is about
eight small tensor operations forward and twelve backward per layer, each a few microseconds of
dispatch on a 128 x 128 matrix: about 0.1x a training step of a 4 x 128 network (issue 17).
Here the line sums stay torch's (one reduction each way) and everything else is one compiled loop:

* **forward**: :math:`n_k` by torch, then :math:`q_k`, :math:`f_k`, :math:`\mathrm{fl}_{32}(f_k)`
  and the product, each number through the same operations as torch's;
* **backward**, for an upstream gradient :math:`G`, with :math:`s_k = \sum_{\text{line } k} G_{ij}
  W_{ij}` summed by torch in float32 as autograd sums it:

  .. math::

      \frac{\partial L}{\partial W_{ij}} = G_{ij}\, \mathrm{fl}_{32}(f_k)
      + \mathrm{fl}_{32}\big(d_k \operatorname{sgn}(W_{ij})\big), \qquad
      d_k = [q_k \ge 1]\; \frac{-s_k\, \mathrm{fl}(f_k^2)}{c},

  the derivative of :math:`W_{ij} f_k(n_k)` (:math:`\partial f_k / \partial n_k = -f_k^2 / c` where
  :math:`q_k > 1`, 0 where :math:`q_k < 1`; at :math:`q_k = 1` the subgradient of autograd's
  ``clamp``, which passes the gradient there, and ``sgn(0) = 0`` as autograd's ``abs``), with
  autograd's operations in autograd's order (``reciprocal``'s backward :math:`-g \cdot r^2`, then
  ``clamp``'s, then the division's).

Note [the same bits as the torch formula]
    Both passes give the torch formula's weights and gradients bit for bit (tested on lines whose
    magnitudes span many binades): the reductions are torch's own, the elementwise steps are the
    same IEEE operations in the same order (numba neither reassociates nor contracts into fused
    multiply-adds), and the two gradient terms are added once in float32, as autograd adds its
    two contributions. So training through this pass trains the same network. It still serves
    only **training** (a constraint module in training mode, gradients enabled, a float32 CPU
    weight that requires a gradient); evaluation, projection, export and the certificate take the
    torch formula.
Note [double backward]
    Where a gradient is itself differentiated (``create_graph=True`` through this node), the
    backward pass takes the torch formula (:func:`_torch_backward`), which autograd can follow.
"""

from __future__ import annotations

import numpy as np
import torch

from .._compiled import HAVE_NUMBA

__all__ = ["USE_FUSED", "fused_line_l1_scale", "can_fuse"]

USE_FUSED = HAVE_NUMBA
"""Whether training takes the compiled pass where it can (switch off to compare with the torch formula)."""


def _forward_py(weight, axis, target, norms, out, factor, factor32):  # pragma: no cover - compiled by numba
    """``out = weight * factor32`` with ``factor[k] = 1 / max(1, norms[k] / target)`` and ``factor32``
    its float32 rounding, for the line norms ``norms`` (column for ``axis=0``, row for ``axis=1``):
    torch's operations on each number (``/``, ``clamp``, ``reciprocal``, ``to(float32)``, ``*``)."""
    rows, cols = weight.shape
    for k in range(norms.shape[0]):
        q = norms[k] / target
        factor[k] = 1.0 / (1.0 if q < 1.0 else q)  # a NaN stays NaN, as torch.clamp keeps it
        factor32[k] = np.float32(factor[k])
    for i in range(rows):
        for j in range(cols):
            k = j if axis == 0 else i
            out[i, j] = weight[i, j] * factor32[k]  # a float32 product, as torch's


def _backward_py(weight, grad, axis, target, norms, factor, factor32, sums32, out):  # pragma: no cover
    """The gradient of the module docstring into ``out``, given ``sums32[k]``, torch's float32 sum of
    ``grad * weight`` along line ``k``: autograd's operations on each number, in its order."""
    rows, cols = weight.shape
    d = np.empty(norms.shape[0])
    for k in range(norms.shape[0]):
        passes = norms[k] / target >= 1.0  # clamp's backward: the gradient passes where q >= 1
        d[k] = ((-np.float64(sums32[k])) * (factor[k] * factor[k])) / target if passes else 0.0
    for i in range(rows):
        for j in range(cols):
            k = j if axis == 0 else i
            w = weight[i, j]
            sign = 1.0 if w > 0 else (-1.0 if w < 0 else 0.0)
            out[i, j] = grad[i, j] * factor32[k] + np.float32(d[k] * sign)


if HAVE_NUMBA:
    import numba

    _forward = numba.njit(cache=True, nogil=True)(_forward_py)
    _backward = numba.njit(cache=True, nogil=True)(_backward_py)
else:  # pragma: no cover
    _forward = _backward = None


def can_fuse(weight: torch.Tensor) -> bool:
    """Whether :func:`fused_line_l1_scale` takes ``weight`` (training on a 2-D float32 CPU weight)."""
    return (USE_FUSED and _forward is not None and torch.is_grad_enabled() and weight.requires_grad
            and weight.dim() == 2 and weight.dtype == torch.float32 and weight.device.type == "cpu"
            and weight.numel() > 0)


class _LineL1Scale(torch.autograd.Function):
    """``weight * fl32(1 / max(1, n / target))`` per column (``axis=0``) or row (``axis=1``): the
    line sums by torch, everything else in one compiled pass each way (module docstring)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, axis: int, target: float) -> torch.Tensor:
        w = weight.detach().contiguous()
        norms = w.double().abs().sum(dim=axis).numpy()  # torch's sums: the torch formula's bits
        lines = len(norms)
        factor, factor32 = np.empty(lines), np.empty(lines, dtype=np.float32)
        out = torch.empty_like(w)
        _forward(w.numpy(), axis, target, norms, out.numpy(), factor, factor32)
        ctx.save_for_backward(weight)
        ctx.axis, ctx.target, ctx.arrays = axis, target, (norms, factor, factor32)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (weight,) = ctx.saved_tensors
        norms, factor, factor32 = ctx.arrays
        if torch.is_grad_enabled():  # Note [double backward]
            return _torch_backward(weight, grad, ctx.axis, ctx.target), None, None
        w = weight.detach().contiguous()
        g = grad.contiguous()
        sums32 = (g * w).sum(dim=ctx.axis).numpy()  # autograd's float32 sums for the factor's gradient
        out = torch.empty_like(w)
        _backward(w.numpy(), g.numpy(), ctx.axis, ctx.target, norms, factor, factor32, sums32, out.numpy())
        return out, None, None


def _torch_backward(weight: torch.Tensor, grad: torch.Tensor, axis: int, target: float) -> torch.Tensor:
    """The gradient of the module docstring in torch operations on ``weight`` and ``grad``, which
    autograd follows (Note [double backward])."""
    w64 = weight.double()
    q = w64.abs().sum(dim=axis, keepdim=True) / target
    factor = 1.0 / torch.clamp(q, min=1.0)
    sums = (grad * weight).sum(dim=axis, keepdim=True).double()
    d = torch.where(q >= 1.0, -sums * (factor * factor), torch.zeros_like(sums)) / target
    return grad * factor.to(weight.dtype) + (w64.sgn() * d).to(weight.dtype)


def fused_line_l1_scale(weight: torch.Tensor, axis: int, target: float) -> torch.Tensor:
    """The constrained weight of :class:`~lipsurrogate.nn.norms.ColumnL1Norm` (``axis=0``) or
    :class:`~lipsurrogate.nn.norms.RowLinfNorm` (``axis=1``) through the compiled passes (the caller
    checks :func:`can_fuse`)."""
    return _LineL1Scale.apply(weight, axis, float(target))
