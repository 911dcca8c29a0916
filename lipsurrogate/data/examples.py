r"""A small example of "a user's own file": a 3-input field with its own names, order and dtype.

:func:`example_field` writes what a user's solver might: a variable ``temperature`` over dims
named ``time``, ``kappa``, ``position`` (in that order), float32, with ``units`` attributes. The
values are the closed-form solution of the 1-D heat equation with Dirichlet ends and a linear
steady part,

.. math::

    u(t, \kappa, x) = \sum_{n=1}^{N} a_n \sin(n \pi x)\, e^{-\kappa n^2 \pi^2 t} + s\,x ,

with amplitudes :math:`a_n` drawn from ``rng`` (decaying as :math:`1/n`), so the field is
**exact** at the grid points up to float32 rounding. It serves the README, the tests and
``benchmarks/bench_field_file.py``; nothing in the library depends on it.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["example_field"]


def example_field(
    *,
    times: int = 21,
    kappas: int = 9,
    positions: int = 65,
    t_end: float = 0.5,
    kappa_range: tuple[float, float] = (0.02, 0.1),
    modes: int = 3,
    slope: float = 0.2,
    rng: np.random.Generator | int | None = 0,
) -> xr.Dataset:
    """The example dataset: ``temperature(time, kappa, position)`` in float32 with units.

    Parameters
    ----------
    times, kappas, positions : int
        Grid points per axis (``time`` in [0, t_end], ``kappa`` in ``kappa_range``, ``position``
        in [0, 1]).
    modes : int
        Number of sine modes :math:`N`.
    slope : float
        The steady linear part :math:`s x`.
    rng : numpy Generator or seed
        Draws the amplitudes.

    Returns
    -------
    xarray.Dataset
        One variable, ``temperature``; coordinates with ``units``; ``attrs["equation"]`` states
        the formula.
    """
    rng = np.random.default_rng(rng)
    t = np.linspace(0.0, t_end, times)
    kappa = np.linspace(*kappa_range, kappas)
    x = np.linspace(0.0, 1.0, positions)
    n = np.arange(1, modes + 1)
    amplitudes = rng.uniform(0.5, 1.0, modes) * rng.choice([-1.0, 1.0], modes) / n
    decay = np.exp(-kappa[None, :, None] * (n[:, None, None] * np.pi) ** 2 * t[None, None, :])  # (n, kappa, t)
    shapes = np.sin(np.pi * n[:, None] * x[None, :])  # (n, x)
    u = np.einsum("n,nkt,nx->tkx", amplitudes, decay, shapes) + slope * x[None, None, :]
    coords = {
        "time": ("time", t.astype(np.float32), {"units": "s"}),
        "kappa": ("kappa", kappa.astype(np.float32), {"units": "m2 s-1"}),
        "position": ("position", x.astype(np.float32), {"units": "m"}),
    }
    var = xr.DataArray(u.astype(np.float32), dims=("time", "kappa", "position"), coords=coords,
                       attrs={"units": "K", "long_name": "temperature"})
    return var.to_dataset(name="temperature").assign_attrs(
        equation="u_t = kappa u_xx on [0, 1], u(0) = 0, u(1) = slope: sum_n a_n sin(n pi x) exp(-kappa n^2 pi^2 t) + slope x",
        amplitudes=amplitudes.tolist(), slope=slope)
