"""A small, seeded training loop with mini-batches, a learning-rate schedule and a progress bar."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .adam import Adam
from .device import current_device, resolve_device
from ..exceptions import ConfigurationError
from .._threads import threads_for_load
from ..nn.norms import weight_projector

__all__ = ["TrainingHistory", "train", "LOSSES", "lp_loss", "resolve_loss", "fused_adam"]

LossFn = Callable[..., torch.Tensor]


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.mean((outputs.reshape(targets.shape) - targets) ** 2)


def _mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.abs(outputs.reshape(targets.shape) - targets))


def lp_loss(p: float) -> LossFn:
    r"""The :math:`L_p` norm of the residual, squared: :math:`\big(\tfrac1n \sum_i |f_i - y_i|^p\big)^{2/p}`.

    :math:`p = 2` is the MSE; as :math:`p \to \infty` it tends to the squared max error, which is
    what a sup-norm certificate bounds. The square keeps the gradient's scale like the MSE's,
    so learning rates carry over. Computed as :math:`m^2 (\tfrac1n \sum (|r_i| / m)^p)^{2/p}`
    with :math:`m = \max|r|` (no overflow for large p).
    """
    if not p >= 1:
        raise ConfigurationError(f"The L_p loss needs p >= 1. Got {p!r}.")

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = (outputs.reshape(targets.shape) - targets).abs()
        m = r.detach().max().clamp_min(1e-30)
        return m**2 * torch.mean((r / m) ** p) ** (2.0 / p)

    loss.__name__ = f"l{p:g}"
    return loss


LOSSES: dict[str, LossFn] = {"mse": _mse, "mae": _mae}
"""Regression losses available by name (and ``"l<p>"``, e.g. ``"l8"``: :func:`lp_loss`);
classification losses live in ``train.losses``."""


def fused_adam(params, **kwargs) -> torch.optim.Adam:
    """Adam with torch's fused kernel where this torch has one for the parameters' device.

    The same algorithm as ``torch.optim.Adam(params, **kwargs)``, in one kernel per step instead of
    about ten small operations per tensor (CPU since torch 2.4): 0.15 ms against 0.4-0.5 ms per step
    for the DeepONet's 13 tensors here. It rounds differently, so a run is reproducible against
    itself, not bit for bit against the unfused optimizer. Falls back to the unfused one where
    torch refuses ``fused=True``.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - torch < 2.4 on CPU
        return torch.optim.Adam(params, **kwargs)


def resolve_loss(loss: "str | LossFn") -> LossFn:
    """A loss function from its name (``"mse"``, ``"mae"``, ``"l<p>"``) or the callable itself."""
    if callable(loss):
        return loss
    if loss in LOSSES:
        return LOSSES[loss]
    if isinstance(loss, str) and loss.startswith("l"):
        try:
            p = float(loss[1:])
        except ValueError:
            p = None
        if p is not None:
            return lp_loss(p)
    raise ConfigurationError(f"'loss' must be one of {sorted(LOSSES)}, 'l<p>' (e.g. 'l8') or a callable. Got {loss!r}.")


THREAD_CHECK_EVERY = 250
"""Steps between checks of the free cores in :func:`train` with ``threads="auto"``."""


@dataclass
class TrainingHistory:
    """What happened during :func:`train`.

    Attributes
    ----------
    steps, losses, learning_rates : list
        Recorded every ``log_every`` steps: the mini-batch loss (an estimate of the training
        loss, not the full-data loss) and the learning rate.
    residuals : list
        With a physics term: the mini-batch mean squared PDE residual (an estimate).
    regularizer_values : list
        With a ``regularizer``: its value (weight included) on each recorded step (an estimate).
    seconds : float
        Wall-clock training time.
    stopped_at : int or None
        The step after which a ``callback`` stopped training, None if it ran to the end.
    threads : list of [step, count]
        The torch thread counts used and the steps from which they applied (``threads="auto"``
        re-checks the free cores every :data:`THREAD_CHECK_EVERY` steps).
    device : str
        Where the steps ran (``"cpu"``, ``"cuda:0"``, ...).
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    regularizer_values: list[float] = field(default_factory=list)
    seconds: float = 0.0
    threads: list[list[int]] = field(default_factory=list)
    stopped_at: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict:
        """The history as JSON-ready lists (losses are mini-batch **estimates** of the training loss)."""
        return {
            "steps": self.steps,
            "losses": self.losses,
            "learning_rates": self.learning_rates,
            "residuals": self.residuals,
            "regularizer_values": self.regularizer_values,
            "seconds": self.seconds,
            "threads": self.threads,
            "stopped_at": self.stopped_at,
            "device": self.device,
        }


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | Sequence[torch.Tensor],
    loss: str | LossFn = "mse",
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 3e-3,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
    description: str = "training",
    physics=None,
    sampler=None,
    threads: int | str | None = None,
    callback: Callable[[int, nn.Module], bool] | None = None,
    device=None,
    regularizer: Callable[[nn.Module, torch.Generator], torch.Tensor] | None = None,
) -> TrainingHistory:
    """Train ``model`` with Adam on mini-batches drawn with a seeded generator.

    Parameters
    ----------
    model : nn.Module
        Any model; weights constrained with ``enforce="project"`` are projected after each step.
    inputs : Tensor, shape (n, d)
    targets : Tensor or sequence of Tensors, each with first dimension n
        Passed to ``loss(outputs, *targets_batch)``; extra tensors (e.g. per-point margins for
        :func:`~lipsurrogate.train.losses.dynamic_hinge_loss`) are batched the same way.
    loss : str or callable
        ``"mse"``, ``"mae"``, ``"l<p>"`` (:func:`lp_loss`, e.g. ``"l8"``: trains for the max error that a
        certificate bounds) or a function ``loss(outputs, *targets) -> scalar``.
    steps, batch_size, lr, weight_decay
        Optimisation settings. ``batch_size >= n`` means full batch.
    schedule : {"cosine", "constant"}
        Cosine decay to 1% of ``lr`` over ``steps`` or a constant rate.
    seed : int
        Seeds the batch order (torch's global generator is left alone).
    progress : bool
        Show a tqdm progress bar (on stderr).
    physics : PhysicsTerm, optional
        A PINN residual term (:class:`~lipsurrogate.train.pinn.PhysicsTerm`) on fresh collocation
        points each step: added with its weight, or, with ``at_most``, a constraint trained with
        MDMM (multipliers in their own parameter group, same schedule). The history then also
        records the mean squared residual (an estimate on each step's mini-batch).
    sampler : callable, optional
        ``sampler(generator) -> LongTensor`` of row indices for each step (e.g. a
        :class:`~lipsurrogate.train.sampling.BalancedSampler`), called with the loop's seeded
        generator; replaces the uniform draw of ``batch_size`` rows. Default: uniform batches.
    threads : int, "auto" or None
        torch threads for the loop (restored after it). ``"auto"``
        (:func:`~lipsurrogate._threads.threads_for_load`): ``LIPSURROGATE_THREADS`` /
        ``OMP_NUM_THREADS`` if set, else the cores that other processes leave free, checked again
        every 250 steps, so that concurrent runs share the cores instead of oversubscribing them.
        ``None`` (default) leaves torch's setting alone, e.g. for a caller that set it already.
    callback : callable, optional
        ``callback(step, model) -> bool`` after every ``log_every``-th step (and the last); a true
        value stops training there (early stopping; the model is left in training mode for the
        callback and set to evaluation mode at the end). ``history.stopped_at`` records the step.
    device : str or torch.device, optional
        Where to run the steps (:func:`~lipsurrogate.train.device.resolve_device`: ``"cpu"``,
        ``"cuda"``, ``"auto"``); the model and the data are moved there for the loop and the model
        is moved back to where it was at the end, so the weights are certified on the CPU as
        always. None: the device of an enclosing
        :func:`~lipsurrogate.train.device.training_device` block, else where the model is.
        Batches are drawn by the same seeded CPU generator on every device.
    regularizer : callable, optional
        ``regularizer(model, generator) -> scalar`` added to each step's loss, e.g. a
        :class:`~lipsurrogate.train.stability.PairStability` penalty (drawing its own points with
        the loop's seeded generator). The history records its value in ``regularizer_values``.
    """
    if isinstance(targets, torch.Tensor):
        targets = (targets,)
    targets = tuple(targets)
    n = inputs.shape[0]
    for t in targets:
        if t.shape[0] != n:
            raise ConfigurationError(f"Expected {n} targets to match the inputs. Got {t.shape[0]} instead.")
    loss = resolve_loss(loss)
    if steps < 1 or batch_size < 1:
        raise ConfigurationError(f"'steps' and 'batch_size' must be positive. Got {steps} and {batch_size}.")
    if schedule not in ("cosine", "constant"):
        raise ConfigurationError(f"'schedule' must be 'cosine' or 'constant'. Got {schedule!r} instead.")
    if not (threads is None or threads == "auto" or (isinstance(threads, int) and threads >= 1)):
        raise ConfigurationError(f"'threads' must be 'auto', None or an integer >= 1. Got {threads!r}.")

    from tqdm.auto import tqdm
    import time

    target_device = resolve_device(device) if device is not None else current_device()
    home = next(model.parameters()).device
    if target_device is not None and target_device != home:
        model.to(target_device)
        inputs, targets = inputs.to(target_device), tuple(t.to(target_device) for t in targets)
    run_device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    mdmm = physics.constraint() if physics is not None else None
    if schedule == "cosine":
        lr_lambda = lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))  # noqa: E731
    else:
        lr_lambda = lambda step: 1.0  # noqa: E731
    if mdmm is not None:
        mdmm = mdmm.to(dtype=next(model.parameters()).dtype, device=run_device)
        optimizer = torch.optim.Adam(mdmm.parameter_groups(model.parameters(), lr=lr, weight_decay=weight_decay))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    else:  # torch.optim.Adam's update without torch.optim (whose first use imports torch._dynamo: 1.5 s)
        optimizer = Adam(model.parameters(), lr=lr, weight_decay=weight_decay, schedule=lr_lambda)
        scheduler = None
    history = TrainingHistory(device=str(run_device))
    full_batch = batch_size >= n and sampler is None
    project = weight_projector(model)  # the projected layers, found once
    model.train()
    start = time.perf_counter()

    def _step(step: int) -> None:
        if full_batch:
            x, ys = inputs, targets
        else:
            idx = torch.randint(0, n, (batch_size,), generator=generator) if sampler is None else sampler(generator)
            idx = idx.to(run_device, non_blocking=True)
            x, ys = inputs[idx], tuple(t[idx] for t in targets)
        optimizer.zero_grad(set_to_none=True)
        # parametrised weights are computed once per step for all the forward passes below
        with parametrize.cached():
            value = loss(model(x), *ys)
            residual = None
            if physics is not None:
                residual = physics.mean_square(model, generator)
                value = mdmm(value, [residual]).value if mdmm is not None else value + physics.weight * residual
            penalty = None
            if regularizer is not None:
                penalty = regularizer(model, generator)
                value = value + penalty
        if not torch.isfinite(value):
            raise FloatingPointError(f"The training loss became {value.item()} at step {step}.")
        value.backward()
        optimizer.step()
        project()
        if scheduler is not None:
            scheduler.step()
        if step % log_every == 0 or step == steps - 1:
            history.steps.append(step)
            history.losses.append(float(value.detach()))
            history.learning_rates.append(optimizer.param_groups[0]["lr"])
            if residual is not None:
                history.residuals.append(float(residual.detach()))
            if penalty is not None:
                history.regularizer_values.append(float(penalty.detach()))
            bar.set_postfix(loss=f"{history.losses[-1]:.3g}")

    bar = tqdm(range(steps), desc=description, disable=not progress, leave=False)
    previous_threads = torch.get_num_threads()
    try:
        for step in bar:
            if step == 0 or (threads == "auto" and step % THREAD_CHECK_EVERY == 0):
                count = threads_for_load() if threads == "auto" else threads
                if count is not None:
                    torch.set_num_threads(int(count))
                count = torch.get_num_threads()
                if not history.threads or history.threads[-1][1] != count:
                    history.threads.append([step, count])
            _step(step)
            if callback is not None and (step % log_every == 0 or step == steps - 1) and callback(step, model):
                history.stopped_at = step
                break
    finally:
        torch.set_num_threads(previous_threads)
        if run_device != home:
            model.to(home)
    history.seconds = time.perf_counter() - start
    model.eval()
    return history
