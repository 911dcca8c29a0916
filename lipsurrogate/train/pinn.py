r"""Physics-informed residual terms for the PDEs of the data layer.

For a model :math:`f(x, [y], t)` the residual of a PDE :math:`u_t = \mathcal N[u]` is
:math:`r = f_t - \mathcal N[f]`, computed with autograd (``create_graph=True``, so it can be
trained through) at collocation points drawn uniformly in the domain box. The loss is the mean
of :math:`r^2` over a **mini-batch** of fresh collocation points per step: full-batch residuals
hold the second-order graph of every point at once, a known memory trap (deepxde #39, #230).

=================  ============================  ====================  =====================
name               residual                      inputs                parameters
=================  ============================  ====================  =====================
heat2d             u_t - kappa (u_xx + u_yy)     x, y, t               kappa
advection1d        u_t + c u_x                   x, t                  speed
burgers1d          u_t + u u_x - nu u_xx         x, t                  viscosity
allen-cahn1d       u_t - eps^2 u_xx - u + u^3    x, t                  epsilon
=================  ============================  ====================  =====================

A note on activations: a GroupSort (or ReLU) network on raw coordinates is piecewise linear, so
its second derivatives vanish almost everywhere and :math:`u_{xx}` computed by autograd is 0;
Fourier features (:class:`~lipsurrogate.nn.FeatureLipschitzMLP`) give the network curvature
through the features, :math:`f_{xx} = \nabla g \cdot \phi_{xx}` almost everywhere.

The term is usable with a weight, or through :class:`~lipsurrogate.train.constraints.MDMM` as
the constraint "mean squared residual at most :math:`\varepsilon`" (:class:`PhysicsTerm`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..exceptions import ConfigurationError

__all__ = ["RESIDUALS", "PhysicsTerm", "pde_residual", "collocation_points"]


def _grad(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return g


def _heat2d(f, d, p):
    return d["t"] - p["kappa"] * (d["xx"] + d["yy"])


def _advection1d(f, d, p):
    return d["t"] + p["speed"] * d["x"]


def _burgers1d(f, d, p):
    return d["t"] + f * d["x"] - p["viscosity"] * d["xx"]


def _allen_cahn1d(f, d, p):
    return d["t"] - p["epsilon"] ** 2 * d["xx"] - f + f**3


RESIDUALS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], Callable]] = {
    # name: (inputs, second derivatives needed, parameters, residual(f, derivatives, params))
    "heat2d": (("x", "y", "t"), ("xx", "yy"), ("kappa",), _heat2d),
    "advection1d": (("x", "t"), (), ("speed",), _advection1d),
    "burgers1d": (("x", "t"), ("xx",), ("viscosity",), _burgers1d),
    "allen-cahn1d": (("x", "t"), ("xx",), ("epsilon",), _allen_cahn1d),
}


def pde_residual(model: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, pde: str,
                 **params: float) -> torch.Tensor:
    """The residual :math:`r` of ``pde`` for ``model`` at ``points`` (n, n_inputs), shape (n,).

    The graph is kept (``create_graph=True``) so that the residual can be trained through.
    """
    if pde not in RESIDUALS:
        raise ConfigurationError(f"No residual for PDE {pde!r}. Known: {sorted(RESIDUALS)}.")
    inputs, second, names, residual = RESIDUALS[pde]
    missing = set(names) - set(params)
    unknown = set(params) - set(names)
    if missing or unknown:
        raise ConfigurationError(f"{pde} needs the parameters {list(names)}. Got {sorted(params)}.")
    if points.dim() != 2 or points.shape[1] != len(inputs):
        raise ConfigurationError(f"{pde} residual points need shape (n, {len(inputs)}) for {inputs}. Got {tuple(points.shape)}.")
    x = points.detach().clone().requires_grad_(True)
    out = model(x)
    if out.dim() != 2 or out.shape[1] != 1:
        raise ConfigurationError(f"PINN residuals need a single-output model. Got output shape {tuple(out.shape)}.")
    f = out[:, 0]
    g = _grad(f, x)
    derivatives = {name: g[:, i] for i, name in enumerate(inputs)}
    for name in second:
        i = inputs.index(name[0])
        derivatives[name] = _grad(g[:, i], x)[:, i]
    return residual(f, derivatives, params)


def collocation_points(domain: Sequence[Sequence[float]], n: int, generator: torch.Generator,
                       dtype=torch.float32) -> torch.Tensor:
    """``n`` points drawn uniformly in the box ``domain`` (one ``(low, high)`` per input)."""
    box = torch.tensor(domain, dtype=dtype)
    if box.dim() != 2 or box.shape[1] != 2 or torch.any(box[:, 1] <= box[:, 0]):
        raise ConfigurationError(f"'domain' must be a list of (low, high) with low < high. Got {domain}.")
    return box[:, 0] + torch.rand(n, len(box), generator=generator, dtype=dtype) * (box[:, 1] - box[:, 0])


@dataclass
class PhysicsTerm:
    r"""A PINN term for :func:`~lipsurrogate.train.train`: weighted, or a constraint through MDMM.

    Parameters
    ----------
    pde : str
        A key of :data:`RESIDUALS`.
    domain : list of (low, high)
        The collocation box, in the model's input order.
    params : dict
        The PDE's parameters.
    batch_size : int
        Collocation points per step (fresh each step).
    weight : float
        Loss = data loss + ``weight`` * mean r^2 (when ``at_most`` is None).
    at_most : float, optional
        Train with the constraint mean r^2 <= ``at_most`` through MDMM instead of a weight.
    damping : float
        MDMM damping.
    """

    pde: str
    domain: list
    params: dict = field(default_factory=dict)
    batch_size: int = 1024
    weight: float = 1.0
    at_most: float | None = None
    damping: float = 10.0

    def __post_init__(self) -> None:
        if self.pde not in RESIDUALS:
            raise ConfigurationError(f"No residual for PDE {self.pde!r}. Known: {sorted(RESIDUALS)}.")
        if len(self.domain) != len(RESIDUALS[self.pde][0]):
            raise ConfigurationError(f"{self.pde} needs a domain of {len(RESIDUALS[self.pde][0])} (low, high) pairs.")
        if self.batch_size < 1 or not self.weight >= 0:
            raise ConfigurationError("'batch_size' must be positive and 'weight' non-negative.")
        if self.at_most is not None and not self.at_most > 0:
            raise ConfigurationError(f"'at_most' must be positive. Got {self.at_most}.")

    def mean_square(self, model, generator: torch.Generator) -> torch.Tensor:
        """Mean :math:`r^2` over a fresh mini-batch of collocation points."""
        weight = next(model.parameters())
        pts = collocation_points(self.domain, self.batch_size, generator, weight.dtype).to(weight.device)
        return pde_residual(model, pts, self.pde, **self.params).pow(2).mean()

    def constraint(self):
        """The MDMM module for ``at_most`` (None for a weighted term)."""
        if self.at_most is None:
            return None
        from .constraints import MDMM, Constraint

        return MDMM([Constraint(kind="at_most", value=self.at_most, damping=self.damping, name="pde residual")])
