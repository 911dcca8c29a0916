r"""Float32 matrix products ``a @ w.T (+ b)`` through oneDNN where torch has it, else through torch's BLAS.

torch's CPU build ships two libraries that multiply float32 matrices: its BLAS (MKL) behind
``torch.mm`` / ``torch.addmm``, and oneDNN, behind ``torch.ops.mkldnn._linear_pointwise``. On this
project's machines (AMD EPYC, AVX-512, 2 cores) oneDNN is much faster for the shapes that matter
here: alone, a product of the certificate's forms (32,768 x 128 times 128 x 128) in about half
the time; inside a whole heat2d certificate, where the products share the memory bandwidth with the
rest, the forms' products took 3.3-3.6 s against 4.0-5.5 s (two runs each) and the certificate
0.94x the time (three pairs of runs). Measured here both libraries give the same bits for the products with many output
columns (each output summed over the inner dimension in order), so the certificates computed here
keep their bits, but nothing relies on it:

Note [any order of summation]
    Every certified use of a product in this package bounds its rounding with
    :math:`|\mathrm{fl}(a w^\top) - a w^\top| \le \gamma_{k} |a| |w|^\top` (Higham, Theorem 3.5,
    :math:`\gamma_k = k u / (1 - k u)`), which holds for **any** order of the :math:`k`-term sums
    and with or without fused multiply-adds. So the certificate is valid whichever library
    computes the product; only the last bits of a result may differ between libraries and machines.

:data:`USE_ONEDNN` switches the oneDNN path off (tests compare both).
"""

from __future__ import annotations

import torch

__all__ = ["USE_ONEDNN", "onednn_available", "linear"]


def _find_op():
    """``torch.ops.mkldnn._linear_pointwise`` when this torch build has oneDNN and the op, else None."""
    try:
        if not torch.backends.mkldnn.is_available():  # pragma: no cover - builds without oneDNN
            return None
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # pragma: no cover
        return None


_LINEAR_POINTWISE = _find_op()

USE_ONEDNN = _LINEAR_POINTWISE is not None
"""Whether :func:`linear` takes oneDNN for the tensors it can (switch off to compare with torch's BLAS)."""


def onednn_available() -> bool:
    """Whether :func:`linear` can use oneDNN in this process (the op exists and is switched on)."""
    return USE_ONEDNN and _LINEAR_POINTWISE is not None


MIN_OUTPUTS = 16
"""Products with fewer output columns (a network's last layer) stay with torch's BLAS: a small
share of the time, and on this project's machines the wider products give the same bits either way
(tested), so certificates computed here keep their bits."""


def _takes(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether oneDNN takes the product: 2-D float32 CPU tensors without gradient, non-empty, with at
    least :data:`MIN_OUTPUTS` output columns (and a float32 CPU bias, if any)."""
    return (onednn_available() and a.dim() == 2 and weight.dim() == 2 and weight.shape[0] >= MIN_OUTPUTS
            and a.shape[0] > 0 and a.shape[1] > 0 and not a.requires_grad and not weight.requires_grad
            and all(t.dtype == torch.float32 and t.device.type == "cpu"
                    for t in ((a, weight) if bias is None else (a, weight, bias))))


def linear(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ weight.T + bias`` for 2-D tensors without gradient: ``a`` (m, k), ``weight`` (n, k),
    ``bias`` (n,) or None; a new (m, n) tensor.

    Float32 CPU tensors with at least :data:`MIN_OUTPUTS` output columns go through oneDNN where
    available (Note [any order of summation]); every other case through ``torch.addmm`` /
    ``torch.mm`` (also for good, should torch's private op ever refuse the call). Not
    differentiable. (Training layers through it were measured too: 0.96x the step time of the
    heat2d network, with different bits; not adopted.)
    """
    global USE_ONEDNN
    if _takes(a, weight, bias):
        b = None if bias is None else bias.contiguous()
        try:
            return _LINEAR_POINTWISE(a.contiguous(), weight.contiguous(), b, "none", [], "")
        except (RuntimeError, TypeError):  # pragma: no cover - a torch whose private op changed
            USE_ONEDNN = False  # torch's BLAS from now on
    if bias is None:
        return a @ weight.T
    return torch.addmm(bias, a, weight.T)
