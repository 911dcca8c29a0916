"""GroupSort activations (Anil, Lucas & Grosse 2019), 1-Lipschitz in every l_p norm.

GroupSort splits the units of a layer into groups and sorts each group. It is a piecewise
permutation of its input, hence 1-Lipschitz in every l_p norm and gradient-norm preserving,
which is what lets a norm-constrained network fit |x| with slope 1 where ReLU cannot.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._compiled import HAVE_NUMBA, magnitude_bits, parallel_kernel
from .._compiled import abs_max_bits as _abs_max_bits
from .._compiled import prange as _prange
from ..exceptions import ConfigurationError

__all__ = ["GroupSort", "ACTIVATIONS", "make_activation", "pair_sort_with_abs_max_", "row_abs_max"]


class GroupSort(nn.Module):
    """Sort the units of the last dimension in groups of ``group_size``.

    Parameters
    ----------
    group_size : int or None
        Units per group (at least 2; must divide the layer width). ``None`` sorts the whole layer
        ("full sort"). Note that ``monotonicnetworks.GroupSort(n)`` takes the *number of groups*;
        here the argument is the size of each group.

    Notes
    -----
    Note [pairing for group_size=2]
        With ``group_size=2``, unit ``i`` is paired with unit ``i + n/2`` (the two halves of the
        layer) rather than with its neighbour. This is the same function as sorting adjacent
        pairs up to a fixed permutation of units, which the following linear layer absorbs, and
        the halves are contiguous blocks of each row, which strided pairs are not.
    Note [one pass each way]
        For ``group_size=2`` the forward pass writes ``min(a, b)`` and ``max(a, b)`` straight into
        the two halves of the output (exact: no rounding, the same values as :meth:`exact`) and
        keeps its input; the backward pass routes each upstream gradient to the input that won,
        ``da = g_min + [a > b] (g_max - g_min)``, ``db = g_max - [a > b] (g_max - g_min)``, with
        one ``threshold_backward`` (the ReLU's own backward kernel). At ties ``a = b`` it returns
        the gradient of ``(min, max) = (a, b)``, a valid element of the Clarke subdifferential.
        Measured (4096 x 128, CPU): 0.35x the time of the autograd graph of the relu form
        ``(a - relu(a - b), b + relu(a - b))`` that it replaced, forward and backward together.
    Note [compiled pair layer]
        On contiguous CPU float32/float64 tensors, and where numba is installed, both passes run
        as one compiled loop over the pairs (:data:`USE_COMPILED`): the forward writes the same
        min and max (a NaN in a pair gives NaN in both outputs, as ``torch.minimum`` /
        ``torch.maximum`` do), the backward routes ``g_min`` and ``g_max`` to the winner without
        arithmetic (``da = g_max`` where ``a > b``; the torch formula's
        ``g_min + (g_max - g_min)`` rounds). A double backward (PINN residuals) takes the torch
        formula. Measured (4096 x 128 float32, 2 cores): forward 123 us against 169 us, backward
        161 us against 549 us (a ReLU's: 83 us and 154 us). Both loops pick with selects, not
        branches: which input of a pair wins is a coin toss on real data, and a branch on it
        mispredicts half the time and keeps the loop scalar. With selects the loops vectorise
        (stop 36): the backward kernel alone 40-49 us against 202 us, the forward 37 us against
        42 us, the same values bit for bit. A GroupSort(2) network's training step against a ReLU
        network's: 1.03x under the command's malloc thresholds, 1.07-1.09x under glibc's (1.20x
        with the branches, under glibc's).
    Note [row maxima on the bits]
        The certificate's float64 evaluation also needs each row's ``max_j |x_ij|``. A float
        max-reduction does not vectorise (a NaN must win, and the compiler keeps the order of
        ``a > top`` tests), which made the fused pass 8 to 12 times slower than the sort alone. For
        IEEE-754 numbers of one width, clearing the sign bit gives ``|x|``, and the non-negative
        floats are ordered as their bit patterns read as signed integers: ``+0 < subnormals <
        normals < inf < NaN`` (every NaN pattern has the largest exponent and a non-zero fraction,
        so it lies above ``inf``). So ``max_j (bits(x_ij) & 0x7FF..F)``, an integer reduction that
        does vectorise, read back as a float, is exactly ``max_j |x_ij|`` (one of the values; ``-0``
        gives ``+0``), and a NaN where the row has one. Measured (8192 x 128 float64, 2 cores): 263 us
        against 2021 us for the float comparisons, the same results bit for bit.
    """

    def __init__(self, group_size: int | None = 2) -> None:
        super().__init__()
        if group_size is not None:
            if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
                raise ConfigurationError(
                    f"'group_size' must be an integer >= 2 or None (full sort). Got {group_size!r} instead."
                )
        self.group_size = group_size

    def extra_repr(self) -> str:
        return "full sort" if self.group_size is None else f"group_size={self.group_size}"

    def check_width(self, width: int) -> None:
        """Raise if a layer of ``width`` units cannot be split into groups of ``group_size``."""
        if self.group_size is not None and width % self.group_size != 0:
            raise ConfigurationError(
                f"GroupSort with group_size={self.group_size} needs a layer width divisible by "
                f"{self.group_size}. Got a width of {width}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        self.check_width(width)
        if self.group_size == 2:
            return _PairSort.apply(x)
        return self._sort(x, width)

    def exact(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The same function as :meth:`forward`, written with exact min/max (no rounding).

        With ``out`` (same shape as ``x``; not for tensors that need gradients) the result is
        written there, the two halves of a pair layer in place instead of a concatenation.
        """
        width = x.shape[-1]
        self.check_width(width)
        if self.group_size == 2:
            a, b = x.chunk(2, dim=-1)
            if out is None:
                return torch.cat([torch.minimum(a, b), torch.maximum(a, b)], dim=-1)
            half = width // 2
            torch.minimum(a, b, out=out[..., :half])
            torch.maximum(a, b, out=out[..., half:])
            return out
        result = self._sort(x, width)
        return result if out is None else out.copy_(result)

    def _sort(self, x: torch.Tensor, width: int) -> torch.Tensor:
        if self.group_size is None:
            return torch.sort(x, dim=-1).values
        shape = x.shape
        grouped = x.reshape(*shape[:-1], width // self.group_size, self.group_size)
        return torch.sort(grouped, dim=-1).values.reshape(shape)


USE_COMPILED = HAVE_NUMBA
"""Whether :class:`GroupSort` pairs run through the compiled loops where they can (Note [compiled pair layer])."""


def _pair_sort_rows(x, out, x_bits, abs_max_bits, magnitude_mask, with_abs_max):  # pragma: no cover - compiled by numba
    """``out`` = the pairs of ``x`` sorted (``out`` may be ``x``: each pair is read before it is
    written); with ``with_abs_max`` also ``abs_max[i] = max_j |x[i, j]|``, NaN where row ``i`` has one.

    The row maxima are computed on the bits (Note [row maxima on the bits]): ``x_bits`` is ``x``
    viewed as signed integers of its width, ``abs_max_bits`` the output viewed so, and
    ``magnitude_mask`` every bit but the sign (``0x7FF...F``).
    """
    n, width = x.shape
    half = width // 2
    for i in _prange(n):
        if with_abs_max:  # before the row is sorted (in place, ``x_bits`` sees ``out``)
            abs_max_bits[i] = _abs_max_bits(x_bits, i, width, magnitude_mask)
        for j in range(half):  # selects, not branches: the loop vectorises (Note [compiled pair layer])
            a = x[i, j]
            b = x[i, j + half]
            swap = a > b
            ordered = a <= b
            either_nan = a + b  # where neither holds: torch.minimum and torch.maximum give NaN
            out[i, j] = b if swap else (a if ordered else either_nan)
            out[i, j + half] = a if swap else (b if ordered else either_nan)


def _pair_sort_grad_rows(x, grad, out):  # pragma: no cover - compiled by numba
    n, width = x.shape
    half = width // 2
    for i in _prange(n):
        for j in range(half):  # selects, not branches: the loop vectorises (Note [compiled pair layer])
            swap = x[i, j] > x[i, j + half]
            grad_low = grad[i, j]
            grad_high = grad[i, j + half]
            out[i, j] = grad_high if swap else grad_low
            out[i, j + half] = grad_low if swap else grad_high


_PAIR_SORT = parallel_kernel(_pair_sort_rows)
_PAIR_SORT_GRAD = parallel_kernel(_pair_sort_grad_rows)
def _pair_sort(x: np.ndarray, out: np.ndarray, abs_max: np.ndarray | None = None) -> None:
    """Run the compiled pair sort on 2-D arrays, with the row maxima of ``|x|`` into ``abs_max`` if given."""
    int_type, mask = magnitude_bits(x.dtype)
    maxima = (np.empty(0, dtype=int_type) if abs_max is None else abs_max.view(int_type))
    _PAIR_SORT(x, out, x.view(int_type), maxima, mask, abs_max is not None)


def row_abs_max(h: torch.Tensor) -> torch.Tensor:
    """``max_j |h[i, j]|`` for every row of a 2-D tensor, exactly (NaN where the row has one; 0 for
    no columns): ``max(max_j h_ij, -min_j h_ij)``, two reductions and no pass of abs."""
    return torch.maximum(h.amax(dim=1), -h.amin(dim=1)) if h.shape[1] else torch.zeros(len(h), dtype=h.dtype)


def pair_sort_with_abs_max_(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GroupSort(2) of the rows of ``y`` **in place**, and each row's largest absolute value.

    ``y`` is a 2-D tensor without gradient. Returns ``(y, m)`` with ``y`` holding exactly the
    values of :meth:`GroupSort.exact` (min and max are exact) and ``m[i] = max_j |y[i, j]|``, the
    same for the sorted and the unsorted row (a sort permutes it), NaN where the row has one. On
    contiguous CPU float32/float64 tensors (with numba) both come from one compiled pass over the
    pairs; otherwise from the torch operations. The float64 evaluation of the certificate
    (:func:`lipsurrogate.bounds.evaluate_float64`) uses ``m`` in its rounding bound.
    """
    if y.dim() != 2 or y.shape[1] % 2 or y.requires_grad:
        raise ConfigurationError(
            f"Expected a 2-D tensor of even width without gradient. Got shape {tuple(y.shape)}, "
            f"requires_grad={y.requires_grad}."
        )
    if _compiled_rows(y):
        m = torch.empty(y.shape[0], dtype=y.dtype)
        _pair_sort(y.numpy(), y.numpy(), m.numpy())
        return y, m
    m = row_abs_max(y)
    a, b = y.chunk(2, dim=-1)
    low = torch.minimum(a, b)
    torch.maximum(a, b, out=b)
    a.copy_(low)
    return y, m


def _compiled_rows(*tensors: torch.Tensor) -> bool:
    """Whether the compiled loops can take these tensors (contiguous, CPU, float32/float64, one dtype)."""
    first = tensors[0]
    return (USE_COMPILED and _PAIR_SORT is not None and first.dim() >= 1 and first.numel() > 0
            and first.dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.is_contiguous() and t.dtype == first.dtype and t.shape == first.shape
                    for t in tensors))


class _PairSort(torch.autograd.Function):
    """``(min(a, b), max(a, b))`` of the two halves ``a, b`` of the last dimension, with a hand-written
    backward pass (Notes [one pass each way] and [compiled pair layer] of :class:`GroupSort`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        ctx.save_for_backward(x)
        if _compiled_rows(x):
            width = x.shape[-1]
            _pair_sort(x.detach().reshape(-1, width).numpy(), out.reshape(-1, width).numpy())
            return out
        a, b = x.chunk(2, dim=-1)
        half = a.shape[-1]
        torch.minimum(a, b, out=out[..., :half])
        torch.maximum(a, b, out=out[..., half:])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        if not torch.is_grad_enabled() and _compiled_rows(x, grad):
            width = x.shape[-1]
            out = torch.empty_like(grad)
            _PAIR_SORT_GRAD(x.detach().reshape(-1, width).numpy(), grad.reshape(-1, width).numpy(),
                            out.reshape(-1, width).numpy())
            return out
        a, b = x.chunk(2, dim=-1)
        grad_min, grad_max = grad.chunk(2, dim=-1)
        # [a > b] (g_max - g_min): the ReLU's backward kernel with a - b as its input; differentiable
        # in grad and (with derivative 0, exact almost everywhere) in x, so a double backward
        # (PINN residuals differentiate f' again) reaches x through the saved input
        moved = torch.ops.aten.threshold_backward(grad_max - grad_min, a - b, 0)
        if torch.is_grad_enabled():  # double backward: no out= (autograd does not record it)
            return torch.cat([grad_min + moved, grad_max - moved], dim=-1)
        half = grad_min.shape[-1]
        out = torch.empty_like(grad)
        torch.add(grad_min, moved, out=out[..., :half])
        torch.sub(grad_max, moved, out=out[..., half:])
        return out


ACTIVATIONS = ("groupsort", "fullsort", "relu")
"""Activation names accepted by the Lipschitz networks (all 1-Lipschitz in every l_p norm)."""


def make_activation(name: str, group_size: int = 2) -> nn.Module:
    """Build the activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "groupsort":
        return GroupSort(group_size)
    if name == "fullsort":
        return GroupSort(None)
    if name == "relu":
        return nn.ReLU()
    raise ConfigurationError(f"'activation' must be one of {ACTIVATIONS}. Got {name!r} instead.")
