r"""PDE data generators built on py-pde, each producing one labelled :class:`xarray.Dataset`.

==================  =====================================================================  ==========================
name                equation                                                               solver error
==================  =====================================================================  ==========================
``heat2d``          :math:`u_t = \kappa \Delta u`, periodic :math:`[0, 2\pi]^2`, Fourier modes  exact (closed form)
``heat2d-dirichlet`` :math:`u_t = \kappa \Delta u`, :math:`u = 0` on :math:`\partial[0,\pi]^2`, sine modes  exact (closed form)
``advection1d``     :math:`u_t + c\,u_x = 0`, periodic :math:`[0, 1]`                          exact (:math:`u_0(x - ct)`)
``burgers1d``       :math:`u_t + u u_x = \nu u_{xx}`, periodic :math:`[0, 1]`                  estimate (3x finer solve)
``allen-cahn1d``    :math:`u_t = \epsilon^2 u_{xx} + u - u^3`, periodic :math:`[0, 1]`          estimate (3x finer solve)
``reaction-diffusion2d`` FitzHugh-Nagumo: :math:`u_t = D_u\Delta u + u - u^3 - k - v`,
                    :math:`v_t = D_v \Delta v + u - v`, no-flux :math:`[-1, 1]^2`              estimate (3x finer solve)
==================  =====================================================================  ==========================

The expression problems are solved with py-pde's field operators in numpy where that is cheaper
than numba's compilation (the default grids: about 20 s of compilation against a few seconds of
solving), and with the expressions compiled by numba otherwise; both give the same data to rounding.

Every generator takes ``samples`` (``None`` for one trajectory, or a count for a family with a
``sample`` dimension), a ``seed``, and the grid, time span, number of frames, time step, explicit
scheme and backend. The finer solve uses 3x as many cells per axis, so that every coarse cell
centre is also a fine cell centre (no interpolation enters the estimate), and a 9x smaller time
step. The error figures are stored as dataset attributes with their kind ("exact" or "estimate").
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import xarray as xr

from .._validation import positive_float, positive_int
from ..environment import environment
from ..exceptions import ConfigurationError
from .heat import HeatModes, random_dirichlet_modes, random_periodic_modes
from .simulate import Stepper, choose_backend, frame_times

__all__ = ["GENERATORS", "generate", "heat2d"]

_STABILITY = {"euler": 2.0, "runge-kutta": 2.78}  # |lambda dt| limits on the negative real axis
_EXPRESSION_STEP_OVERHEAD = 0.04  # seconds per numpy right-hand side of a pde.PDE (measured)
_FIELD_RATE_STEP_OVERHEAD = 5e-4  # seconds per numpy right-hand side of an ExpressionProblem.rate (0.3-0.5 ms measured)


def _progress(iterable, total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress, leave=False)


def _check_dt(dt: float | None, limit: float, what: str) -> float:
    """Default to half the stability limit; refuse a requested step above it."""
    if dt is None:
        return 0.5 * limit
    dt = positive_float("dt", dt)
    if dt > limit:
        raise ConfigurationError(
            f"Unstable explicit time step: dt={dt:.4g} exceeds the stability limit {limit:.4g} of {what}. "
            "Use a smaller dt (or leave dt unset to get half the limit)."
        )
    return dt


def _check_solver(solver: str) -> str:
    if solver not in _STABILITY:
        raise ConfigurationError(f"'solver' must be one of {tuple(_STABILITY)}. Got {solver!r} instead.")
    return solver


def _coord(name: str, values: np.ndarray, long_name: str) -> tuple[str, np.ndarray, dict]:
    return (name, values, {"units": "1", "long_name": long_name})


def _provenance(**attrs) -> dict:
    env = environment()
    attrs.update(
        source="py-pde",
        versions=json.dumps({k: v for k, v in env["packages"].items() if v is not None}),
    )
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in attrs.items()}


# -- heat equation ------------------------------------------------------------------------------

def _heat_pde(grid, bc, backend: str):
    """py-pde's ``DiffusionPDE`` (diffusivity 1) for a stepper on ``backend``.

    With the numpy backend py-pde still builds the Laplacian of ``evolution_rate`` with its
    default (numba) backend: a compilation of 0.4-0.5 s in every process, for a right-hand side
    evaluated a few dozen times. Where py-pde has its scipy backend (sparse matrices, no
    compilation; py-pde 0.5x), the numpy stepper takes the Laplacian from there instead: the same
    stencil and boundary conditions, summed in another order (measured on the default heat2d
    data: at most 7e-16 apart in float64, the same numbers in float32, the same exact solver error).
    The numba stepper keeps py-pde's own compiled right-hand side.
    """
    from pde import DiffusionPDE

    if backend != "numpy" or not _has_sparse_laplace(grid):
        return DiffusionPDE(diffusivity=1.0, bc=bc)

    class SparseLaplaceDiffusion(DiffusionPDE):
        def evolution_rate(self, state, t: float = 0):
            return self.diffusivity * state.laplace(bc=self.bc, label="evolution rate", args={"t": t},
                                                    backend="scipy")

    return SparseLaplaceDiffusion(diffusivity=1.0, bc=bc)


def _has_sparse_laplace(grid) -> bool:
    """Whether this py-pde has a scipy backend with a Laplacian for ``grid``."""
    try:
        from pde.backends import get_backend

        get_backend("scipy").get_operator_info(grid, "laplace")
    except Exception:  # noqa: BLE001 - older py-pde (no such backend or operator): the default Laplacian
        return False
    return True


class _HeatSolver:
    """One compiled heat stepper (u_tau = Laplace u) on one grid; solves sample after sample."""

    def __init__(self, boundary: str, cells: int, length: float, dt_tau: float, solver: str, backend: str) -> None:
        from pde import CartesianGrid, ScalarField

        grid = CartesianGrid([[0, length]] * 2, [cells] * 2, periodic=boundary == "periodic")
        bc = "periodic" if boundary == "periodic" else {"value": 0}
        self.stepper = Stepper(_heat_pde(grid, bc, backend), ScalarField(grid), dt_tau, solver, backend)
        self.x, self.y = np.meshgrid(*grid.axes_coords, indexing="ij")

    def solve(self, job: tuple[str, float], times: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Frames, exact max error against the closed form, and the physical time step used."""
        modes_json, kappa = job
        modes = HeatModes.from_json(modes_json)
        frames, dt_used = self.stepper.run(modes.solution(self.x, self.y, 0.0, kappa), times, time_scale=kappa)
        exact = modes.solution(self.x[None], self.y[None], times[:, None, None], kappa)
        return frames, float(np.abs(frames - exact).max()), dt_used / kappa


def _heat_worker(args):
    """Solve a chunk of samples in one process (one compilation per process)."""
    *setup, times, jobs = args
    solver = _HeatSolver(*setup)
    return [solver.solve(job, times) for job in jobs]


def heat_attrs(boundary: str, length: float, solver: str, backend: str, seed: int) -> dict:
    """The descriptive attributes of a heat2d dataset (without the solve's dt and errors)."""
    return dict(
        pde="heat2d" if boundary == "periodic" else "heat2d-dirichlet",
        equation="u_t = kappa * Laplace(u)",
        boundary=boundary if boundary == "periodic" else "dirichlet u=0",
        domain=json.dumps([[0.0, length], [0.0, length]]),
        grid_points="cell centres",
        solver=solver,
        backend=backend,
        time_rescaling="solved as u_tau = Laplace(u) with tau = kappa * t",
        seed=int(seed),
        solver_error_kind="exact: max |u_pypde - u_exact| over cells, frames and samples (closed form)",
    )


def heat_plan(boundary: str, samples: int | None, seed: int, *, grid: int = 64, t_end: float = 1.0,
              frames: int = 51, diffusivity: float = 0.05, diffusivity_range=None, diffusivities=None,
              same_initial_condition: bool = False, n_modes: int = 4, k_max: int = 3, amplitude: float = 1.0,
              dt: float | None = None, solver: str = "euler", backend: str = "auto") -> dict:
    """Everything :func:`heat2d` decides before solving: the random draws, time step and backend.

    The draws use one ``default_rng(seed)`` in a fixed order (diffusivities, then modes), so a
    family is the same whichever process or Dask worker solves which sample
    (:mod:`lipsurrogate.data.distributed` uses this plan too). ``samples=None`` means one
    trajectory. Returns ``n``, ``cells``, ``length``, ``times``, ``kappas``, ``modes``,
    ``solver``, ``backend``, ``dt_tau`` and ``jobs`` (``(modes JSON, kappa)`` per sample).
    """
    cells = positive_int("grid", grid)
    times = frame_times(t_end, frames)
    _check_solver(solver)
    rng = np.random.default_rng(seed)
    if diffusivities is not None:
        kappas_given = np.array([positive_float("diffusivities", v) for v in diffusivities])
        if samples is not None and samples != len(kappas_given):
            raise ConfigurationError(f"'samples' ({samples}) does not match the {len(kappas_given)} diffusivities given.")
        samples = len(kappas_given)
    n = 1 if samples is None else positive_int("samples", samples)
    if diffusivities is not None:
        kappas = kappas_given
    elif diffusivity_range is not None:
        lo, hi = (positive_float("diffusivity_range", v) for v in diffusivity_range)
        if hi < lo:
            raise ConfigurationError(f"'diffusivity_range' must be (low, high). Got {diffusivity_range!r}.")
        kappas = rng.uniform(lo, hi, size=n)
    else:
        kappas = np.full(n, positive_float("diffusivity", diffusivity))
    length = 2 * np.pi if boundary == "periodic" else np.pi
    make_modes = random_periodic_modes if boundary == "periodic" else random_dirichlet_modes
    modes = [make_modes(rng, n_modes, k_max, amplitude, length) for _ in range(1 if same_initial_condition else n)]
    modes = modes * n if same_initial_condition else modes

    dx = length / cells
    limit_tau = _STABILITY[solver] * dx**2 / 8.0  # eigenvalues of the 5-point Laplacian reach 8/dx^2
    dt_phys = _check_dt(dt, limit_tau / kappas.max(), f"the 2D diffusion equation with kappa={kappas.max():.4g}, dx={dx:.4g}")
    dt_tau = dt_phys * kappas.max()
    steps = int(np.ceil(t_end * kappas.max() / dt_tau)) * n
    backend = choose_backend(backend, cells * cells, steps)  # decided on the whole family
    return {"n": n, "samples": samples, "cells": cells, "length": length, "times": times, "kappas": kappas,
            "modes": modes, "solver": solver, "backend": backend, "dt_tau": float(dt_tau),
            "jobs": [(m.to_json(), float(k)) for m, k in zip(modes, kappas)]}


def heat2d(
    *,
    grid: int = 64,
    t_end: float = 1.0,
    frames: int = 51,
    diffusivity: float = 0.05,
    diffusivity_range: tuple[float, float] | None = None,
    diffusivities: Sequence[float] | None = None,
    same_initial_condition: bool = False,
    boundary: str = "periodic",
    n_modes: int = 4,
    k_max: int = 3,
    amplitude: float = 1.0,
    samples: int | None = None,
    seed: int = 0,
    dt: float | None = None,
    solver: str = "euler",
    backend: str = "auto",
    workers: int = 1,
    progress: bool = True,
) -> xr.Dataset:
    r"""The heat equation on a square, with a closed-form reference for every sample.

    The PDE is solved as :math:`u_\tau = \Delta u` in the rescaled time :math:`\tau = \kappa t`,
    so one compiled stepper serves every diffusivity of a family (``diffusivity_range``).

    Parameters
    ----------
    grid : int
        Cells per axis.
    t_end, frames : float, int
        Frames at ``linspace(0, t_end, frames)``.
    diffusivity : float
        :math:`\kappa` (ignored when ``diffusivity_range`` is given).
    diffusivity_range : (float, float), optional
        For a family: each sample draws :math:`\kappa` uniformly from this range.
    diffusivities : sequence of float, optional
        For a family: these diffusivities, one sample each (``samples`` must be None or match).
    same_initial_condition : bool
        For a family: one initial condition for every sample (a diffusivity sweep).
    boundary : {"periodic", "dirichlet"}
        Periodic :math:`[0, 2\pi]^2` with Fourier modes, or :math:`u = 0` on the boundary of
        :math:`[0, \pi]^2` with sine modes.
    n_modes, k_max, amplitude
        The random initial condition (:func:`~lipsurrogate.data.heat.random_periodic_modes`).
    samples : int, optional
        ``None`` gives one trajectory with dimensions ``(t, x, y)``; an integer gives a family
        with dimensions ``(sample, t, x, y)`` and per-sample modes and diffusivities.
    seed : int
        Seeds the modes and diffusivities.
    dt : float, optional
        Time step (physical time); default half the explicit stability limit.
    solver, backend, workers, progress
        Explicit scheme, py-pde backend ("auto" picks by cost), processes for a family, progress bar.

    Returns
    -------
    xarray.Dataset
        ``u`` plus provenance attributes; ``solver_max_error`` is **exact** (the largest
        :math:`|u_\text{py-pde} - u_\text{exact}|` over all cells, frames and samples).
    """
    if boundary not in ("periodic", "dirichlet"):
        raise ConfigurationError(f"'boundary' must be 'periodic' or 'dirichlet'. Got {boundary!r} instead.")
    workers = positive_int("workers", workers)
    plan = heat_plan(boundary, samples, seed, grid=grid, t_end=t_end, frames=frames, diffusivity=diffusivity,
                     diffusivity_range=diffusivity_range, diffusivities=diffusivities,
                     same_initial_condition=same_initial_condition, n_modes=n_modes, k_max=k_max,
                     amplitude=amplitude, dt=dt, solver=solver, backend=backend)
    n, cells, length, times = plan["n"], plan["cells"], plan["length"], plan["times"]
    kappas, modes, backend, dt_tau = plan["kappas"], plan["modes"], plan["backend"], plan["dt_tau"]
    samples = plan["samples"]
    jobs = plan["jobs"]
    chunks = [jobs[i::workers] for i in range(workers)] if workers > 1 and n > 1 else [jobs]
    args = [(boundary, cells, length, dt_tau, solver, backend, times, c) for c in chunks if c]
    if len(args) == 1:
        heat = _HeatSolver(boundary, cells, length, dt_tau, solver, backend)
        results = [heat.solve(job, times) for job in _progress(jobs, n, "heat2d", progress and n > 1)]
    else:
        with ProcessPoolExecutor(max_workers=len(args)) as pool:
            per_chunk = list(_progress(pool.map(_heat_worker, args), len(args), "heat2d", progress))
        order = [i for c in range(len(args)) for i in range(c, n, workers)]
        flat = [r for chunk in per_chunk for r in chunk]
        results = [None] * n
        for i, r in zip(order, flat):
            results[i] = r

    from pde import CartesianGrid

    axes = CartesianGrid([[0, length]] * 2, [cells] * 2).axes_coords
    data = np.stack([r[0] for r in results])
    errors = np.array([r[1] for r in results])
    scale = float(np.abs(data).max())
    attrs = _provenance(
        **heat_attrs(boundary, length, solver, backend, seed),
        dt=float(max(r[2] for r in results)),
        solver_max_error=float(errors.max()),
        solver_max_error_relative=float(errors.max() / scale) if scale > 0 else 0.0,
    )
    coords = {
        "t": _coord("t", times, "time"),
        "x": _coord("x", np.asarray(axes[0]), "x"),
        "y": _coord("y", np.asarray(axes[1]), "y"),
    }
    u_attrs = {"units": "1", "long_name": "temperature u"}
    if samples is None:
        attrs.update(diffusivity=float(kappas[0]), modes=modes[0].to_json())
        return xr.Dataset({"u": (("t", "x", "y"), data[0], u_attrs)}, coords=coords, attrs=attrs)
    kmax_modes = max(len(m.cos) for m in modes)
    wave = np.zeros((n, kmax_modes, 2), dtype=np.int64)
    cos = np.zeros((n, kmax_modes))
    sin = np.zeros((n, kmax_modes))
    for i, m in enumerate(modes):
        wave[i, : len(m.cos)] = m.wavevectors
        cos[i, : len(m.cos)], sin[i, : len(m.sin)] = m.cos, m.sin
    attrs.update(mode_length=float(length), mode_boundary=boundary)
    return xr.Dataset(
        {
            "u": (("sample", "t", "x", "y"), data, u_attrs),
            "diffusivity": ("sample", kappas, {"units": "1", "long_name": "diffusivity kappa"}),
            "mode_wavevector": (("sample", "mode", "component"), wave, {"long_name": "integer wave vector k"}),
            "mode_cos": (("sample", "mode"), cos, {"long_name": "cosine coefficient a_k"}),
            "mode_sin": (("sample", "mode"), sin, {"long_name": "sine coefficient b_k"}),
            "solver_error": ("sample", errors, {"long_name": "exact max |u_pypde - u_exact| per sample"}),
        },
        coords={**coords, "sample": np.arange(n)},
        attrs=attrs,
    )


def heat_modes_of(ds: xr.Dataset, sample: int | None = None) -> HeatModes:
    """The :class:`HeatModes` of a heat2d dataset (of one ``sample`` of a family)."""
    if "modes" in ds.attrs:
        return HeatModes.from_json(ds.attrs["modes"])
    if sample is None:
        raise ConfigurationError("This heat2d dataset is a family; pass sample=i.")
    return HeatModes(
        ds["mode_wavevector"].values[sample],
        ds["mode_cos"].values[sample],
        ds["mode_sin"].values[sample],
        float(ds.attrs["mode_length"]),
        ds.attrs["mode_boundary"],
    )


# -- expression PDEs with a finer-solve error estimate -------------------------------------------

@dataclass(frozen=True)
class ExpressionProblem:
    """A PDE written as py-pde expressions, with its random initial condition and stability limit.

    ``rhs`` gives the expressions that py-pde compiles with numba. ``rate`` is their numpy twin:
    the same right-hand side written with py-pde's own field operators (``laplace``, ``d_dx``,
    with the same boundary conditions), which needs no compilation. On the default grids numba's
    compilation of the coarse and the fine solver takes about 20 s while the whole numpy solve takes
    a few seconds, so ``backend="auto"`` solves with ``rate`` there. Both give the same data to
    rounding: at most 1.1e-15 apart on the default grids (``benchmarks/bench_data.py``); the
    right-hand sides agree to 1e-13 relative in ``tests/data/test_generators.py``. The dataset's
    ``right_hand_side`` attribute says which one solved the stored data.
    """

    name: str
    equation: str
    fields: tuple[str, ...]
    rhs: Callable[[dict], dict]  # params -> {field: expression}
    domain: tuple[tuple[float, float], ...]
    periodic: bool
    defaults: dict
    initial: Callable[[np.random.Generator, dict], Callable]  # -> f(coords) -> {field: array}
    dt_limit: Callable[[float, dict], float]  # (dx, params) -> explicit limit
    exact: Callable[[dict, Callable], Callable] | None = None  # (params, u0) -> f(coords, t)
    bc: object = "auto_periodic_neumann"
    rate: Callable[[dict], Callable] | None = None  # params -> f(fields: {name: ScalarField}, bc) -> {name: rate}


def _d_dx(field, bc):
    """The central x-derivative of py-pde's ``d_dx``, as the first component of the gradient.

    The same stencil (equal to the last bit); py-pde caches the compiled ``gradient`` operator per
    grid and boundary condition, whereas ``apply_operator("d_dx", ...)`` recompiles on every call
    (about 0.2 s each, py-pde 0.59).
    """
    return field.gradient(bc)[0]


def _sine_series(rng: np.random.Generator, n_modes: int = 3, amplitude: float = 1.0):
    k = rng.choice(np.arange(1, 5), size=n_modes, replace=False)
    a = rng.normal(size=n_modes) * amplitude / np.sqrt(n_modes)
    phase = rng.uniform(0, 2 * np.pi, size=n_modes)

    def f(x):
        return np.sum(a[:, None] * np.sin(2 * np.pi * k[:, None] * x[None] + phase[:, None]), axis=0).reshape(x.shape)

    return f


def _advection_initial(rng, params):
    f = _sine_series(rng)
    return lambda coords: {"u": f(coords[0])}


def _advection_exact(params, u0):
    c = params["speed"]
    return lambda coords, t: {"u": u0([np.mod(coords[0] - c * t, 1.0)])["u"]}


def _burgers_initial(rng, params):
    f = _sine_series(rng, amplitude=0.5)
    return lambda coords: {"u": f(coords[0])}


def _allen_cahn_initial(rng, params):
    f = _sine_series(rng, n_modes=3, amplitude=0.8)
    return lambda coords: {"u": f(coords[0])}


def _fhn_initial(rng, params):
    centres = rng.uniform(-0.6, 0.6, size=(3, 2))
    signs = rng.choice([-1.0, 1.0], size=3)

    def f(coords):
        x, y = coords
        bumps = sum(s * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05) for (cx, cy), s in zip(centres, signs))
        return {"u": bumps, "v": 0.5 * bumps}

    return f


PROBLEMS: dict[str, ExpressionProblem] = {
    "advection1d": ExpressionProblem(
        name="advection1d",
        equation="u_t + c u_x = 0",
        fields=("u",),
        rhs=lambda p: {"u": f"-{p['speed']} * d_dx(u)"},
        domain=((0.0, 1.0),),
        periodic=True,
        defaults={"speed": 1.0, "t_end": 1.0, "grid": 128, "frames": 41, "solver": "runge-kutta"},
        rate=lambda p: lambda f, bc: {"u": -p["speed"] * _d_dx(f["u"], bc)},
        initial=_advection_initial,
        # central differences have imaginary eigenvalues up to |c|/dx: RK4 is stable below 2.8
        dt_limit=lambda dx, p: 2.0 * dx / abs(p["speed"]),
        exact=_advection_exact,
    ),
    "burgers1d": ExpressionProblem(
        name="burgers1d",
        equation="u_t + u u_x = nu u_xx",
        fields=("u",),
        rhs=lambda p: {"u": f"-u * d_dx(u) + {p['viscosity']} * laplace(u)"},
        domain=((0.0, 1.0),),
        periodic=True,
        defaults={"viscosity": 0.01, "t_end": 1.0, "grid": 128, "frames": 41, "solver": "runge-kutta"},
        rate=lambda p: lambda f, bc: {
            "u": -f["u"] * _d_dx(f["u"], bc) + p["viscosity"] * f["u"].laplace(bc)},
        initial=_burgers_initial,
        dt_limit=lambda dx, p: min(2.78 * dx**2 / (4 * p["viscosity"]), 1.0 * dx / 1.5),
    ),
    "allen-cahn1d": ExpressionProblem(
        name="allen-cahn1d",
        equation="u_t = eps^2 u_xx + u - u^3",
        fields=("u",),
        rhs=lambda p: {"u": f"{p['epsilon'] ** 2} * laplace(u) + u - u**3"},
        domain=((0.0, 1.0),),
        periodic=True,
        defaults={"epsilon": 0.02, "t_end": 2.0, "grid": 128, "frames": 41, "solver": "euler"},
        rate=lambda p: lambda f, bc: {"u": p["epsilon"] ** 2 * f["u"].laplace(bc) + f["u"] - f["u"] ** 3},
        initial=_allen_cahn_initial,
        dt_limit=lambda dx, p: min(2.0 * dx**2 / (4 * p["epsilon"] ** 2), 0.2),
    ),
    "reaction-diffusion2d": ExpressionProblem(
        name="reaction-diffusion2d",
        equation="u_t = Du Laplace(u) + u - u^3 - k - v;  v_t = Dv Laplace(v) + u - v (FitzHugh-Nagumo)",
        fields=("u", "v"),
        rhs=lambda p: {
            "u": f"{p['du']} * laplace(u) + u - u**3 - {p['k']} - v",
            "v": f"{p['dv']} * laplace(v) + u - v",
        },
        domain=((-1.0, 1.0), (-1.0, 1.0)),
        periodic=False,
        defaults={"du": 1e-3, "dv": 5e-3, "k": 5e-3, "t_end": 2.0, "grid": 64, "frames": 21, "solver": "euler"},
        rate=lambda p: lambda f, bc: {
            "u": p["du"] * f["u"].laplace(bc) + f["u"] - f["u"] ** 3 - p["k"] - f["v"],
            "v": p["dv"] * f["v"].laplace(bc) + f["u"] - f["v"],
        },
        initial=_fhn_initial,
        dt_limit=lambda dx, p: min(2.0 * dx**2 / (8 * max(p["du"], p["dv"])), 0.1),
        bc={"derivative": 0},
    ),
}


def _grid(problem: ExpressionProblem, cells: int):
    from pde import CartesianGrid

    return CartesianGrid([list(b) for b in problem.domain], [cells] * len(problem.domain), periodic=problem.periodic)


def _field_rate_pde(problem: ExpressionProblem, params: dict):
    """``problem.rate`` as a py-pde PDE for the numpy backend (no numba compilation)."""
    from pde import FieldCollection, PDEBase

    rate, names, bc = problem.rate(params), problem.fields, problem.bc

    class FieldRatePDE(PDEBase):
        def evolution_rate(self, state, t: float = 0):
            fields = {names[0]: state} if len(names) == 1 else dict(zip(names, state))
            rates = rate(fields, bc)
            return rates[names[0]] if len(names) == 1 else FieldCollection([rates[n] for n in names])

    FieldRatePDE.__name__ = FieldRatePDE.__qualname__ = f"{problem.name.replace('-', '_')}_numpy_rate"
    return FieldRatePDE()


def _step_overhead(problem: ExpressionProblem) -> float:
    """Fixed seconds per numpy right-hand side: py-pde's expressions rebuild operators, ``rate`` does not."""
    return _EXPRESSION_STEP_OVERHEAD if problem.rate is None else _FIELD_RATE_STEP_OVERHEAD


def _solve_expression(problem: ExpressionProblem, params: dict, cells: int, times, dt, solver, backend, initials):
    from pde import PDE, FieldCollection, ScalarField

    grid = _grid(problem, cells)
    if backend == "numpy" and problem.rate is not None:
        eq = _field_rate_pde(problem, params)
    else:
        eq = PDE(problem.rhs(params), bc=problem.bc)
    fields = [ScalarField(grid, label=f) for f in problem.fields]
    state = fields[0] if len(fields) == 1 else FieldCollection(fields)
    stepper = Stepper(eq, state, dt, solver, backend)
    coords = np.meshgrid(*grid.axes_coords, indexing="ij")
    out = []
    for initial in initials:
        values = initial(coords)
        data = values[problem.fields[0]] if len(fields) == 1 else np.stack([values[f] for f in problem.fields])
        frames, dt_used = stepper.run(data, times)
        out.append(frames)
    return grid, coords, np.stack(out), dt_used


def generate_expression(
    name: str,
    *,
    samples: int | None = None,
    seed: int = 0,
    grid: int | None = None,
    t_end: float | None = None,
    frames: int | None = None,
    dt: float | None = None,
    solver: str | None = None,
    backend: str = "auto",
    estimate_error: bool = True,
    reference: bool = False,
    progress: bool = True,
    **params,
) -> xr.Dataset:
    """Generate data for one of :data:`PROBLEMS` (see the module docstring).

    With ``reference=True`` (single samples only) the dataset also holds ``<field>_reference`` on
    a grid with 3x the cells per axis at the same frame times (dims ``x_reference``, ...): the
    closed form where one exists (attribute ``kind``: exact), otherwise the finer solve
    (kind: estimate). Level-3 certificates and verification use it.
    """
    problem = PROBLEMS[name]
    unknown = set(params) - set(problem.defaults)
    if unknown:
        raise ConfigurationError(
            f"Unknown parameter(s) {sorted(unknown)} for {name}; known: {sorted(problem.defaults)}."
        )
    p = {**problem.defaults, **{k: v for k, v in params.items() if v is not None}}
    for key in set(problem.defaults) - {"t_end", "grid", "frames", "solver"}:
        p[key] = float(p[key])
    cells = positive_int("grid", grid if grid is not None else p["grid"])
    t_end = t_end if t_end is not None else p["t_end"]
    frames = frames if frames is not None else p["frames"]
    solver = _check_solver(solver or p["solver"])
    times = frame_times(t_end, frames)
    width = problem.domain[0][1] - problem.domain[0][0]
    dx = width / cells
    dt = _check_dt(dt, problem.dt_limit(dx, p), f"{name} with dx={dx:.4g}")
    n = 1 if samples is None else positive_int("samples", samples)
    if reference and samples is not None:
        raise ConfigurationError("reference=True is available for single samples only (samples=None).")
    rng = np.random.default_rng(seed)
    initials = [problem.initial(rng, p) for _ in range(n)]
    d = len(problem.domain)
    steps = int(np.ceil(t_end / dt)) * n
    evals = 4 if solver == "runge-kutta" else 1
    backend_coarse = choose_backend(backend, cells**d, steps * evals, _step_overhead(problem))
    grid_obj, coords, data, dt_used = _solve_expression(problem, p, cells, times, dt, solver, backend_coarse, initials)

    error, kind, ref = None, None, None
    fine_cells = 3 * cells
    if problem.exact is not None:
        exact = np.stack([
            np.stack([problem.exact(p, init)(coords, t)[problem.fields[0]] for t in times]) for init in initials
        ])
        error, kind = float(np.abs(exact - data).max()), "exact: max |u_pypde - u_exact| (closed form)"
        if reference:
            fine_grid = _grid(problem, fine_cells)
            fine_coords = np.meshgrid(*fine_grid.axes_coords, indexing="ij")
            values = np.stack([problem.exact(p, initials[0])(fine_coords, t)[problem.fields[0]] for t in times])
            ref = (fine_grid, {problem.fields[0]: values}, "exact: the closed-form solution")
    elif estimate_error or reference:
        fine_backend = choose_backend(backend, fine_cells**d, steps * 9 * evals, _step_overhead(problem))
        fine_grid, _, fine, _ = _solve_expression(problem, p, fine_cells, times, dt / 9, solver, fine_backend, initials)
        centre = (slice(None), slice(None)) + ((slice(None),) if len(problem.fields) > 1 else ()) + (slice(1, None, 3),) * d
        error = float(np.abs(fine[centre] - data).max())
        kind = "estimate: max |u - u_fine| against a solve with 3x the cells per axis and dt/9"
        if reference:
            fields = {f: (fine[0] if len(problem.fields) == 1 else fine[0][:, i]) for i, f in enumerate(problem.fields)}
            ref = (fine_grid, fields, "estimate: a solve with 3x the cells per axis and dt/9")

    dims_space = ("x", "y")[:d]
    coords_out = {"t": _coord("t", times, "time")}
    for name_ax, axis in zip(dims_space, grid_obj.axes_coords):
        coords_out[name_ax] = _coord(name_ax, np.asarray(axis), name_ax)
    variables = {}
    for i, f in enumerate(problem.fields):
        values = data if len(problem.fields) == 1 else data[:, :, i]
        dims = ("t", *dims_space)
        if samples is None:
            variables[f] = (dims, values[0], {"units": "1", "long_name": f})
        else:
            variables[f] = (("sample", *dims), values, {"units": "1", "long_name": f})
    if samples is not None:
        coords_out["sample"] = np.arange(n)
    if ref is not None:
        fine_grid, fields, ref_kind = ref
        ref_dims = tuple(f"{ax}_reference" for ax in dims_space)
        for name_ax, axis in zip(ref_dims, fine_grid.axes_coords):
            coords_out[name_ax] = (name_ax, np.asarray(axis), {"long_name": f"{name_ax[0]} of the reference grid"})
        for f, values in fields.items():
            variables[f"{f}_reference"] = (("t", *ref_dims), values, {"units": "1", "long_name": f"{f}, reference",
                                                                     "kind": ref_kind})
    attrs = _provenance(
        pde=name,
        equation=problem.equation,
        parameters=json.dumps({k: v for k, v in p.items() if k not in ("t_end", "grid", "frames", "solver")}),
        boundary="periodic" if problem.periodic else json.dumps(problem.bc),
        domain=json.dumps([list(b) for b in problem.domain]),
        grid_points="cell centres",
        solver=solver,
        backend=backend_coarse,
        right_hand_side=("py-pde field operators in numpy (ExpressionProblem.rate)"
                         if backend_coarse == "numpy" and problem.rate is not None else "py-pde expressions"),
        dt=float(dt_used),
        seed=int(seed),
    )
    if error is not None:
        attrs.update(solver_max_error=error, solver_error_kind=kind)
    return xr.Dataset(variables, coords=coords_out, attrs=attrs)


def _expression_generator(name: str):
    def generator(**kwargs) -> xr.Dataset:
        return generate_expression(name, **kwargs)

    generator.__name__ = name.replace("-", "_")
    generator.__doc__ = f"Generate {name} data ({PROBLEMS[name].equation}); see :func:`generate_expression`."
    return generator


GENERATORS: dict[str, Callable[..., xr.Dataset]] = {
    "heat2d": heat2d,
    "heat2d-dirichlet": lambda **kw: heat2d(boundary="dirichlet", **kw),
    **{name: _expression_generator(name) for name in PROBLEMS},
}
"""Data generators by name."""


def generate(name: str, **options) -> xr.Dataset:
    """Run the generator called ``name`` with ``options`` (clear errors for unknown ones)."""
    if name not in GENERATORS:
        raise ConfigurationError(f"Unknown PDE {name!r}. Known: {', '.join(GENERATORS)}.")
    try:
        return GENERATORS[name](**options)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ConfigurationError(f"{name}: {err}") from None
        raise
