"""Training: a seeded mini-batch loop and the losses of Lipschitz classification.

Modules
-------
loop
    :func:`train` (Adam, cosine schedule, projection after each step, progress bar).
adam
    :class:`~lipsurrogate.train.adam.Adam`: ``torch.optim.Adam``'s update with a schedule, bit for
    bit, without importing ``torch.optim`` (whose first use costs 1.5 s).
losses
    Temperature BCE, hinge, dynamic hinge and the dynamic margins.
constraints
    :class:`MDMM` and :class:`Constraint`: constrained training (equal / at most / at least) with
    the Modified Differential Method of Multipliers, under any optimiser and scheduler.
pinn
    :func:`pde_residual` and :class:`PhysicsTerm`: physics-informed residuals on mini-batches of
    collocation points, weighted or as an MDMM constraint.
stability
    :class:`~lipsurrogate.train.stability.PairStability`: a penalty on the GroupSort pairs that a
    certificate block leaves undecided (``train(..., regularizer=...)``), training for a tighter
    certificate.
sampling
    :class:`~lipsurrogate.train.sampling.BalancedSampler`: mini-batches balanced by class, signal
    (per mass), background (per process) or both.
streaming
    :class:`~lipsurrogate.train.streaming.FieldStream`: shuffled mini-batches read from a dataset
    file in bounded memory, and :func:`~lipsurrogate.train.streaming.train_streaming`.
device
    :func:`~lipsurrogate.train.device.training_device` (a block in which :func:`train` runs on a
    device, e.g. CUDA) and :func:`~lipsurrogate.train.device.resolve_device`.
distributed
    :func:`~lipsurrogate.train.distributed.train_ddp`: data-parallel training with PyTorch DDP
    (``torchrun``, gloo on CPU), each rank streaming its share of the file.
"""

from .losses import bce_with_temperature, dynamic_hinge_loss, dynamic_margins, hinge_loss, signed_labels
from .constraints import MDMM, Constraint, MDMMResult
from .device import resolve_device, training_device
from .loop import LOSSES, TrainingHistory, train
from .pinn import RESIDUALS, PhysicsTerm, collocation_points, pde_residual
from .stability import PairStability

__all__ = [
    "Constraint",
    "MDMM",
    "MDMMResult",
    "LOSSES",
    "RESIDUALS",
    "PairStability",
    "PhysicsTerm",
    "collocation_points",
    "pde_residual",
    "TrainingHistory",
    "resolve_device",
    "training_device",
    "bce_with_temperature",
    "dynamic_hinge_loss",
    "dynamic_margins",
    "hinge_loss",
    "signed_labels",
    "train",
]
