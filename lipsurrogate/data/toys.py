"""Seeded data of the toy problems of Kitouni, Nolte & Williams (sections 3 and 5).

Every generator takes an explicit ``rng`` (a :class:`numpy.random.Generator`) and returns
float64 numpy arrays, so the same seed gives the same data on every machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sine_with_outlier", "noisy_log", "oscillating_circle", "absolute_value", "two_moons"]


def sine_with_outlier(rng: np.random.Generator, n: int = 31, noise: float = 0.01, outlier: float = 1.0):
    """``y = sin(x) + noise`` on ``n`` points of [-3, 3], the middle point shifted by ``outlier``.

    Returns ``x`` (n, 1), ``y`` (n,) and the index of the outlier.
    """
    x = np.linspace(-3.0, 3.0, n)
    y = np.sin(x) + rng.normal(size=n) * noise
    k = n // 2
    y[k] += outlier
    return x[:, None], y, k


def noisy_log(
    rng: np.random.Generator,
    n: int = 40,
    segments: tuple[tuple[float, float], ...] = ((1.0, 3.0), (4.0, 5.0)),
    noise: tuple[float, float] = (0.01, 0.3),
):
    """``y = log(x) + e`` with the noise scale growing linearly in ``x``.

    The points lie on ``segments`` (by default [1, 3] and [4, 5]: the gap (3, 4) tests
    interpolation and everything beyond 5 is a missing tail that tests extrapolation). Returns
    ``x`` (n, 1) sorted and ``y`` (n,).
    """
    per = n // len(segments)
    x = np.concatenate([np.linspace(a, b, per) for a, b in segments])
    scale = np.interp(x, [x.min(), x.max()], noise)
    y = np.log(x) + rng.normal(size=x.shape) * scale
    return x[:, None], y


def oscillating_circle(
    rng: np.random.Generator,
    n: int = 300,
    radii: tuple[float, ...] = (1.0, 1.5, 2.0),
    alpha: float = 0.18,
    frequency: int = 11,
    jitter: float = 0.0,
):
    r"""Points on the curves :math:`r(\theta) = r_0 (1 - \alpha \cos(k\theta))`, target :math:`r_0`.

    A regression problem whose level sets are circles with an oscillating radius (r = 1.5 is the
    middle one, alpha = 0.18). Returns ``xy`` (n * len(radii), 2) and the base radius of each
    point.
    """
    theta = rng.uniform(0.0, 2 * np.pi, size=n)
    points, targets = [], []
    for r0 in radii:
        r = r0 * (1 - alpha * np.cos(frequency * theta)) + rng.normal(size=n) * jitter
        points.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        targets.append(np.full(n, r0))
    return np.concatenate(points), np.concatenate(targets)


def absolute_value(n: int = 101):
    """``y = |x|`` on ``n`` evenly spaced points of [-1, 1] (noise-free)."""
    x = np.linspace(-1.0, 1.0, n)
    return x[:, None], np.abs(x)


def two_moons(rng: np.random.Generator, n: int = 1000, noise: float = 0.1, standardize: bool = True):
    """Two interleaving half circles with Gaussian noise (as ``sklearn.datasets.make_moons``).

    Returns ``x`` (n, 2) and labels ``y`` (n,) in {0, 1}, shuffled; standardised to zero mean
    and unit variance per feature when ``standardize``.
    """
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(size=(n, 2)) * noise
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    order = rng.permutation(n)
    x, y = x[order], y[order]
    if standardize:
        x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x, y
