r"""Constrained training with the Modified Differential Method of Multipliers (Platt & Barr 1987).

Minimise :math:`f(\theta)` subject to constraints on scalar functions :math:`g_i(\theta)`:
``"equal"`` (:math:`g = \varepsilon`), ``"at_most"`` (:math:`g \le \varepsilon`) or ``"at_least"``
(:math:`g \ge \varepsilon`). Each constraint has an infeasibility :math:`c_i` that is zero exactly
when it holds:

.. math::

    c = \varepsilon - g \ (\text{equal}), \qquad
    c = \varepsilon - g - s^2 \ (\text{at most}), \qquad
    c = g - \varepsilon - s^2 \ (\text{at least}),

with a trainable slack :math:`s` for the inequalities (set at the first evaluation to
:math:`\sqrt{\max(0, \text{distance to the bound})}`, so that :math:`c = 0` there). The damped Lagrangian is

.. math::

    \mathcal L(\theta, s, \lambda) = f - \sum_i \lambda_i c_i + \sum_i \delta_i c_i^2 ,

minimised in :math:`(\theta, s)` and **maximised** in the multipliers :math:`\lambda`. The damping
:math:`\delta` makes the constrained optimum an attractor of the gradient flow; it changes the
convergence, not the optimum (at a feasible point :math:`c = 0`).

**Ascent with any optimiser.** The ``mdmm`` package gives the multipliers a negative learning
rate, which breaks weight decay, schedulers and adaptive optimisers that assume positive rates.
Here each multiplier carries a gradient-reversal hook instead: its ``.grad`` is
:math:`-\partial\mathcal L/\partial\lambda`, so a *descent* step of any ``torch.optim`` optimiser
is an ascent step in :math:`\lambda`, with positive learning rates and any scheduler. Give the
multipliers no weight decay (:meth:`MDMM.parameter_groups` does this).

Multipliers and slacks are parameters of :class:`MDMM` (an ``nn.Module``), so they travel with
``state_dict()`` in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..exceptions import ConfigurationError

__all__ = ["Constraint", "MDMM", "MDMMResult"]

KINDS = ("equal", "at_most", "at_least")


class Constraint(nn.Module):
    r"""One constraint :math:`g \;(=, \le, \ge)\; \varepsilon` on a scalar function of the model.

    Parameters
    ----------
    fn : callable, optional
        ``fn() -> scalar tensor``. Optional: the value can instead be passed to :meth:`MDMM.forward`
        (useful when it is computed from the current mini-batch).
    kind : {"equal", "at_most", "at_least"}
    value : float
        :math:`\varepsilon`.
    damping : float
        :math:`\delta \ge 0`.
    scale : float
        The infeasibility is multiplied by ``scale`` (puts constraints of different units on a par).
    name : str, optional
    """

    def __init__(self, fn: Callable[[], torch.Tensor] | None = None, *, kind: str = "equal", value: float = 0.0,
                 damping: float = 1.0, scale: float = 1.0, name: str | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ConfigurationError(f"Constraint kind must be one of {KINDS}. Got {kind!r}.")
        if not damping >= 0:
            raise ConfigurationError(f"'damping' must be >= 0. Got {damping}.")
        if not scale > 0:
            raise ConfigurationError(f"'scale' must be > 0. Got {scale}.")
        self.fn, self.kind, self.name = fn, kind, name or kind
        self.register_buffer("value", torch.tensor(float(value)))
        self.register_buffer("damping", torch.tensor(float(damping)))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.multiplier = nn.Parameter(torch.tensor(0.0))
        self.multiplier.register_hook(lambda grad: -grad)  # gradient ascent under any optimiser
        if kind != "equal":
            # set on first use so that c = 0 there: sqrt of the initial distance to the bound
            self.slack = nn.Parameter(torch.tensor(float("nan")))

    def infeasibility(self, g: torch.Tensor) -> torch.Tensor:
        """:math:`c`: zero exactly when the constraint holds (with the optimal slack)."""
        if g.dim() != 0:
            raise ConfigurationError(
                f"Constraint {self.name!r} needs a scalar value (a 0-dimensional tensor). Got shape {tuple(g.shape)}; "
                "reduce it first, e.g. with .mean()."
            )
        if self.kind != "equal" and torch.isnan(self.slack):
            with torch.no_grad():
                gap = self.value - g if self.kind == "at_most" else g - self.value
                self.slack.copy_(torch.sqrt(torch.clamp(gap.detach().to(self.slack.dtype), min=0.0)))
        if self.kind == "equal":
            c = self.value - g
        elif self.kind == "at_most":
            c = self.value - g - self.slack**2
        else:
            c = g - self.value - self.slack**2
        return self.scale * c

    def satisfied(self, g: float, tol: float = 0.0) -> bool:
        """Whether ``g`` meets the constraint within ``tol`` (no slack involved)."""
        eps = float(self.value)
        if self.kind == "equal":
            return abs(g - eps) <= tol
        return g <= eps + tol if self.kind == "at_most" else g >= eps - tol


@dataclass
class MDMMResult:
    """What :meth:`MDMM.forward` returns: backpropagate ``value``."""

    value: torch.Tensor
    loss: torch.Tensor
    constraint_values: list
    infeasibilities: list


class MDMM(nn.Module):
    """The damped Lagrangian of a primary loss and several :class:`Constraint` s.

    Examples
    --------
    >>> mdmm = MDMM([Constraint(kind="at_most", value=0.1, name="residual")])
    >>> opt = torch.optim.Adam(mdmm.parameter_groups(model.parameters(), lr=1e-3))  # doctest: +SKIP
    >>> result = mdmm(loss, [residual])          # doctest: +SKIP
    >>> result.value.backward(); opt.step()      # doctest: +SKIP
    """

    def __init__(self, constraints: Sequence[Constraint]) -> None:
        super().__init__()
        if not constraints or not all(isinstance(c, Constraint) for c in constraints):
            raise ConfigurationError("MDMM needs a non-empty list of Constraint objects.")
        self.constraints = nn.ModuleList(constraints)

    def forward(self, loss: torch.Tensor, values: Sequence[torch.Tensor] | None = None) -> MDMMResult:
        r""":math:`\mathcal L = f - \sum \lambda_i c_i + \sum \delta_i c_i^2` for the primary ``loss``.

        ``values`` gives each constraint's :math:`g` (same order); where omitted, the
        constraint's ``fn()`` is called.
        """
        if loss.dim() != 0:
            raise ConfigurationError(f"The primary loss must be a scalar. Got shape {tuple(loss.shape)}.")
        if values is not None and len(values) != len(self.constraints):
            raise ConfigurationError(f"Expected {len(self.constraints)} constraint values. Got {len(values)}.")
        total = loss
        gs, cs = [], []
        for i, con in enumerate(self.constraints):
            if values is not None:
                g = values[i]
            elif con.fn is not None:
                g = con.fn()
            else:
                raise ConfigurationError(f"Constraint {con.name!r} has no fn; pass its value to MDMM(loss, values).")
            g = torch.as_tensor(g, dtype=loss.dtype)
            c = con.infeasibility(g)
            total = total - con.multiplier * c + con.damping * c**2
            gs.append(g.detach())
            cs.append(c.detach())
        return MDMMResult(total, loss.detach(), gs, cs)

    def parameter_groups(self, model_parameters: Iterable[torch.nn.Parameter], **options) -> list[dict]:
        """Optimizer parameter groups: the model's (with ``options``), and the constraints' (no weight decay)."""
        multipliers = [p for p in self.parameters()]
        return [{"params": list(model_parameters), **options},
                {"params": multipliers, **{k: v for k, v in options.items() if k != "weight_decay"}, "weight_decay": 0.0}]

    def multipliers(self) -> dict:
        """Current :math:`\\lambda` by constraint name."""
        return {c.name: float(c.multiplier) for c in self.constraints}
