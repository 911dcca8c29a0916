r"""A Lipschitz DeepONet: :math:`G(u)(y) = \sum_k b_k(u)\, t_k(y) + b_0` with Lipschitz branch and trunk.

The branch :math:`b` (a :class:`~lipsurrogate.nn.LipschitzMLP`) reads the input function
:math:`u` at ``n_sensors`` fixed sensor points (for heat2d: the initial condition on a coarse
grid); the trunk :math:`t` (a :class:`~lipsurrogate.nn.FeatureLipschitzMLP`) reads the query point
:math:`y = (x, y, t)` (Lu et al. 2021). Both have bounded constants by construction, and the
operator has **certified** constants:

* in the trunk inputs, for one given branch input :math:`u`:

  .. math:: |\partial G / \partial y_j| \le \sum_k (|b_k(u)| + \epsilon_k)\, T'_{kj},

  with :math:`b(u)` evaluated in float64 with its rounding bound :math:`\epsilon`, and
  :math:`T'_{kj}` the trunk's certified per-output, per-input bounds;
* in the branch input, over a box :math:`Y` of query points:

  .. math:: |\partial G / \partial u_i| \le \sum_k \sup_{y \in Y} |t_k(y)|\; B'_{ki},

  with :math:`\sup_Y |t_k| \le |t_k(y_0)| + \epsilon_k + \sum_j T'_{kj} r_j` (:math:`y_0` the box
  centre, :math:`r` its half-widths) and :math:`B'` the branch's certified bounds.

So for a new initial condition the usual per-cell certificate applies, with :math:`L_f` from
:meth:`LipschitzDeepONet.trunk_constants` and the constants of the true solution from the new
initial condition. :meth:`LipschitzDeepONet.specialise` goes one step further: with the branch
evaluated once, :math:`G(u)(y) = b(u)^\top (W_m h(y) + c_m) + b_0` is an ordinary
:class:`~lipsurrogate.nn.FeatureLipschitzMLP` with a free last layer
:math:`w = W_m^\top b(u)`, :math:`c = b(u)^\top c_m + b_0`, so every certificate of a single
network (per-cell, local constants, refinement) applies to it unchanged.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..exceptions import ConfigurationError
from .features import FeatureLipschitzMLP
from .mlp import LipschitzMLP

__all__ = ["LipschitzDeepONet", "train_deeponet"]


class LipschitzDeepONet(nn.Module):
    """Branch (sensors of the input function) times trunk (query point), both Lipschitz.

    Parameters
    ----------
    n_sensors : int
        Number of sensor values the branch reads.
    trunk_in : int
        Dimension of the query point.
    basis : int
        Number of terms :math:`p` of the sum.
    branch_hidden, trunk_hidden : sequence of int
    periods, harmonics, offset, scale, input_budget
        The trunk's :class:`~lipsurrogate.nn.FeatureLipschitzMLP` settings.
    branch_lipschitz, trunk_lipschitz : float
    seed : int, optional
    """

    def __init__(
        self,
        n_sensors: int,
        trunk_in: int = 3,
        basis: int = 64,
        branch_hidden: Sequence[int] = (128, 128),
        trunk_hidden: Sequence[int] = (128, 128, 128),
        *,
        periods: Sequence[float | None] = (2 * math.pi, 2 * math.pi, None),
        harmonics: int = 3,
        offset: Sequence[float] | None = None,
        scale: Sequence[float] | None = None,
        input_budget: Sequence[float] | None = None,
        branch_lipschitz: float = 1.0,
        trunk_lipschitz: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if n_sensors < 1 or basis < 1:
            raise ConfigurationError(f"Need at least one sensor and one basis function. Got {n_sensors} and {basis}.")
        input_budget = [1.0] * trunk_in if input_budget is None else list(input_budget)
        self.config: dict[str, Any] = dict(
            n_sensors=n_sensors, trunk_in=trunk_in, basis=basis, branch_hidden=list(branch_hidden),
            trunk_hidden=list(trunk_hidden), periods=list(periods), harmonics=harmonics,
            offset=None if offset is None else list(offset), scale=None if scale is None else list(scale),
            input_budget=input_budget, branch_lipschitz=branch_lipschitz, trunk_lipschitz=trunk_lipschitz, seed=seed,
        )
        self.n_sensors, self.trunk_in, self.basis = n_sensors, trunk_in, basis
        self.branch = LipschitzMLP(n_sensors, basis, branch_hidden, lipschitz=branch_lipschitz, norm="linf-row",
                                   seed=seed)
        self.trunk = FeatureLipschitzMLP(trunk_in, basis, trunk_hidden, periods=periods, harmonics=harmonics,
                                         offset=offset, scale=scale, input_budget=input_budget,
                                         lipschitz=trunk_lipschitz, seed=None if seed is None else seed + 1)
        self.bias = nn.Parameter(torch.zeros(1))

    def _check(self, sensors: torch.Tensor, points: torch.Tensor) -> None:
        if sensors.shape[-1] != self.n_sensors:
            raise ConfigurationError(f"The branch reads {self.n_sensors} sensor values. Got {sensors.shape[-1]}.")
        if points.shape[-1] != self.trunk_in:
            raise ConfigurationError(f"The trunk reads {self.trunk_in} coordinates. Got {points.shape[-1]}.")

    def forward(self, sensors: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """:math:`G(u)(y)` for paired rows: sensors (n, m), points (n, d) -> (n, 1)."""
        self._check(sensors, points)
        return (self.branch(sensors) * self.trunk(points)).sum(dim=-1, keepdim=True) + self.bias

    def forward_grid(self, sensors: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """All pairs: sensors (S, m), points (P, d) -> (S, P), one branch and one trunk pass."""
        self._check(sensors, points)
        return self.branch(sensors) @ self.trunk(points).T + self.bias

    def trunk_constants(self, sensors: np.ndarray) -> np.ndarray:
        """Certified bounds on :math:`|\\partial G(u) / \\partial y_j|` for the one input ``sensors`` (m,)."""
        from ..bounds import evaluate_float64, extract_chain, lipschitz_bounds

        sensors = np.asarray(sensors, dtype=np.float64).reshape(1, -1)
        if sensors.shape[1] != self.n_sensors:
            raise ConfigurationError(f"The branch reads {self.n_sensors} sensor values. Got {sensors.shape[1]}.")
        b, err = evaluate_float64(extract_chain(self.branch), sensors)
        trunk = lipschitz_bounds(self.trunk).per_input  # (basis, trunk_in)
        total = (np.abs(b[0]) + err[0]) @ trunk
        return total * (1 + 4 * (self.basis + 2) * 2.0**-53)

    def branch_constants(self, box: Sequence[Sequence[float]]) -> np.ndarray:
        """Certified bounds on :math:`|\\partial G / \\partial u_i|` for every query point in ``box``."""
        from ..bounds import evaluate_float64, extract_chain, lipschitz_bounds

        box = np.asarray(box, dtype=np.float64)
        if box.shape != (self.trunk_in, 2) or np.any(box[:, 1] < box[:, 0]):
            raise ConfigurationError(f"'box' must hold (low, high) for each of the {self.trunk_in} trunk inputs.")
        centre, radius = box.mean(axis=1), (box[:, 1] - box[:, 0]) / 2
        t0, err = evaluate_float64(extract_chain(self.trunk), centre[None])
        trunk = lipschitz_bounds(self.trunk).per_input
        sup_t = np.abs(t0[0]) + err[0] + trunk @ radius
        branch = lipschitz_bounds(self.branch).per_input  # (basis, n_sensors)
        return (sup_t @ branch) * (1 + 4 * (self.basis + 4) * 2.0**-53)


    def specialise(self, sensors) -> FeatureLipschitzMLP:
        """The operator for one input function, as a plain single-output :class:`FeatureLipschitzMLP`.

        The branch is evaluated in float64 at ``sensors`` (m,) and folded into the trunk's last
        layer (``head="free"``); the result is rounded to the trunk's dtype. It is the network
        that a certificate for this input function is about: it agrees with
        ``self(sensors, y)`` up to float32 rounding (a few ulps, not certified), and its own
        constants are certified from its weights like any other network's.
        """
        from ..bounds import evaluate_float64, extract_chain
        from .serialization import _effective_state, plain_from_state

        sensors = np.asarray(sensors, dtype=np.float64).reshape(1, -1)
        if sensors.shape[1] != self.n_sensors:
            raise ConfigurationError(f"The branch reads {self.n_sensors} sensor values. Got {sensors.shape[1]}.")
        if not np.all(np.isfinite(sensors)):
            raise ConfigurationError("The sensor values must be finite.")
        b = evaluate_float64(extract_chain(self.branch), sensors)[0][0]  # (basis,)
        state = _effective_state(self.trunk)
        last = f"net.body.{len(self.trunk.net.body) - 1}"
        dtype = state[f"{last}.weight"].dtype
        w = b @ state[f"{last}.weight"].double().numpy()
        c = b @ state[f"{last}.bias"].double().numpy() + float(self.bias.detach())
        state[f"{last}.weight"] = torch.tensor(w[None, :], dtype=dtype)
        state[f"{last}.bias"] = torch.tensor([c], dtype=dtype)
        config = {**self.trunk.config, "out_features": 1, "head": "free"}
        return plain_from_state(FeatureLipschitzMLP, config, state)


def train_deeponet(
    model: LipschitzDeepONet,
    sensors: torch.Tensor,
    points: torch.Tensor,
    values: torch.Tensor,
    *,
    steps: int = 2000,
    batch_samples: int = 16,
    batch_points: int = 1024,
    lr: float = 3e-3,
    loss="mse",
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train on random (sample, point) blocks of a family.

    ``sensors`` (S, m), ``points`` (P, d), ``values`` (S, P): each step draws ``batch_samples``
    input functions and ``batch_points`` query points and fits the whole block (one branch and one
    trunk pass). ``loss`` is a name or callable of :func:`lipsurrogate.train.loop.resolve_loss`
    (``"mse"``, ``"l8"``: the :math:`L_8` norm of the block's residual, towards the max error that
    a certificate bounds). Adam (:func:`~lipsurrogate.train.loop.fused_adam`) with a cosine schedule;
    returns the loss history.
    """
    from tqdm.auto import tqdm

    from ..train.loop import fused_adam, resolve_loss
    from .norms import weight_projector

    loss_fn = resolve_loss(loss)

    S, P = values.shape
    if sensors.shape[0] != S or points.shape[0] != P:
        raise ConfigurationError(f"values must be (samples, points) = ({sensors.shape[0]}, {points.shape[0]}). Got {tuple(values.shape)}.")
    g = torch.Generator().manual_seed(seed)
    opt = fused_adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    history = {"steps": [], "losses": []}
    start = time.perf_counter()
    project = weight_projector(model)
    model.train()
    for step in tqdm(range(steps), desc="deeponet training", disable=not progress, leave=False):
        si = torch.randint(0, S, (min(batch_samples, S),), generator=g)
        pi = torch.randint(0, P, (min(batch_points, P),), generator=g)
        value = loss_fn(model.forward_grid(sensors[si], points[pi]), values[si[:, None], pi[None, :]])  # one gather
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        project()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            history["steps"].append(step)
            history["losses"].append(float(value.detach()))
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history
