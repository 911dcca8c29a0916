r"""Closed-form solutions of the heat equation :math:`u_t = \kappa \Delta u` in two dimensions.

Periodic square :math:`[0, \ell]^2` (default :math:`\ell = 2\pi`), initial condition a finite
Fourier sum with integer wave vectors :math:`k = (k_x, k_y)`:

.. math::

    u_0(x) = \sum_k a_k \cos(\omega k \cdot x) + b_k \sin(\omega k \cdot x), \qquad
    u(x, t) = \sum_k e^{-\kappa \omega^2 |k|^2 t} \big(a_k \cos(\omega k\cdot x) + b_k \sin(\omega k\cdot x)\big),

with :math:`\omega = 2\pi / \ell`. Dirichlet box :math:`[0, \ell]^2` with :math:`u = 0` on the
boundary and sine modes :math:`u_0 = \sum_{m,n} c_{mn} \sin(m\pi x/\ell)\sin(n\pi y/\ell)`:
each mode decays with :math:`e^{-\kappa \pi^2 (m^2 + n^2) t / \ell^2}`.

The bounds on derivatives (:meth:`HeatModes.gradient_bounds`, :meth:`HeatModes.laplacian_bound`)
are **certified upper bounds** by the triangle inequality,
:math:`|a\cos\theta + b\sin\theta| \le \sqrt{a^2 + b^2}`; they are what the heat equation's
maximum principle needs (certificates.md section 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .._validation import positive_float, positive_int
from ..exceptions import ConfigurationError

__all__ = ["HeatModes", "random_periodic_modes", "random_dirichlet_modes"]

BOUNDARIES = ("periodic", "dirichlet")


@dataclass(frozen=True)
class HeatModes:
    """The Fourier modes of a heat-equation initial condition, and the exact solution.

    Attributes
    ----------
    wavevectors : ndarray of int, shape (n, 2)
        Integer wave vectors :math:`k` (periodic) or mode numbers :math:`(m, n) \\ge 1`
        (Dirichlet).
    cos, sin : ndarray, shape (n,)
        Coefficients :math:`a_k, b_k` (periodic). For Dirichlet, ``cos`` holds :math:`c_{mn}` and
        ``sin`` is zero.
    length : float
        Side :math:`\\ell` of the square.
    boundary : {"periodic", "dirichlet"}
    """

    wavevectors: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    length: float = 2 * np.pi
    boundary: str = "periodic"

    def __post_init__(self) -> None:
        k = np.asarray(self.wavevectors)
        if k.ndim != 2 or k.shape[1] != 2 or not np.issubdtype(k.dtype, np.integer):
            raise ConfigurationError(f"'wavevectors' must be integers of shape (n, 2). Got {k.dtype} {k.shape}.")
        if np.shape(self.cos) != (len(k),) or np.shape(self.sin) != (len(k),):
            raise ConfigurationError("'cos' and 'sin' need one coefficient per wave vector.")
        if self.boundary not in BOUNDARIES:
            raise ConfigurationError(f"'boundary' must be one of {BOUNDARIES}. Got {self.boundary!r}.")
        if self.boundary == "dirichlet" and (np.any(k < 1) or np.any(np.asarray(self.sin) != 0)):
            raise ConfigurationError("Dirichlet modes need mode numbers >= 1 and sine coefficients only.")

    def _decay(self, kappa: float) -> np.ndarray:
        """Decay rates :math:`\\kappa \\omega^2 |k|^2` of the modes."""
        return kappa * self._omega() ** 2 * np.sum(np.asarray(self.wavevectors, float) ** 2, axis=1)

    def _omega(self) -> float:
        return 2 * np.pi / self.length if self.boundary == "periodic" else np.pi / self.length

    def solution(self, x, y, t, kappa: float) -> np.ndarray:
        """The exact solution :math:`u(x, y, t)` (broadcasting ``x``, ``y``, ``t``), in float64."""
        x, y, t = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, t)))
        k = np.asarray(self.wavevectors, dtype=np.float64)
        w = self._omega()
        out = np.zeros(x.shape)
        for (kx, ky), a, b, rate in zip(k, self.cos, self.sin, self._decay(kappa)):
            decay = np.exp(-rate * t)
            if self.boundary == "periodic":
                phase = w * (kx * x + ky * y)
                out += decay * (a * np.cos(phase) + b * np.sin(phase))
            else:
                out += decay * a * np.sin(w * kx * x) * np.sin(w * ky * y)
        return out

    def amplitudes(self) -> np.ndarray:
        """:math:`\\sqrt{a_k^2 + b_k^2}` per mode."""
        return np.hypot(self.cos, self.sin)

    def sup_bound(self) -> float:
        """Certified upper bound on :math:`\\max |u_0|` (hence on :math:`|u|` for all t)."""
        return float(self.amplitudes().sum())

    def gradient_bounds(self) -> np.ndarray:
        """Certified upper bounds on :math:`\\max|\\partial_x u_0|` and :math:`\\max|\\partial_y u_0|`.

        By the maximum principle (the heat kernel is a non-negative unit-mass convolution) they
        bound :math:`|\\partial_i u(\\cdot, t)|` for every :math:`t \\ge 0`.
        """
        k = np.abs(np.asarray(self.wavevectors, dtype=np.float64))
        return (self.amplitudes()[:, None] * k * self._omega()).sum(axis=0)

    def laplacian_bound(self) -> float:
        """Certified upper bound on :math:`\\max|\\Delta u_0|`; :math:`\\kappa` times it bounds :math:`|u_t|`."""
        k2 = np.sum(np.asarray(self.wavevectors, dtype=np.float64) ** 2, axis=1)
        return float((self.amplitudes() * k2 * self._omega() ** 2).sum())

    def to_json(self) -> str:
        """JSON text that :meth:`from_json` reads back exactly (floats as repr)."""
        return json.dumps(
            {
                "boundary": self.boundary,
                "length": self.length,
                "wavevectors": np.asarray(self.wavevectors).tolist(),
                "cos": [float(v) for v in self.cos],
                "sin": [float(v) for v in self.sin],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "HeatModes":
        d = json.loads(text)
        return cls(
            np.asarray(d["wavevectors"], dtype=np.int64),
            np.asarray(d["cos"], dtype=np.float64),
            np.asarray(d["sin"], dtype=np.float64),
            float(d["length"]),
            d["boundary"],
        )


def random_periodic_modes(
    rng: np.random.Generator, n_modes: int = 4, k_max: int = 3, amplitude: float = 1.0, length: float = 2 * np.pi
) -> HeatModes:
    """``n_modes`` distinct random integer wave vectors with ``1 <= |k| <= k_max`` (one per +-k pair).

    Coefficients are normal with standard deviation ``amplitude / sqrt(n_modes)``.
    """
    n_modes = positive_int("n_modes", n_modes)
    k_max = positive_int("k_max", k_max)
    positive_float("amplitude", amplitude)
    candidates = [
        (kx, ky)
        for kx in range(0, k_max + 1)
        for ky in range(-k_max, k_max + 1)
        if 0 < kx * kx + ky * ky <= k_max * k_max and (kx > 0 or ky > 0)
    ]
    if n_modes > len(candidates):
        raise ConfigurationError(
            f"Only {len(candidates)} wave vectors have 1 <= |k| <= {k_max}; got n_modes={n_modes}."
        )
    chosen = rng.choice(len(candidates), size=n_modes, replace=False)
    k = np.asarray([candidates[i] for i in sorted(chosen)], dtype=np.int64)
    scale = amplitude / np.sqrt(n_modes)
    return HeatModes(k, rng.normal(size=n_modes) * scale, rng.normal(size=n_modes) * scale, length, "periodic")


def random_dirichlet_modes(
    rng: np.random.Generator, n_modes: int = 4, k_max: int = 3, amplitude: float = 1.0, length: float = np.pi
) -> HeatModes:
    """``n_modes`` distinct random sine modes ``(m, n)`` with ``1 <= m, n <= k_max``."""
    n_modes = positive_int("n_modes", n_modes)
    k_max = positive_int("k_max", k_max)
    candidates = [(m, n) for m in range(1, k_max + 1) for n in range(1, k_max + 1)]
    if n_modes > len(candidates):
        raise ConfigurationError(f"Only {len(candidates)} sine modes have 1 <= m, n <= {k_max}; got {n_modes}.")
    chosen = rng.choice(len(candidates), size=n_modes, replace=False)
    k = np.asarray([candidates[i] for i in sorted(chosen)], dtype=np.int64)
    scale = amplitude / np.sqrt(n_modes)
    return HeatModes(k, rng.normal(size=n_modes) * scale, np.zeros(n_modes), length, "dirichlet")
