r"""Fourier features of periodic inputs, with certified slopes, and the network that uses them.

On a periodic box a function is naturally written in the features
:math:`\cos(\omega \cdot k \odot x)`, :math:`\sin(\omega \cdot k \odot x)` of the periodic
coordinates (integer wave vectors :math:`k` with :math:`\max_i |k_i| \le K`, one of each
:math:`\pm k` pair), while the other inputs (time) pass through an affine map. Each feature's
slope is known exactly: :math:`|\partial \phi_i / \partial x_j| \le \omega_j |k_j|`
(:meth:`FourierFeatures.jacobian_bound`).

:class:`FeatureLipschitzMLP` puts a :class:`~lipsurrogate.nn.LipschitzMLP` on top and constrains its
first layer with :class:`~lipsurrogate.nn.norms.WeightedRowNorm` so that the slope of the whole
network in each *original* input :math:`x_k` is at most ``lipschitz * input_budget[k]`` by
construction (row norms after the first layer). The features are periodic, so the network is
exactly periodic in those inputs.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .._repeated_rows import rowwise_products, runs_of_equal_rows
from .._validation import positive_float, positive_int
from ..exceptions import ConfigurationError
from .mlp import LipschitzMLP
from .norms import WeightedRowNorm

__all__ = ["FourierFeatures", "FeatureLipschitzMLP"]


class FourierFeatures(nn.Module):
    """cos/sin features of the periodic inputs, affine pass-through of the others.

    Parameters
    ----------
    in_features : int
    periods : sequence of float or None
        Period of each input, or None for a non-periodic input (passed through as
        ``(x - offset) * scale``).
    harmonics : int
        :math:`K`: wave vectors with :math:`\\max_i |k_i| \\le K` over the periodic inputs.
    offset, scale : sequence of float, optional
        The affine map of the non-periodic inputs (one entry per input; ignored for periodic ones).
    """

    def __init__(
        self,
        in_features: int,
        periods: Sequence[float | None],
        harmonics: int = 3,
        offset: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        if len(periods) != in_features:
            raise ConfigurationError(f"'periods' needs one entry per input ({in_features}). Got {len(periods)}.")
        self.harmonics = positive_int("harmonics", harmonics)
        self.periodic = [i for i, p in enumerate(periods) if p is not None]
        self.passthrough = [i for i, p in enumerate(periods) if p is None]
        if not self.periodic:
            raise ConfigurationError("FourierFeatures needs at least one periodic input.")
        omega = torch.zeros(in_features, dtype=torch.float64)
        for i in self.periodic:
            omega[i] = 2 * math.pi / positive_float("periods", periods[i])
        waves = _half_lattice(len(self.periodic), self.harmonics)  # (n_waves, n_periodic)
        full = np.zeros((len(waves), in_features))
        full[:, self.periodic] = waves
        self.register_buffer("frequencies", torch.as_tensor(full, dtype=torch.float64) * omega)  # (n_waves, in)
        off = torch.zeros(in_features, dtype=torch.float64) if offset is None else torch.as_tensor(offset, dtype=torch.float64)
        sc = torch.ones(in_features, dtype=torch.float64) if scale is None else torch.as_tensor(scale, dtype=torch.float64)
        if off.shape != (in_features,) or sc.shape != (in_features,):
            raise ConfigurationError("'offset' and 'scale' need one entry per input.")
        self.register_buffer("offset", off)
        self.register_buffer("scale", sc)
        self.out_features = 2 * len(waves) + len(self.passthrough)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phase = x @ self.frequencies.to(x.dtype).t()
        rest = (x[..., self.passthrough] - self.offset[self.passthrough].to(x.dtype)) * self.scale[self.passthrough].to(x.dtype)
        return torch.cat([torch.cos(phase), torch.sin(phase), rest], dim=-1)

    def jacobian_bound(self) -> np.ndarray:
        """**Exact** bounds :math:`\\sup_x |\\partial \\phi_i / \\partial x_j|`, shape (features, inputs)."""
        freq = np.abs(self.frequencies.numpy())
        rest = np.zeros((len(self.passthrough), self.in_features))
        for row, j in enumerate(self.passthrough):
            rest[row, j] = abs(float(self.scale[j]))
        return np.concatenate([freq, freq, rest])

    def evaluate_float64(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features in float64 and a **bound** on their rounding error.

        The phase :math:`\\omega k \\cdot x` is a short dot product (error at most
        :math:`\\gamma_{d}\\,|\\omega k| \\cdot |x|`); cos and sin are 1-Lipschitz, so the phase
        error passes through, and their own rounding is allowed 4u, two ulps of 1: torch's float64
        kernels (SLEEF's ``u10`` functions where vectorised, documented within 1.0 ulp, and the
        platform's libm for the remainder) were measured within 0.52 ulp over 4M phases in
        [-60, 60] (``theory/lipschitz-networks.md`` section 4). torch's vectorised kernels take a
        seventh of the time of numpy's here.

        Note [repeated periodic coordinates]
            The waves depend on the periodic inputs only: their frequencies are exactly 0 in the
            other columns, so a finite non-periodic coordinate adds an exact zero to the phase. On
            a grid in C order with the periodic axes first (the certificate's vertices: 33 times
            steps per (x, y) on heat2d's grid), consecutive rows repeat the same periodic
            coordinates, and the waves are computed once per run of equal rows and copied to the
            run: the same operations on the same numbers, so the same values and bounds. The
            phases are summed over the inputs in order, row by row, not by a BLAS product, whose
            order of summation may depend on the number of rows (it does on this project's AMD
            machines, between 187 and 1,683 rows; until stop 36 the phases were a BLAS product and
            tables under 64 rows were not used). Where the rows do not repeat, or an input is not
            finite (0 * inf is NaN), every row is computed.
        """
        u = 2.0**-53
        x = np.ascontiguousarray(x, dtype=np.float64)
        values = np.empty((len(x), self.out_features))
        errors = np.empty((len(x), self.out_features))
        n_waves = len(self.frequencies)
        runs = runs_of_equal_rows(x, self.periodic)
        if runs is None:
            self._waves_float64(x, values, errors)
        else:  # Note [repeated periodic coordinates]
            starts, run = runs
            table_values = np.empty((len(starts), self.out_features))
            table_errors = np.empty((len(starts), self.out_features))
            self._waves_float64(x[starts], table_values, table_errors)
            index = torch.from_numpy(run)
            torch.index_select(torch.from_numpy(table_values), 0, index, out=torch.from_numpy(values))
            torch.index_select(torch.from_numpy(table_errors), 0, index, out=torch.from_numpy(errors))
        if self.passthrough:
            offset, scale = self.offset.numpy()[self.passthrough], self.scale.numpy()[self.passthrough]
            kept = x[:, self.passthrough]
            rest = (kept - offset) * scale
            values[:, 2 * n_waves :] = rest
            errors[:, 2 * n_waves :] = 3 * u * (np.abs(rest) + np.abs(kept * scale))
        return values, errors

    def _waves_float64(self, x: np.ndarray, values: np.ndarray, errors: np.ndarray) -> None:
        """The cos and sin columns of :meth:`evaluate_float64` at the rows of ``x``, written into
        the first ``2 * n_waves`` columns of ``values`` and ``errors``."""
        u = 2.0**-53
        freq = self.frequencies.double()
        n_waves = len(freq)
        values_t, errors_t = torch.from_numpy(values), torch.from_numpy(errors)
        with torch.no_grad():
            # summed over the inputs in order, row by row (Note [repeated periodic coordinates])
            freq_np = freq.numpy()
            phase = torch.from_numpy(rowwise_products(x, freq_np))
            reach = torch.from_numpy(rowwise_products(np.abs(x), np.abs(freq_np)))
            torch.cos(phase, out=values_t[:, :n_waves])
            torch.sin(phase, out=values_t[:, n_waves : 2 * n_waves])
            # the phase's bound (the factor 1.01 covers the rounding of the bound's own
            # arithmetic) with its 4u floor as before, plus 4u for cos and sin themselves: 8u
            err = reach.mul_((self.in_features + 1) * u * 1.01).add_(8 * u)
            errors_t[:, :n_waves] = err
            errors_t[:, n_waves : 2 * n_waves] = err


def _half_lattice(dims: int, k_max: int) -> np.ndarray:
    """Integer vectors with max |k_i| <= k_max, k != 0, one of each +-k pair (first non-zero > 0)."""
    grids = np.stack(np.meshgrid(*[np.arange(-k_max, k_max + 1)] * dims, indexing="ij"), -1).reshape(-1, dims)
    keep = []
    for k in grids:
        nz = np.flatnonzero(k)
        if len(nz) and k[nz[0]] > 0:
            keep.append(k)
    return np.asarray(keep, dtype=np.float64)


class FeatureLipschitzMLP(nn.Module):
    """:class:`FourierFeatures` followed by a Lipschitz MLP with per-input slope budgets.

    The slope of output ``k`` in input ``j`` is at most ``lipschitz * input_budget[j]`` by
    construction; :func:`lipsurrogate.bounds.lipschitz_bounds` certifies the actual value from
    the weights.

    Parameters
    ----------
    in_features, out_features, hidden
        As for :class:`~lipsurrogate.nn.LipschitzMLP`.
    periods, harmonics, offset, scale
        The :class:`FourierFeatures`.
    input_budget : sequence of float
        Relative slope budget :math:`a_j` of each input.
    lipschitz : float
        Overall :math:`\\lambda` (spread over the layers as usual).
    group_size, seed, enforce
        As for :class:`~lipsurrogate.nn.LipschitzMLP`.
    head : {"lipschitz", "free"}
        ``"free"`` leaves the last layer unconstrained (its exact norm enters the certified
        constants); the slope budgets then bound the hidden layers only. A specialised
        :class:`~lipsurrogate.nn.LipschitzDeepONet` (:meth:`~lipsurrogate.nn.LipschitzDeepONet.specialise`)
        is such a network.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        hidden: Sequence[int] = (128, 128, 128, 128),
        *,
        periods: Sequence[float | None],
        harmonics: int = 3,
        offset: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        input_budget: Sequence[float],
        lipschitz: float = 1.0,
        group_size: int = 2,
        enforce: str = "reparametrize",
        head: str = "lipschitz",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if head not in ("lipschitz", "free"):
            raise ConfigurationError(f"'head' of a FeatureLipschitzMLP must be 'lipschitz' or 'free'. Got {head!r} instead.")
        self.config: dict[str, Any] = dict(
            in_features=in_features,
            out_features=out_features,
            hidden=list(hidden),
            periods=[None if p is None else float(p) for p in periods],
            harmonics=harmonics,
            offset=None if offset is None else [float(v) for v in offset],
            scale=None if scale is None else [float(v) for v in scale],
            input_budget=[float(v) for v in input_budget],
            lipschitz=float(lipschitz),
            group_size=group_size,
            enforce=enforce,
            head=head,
            seed=seed,
        )
        self.in_features, self.out_features = in_features, out_features
        self.features = FourierFeatures(in_features, periods, harmonics, offset, scale)
        if len(input_budget) != in_features:
            raise ConfigurationError(f"'input_budget' needs one entry per input ({in_features}). Got {len(input_budget)}.")
        self.net = LipschitzMLP(
            self.features.out_features, out_features, hidden, lipschitz=lipschitz, norm="linf-row",
            enforce=enforce, group_size=group_size, head=head, seed=seed,
        )
        first = self.net.linears[0]
        constrained = len(self.net.linears) - (1 if head == "free" else 0)
        per_layer = float(lipschitz) ** (1.0 / constrained)
        constraint = WeightedRowNorm(per_layer, self.features.jacobian_bound(), [positive_float("input_budget", v) for v in input_budget])
        if parametrize.is_parametrized(first, "weight"):
            parametrize.remove_parametrizations(first, "weight", leave_parametrized=False)
            parametrize.register_parametrization(first, "weight", constraint)
        else:
            first.weight_constraint = constraint
            with torch.no_grad():
                first.weight.copy_(constraint(first.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ConfigurationError(
                f"Expected inputs with {self.in_features} features in the last dimension. Got shape {tuple(x.shape)}."
            )
        return self.net(self.features(x))
