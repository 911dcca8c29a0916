r"""Losses for Lipschitz classifiers and regressors (Kitouni et al., section 3 and Figure 7).

A Lipschitz network cannot make its output jump, so the loss decides how far from the decision
boundary it pushes the data:

* :func:`bce_with_temperature` -- :math:`\mathrm{BCE}(\sigma(f(x)/\tau), y)`. A
  :math:`\lambda`-Lipschitz :math:`f` has bounded slope; a temperature :math:`\tau < 1` lets the
  probability saturate anyway (equivalent to using :math:`\lambda / \tau`).
* :func:`hinge_loss` -- :math:`\max(0, m - \tilde y f(x))` with :math:`\tilde y = \pm 1`: asks for a
  margin :math:`m`, i.e. a certified robustness radius :math:`m / \lambda` around each point.
* :func:`dynamic_hinge_loss` -- the margin of each point is half the distance to the nearest point
  of the other class (:func:`dynamic_margins`), the largest margin any classifier can give it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..exceptions import ConfigurationError

__all__ = [
    "bce_with_temperature",
    "softmax_cross_entropy",
    "hinge_loss",
    "dynamic_hinge_loss",
    "dynamic_margins",
    "signed_labels",
]


def signed_labels(targets: torch.Tensor) -> torch.Tensor:
    """Map labels in {0, 1} (or already in {-1, +1}) to {-1, +1}; anything else is an error."""
    values = torch.unique(targets)
    if bool(torch.all((values == 0) | (values == 1))):
        return 2.0 * targets.to(torch.get_default_dtype()) - 1.0
    if bool(torch.all((values == -1) | (values == 1))):
        return targets.to(torch.get_default_dtype())
    raise ConfigurationError(
        f"Binary labels must be in {{0, 1}} or {{-1, +1}}. Got values {values[:10].tolist()} instead."
    )


def _flat(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = outputs.reshape(-1)
    targets = targets.reshape(-1)
    if outputs.shape != targets.shape:
        raise ConfigurationError(
            f"Expected one output per target. Got {outputs.numel()} outputs and {targets.numel()} targets."
        )
    return outputs, targets


def bce_with_temperature(outputs: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, *,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Binary cross-entropy of :math:`\sigma(f / \tau)` against labels in {0, 1}.

    ``weights`` (one per point, optional) multiply each point's term before the mean.
    """
    if not temperature > 0:
        raise ConfigurationError(f"'temperature' must be positive. Got {temperature!r} instead.")
    outputs, targets = _flat(outputs, targets)
    if weights is not None:
        weights = weights.reshape(-1).to(outputs.dtype)
    return F.binary_cross_entropy_with_logits(outputs / temperature, targets.to(outputs.dtype), weight=weights)


def softmax_cross_entropy(outputs: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, *,
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Cross-entropy of :math:`\mathrm{softmax}(f / \tau)` (outputs (n, K)) against class indices (n,) or (n, 1).

    ``weights`` (one per point, optional) multiply each point's term before the mean.
    """
    if not temperature > 0:
        raise ConfigurationError(f"'temperature' must be positive. Got {temperature!r} instead.")
    if outputs.ndim != 2 or targets.numel() != outputs.shape[0]:
        raise ConfigurationError(f"Expected outputs (n, K) and n class indices. Got {tuple(outputs.shape)} and "
                                 f"{tuple(targets.shape)}.")
    terms = F.cross_entropy(outputs / temperature, targets.reshape(-1).long(), reduction="none")
    if weights is not None:
        terms = terms * weights.reshape(-1).to(terms.dtype)
    return terms.mean()


def hinge_loss(outputs: torch.Tensor, targets: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    r"""Mean of :math:`\max(0, m - \tilde y f(x))` with :math:`\tilde y \in \{-1, +1\}`."""
    if not margin >= 0:
        raise ConfigurationError(f"'margin' must be non-negative. Got {margin!r} instead.")
    outputs, targets = _flat(outputs, targets)
    return torch.relu(margin - signed_labels(targets).to(outputs.dtype) * outputs).mean()


def dynamic_hinge_loss(outputs: torch.Tensor, targets: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    r"""Hinge loss with a per-point margin :math:`m_i` (see :func:`dynamic_margins`)."""
    outputs, targets = _flat(outputs, targets)
    margins = margins.reshape(-1).to(outputs.dtype)
    if margins.shape != outputs.shape:
        raise ConfigurationError(
            f"Expected one margin per output. Got {margins.numel()} margins and {outputs.numel()} outputs."
        )
    return torch.relu(margins - signed_labels(targets).to(outputs.dtype) * outputs).mean()


def dynamic_margins(inputs: torch.Tensor, targets: torch.Tensor, p: float = 1.0, chunk: int = 4096) -> torch.Tensor:
    r"""Half the :math:`\ell_p` distance from each point to the nearest point of the other class.

    For a classifier that is :math:`\lambda`-Lipschitz in :math:`\ell_p`, no point can be given a
    margin larger than :math:`\lambda` times this distance (the two points' outputs must differ
    in sign). Exact, computed in chunks of ``chunk`` rows.
    """
    labels = signed_labels(targets.reshape(-1))
    inputs = inputs.reshape(len(labels), -1)
    pos, neg = inputs[labels > 0], inputs[labels < 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ConfigurationError("dynamic_margins needs points of both classes.")
    out = torch.empty(len(labels), dtype=inputs.dtype)
    for start in range(0, len(labels), chunk):
        block = inputs[start : start + chunk]
        lab = labels[start : start + chunk]
        d_pos = torch.cdist(block, pos, p=p).amin(dim=1)
        d_neg = torch.cdist(block, neg, p=p).amin(dim=1)
        out[start : start + chunk] = torch.where(lab > 0, d_neg, d_pos) / 2
    return out
