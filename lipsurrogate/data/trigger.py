r"""A seeded simulation of two-track decay-vertex candidates for the LHCb-like trigger task.

No public data set of LHCb's first-stage two-track trigger exists, so :func:`simulate_trigger`
builds one from a few lines of kinematics and detector resolution. It is a *toy* with the
structure that matters for the paper of Kitouni, Nolte & Williams (section 4.1): signal comes
from b hadrons whose displacement grows with their proper lifetime, and each background
dominates a different corner of the feature space, so the most displaced candidates are mostly
background in the training sample even though long-lived signal lives there too.

Features (one row per candidate)
--------------------------------
``sumpt``
    Scalar sum of the two tracks' transverse momenta, GeV.
``minipchi2``
    :math:`\log` of the smaller of the two tracks' impact-parameter :math:`\chi^2` with respect to
    the primary vertex (PV).
``fdchi2``
    :math:`\log` of the flight-distance :math:`\chi^2` of the two-track vertex from the PV.
``vchi2``
    :math:`\chi^2` of the two-track vertex fit (one degree of freedom).

Populations
-----------
Resolutions used throughout: flight distance :math:`\sigma_L = 0.2` mm, impact parameter
:math:`\sigma_{IP}(p_T) = (0.015 + 0.029/p_T[\mathrm{GeV}])` mm (LHCb's VELO parametrisation);
measured quantities are the true ones plus Gaussian noise, with 5% of tracks given a 3x wider
core (non-Gaussian tails). :math:`\chi^2` values are (measured / sigma)^2, floored at
:math:`10^{-3}` before the log. Every track has :math:`p_T \ge 0.5` GeV.

``signal`` (code 0)
    b hadron (:math:`m = 5.28` GeV) with proper decay time :math:`t \sim \mathrm{Exp}(\tau)`,
    :math:`\tau = 1.5` ps (or, with ``lifetime="uniform"``, :math:`t \sim U(0, t_{max})` for
    efficiency-versus-lifetime studies), transverse momentum :math:`p_T^B \sim
    2\,\mathrm{GeV} + \Gamma(k=3, \theta=3.5\,\mathrm{GeV})`, pseudorapidity :math:`\eta \sim U(2, 5)`. Flight
    distance :math:`L = \beta\gamma c t` with :math:`\beta\gamma = p/m`. The two reconstructed
    tracks carry fractions :math:`u_i \sim \mathrm{Beta}(3, 3) \cdot 0.5` of the b momentum; each
    leaves the b direction at the angle :math:`p^* \sin\theta^* / p_i` (:math:`p^* \sim U(0.5, 2.5)`
    GeV, isotropic :math:`\theta^*`), so its true impact parameter is :math:`L p^*\sin\theta^*/p_i`
    (proportional to :math:`c t`, nearly independent of the boost). Vertex :math:`\chi^2 \sim
    \chi^2_1`. The true proper time (ps) is kept per candidate (``lifetime``).
``prompt`` (code 1)
    Two tracks from the PV: true flight distance and impact parameters zero, so the measured
    :math:`\chi^2` are :math:`\chi^2_1`-like with tails; small :math:`p_T`: each track
    :math:`0.5 + \Gamma(2, 0.45)` GeV. Vertex :math:`\chi^2 \sim \chi^2_1`.
``material`` (code 2)
    Hadronic interactions in the detector material (the RF foil and VELO modules): a true vertex
    at radius :math:`r \sim U(6, 25)` mm and polar angle with :math:`\eta \sim U(2, 5)`, so the flight
    distance is :math:`r \cosh\eta` -- far larger than most b decays; the tracks do not point back to
    the PV (true impact parameter :math:`r \cdot |\mathcal N(0, 0.35)|`). Small :math:`p_T`: each
    track :math:`0.5 + \Gamma(2, 0.3)` GeV. Vertex :math:`\chi^2 \sim 1.5\,\chi^2_1`.
``fake`` (code 3)
    One real prompt track combined with a fake (ghost) track whose curvature is mis-measured, so
    its :math:`p_T` is large: :math:`1 + \Gamma(1.5, 4)` GeV, the real one :math:`0.5 + \Gamma(2, 0.6)`
    GeV. The fake track's impact parameter is :math:`|\mathcal N(0, 0.3)|` mm, the flight distance of
    the random vertex :math:`|\mathcal N(0, 1)|` mm with a 3x worse resolution, and the vertex fit is
    bad: :math:`\chi^2 \sim 4\,\chi^2_1 + \mathrm{Exp}(3)`.

The background mix defaults to 80% prompt, 8% material, 12% fake.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ConfigurationError, DataSchemaError

__all__ = ["simulate_trigger", "trigger_arrays", "FEATURES", "POPULATIONS", "MONOTONIC", "C_MM_PER_PS"]

FEATURES = ("sumpt", "minipchi2", "fdchi2", "vchi2")
"""Feature names, in column order."""

MONOTONIC = (1, 1, 1, 0)
"""The physics prior: the response must not decrease with sumpt, minipchi2 or fdchi2; vchi2 is free."""

POPULATIONS = ("signal", "prompt", "material", "fake")
"""Population names; ``population`` holds the index into this tuple."""

UNITS = {"sumpt": "GeV", "minipchi2": "log(chi2)", "fdchi2": "log(chi2)", "vchi2": "chi2", "lifetime": "ps"}
LONG_NAMES = {
    "sumpt": "scalar sum of the two tracks' transverse momenta",
    "minipchi2": "log of the smaller track impact-parameter chi2",
    "fdchi2": "log of the flight-distance chi2",
    "vchi2": "two-track vertex-fit chi2",
    "lifetime": "true proper decay time of the b hadron (NaN for background)",
    "label": "1 for signal, 0 for background",
    "population": "index into attrs['populations']",
}

C_MM_PER_PS = 0.299792458
"""Speed of light in mm/ps (c tau of a 1.5 ps b hadron is 0.45 mm)."""

_M_B = 5.28  # GeV
_SIGMA_L = 0.2  # mm
_TAIL_FRACTION = 0.05
_CHI2_FLOOR = 1e-3


def _sigma_ip(pt: np.ndarray) -> np.ndarray:
    return 0.015 + 0.029 / pt


def _smear(rng, true, sigma):
    wide = rng.random(true.shape) < _TAIL_FRACTION
    return true + rng.normal(size=true.shape) * sigma * np.where(wide, 3.0, 1.0)


def _log_chi2(measured, sigma):
    return np.log(np.maximum((measured / sigma) ** 2, _CHI2_FLOOR))


def _two_tracks(rng, true_ip1, true_ip2, pt1, pt2, true_fd, sigma_fd, vchi2):
    ip1 = _smear(rng, true_ip1, _sigma_ip(pt1))
    ip2 = _smear(rng, true_ip2, _sigma_ip(pt2))
    minip = np.minimum(_log_chi2(ip1, _sigma_ip(pt1)), _log_chi2(ip2, _sigma_ip(pt2)))
    fd = _smear(rng, true_fd, sigma_fd)
    return np.stack([pt1 + pt2, minip, _log_chi2(fd, sigma_fd), vchi2], axis=1)


def _signal(rng, n, tau, lifetime, t_max):
    if lifetime == "exponential":
        t = rng.exponential(tau, n)
    else:
        t = rng.uniform(0.0, t_max, n)
    pt_b = rng.gamma(3.0, 3.5, n) + 2.0
    eta = rng.uniform(2.0, 5.0, n)
    p_b = pt_b * np.cosh(eta)
    flight = p_b / _M_B * C_MM_PER_PS * t
    u = 0.5 * rng.beta(3.0, 3.0, (2, n))
    pt = np.maximum(u * pt_b, 0.5)
    p = pt * np.cosh(eta)
    p_star = rng.uniform(0.5, 2.5, (2, n))
    sin_star = np.sqrt(1.0 - rng.uniform(-1.0, 1.0, (2, n)) ** 2)
    ip = flight * p_star * sin_star / p
    x = _two_tracks(rng, ip[0], ip[1], pt[0], pt[1], flight, _SIGMA_L, rng.chisquare(1, n))
    return x, t


def _prompt(rng, n):
    pt = 0.5 + rng.gamma(2.0, 0.45, (2, n))
    zero = np.zeros(n)
    return _two_tracks(rng, zero, zero, pt[0], pt[1], zero, _SIGMA_L, rng.chisquare(1, n))


def _material(rng, n):
    r = rng.uniform(6.0, 25.0, n)
    eta = rng.uniform(2.0, 5.0, n)
    pt = 0.5 + rng.gamma(2.0, 0.3, (2, n))
    ip = r * np.abs(rng.normal(0.0, 0.35, (2, n)))
    return _two_tracks(rng, ip[0], ip[1], pt[0], pt[1], r * np.cosh(eta), _SIGMA_L, 1.5 * rng.chisquare(1, n))


def _fake(rng, n):
    pt_fake = 1.0 + rng.gamma(1.5, 4.0, n)
    pt_real = 0.5 + rng.gamma(2.0, 0.6, n)
    ip_fake = np.abs(rng.normal(0.0, 0.3, n))
    fd = np.abs(rng.normal(0.0, 1.0, n))
    vchi2 = 4.0 * rng.chisquare(1, n) + rng.exponential(3.0, n)
    return _two_tracks(rng, ip_fake, np.zeros(n), pt_fake, pt_real, fd, 3 * _SIGMA_L, vchi2)


def simulate_trigger(
    n: int,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    signal_fraction: float = 0.5,
    background_mix: tuple[float, float, float] = (0.80, 0.08, 0.12),
    tau: float = 1.5,
    lifetime: str = "exponential",
    t_max: float = 15.0,
):
    r"""Simulate ``n`` two-track candidates (see the module docstring for every distribution).

    Parameters
    ----------
    n : int
        Number of candidates; ``round(n * signal_fraction)`` of them are signal.
    seed, rng : optional
        Exactly one source of randomness: a seed or a :class:`numpy.random.Generator`
        (neither means seed 0, so the default is reproducible too).
    signal_fraction : float
        Fraction of signal, in [0, 1].
    background_mix : 3 floats
        Relative amounts of prompt, material and fake background (normalised here).
    tau : float
        Mean proper lifetime of the b hadrons, ps.
    lifetime : {"exponential", "uniform"}
        Proper-time distribution of the signal: :math:`\mathrm{Exp}(\tau)` (physics) or
        :math:`U(0, t_{max})` (flat, to measure efficiency versus lifetime with enough long-lived
        candidates).
    t_max : float
        Upper end of the flat lifetime distribution, ps.

    Returns
    -------
    xarray.Dataset
        Dimension ``candidate``; variables ``sumpt``, ``minipchi2``, ``fdchi2``, ``vchi2``
        (float64), ``label`` (int8, 1 = signal), ``population`` (int8, index into
        ``attrs["populations"]``) and ``lifetime`` (true proper time in ps, NaN for background),
        each with ``units`` and ``long_name``. Rows are shuffled. The values are exact outputs of
        the simulation (no estimate involved).
    """
    import xarray as xr

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigurationError(f"'n' must be a positive integer. Got {n!r} instead.")
    if seed is not None and rng is not None:
        raise ConfigurationError("Pass either 'seed' or 'rng' to simulate_trigger, not both.")
    if not 0.0 <= float(signal_fraction) <= 1.0:
        raise ConfigurationError(f"'signal_fraction' must lie in [0, 1]. Got {signal_fraction!r} instead.")
    mix = np.asarray(background_mix, dtype=np.float64)
    if mix.shape != (3,) or np.any(mix < 0) or not np.isfinite(mix).all() or mix.sum() <= 0:
        raise ConfigurationError(
            f"'background_mix' must be 3 non-negative numbers (prompt, material, fake). Got {background_mix!r} instead."
        )
    if lifetime not in ("exponential", "uniform"):
        raise ConfigurationError(f"'lifetime' must be 'exponential' or 'uniform'. Got {lifetime!r} instead.")
    if not (tau > 0 and t_max > 0):
        raise ConfigurationError(f"'tau' and 't_max' must be positive. Got {tau!r} and {t_max!r}.")
    if rng is None:
        rng = np.random.default_rng(0 if seed is None else seed)

    n_sig = int(round(n * float(signal_fraction)))
    counts = rng.multinomial(n - n_sig, mix / mix.sum()) if n > n_sig else np.zeros(3, dtype=int)
    parts, times, pops = [], [], []
    x, t = _signal(rng, n_sig, tau, lifetime, t_max)
    parts.append(x)
    times.append(t)
    pops.append(np.zeros(n_sig, dtype=np.int8))
    for code, (make, k) in enumerate(zip((_prompt, _material, _fake), counts), start=1):
        parts.append(make(rng, int(k)))
        times.append(np.full(int(k), np.nan))
        pops.append(np.full(int(k), code, dtype=np.int8))
    order = rng.permutation(n)
    x = np.concatenate(parts)[order]
    t = np.concatenate(times)[order]
    pop = np.concatenate(pops)[order]

    def var(values, name):
        attrs = {"long_name": LONG_NAMES[name]}
        if name in UNITS:
            attrs["units"] = UNITS[name]
        return ("candidate", values, attrs)

    data = {name: var(x[:, j], name) for j, name in enumerate(FEATURES)}
    data["label"] = var((pop == 0).astype(np.int8), "label")
    data["population"] = var(pop, "population")
    data["lifetime"] = var(t, "lifetime")
    return xr.Dataset(
        data,
        attrs={
            "title": "simulated two-track trigger candidates (lipsurrogate.data.trigger)",
            "populations": list(POPULATIONS),
            "features": list(FEATURES),
            "signal_fraction": float(signal_fraction),
            "background_mix": mix.tolist(),
            "tau_ps": float(tau),
            "lifetime_distribution": lifetime,
            "t_max_ps": float(t_max),
        },
    )


def trigger_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a :func:`simulate_trigger` dataset: features (n, 4) float64 and labels (n,) int."""
    missing = [name for name in (*FEATURES, "label") if name not in ds]
    if missing:
        raise DataSchemaError(f"Expected a trigger dataset with variables {[*FEATURES, 'label']}. Missing {missing}.")
    x = np.stack([ds[name].values.astype(np.float64) for name in FEATURES], axis=1)
    return x, ds["label"].values.astype(np.int64)
