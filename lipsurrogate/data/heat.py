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

    def solution(self, x, y, t, kappa) -> np.ndarray:
        """The exact solution :math:`u(x, y, t)` (broadcasting ``x``, ``y``, ``t`` and ``kappa``), in float64."""
        x, y, t, kappa = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, t, kappa)))
        k = np.asarray(self.wavevectors, dtype=np.float64)
        w = self._omega()
        out = np.zeros(x.shape)
        for (kx, ky), a, b, q in zip(k, self.cos, self.sin, self._decay(1.0)):
            decay = np.exp(-(kappa * q) * t)
            if self.boundary == "periodic":
                phase = w * (kx * x + ky * y)
                out += decay * (a * np.cos(phase) + b * np.sin(phase))
            else:
                out += decay * a * np.sin(w * kx * x) * np.sin(w * ky * y)
        return out

    def rounding_bound(self, points: np.ndarray, kappa: float) -> float:
        r"""Bound on the float64 rounding error of :meth:`solution` at ``points`` (n, 3) of (x, y, t).

        Per mode, the phase :math:`\omega (k_x x + k_y y)` is computed with an absolute error of at
        most :math:`4u P`, :math:`P = \omega(|k_x| \max|x| + |k_y| \max|y|)`, which ``cos``/``sin``
        pass on (they are 1-Lipschitz) plus one ulp of their own; the decay
        :math:`e^{-\lambda t}` has a relative error of at most :math:`u(2 + 6 \lambda t)`. With
        generous constants: :math:`\sum_k (|a_k| + |b_k|)\, u\, (16 + 8P + 8\lambda_k t_{max})`,
        plus :math:`4 n u \sup|u_0|` for the sum over modes. Grows with :math:`\omega|k||x|`, as it
        must: the phase rounding is absolute.
        """
        pts = np.asarray(points, dtype=np.float64)
        if len(pts) == 0:
            return 0.0
        xmax, ymax, tmax = np.abs(pts).max(axis=0)
        k = np.abs(np.asarray(self.wavevectors, dtype=np.float64))
        phase = self._omega() * (k[:, 0] * xmax + k[:, 1] * ymax)
        per_mode = (np.abs(self.cos) + np.abs(self.sin)) * (16 + 8 * phase + 8 * self._decay(float(np.max(kappa))) * tmax)
        return float(2.0**-53 * (per_mode.sum() + 4 * len(k) * self.sup_bound()))

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

    def derivative_intervals(self, lo: np.ndarray, hi: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
        r"""Certified intervals of :math:`(\partial_x u, \partial_y u, \partial_t u)` on boxes.

        ``lo``, ``hi`` have shape (n, 3) with columns (x, y, t), t >= 0. Each mode contributes
        :math:`e^{-\lambda t}` (monotone, so its range is exact at the time ends) times a
        shifted cosine of the phase (exact range over the phase interval, see
        :func:`lipsurrogate.bounds.local.cos_range`); products and sums use interval arithmetic,
        widened by a rounding margin. Returns ``(dlo, dhi)``, each (n, 3).
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        kap = np.full((len(lo), 1), float(kappa))
        dlo, dhi = self._intervals(lo, hi, kap, kap)
        return dlo[:, :3], dhi[:, :3]

    def parametric_derivative_intervals(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Certified intervals of :math:`(\partial_x u, \partial_y u, \partial_t u, \partial_\kappa u)` on boxes of (x, y, t, kappa).

        With :math:`q = \omega^2 |k|^2`, each mode is :math:`e^{-q \kappa t} R \cos(p - \varphi)`:
        :math:`e^{-q\kappa t}` is monotone in :math:`\kappa t \in [\kappa_{lo} t_{lo}, \kappa_{hi} t_{hi}]`
        (t, kappa >= 0); :math:`\partial_t` brings :math:`-q \kappa` and :math:`\partial_\kappa`
        brings :math:`-q t`, whose positive ranges multiply the exponential's.
        """
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        if np.any(lo[:, 3] <= 0) or np.any(lo[:, 2] < 0):
            raise ConfigurationError("Parametric heat intervals need kappa > 0 and t >= 0.")
        return self._intervals(lo[:, :3], hi[:, :3], lo[:, 3:4], hi[:, 3:4])

    def _intervals(self, lo, hi, kap_lo, kap_hi):
        from ..bounds.local import cos_range

        if self.boundary != "periodic":
            raise ConfigurationError("derivative_intervals is implemented for periodic modes.")
        w = self._omega()
        k = np.asarray(self.wavevectors, dtype=np.float64)
        q = self._decay(1.0)[None]  # omega^2 |k|^2, (1, modes)
        xc, xr = (lo[:, :2] + hi[:, :2]) / 2, (hi[:, :2] - lo[:, :2]) / 2
        pc = w * xc @ k.T  # (n, modes)
        pr = w * xr @ np.abs(k).T
        amp = self.amplitudes()
        e_lo = np.exp(-q * (kap_hi * hi[:, 2:3]))
        e_hi = np.exp(-q * (kap_lo * lo[:, 2:3]))
        # a cos p + b sin p = R cos(p - phi), phi = atan2(b, a)
        phi = np.arctan2(self.sin, self.cos)
        val_lo, val_hi = cos_range(pc - phi, pr)
        # d/dp (a cos p + b sin p) = -a sin p + b cos p = R cos(p - phi + pi/2)
        der_lo, der_hi = cos_range(pc - phi + np.pi / 2, pr)
        out_lo, out_hi = np.zeros((len(lo), 4)), np.zeros((len(lo), 4))
        for axis in range(2):
            c = amp * w * k[:, axis]  # (modes,)
            lo_m, hi_m = _interval_product(e_lo, e_hi, c * der_lo, c * der_hi)
            out_lo[:, axis], out_hi[:, axis] = lo_m.sum(1), hi_m.sum(1)
        # d/dt: -q kappa e R cos(.) ; d/dkappa: -q t e R cos(.), with kappa e and t e in positive ranges
        for axis, (f_lo, f_hi) in ((2, (kap_lo, kap_hi)), (3, (lo[:, 2:3], hi[:, 2:3]))):
            m_lo, m_hi = f_lo * e_lo, f_hi * e_hi
            lo_m, hi_m = _interval_product(m_lo, m_hi, -amp * q * val_lo, -amp * q * val_hi)
            out_lo[:, axis], out_hi[:, axis] = lo_m.sum(1), hi_m.sum(1)
        # per box: its own terms are at most |grad u_0| (x, y) and |lap u_0| kappa_hi, |lap u_0| t_hi (t,
        # kappa), so a box's pad (and its intervals) depend on that box alone
        scale = 1 + self.laplacian_bound() * (1 + kap_hi + hi[:, 2:3]) + self.gradient_bounds().sum()
        pad = 1e-12 * scale
        return out_lo - pad, out_hi + pad

    def hessian_intervals(self, lo: np.ndarray, hi: np.ndarray, kap_lo: np.ndarray, kap_hi: np.ndarray):
        r"""Certified ranges of the second derivatives of :math:`u` in :math:`(x, y, t, \kappa)` on boxes.

        ``lo``, ``hi`` (n, 3) hold (x, y, t) with t >= 0, ``kap_lo``, ``kap_hi`` (n, 1) the
        diffusivity range (equal ends for a fixed diffusivity, whose :math:`\kappa` rows are then
        not used). Mode by mode, :math:`u_m = g\,h` with :math:`g = e^{-\sigma}`,
        :math:`\sigma = q\kappa t`, and :math:`h = R\cos(p - \varphi)`:

        .. math::

            \partial_i\partial_j u_m = g\, R\omega^2 k_i k_j \cos(p - \varphi + \pi), \quad
            \partial_t\partial_i u_m = -q (\kappa g)\, \partial_i h, \quad
            \partial_\kappa\partial_i u_m = -q (t g)\, \partial_i h,

        :math:`\partial_t^2 u_m = q^2 (\kappa^2 g) h`, :math:`\partial_\kappa^2 u_m = q^2 (t^2 g) h` and
        :math:`\partial_t\partial_\kappa u_m = q (\sigma - 1) e^{-\sigma} h`, where the positive factors
        are monotone in the box's ends and :math:`(\sigma - 1)e^{-\sigma}` peaks at :math:`\sigma = 2`.
        Products and sums in interval arithmetic, widened by :math:`10^{-12}` of the sum of the
        terms' magnitudes (float64 and libm rounding, generously). Returns ``(hlo, hhi)``, (n, 4, 4).
        """
        from ..bounds.local import cos_range

        if self.boundary != "periodic":
            raise ConfigurationError("hessian_intervals is implemented for periodic modes.")
        w = self._omega()
        k = np.asarray(self.wavevectors, dtype=np.float64)
        q = self._decay(1.0)[None]  # (1, modes)
        xc, xr = (lo[:, :2] + hi[:, :2]) / 2, (hi[:, :2] - lo[:, :2]) / 2
        pc, pr = w * xc @ k.T, w * xr @ np.abs(k).T
        amp = self.amplitudes()
        phi = np.arctan2(self.sin, self.cos)
        t_lo, t_hi = lo[:, 2:3], hi[:, 2:3]
        sig_lo, sig_hi = q * (kap_lo * t_lo), q * (kap_hi * t_hi)
        g_lo, g_hi = np.exp(-sig_hi), np.exp(-sig_lo)
        h0 = cos_range(pc - phi, pr)  # h / R
        h1 = cos_range(pc - phi + np.pi / 2, pr)  # (d h / d p) / R
        h2 = cos_range(pc - phi + np.pi, pr)  # (d^2 h / d p^2) / R
        psi = lambda s: (s - 1.0) * np.exp(-s)  # noqa: E731
        psi_lo = np.minimum(psi(sig_lo), psi(sig_hi))
        psi_hi = np.where((sig_lo <= 2) & (sig_hi >= 2), np.exp(-2.0), np.maximum(psi(sig_lo), psi(sig_hi)))
        factors = {  # positive (or signed, for psi) ranges multiplying h or its derivatives
            "g": (g_lo, g_hi), "kg": (kap_lo * g_lo, kap_hi * g_hi), "tg": (t_lo * g_lo, t_hi * g_hi),
            "kkg": (kap_lo**2 * g_lo, kap_hi**2 * g_hi), "ttg": (t_lo**2 * g_lo, t_hi**2 * g_hi), "psi": (psi_lo, psi_hi),
        }
        n = len(lo)
        out_lo, out_hi = np.zeros((n, 4, 4)), np.zeros((n, 4, 4))

        def put(i, j, factor, coef, h):
            flo, fhi = factors[factor]
            lo_m, hi_m = _interval_product(flo, fhi, coef * amp * h[0], coef * amp * h[1])
            pad = 1e-12 * np.maximum(np.abs(lo_m), np.abs(hi_m)).sum(1) + 1e-300
            out_lo[:, i, j] = out_lo[:, j, i] = lo_m.sum(1) - pad
            out_hi[:, i, j] = out_hi[:, j, i] = hi_m.sum(1) + pad

        for i in range(2):
            for j in range(i, 2):
                put(i, j, "g", w * w * k[:, i] * k[:, j], h2)
            put(2, i, "kg", -q[0] * w * k[:, i], h1)
            put(3, i, "tg", -q[0] * w * k[:, i], h1)
        put(2, 2, "kkg", q[0] ** 2, h0)
        put(3, 3, "ttg", q[0] ** 2, h0)
        put(2, 3, "psi", q[0], h0)
        return out_lo, out_hi

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
        """The modes written by :meth:`to_json`."""
        d = json.loads(text)
        return cls(
            np.asarray(d["wavevectors"], dtype=np.int64),
            np.asarray(d["cos"], dtype=np.float64),
            np.asarray(d["sin"], dtype=np.float64),
            float(d["length"]),
            d["boundary"],
        )


def _interval_product(alo, ahi, blo, bhi):
    """Elementwise interval product [alo, ahi] * [blo, bhi] (endpoints in any order for b)."""
    blo, bhi = np.minimum(blo, bhi), np.maximum(blo, bhi)
    cands = np.stack([alo * blo, alo * bhi, ahi * blo, ahi * bhi])
    return cands.min(0), cands.max(0)


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
