"""Training: a seeded mini-batch loop and the losses of Lipschitz classification.

Modules
-------
loop
    :func:`train` (Adam, cosine schedule, projection after each step, progress bar).
losses
    Temperature BCE, hinge, dynamic hinge and the dynamic margins.
"""

from .losses import bce_with_temperature, dynamic_hinge_loss, dynamic_margins, hinge_loss, signed_labels
from .loop import LOSSES, TrainingHistory, train

__all__ = [
    "LOSSES",
    "TrainingHistory",
    "bce_with_temperature",
    "dynamic_hinge_loss",
    "dynamic_margins",
    "hinge_loss",
    "signed_labels",
    "train",
]
