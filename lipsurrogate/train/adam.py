r"""Adam without ``torch.optim``: the same update, operation for operation, and a learning-rate schedule.

The first ``torch.optim`` optimizer a process builds imports ``torch._dynamo`` (its methods are
wrapped by ``torch._disable_dynamo``): 1.5 s here, about a twentieth of ``lipsurrogate fit heat2d``.
:class:`Adam` runs the update of ``torch.optim.Adam``'s single-tensor path (what torch uses on the
CPU, without ``foreach`` or ``fused``), with the same tensor operations in the same order, so a
training gives the same weights bit for bit (``tests/train/test_adam.py`` compares them):

.. math::

    g \leftarrow g + \lambda \theta, \quad
    m \leftarrow m + (1 - \beta_1)(g - m), \quad
    v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
    \theta \leftarrow \theta - \frac{\eta_k}{1 - \beta_1^k}\,
        \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^k} + \epsilon},

with the rate :math:`\eta_k = \eta \cdot \mathrm{schedule}(k - 1)` at step :math:`k = 1, 2, \dots`
(``torch.optim.lr_scheduler.LambdaLR`` stepped after every update gives the same rates).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..exceptions import ConfigurationError

__all__ = ["Adam"]


class Adam:
    """Adam over ``params`` with rate ``lr * schedule(step)`` (``step`` counts the updates done).

    Parameters
    ----------
    params : iterable of torch.Tensor
        The trained tensors (one group).
    lr : float
        The base rate :math:`\\eta`.
    betas : (float, float)
    eps : float
    weight_decay : float
        L2 penalty added to the gradient (``torch.optim.Adam``'s, not AdamW's).
    schedule : callable, optional
        ``step -> factor`` (default: 1).

    Attributes
    ----------
    param_groups : list of dict
        One group, ``{"params": [...], "lr": current rate}`` (read as ``torch.optim`` users do).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 schedule: Callable[[int], float] | None = None) -> None:
        params = list(params)
        if not params:
            raise ConfigurationError("Adam needs at least one parameter. Got none.")
        if not (lr >= 0 and eps >= 0 and weight_decay >= 0 and all(0 <= b < 1 for b in betas)):
            raise ConfigurationError(f"Adam needs lr, eps, weight_decay >= 0 and betas in [0, 1). Got lr={lr}, "
                                     f"betas={betas}, eps={eps}, weight_decay={weight_decay}.")
        self.base_lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.schedule = schedule if schedule is not None else (lambda step: 1.0)
        self.steps = 0
        self.param_groups = [{"params": params, "lr": self.base_lr * self.schedule(0)}]
        self._moments: list | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set them to None, or to zero)."""
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient, then the rate of the next step."""
        params = self.param_groups[0]["params"]
        if self._moments is None:
            self._moments = [None] * len(params)
        beta1, beta2 = self.betas
        lr = self.param_groups[0]["lr"]
        for i, param in enumerate(params):
            grad = param.grad
            if grad is None:
                continue
            if self._moments[i] is None:  # torch.optim.Adam's state: a float32 step count and two zero moments
                self._moments[i] = (torch.tensor(0.0, dtype=torch.float32),
                                    torch.zeros_like(param, memory_format=torch.preserve_format),
                                    torch.zeros_like(param, memory_format=torch.preserve_format))
            step_t, exp_avg, exp_avg_sq = self._moments[i]
            step_t += 1
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            bias_correction2_sqrt = bias_correction2**0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
        self.steps += 1
        self.param_groups[0]["lr"] = self.base_lr * self.schedule(self.steps)
