r"""Training for what is certified: a penalty on GroupSort pairs that a certificate block leaves undecided.

The certifier bounds the slopes of a GroupSort network over each block of cells
(``theory/cell-bounds.md``, sections 4 and 14). A pair layer computes :math:`(\min(a, b), \max(a, b))`
of its pre-activation halves; on a block where the gap :math:`d = a - b` keeps its sign the pair
is a fixed permutation, its Jacobian is exact and nothing is relaxed. Where :math:`d` may change
sign inside the block the pair is *undecided*: the bounds must cover both orderings, and every
layer above multiplies the looseness. A network fitted only to data has many such pairs (on
heat2d-kappa about 18 % of the first layer's pairs over a certificate block) although a nearby
network with the same fit has few.

This module measures and penalises them at random points :math:`x` of the domain. To first order
the gap varies over a block of half-widths :math:`r` centred at :math:`x` by at most

.. math::

    s(x) = \sum_i \Big|\frac{\partial d}{\partial x_i}(x)\Big| \, r_i ,

(the *spread*, computed exactly at :math:`x` by forward-mode tangents through the network), so
the pair is *linearly undecided* where :math:`|d(x)| < s(x)`. The penalty is the mean over the
points and over the pairs of every pair layer of

.. math::

    \operatorname{relu}\!\Big(1 - \frac{|d(x)|}{s(x) + \epsilon}\Big) \in [0, 1],

zero for a pair whose gap exceeds its spread, 1 at a gap of zero: the ReLU-stability loss of Xiao
et al. (2019, "Training for faster adversarial robustness verification via inducing ReLU
stability") for GroupSort pairs, with the block of the certificate as its box.

Nothing here is certified and nothing needs to be: the penalty only shapes training, and the
certificate is computed from the trained weights as always. The counts it reports are
**estimates** (first order, at sampled points), not the certifier's count. What it buys is
measured in ``benchmarks/results/loss.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigurationError

__all__ = ["PairStability", "pair_gaps", "block_half_widths"]


def block_half_widths(box, cells: Sequence[int], block: int | Sequence[int]) -> list[float]:
    r"""Half-widths :math:`r_i = b_i (hi_i - lo_i) / (2 n_i)` of a certificate's slope blocks.

    ``box`` (d, 2) is the certified domain, ``cells`` the certificate's cell counts per axis and
    ``block`` its slope blocks in cells (one integer for every axis, or one per axis).
    """
    box = np.asarray(box, dtype=float)
    d = box.shape[0]
    if box.shape != (d, 2) or len(cells) != d:
        raise ConfigurationError(f"Expected a (d, 2) box and d cell counts. Got box shape {box.shape} and {len(cells)} counts.")
    blocks = [int(block)] * d if np.isscalar(block) else [int(b) for b in block]
    if len(blocks) != d:
        raise ConfigurationError(f"Expected {d} block sizes. Got {len(blocks)}.")
    return [float(b * (hi - lo) / (2 * n)) for b, n, (lo, hi) in zip(blocks, cells, box)]


def _parts(model: nn.Module):
    """(input map, body) of a supported network: the input map's tangents come from forward mode."""
    from ..nn import FeatureLipschitzMLP, GroupSort, LipschitzMLP

    if isinstance(model, FeatureLipschitzMLP):
        input_map, mlp = model.features, model.net
    elif isinstance(model, LipschitzMLP):
        input_map, mlp = model.transform_inputs, model
    else:
        raise ConfigurationError(
            f"The pair-stability penalty needs a LipschitzMLP or FeatureLipschitzMLP. Got {type(model).__name__}."
        )
    activation = mlp.activation
    if not (isinstance(activation, GroupSort) and activation.group_size == 2):
        raise ConfigurationError(f"The pair-stability penalty needs GroupSort pairs (group_size=2). Got {activation!r}.")
    return input_map, mlp.body


def pair_gaps(model: nn.Module, x: torch.Tensor, half_widths: torch.Tensor) -> tuple[list, list]:
    r"""Gaps :math:`d = a - b` of every pair layer at ``x`` and their spreads :math:`s` over a block.

    Returns two lists (one entry per pair layer, in order) of tensors (n, width / 2): the gaps and
    :math:`s = \sum_i |\partial d / \partial x_i| r_i` with ``half_widths`` :math:`r` (d,). Both are
    differentiable in the weights (the spread through the tangents). Exact at ``x``; the spread is a
    first-order **estimate** of the gap's variation over the block.
    """
    input_map, body = _parts(model)
    n, d = x.shape
    directions = torch.eye(d, dtype=x.dtype, device=x.device)
    # z (n, m) and its tangents t (n, d, m) along each input axis, in one vectorised forward-mode pass
    z, t = torch.func.vmap(lambda v: torch.func.jvp(input_map, (x,), (v.expand(n, d),)), out_dims=(None, 1))(directions)
    r = half_widths.to(x.dtype).view(1, d, 1)
    gaps, spreads = [], []
    for layer in body:
        if isinstance(layer, nn.Linear):
            weight = layer.weight  # a parametrised weight is computed once here
            z = torch.addmm(layer.bias, z, weight.T)
            t = t @ weight.T
            continue
        a, b = z.chunk(2, dim=-1)
        ta, tb = t.chunk(2, dim=-1)
        gap = a - b
        gaps.append(gap)
        spreads.append(((ta - tb).abs() * r).sum(1))
        a_is_max = (gap > 0).unsqueeze(1)
        z = torch.cat([torch.minimum(a, b), torch.maximum(a, b)], dim=-1)
        t = torch.cat([torch.where(a_is_max, tb, ta), torch.where(a_is_max, ta, tb)], dim=-1)
    return gaps, spreads


@dataclass
class PairStability:
    r"""The pair-stability penalty at ``batch_size`` fresh uniform points of ``box`` per step.

    Parameters
    ----------
    box : array-like, shape (d, 2)
        The domain (the certificate's box).
    half_widths : sequence of float
        Half-widths of the certificate's slope blocks per input (:func:`block_half_widths`).
    weight : float
        Loss = data loss + ``weight`` * penalty.
    batch_size : int
        Points per step (drawn with the training loop's seeded generator).
    every : int
        Evaluate the penalty on one step in ``every`` (counted over this object's calls), with
        weight ``weight * every`` there, so that its average pull stays ``weight`` at a
        ``1 / every`` share of its cost; 0 on the other steps.
    eps : float
        Added to the spread (a pair whose tangent vanishes counts as decided unless its gap is 0).

    Call it as ``term(model, generator)``; :func:`~lipsurrogate.train.train` takes it as
    ``regularizer=``.
    """

    box: Sequence[Sequence[float]]
    half_widths: Sequence[float]
    weight: float = 0.03
    batch_size: int = 256
    every: int = 1
    eps: float = 1e-6

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=float)
        if box.ndim != 2 or box.shape[1] != 2 or not np.all(box[:, 1] > box[:, 0]):
            raise ConfigurationError(f"'box' must be (d, 2) with lo < hi on every axis. Got {box.tolist()}.")
        if len(self.half_widths) != box.shape[0] or not all(h > 0 for h in self.half_widths):
            raise ConfigurationError(f"'half_widths' needs {box.shape[0]} positive numbers. Got {list(self.half_widths)}.")
        if not self.weight >= 0 or self.batch_size < 1 or self.every < 1 or not self.eps > 0:
            raise ConfigurationError(f"Need weight >= 0, batch_size >= 1, every >= 1 and eps > 0. Got {self.weight}, "
                                     f"{self.batch_size}, {self.every} and {self.eps}.")
        self._calls = 0
        self._lo = torch.tensor(box[:, 0])
        self._span = torch.tensor(box[:, 1] - box[:, 0])
        self._r = torch.tensor(list(self.half_widths), dtype=torch.float64)

    def points(self, generator: torch.Generator, dtype=torch.float32) -> torch.Tensor:
        """``batch_size`` uniform points of the box, drawn with ``generator``."""
        u = torch.rand((self.batch_size, len(self.half_widths)), generator=generator, dtype=torch.float64)
        return (self._lo + u * self._span).to(dtype)

    def penalty(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Mean of relu(1 - |d| / (s + eps)) over the points ``x`` and every pair of every pair layer."""
        gaps, spreads = pair_gaps(model, x, self._r)
        terms = [torch.relu(1 - gap.abs() / (spread + self.eps)).mean() for gap, spread in zip(gaps, spreads)]
        return torch.stack(terms).mean()

    def undecided_fraction(self, model: nn.Module, x: torch.Tensor) -> list[float]:
        """Per pair layer, the fraction of pairs with |d| < s at ``x``: an **estimate** (first order)."""
        with torch.no_grad():
            gaps, spreads = pair_gaps(model, x, self._r)
        return [float((gap.abs() < spread).to(torch.float64).mean()) for gap, spread in zip(gaps, spreads)]

    def __call__(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """``weight * every`` times the penalty at fresh points on one call in ``every``, else 0: what
        the training loop adds to its loss."""
        parameter = next(model.parameters())
        self._calls += 1
        if (self._calls - 1) % self.every:
            return parameter.new_zeros(())
        x = self.points(generator, parameter.dtype).to(parameter.device)
        return self.weight * self.every * self.penalty(model, x)
