r"""Weight norms that bound the operator norm of a linear layer.

Each constraint is a small ``nn.Module`` whose ``forward`` maps a raw weight ``W`` (shape
``(out, in)``) to a weight whose operator norm is at most ``max_norm``. It can be enforced in two
ways (Kitouni, Nolte & Williams, "Robust and Provably Monotonic Networks", Algorithm 1 and the
projection alternative):

* **reparametrization** -- registered with :func:`torch.nn.utils.parametrize.register_parametrization`,
  so every forward pass uses the normalised weight and gradients flow through the norm;
* **projection** -- the raw weight is replaced by its normalised version after each optimizer
  step (:func:`project_weights_`, :func:`register_projection`).

Norms (``kind``):

``"l1"``  (Eq. 2.7)
    Induced :math:`\ell_1` operator norm, :math:`\|W\|_1 = \max_j \sum_i |W_{ij}|`, for the whole
    matrix. Variant ``"clip"``: :math:`W / \max(1, \|W\|_1 / c)`; variant ``"rescale"``:
    :math:`W\,c / \max(1, \|W\|_1)`. Here :math:`c = \lambda^{1/m}` is the per-layer share of the
    network's constant.
``"l1-column"``  (Eq. 2.8)
    Column-wise: each column is scaled separately, :math:`W_{:j} / \max(1, \|W_{:j}\|_1 / c)`, so
    every column's absolute sum is at most :math:`c` (hence :math:`\|W\|_1 \le c`) without
    shrinking the columns that already satisfy it.
``"linf-row"``
    Row-wise: each row's absolute sum is at most :math:`c`, i.e. the induced
    :math:`\ell_\infty` operator norm.
``"l1-linf"``
    Column-wise largest entry: :math:`W_{:j} / \max(1, \max_i |W_{ij}| / c)`, i.e. the
    operator norm from :math:`\ell_1` to :math:`\ell_\infty`. Used for the first layer of the
    paper's mixed scheme (``LipschitzMLP(norm="mixed")``: ``l1-linf`` first, ``linf-row`` after),
    where :math:`\|W_1\|_{1,\infty} \prod_{i>1} \|W_i\|_\infty \le \lambda` bounds every partial
    derivative by :math:`\lambda` while letting one input fan out to many units (|x| needs it).
``"spectral"``
    :math:`W / \max(1, \hat\sigma / c)` with :math:`\hat\sigma` a power-iteration **estimate** of the
    largest singular value (one iteration per training step, as ``torch.nn.utils.spectral_norm``).
    The estimate can be below the true norm, so the constraint is approximate; certificates
    always use the exact float64 norm of the resulting weight.

Note [float64 norms and slack]
    The absolute sums of the exact norms are computed in float64 and the target is
    ``max_norm * (1 - 2**-20)``. The only float32 rounding left is the final product
    ``W * factor`` (relative error at most ``2**-23`` per entry), which the slack absorbs, so the
    float32 weights that the network actually uses satisfy the bound exactly. Monotonicity by
    construction (Eq. 2.3) needs this: a residual slope :math:`\lambda` must dominate a gradient
    that is at most :math:`\lambda`, not :math:`\lambda (1 + 10^{-7})`.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .._validation import positive_float
from ..exceptions import ConfigurationError
from ._fused_norms import can_fuse, fused_line_l1_scale

__all__ = [
    "NORM_KINDS",
    "ENFORCE_MODES",
    "OperatorNormConstraint",
    "L1Norm",
    "ColumnL1Norm",
    "RowLinfNorm",
    "ColumnMaxNorm",
    "WeightedRowNorm",
    "SpectralNorm",
    "make_constraint",
    "lipschitz_norm",
    "weight_constraint",
    "project_weights_",
    "register_projection",
]

NORM_KINDS = ("l1", "l1-column", "linf-row", "l1-linf", "spectral")
"""Names accepted by :func:`lipschitz_norm` (see the module docstring)."""

ENFORCE_MODES = ("reparametrize", "project")
"""How a constraint is enforced: through a parametrization, or by projection after each step."""

_SLACK = 1.0 - 2.0**-20  # see Note [float64 norms and slack]


class OperatorNormConstraint(nn.Module):
    """Base class: maps a weight of shape ``(out, in)`` to one with operator norm <= ``max_norm``.

    Attributes
    ----------
    max_norm : float
        The bound on the operator norm that the constraint aims at.
    idempotent : bool
        True when applying the constraint twice changes nothing, which projection requires.
    """

    idempotent: bool = True
    kind: str = ""

    def __init__(self, max_norm: float = 1.0) -> None:
        super().__init__()
        self.max_norm = positive_float("max_norm", max_norm)

    def extra_repr(self) -> str:
        return f"max_norm={self.max_norm:.6g}"

    def _target(self) -> float:
        return self.max_norm * _SLACK

    @staticmethod
    def _scale(weight: torch.Tensor, norms: torch.Tensor, target: float) -> torch.Tensor:
        """``weight * 1 / max(1, norms / target)``, factors computed in float64."""
        factor = 1.0 / torch.clamp(norms / target, min=1.0)
        return weight * factor.to(weight.dtype)


class L1Norm(OperatorNormConstraint):
    r"""Eq. 2.7: the induced :math:`\ell_1` norm (largest column abs-sum) of the whole matrix.

    Parameters
    ----------
    max_norm : float
        Target bound :math:`c` on :math:`\|W\|_1`.
    variant : {"clip", "rescale"}
        ``"clip"`` returns :math:`W / \max(1, \|W\|_1 / c)` (weights inside the ball are left
        alone); ``"rescale"`` returns :math:`W c / \max(1, \|W\|_1)`, the first form of Eq. 2.7,
        which also scales small weights up by :math:`c`.
    """

    kind = "l1"

    def __init__(self, max_norm: float = 1.0, variant: str = "clip") -> None:
        super().__init__(max_norm)
        if variant not in ("clip", "rescale"):
            raise ConfigurationError(
                f"The 'variant' of the l1 norm must be 'clip' or 'rescale'. Got {variant!r} instead."
            )
        self.variant = variant
        self.idempotent = variant == "clip"

    def extra_repr(self) -> str:
        return f"max_norm={self.max_norm:.6g}, variant={self.variant!r}"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norm = weight.double().abs().sum(dim=0).max()
        if self.variant == "clip":
            return self._scale(weight, norm, self._target())
        factor = self._target() / torch.clamp(norm, min=1.0)
        return weight * factor.to(weight.dtype)


class ColumnL1Norm(OperatorNormConstraint):
    r"""Eq. 2.8: every column :math:`W_{:j}` scaled to :math:`\|W_{:j}\|_1 \le c` separately."""

    kind = "l1-column"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and can_fuse(weight):  # training: one compiled pass each way (nn._fused_norms)
            return fused_line_l1_scale(weight, 0, self._target())
        norms = weight.double().abs().sum(dim=0, keepdim=True)
        return self._scale(weight, norms, self._target())


class RowLinfNorm(OperatorNormConstraint):
    r"""Every row scaled to :math:`\sum_j |W_{ij}| \le c`: the induced :math:`\ell_\infty` norm."""

    kind = "linf-row"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and can_fuse(weight):  # training: one compiled pass each way (nn._fused_norms)
            return fused_line_l1_scale(weight, 1, self._target())
        norms = weight.double().abs().sum(dim=1, keepdim=True)
        return self._scale(weight, norms, self._target())


class ColumnMaxNorm(OperatorNormConstraint):
    r"""Every column scaled to :math:`\max_i |W_{ij}| \le c`: the :math:`\ell_1 \to \ell_\infty` norm."""

    kind = "l1-linf"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.double().abs().amax(dim=0, keepdim=True)
        return self._scale(weight, norms, self._target())


class WeightedRowNorm(OperatorNormConstraint):
    r"""First-layer norm for inputs given through features :math:`\phi(x)` with known slopes.

    With :math:`J_{ik} \ge \sup_x |\partial \phi_i / \partial x_k|` (``jacobian``, shape
    (features, inputs)) and per-input budgets :math:`a_k` (``input_budget``), every row is scaled
    so that :math:`\sum_i |W_{ji}| J_{ik} \le c\, a_k` for every input :math:`k`. Then
    :math:`|\partial (W\phi(x))_j / \partial x_k| \le c\, a_k`: the composite
    :math:`x \mapsto W \phi(x)` has per-input slopes bounded in the l-inf chain, which row norms
    (``linf-row``) carry through the following layers.
    """

    kind = "weighted-row"

    def __init__(self, max_norm: float, jacobian, input_budget) -> None:
        super().__init__(max_norm)
        jac = torch.as_tensor(jacobian, dtype=torch.float64)
        budget = torch.as_tensor(input_budget, dtype=torch.float64)
        if jac.ndim != 2 or budget.shape != (jac.shape[1],) or bool(torch.any(jac < 0)) or bool(torch.any(budget <= 0)):
            raise ConfigurationError(
                "WeightedRowNorm needs a non-negative jacobian of shape (features, inputs) and one positive "
                f"budget per input. Got shapes {tuple(jac.shape)} and {tuple(budget.shape)}."
            )
        self.register_buffer("jacobian", jac)
        self.register_buffer("input_budget", budget)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # .double(): model.float()/.double() converts buffers too
        loads = (weight.double().abs() @ self.jacobian.double()) / self.input_budget.double()  # (out, inputs)
        norms = loads.amax(dim=1, keepdim=True)
        return self._scale(weight, norms, self._target())


class SpectralNorm(OperatorNormConstraint):
    r"""Spectral norm constraint :math:`W / \max(1, \hat\sigma / c)` with power iteration.

    :math:`\hat\sigma = u^\top W v` is an **estimate** of the largest singular value from
    ``n_power_iterations`` steps per forward pass in training mode (the vectors persist as
    buffers, as in ``torch.nn.utils.parametrizations.spectral_norm``). In evaluation mode the
    vectors are frozen, so the weight is a fixed function of the raw weight.
    """

    kind = "spectral"

    def __init__(
        self,
        max_norm: float = 1.0,
        *,
        shape: tuple[int, int],
        n_power_iterations: int = 1,
        eps: float = 1e-12,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(max_norm)
        if int(n_power_iterations) < 1:
            raise ConfigurationError(
                f"'n_power_iterations' must be at least 1. Got {n_power_iterations!r} instead."
            )
        self.n_power_iterations = int(n_power_iterations)
        self.eps = float(eps)
        out_features, in_features = shape
        u = torch.randn(out_features, generator=generator)
        v = torch.randn(in_features, generator=generator)
        self.register_buffer("u", u / u.norm().clamp_min(eps))
        self.register_buffer("v", v / v.norm().clamp_min(eps))

    @torch.no_grad()
    def _power_iteration(self, weight: torch.Tensor) -> None:
        for _ in range(self.n_power_iterations):
            v = weight.t().mv(self.u)
            self.v.copy_(v / v.norm().clamp_min(self.eps))
            u = weight.mv(self.v)
            self.u.copy_(u / u.norm().clamp_min(self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._power_iteration(weight.detach())
        sigma = torch.dot(self.u, weight.mv(self.v)).abs()
        factor = 1.0 / torch.clamp(sigma / self._target(), min=1.0)
        return weight * factor


def make_constraint(
    kind: str,
    max_norm: float,
    *,
    shape: tuple[int, int],
    variant: str = "clip",
    generator: torch.Generator | None = None,
) -> OperatorNormConstraint:
    """Build the constraint module named ``kind`` for a weight of the given ``shape``."""
    if kind == "l1":
        return L1Norm(max_norm, variant=variant)
    if kind == "l1-column":
        return ColumnL1Norm(max_norm)
    if kind == "linf-row":
        return RowLinfNorm(max_norm)
    if kind == "l1-linf":
        return ColumnMaxNorm(max_norm)
    if kind == "spectral":
        return SpectralNorm(max_norm, shape=shape, generator=generator)
    raise ConfigurationError(f"The norm 'kind' must be one of {NORM_KINDS}. Got {kind!r} instead.")


def lipschitz_norm(
    module: nn.Linear,
    kind: str = "l1-column",
    max_norm: float = 1.0,
    *,
    variant: str = "clip",
    enforce: str = "reparametrize",
    generator: torch.Generator | None = None,
) -> nn.Linear:
    """Constrain the operator norm of ``module.weight`` to at most ``max_norm``.

    Parameters
    ----------
    module : nn.Linear
        Any linear layer; it is modified in place and returned.
    kind : str
        One of :data:`NORM_KINDS`.
    max_norm : float
        The per-layer bound. Networks call this with :math:`\\lambda^{1/m}`.
    variant : {"clip", "rescale"}
        Only for ``kind="l1"`` (the two forms of Eq. 2.7).
    enforce : {"reparametrize", "project"}
        ``"reparametrize"`` registers a parametrization (gradients flow through the norm);
        ``"project"`` stores the constraint as ``module.weight_constraint`` and projects the
        weight once now; call :func:`project_weights_` (or use :func:`register_projection`) after
        every optimizer step.
    generator : torch.Generator, optional
        Seeds the power-iteration vectors of ``kind="spectral"``.

    Returns
    -------
    nn.Linear
        The same module.
    """
    if not isinstance(module, nn.Linear):
        raise ConfigurationError(
            f"lipschitz_norm expects an nn.Linear module. Got {type(module).__name__} instead."
        )
    if enforce not in ENFORCE_MODES:
        raise ConfigurationError(f"'enforce' must be one of {ENFORCE_MODES}. Got {enforce!r} instead.")
    if weight_constraint(module) is not None:
        raise ConfigurationError(f"{module!r} already carries a weight constraint.")
    constraint = make_constraint(
        kind, max_norm, shape=tuple(module.weight.shape), variant=variant, generator=generator
    )
    constraint.to(module.weight.device)
    if enforce == "reparametrize":
        with torch.no_grad():  # the registration's trial evaluation needs no graph (nor the training pass)
            parametrize.register_parametrization(module, "weight", constraint)
    else:
        if not constraint.idempotent:
            raise ConfigurationError(
                f"Projection needs an idempotent norm; the {kind!r} norm with variant {variant!r} "
                "rescales small weights up on every call. Use variant='clip' or enforce='reparametrize'."
            )
        module.weight_constraint = constraint
        weight_projector(module)()
    return module


def weight_constraint(module: nn.Module) -> OperatorNormConstraint | None:
    """The constraint attached to ``module`` by :func:`lipschitz_norm`, or None."""
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, OperatorNormConstraint):
                return p
    return _projection(module)


def _projection(module: nn.Module) -> "OperatorNormConstraint | None":
    """The constraint that ``enforce="project"`` stored on ``module``, if any."""
    constraint = getattr(module, "weight_constraint", None)
    return constraint if isinstance(constraint, OperatorNormConstraint) else None


def project_weights_(model: nn.Module) -> nn.Module:
    """Project every weight of ``model`` that was constrained with ``enforce="project"``."""
    weight_projector(model)()
    return model


def weight_projector(model: nn.Module):
    """:func:`project_weights_` for a training loop: the projected modules are found once.

    Returns a function of no arguments that projects them (it does nothing where ``model`` has
    none). It saves walking the module tree on every step, which costs about as much as a small
    network's optimizer step; modules added to ``model`` later are not seen.
    """
    projected = [(m, c) for m in model.modules() if (c := _projection(m)) is not None]

    @torch.no_grad()
    def project() -> None:
        for module, constraint in projected:
            module.weight.copy_(constraint(module.weight))

    return project


def register_projection(optimizer: torch.optim.Optimizer, models: nn.Module | Iterable[nn.Module]):
    """Project the weights of ``models`` after every ``optimizer.step()``.

    Returns the hook handle (call ``.remove()`` to detach it).
    """
    models = [models] if isinstance(models, nn.Module) else list(models)

    def hook(opt, args, kwargs):  # noqa: ARG001 - signature fixed by torch
        for model in models:
            project_weights_(model)

    return optimizer.register_step_post_hook(hook)
