r"""What a certificate compares the network with: the reference :math:`u` and what is known of it.

:func:`lipsurrogate.bounds.certify` bounds :math:`\max |f - u|` over a box from three facts about
:math:`u`, which a :class:`Reference` supplies:

1. **values** :math:`u(v)` at the certificate's vertices in float64, with a certified bound on
   their rounding (a margin per point);
2. **slopes**: certified global bounds :math:`L_{u,k} \ge \sup_\text{box} |\partial_k u|`
   (:meth:`Reference.global_constants`), and, where available, certified ranges of
   :math:`\partial_k u` on sub-boxes (:meth:`Reference.derivative_intervals`) for local constants;
   the default range is :math:`[-L_{u,k}, L_{u,k}]`, always valid;
3. its **statement**: the level of the claim (certificates.md section 4), what :math:`u` is, and
   the assumptions the numbers rest on, printed with every certificate.

Shipped references
------------------
:class:`~lipsurrogate.bounds.interpolant.MultilinearInterpolant`
    The data's own multilinear interpolant, any number of inputs: level 1, no assumption.
:class:`HeatSolution`
    The closed-form periodic heat solution (fixed diffusivity, or the diffusivity as a fourth
    input): level 2, constants from the maximum principle.
:class:`FunctionReference`
    A user's callable with stated per-input Lipschitz constants: level 2 under the **user's**
    assumption, which the certificate prints as the user's.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..exceptions import CertificationError, ConfigurationError

__all__ = ["Reference", "HeatSolution", "FunctionReference"]


class Reference:
    """The protocol every reference follows (subclass it, or provide the same methods).

    Attributes
    ----------
    in_features : int
        Number of inputs :math:`d`.
    inputs : list of str or None
        Names of the inputs, in column order (None: ``x0, x1, ...``).
    """

    in_features: int
    inputs: list | None = None

    def values(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
        """:math:`u` at ``points`` (n, d) in float64, and a **certified** bound on its rounding error."""
        raise NotImplementedError

    def global_constants(self, box: np.ndarray) -> np.ndarray:
        """**Certified** bounds :math:`L_{u,k} \\ge \\sup_\\text{box} |\\partial_k u|`, shape (d,)."""
        raise NotImplementedError

    def derivative_intervals(self, lo: np.ndarray, hi: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """**Certified** ranges of :math:`\\partial_k u` on boxes ``[lo, hi]`` (each (n, d)).

        The default, valid for any reference, is :math:`[-L_{u,k}, L_{u,k}]` on every box.
        """
        L = self.global_constants(box)
        return np.broadcast_to(-L, lo.shape).copy(), np.broadcast_to(L, lo.shape).copy()

    def torch(self, points: torch.Tensor) -> torch.Tensor:
        """:math:`u` as a differentiable float64 torch function (adversarial search); optional."""
        raise NotImplementedError

    @property
    def has_torch(self) -> bool:
        """Whether :meth:`torch` is implemented (the adversarial sampler needs it)."""
        return type(self).torch is not Reference.torch

    def statement(self) -> dict:
        """What a certificate against this reference states.

        Keys: ``level`` (text starting with "level 1", "level 2", ...), ``bound_kind``,
        ``reference`` (what u is), ``assumptions`` (list of text), ``lipschitz_u_kind`` and
        ``lipschitz_u_source``.
        """
        raise NotImplementedError


def _check_points(points: np.ndarray, d: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != d:
        raise CertificationError(f"Expected points of shape (n, {d}). Got {points.shape}.")
    return points


class HeatSolution(Reference):
    r"""The exact periodic solution of :math:`u_t = \kappa \Delta u` from known Fourier modes (level 2).

    Inputs ``(x, y, t)`` at a fixed ``diffusivity``, or ``(x, y, t, kappa)`` when ``diffusivity``
    is None (one surrogate for a range of diffusivities). Values come from the closed form with
    the certified rounding bound of :meth:`~lipsurrogate.data.heat.HeatModes.rounding_bound`;
    global constants from the maximum principle applied to the initial condition,

    .. math::

        |\partial_i u| \le \max|\partial_i u_0|, \quad |u_t| \le \kappa_\max \max|\Delta u_0|, \quad
        |u_\kappa| = t |\Delta u| \le t_\max \max|\Delta u_0|,

    and local ranges from the exact modal ranges
    (:meth:`~lipsurrogate.data.heat.HeatModes.derivative_intervals`).

    Parameters
    ----------
    modes : HeatModes
        The initial condition (periodic).
    diffusivity : float or None
        :math:`\kappa`; None makes :math:`\kappa` the fourth input.
    """

    def __init__(self, modes, diffusivity: float | None = None) -> None:
        if modes.boundary != "periodic":
            raise ConfigurationError("HeatSolution needs periodic modes (the closed form with derivative ranges).")
        self.modes = modes
        self.diffusivity = None if diffusivity is None else float(diffusivity)
        self.in_features = 3 if diffusivity is not None else 4
        self.inputs = ["x", "y", "t"] + ([] if diffusivity is not None else ["kappa"])

    def _kappa(self, points: np.ndarray):
        return self.diffusivity if self.diffusivity is not None else points[:, 3]

    def values(self, points):
        pts = _check_points(points, self.in_features)
        u = self.modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], self._kappa(pts))
        kappa_max = self.diffusivity if self.diffusivity is not None else float(pts[:, 3].max(initial=0.0))
        # the phase rounding is absolute, so the bound grows with omega |k| |x|
        return u, self.modes.rounding_bound(pts[:, :3], kappa_max)

    def _check_box(self, box: np.ndarray) -> None:
        if box[2, 0] < 0 or (self.diffusivity is None and box[3, 0] <= 0):
            raise CertificationError(f"The heat solution is certified for t >= 0 and kappa > 0. Got the box {box.tolist()}.")

    def global_constants(self, box):
        box = np.asarray(box, dtype=np.float64)
        self._check_box(box)
        gx, gy = self.modes.gradient_bounds()
        lap = self.modes.laplacian_bound()
        if self.diffusivity is not None:
            return np.array([gx, gy, self.diffusivity * lap])
        return np.array([gx, gy, box[3, 1] * lap, box[2, 1] * lap])

    def derivative_intervals(self, lo, hi, box):
        if self.diffusivity is not None:
            return self.modes.derivative_intervals(lo, hi, self.diffusivity)
        return self.modes.parametric_derivative_intervals(lo, hi)

    def derivative_forms(self, lo, hi, centre, half, box):
        r"""Affine enclosures of :math:`\nabla u` on boxes (see :mod:`lipsurrogate.bounds.affine`).

        :math:`\partial_k u(x) = \partial_k u(x_c) + \sum_j \partial_j \partial_k u(\xi)\, \delta_j` for
        some :math:`\xi` on the segment from :math:`x_c` to :math:`x` (mean-value theorem; the
        segment lies in the box), so with the Hessian's certified range
        :math:`[H^-, H^+]` over the box (:meth:`~lipsurrogate.data.heat.HeatModes.hessian_intervals`)
        the form has the centre value's enclosure, generators :math:`(H^- + H^+)/2` and radius
        :math:`\sum_j (H^+ - H^-)_{kj} s_j / 2` plus the centre's half-width.
        """
        from .affine import DerivativeForms

        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        d = self.in_features
        at_centre = DerivativeForms.from_intervals(*self.derivative_intervals(centre, centre, box))
        if self.diffusivity is not None:
            kap = np.full((len(lo), 1), self.diffusivity)
            hlo, hhi = self.modes.hessian_intervals(lo, hi, kap, kap)
        else:
            hlo, hhi = self.modes.hessian_intervals(lo[:, :3], hi[:, :3], lo[:, 3:4], hi[:, 3:4])
        hlo, hhi = hlo[:, :d, :d], hhi[:, :d, :d]
        gen = 0.5 * (hlo + hhi)
        hrad = np.nextafter(np.maximum(hhi - gen, gen - hlo), np.inf)
        radius = (at_centre.radius + np.einsum("nkj,nj->nk", hrad, half)) * (1 + 8 * 2.0**-53) + 1e-300
        return DerivativeForms(at_centre.centre, gen, radius)

    def torch(self, points):
        m = self.modes
        w = 2 * np.pi / m.length
        k = torch.tensor(np.asarray(m.wavevectors, dtype=np.float64))
        a, b = torch.tensor(m.cos), torch.tensor(m.sin)
        q = torch.tensor(w**2 * np.sum(np.asarray(m.wavevectors, float) ** 2, axis=1))
        kappa = points[:, 3:4] if self.diffusivity is None else self.diffusivity
        phase = w * (points[:, :2] @ k.t())
        return (torch.exp(-(kappa * q) * points[:, 2:3]) * (a * torch.cos(phase) + b * torch.sin(phase))).sum(dim=1)

    def statement(self) -> dict:
        if self.diffusivity is not None:
            return {
                "level": "exact PDE solution: vertex values from the closed form, constants of u from theory",
                "bound_kind": "certified upper bound on max |f - u| over the whole space-time box",
                "reference": "exact closed-form solution",
                "assumptions": ["u is the exact solution of u_t = kappa Laplace(u) with the recorded initial condition",
                                "network certified as it computes in evaluation mode with the saved weights"],
                "lipschitz_u_kind": "certified upper bound (from theory)",
                "lipschitz_u_source": "heat maximum principle from the initial condition: |d_i u(t)| <= max|d_i u0| "
                                      "<= sum_k omega |k_i| sqrt(a_k^2 + b_k^2); |u_t| <= kappa max|Laplace u0| "
                                      "<= kappa sum_k omega^2 |k|^2 sqrt(a_k^2 + b_k^2)",
            }
        return {
            "level": "exact PDE solution for every kappa in the range: vertex values from the closed form, constants "
                     "of u from theory",
            "bound_kind": "certified upper bound on max |f - u| over the whole (x, y, t, kappa) box",
            "reference": "exact closed-form solution, kappa anywhere in the range",
            "assumptions": ["u is the exact solution of u_t = kappa Laplace(u) with the recorded initial condition, for "
                            "each kappa in the range", "network certified as it computes in evaluation mode"],
            "lipschitz_u_kind": "certified upper bound (from theory)",
            "lipschitz_u_source": "heat maximum principle from the initial condition: |d_i u| <= max|d_i u0|; |u_t| = "
                                  "kappa |Laplace u| <= kappa_max max|Laplace u0|; |u_kappa| = t |Laplace u| <= t_end "
                                  "max|Laplace u0|; with the modal sums sum_k omega |k_i| R_k and sum_k omega^2 |k|^2 R_k",
        }


class FunctionReference(Reference):
    r"""A user's function :math:`u` with the user's per-input Lipschitz constants (level 2, user's assumption).

    The certificate is exactly as good as the constants: if
    :math:`\sup |\partial_k u| \le L_k` fails, the bound can fail. The consistency check of the
    certifier refuses constants that the vertex values contradict, but it cannot prove them;
    every certificate therefore prints them as **the user's assumption**.

    Parameters
    ----------
    fn : callable
        ``points (n, d) float64 -> values (n,)``.
    lipschitz : sequence of float
        :math:`L_k \ge \sup |\partial u / \partial x_k|` over the certified box (the user's claim).
    inputs : sequence of str, optional
        Input names.
    margin : float
        A bound on the error of ``fn``'s values (rounding); 0 if they are exact.
    torch_fn : callable, optional
        The same function on float64 torch tensors (differentiable), for adversarial search.
    description : str
        What :math:`u` is, in words (printed).
    source : str
        Where the constants come from (printed).
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], lipschitz: Sequence[float], *,
                 inputs: Sequence[str] | None = None, margin: float = 0.0,
                 torch_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 description: str = "a user-supplied function", source: str = "stated by the user") -> None:
        L = np.asarray(lipschitz, dtype=np.float64)
        if L.ndim != 1 or len(L) == 0 or not np.all(np.isfinite(L)) or np.any(L < 0):
            raise ConfigurationError(f"'lipschitz' must be a list of finite non-negative constants, one per input. Got {lipschitz!r}.")
        if not (np.isfinite(margin) and margin >= 0):
            raise ConfigurationError(f"'margin' must be finite and non-negative. Got {margin!r}.")
        if inputs is not None and len(inputs) != len(L):
            raise ConfigurationError(f"'inputs' names {len(inputs)} inputs but 'lipschitz' has {len(L)} constants.")
        self.fn, self.lipschitz, self.margin, self.torch_fn = fn, L, float(margin), torch_fn
        self.in_features = len(L)
        self.inputs = None if inputs is None else list(inputs)
        self.description, self.source = description, source

    def values(self, points):
        pts = _check_points(points, self.in_features)
        u = np.asarray(self.fn(pts), dtype=np.float64).reshape(-1)
        if u.shape != (len(pts),):
            raise CertificationError(f"The reference function returned {u.size} values for {len(pts)} points.")
        if not np.all(np.isfinite(u)):
            i = int(np.flatnonzero(~np.isfinite(u))[0])
            raise CertificationError(f"The reference function returned a non-finite value at {pts[i].tolist()}.")
        return u, self.margin

    def global_constants(self, box):
        return self.lipschitz.copy()

    def torch(self, points):
        if self.torch_fn is None:
            raise NotImplementedError
        return self.torch_fn(points)

    @property
    def has_torch(self) -> bool:
        return self.torch_fn is not None

    def statement(self) -> dict:
        return {
            "level": "level 2 under the user's assumption: against the user's function, with the user's constants",
            "bound_kind": "certified upper bound on max |f - u| over the box, valid if the user's constants hold",
            "reference": self.description,
            "assumptions": [f"the user's assumption: |d u / d x_k| <= {self.lipschitz.tolist()} on the box "
                            f"({self.source}); not proven by lipsurrogate",
                            "the user's function values are exact up to the stated margin "
                            f"{self.margin:.3g}",
                            "network certified as it computes in evaluation mode with the saved weights"],
            "lipschitz_u_kind": "the user's assumption (not certified by lipsurrogate)",
            "lipschitz_u_source": self.source,
        }
