"""Run py-pde with one compiled stepper for many initial conditions.

py-pde compiles a stepping function with numba the first time a PDE is solved (about 15-20 s
for a 2D diffusion equation here) and, since 0.4x, does not cache it between ``solve()`` calls.
:class:`Stepper` builds it once (``solver.make_stepper``) and reuses it for every initial
condition of a family; frames are reached with a time step that divides the frame interval, so
the stored times are exact. After every frame the solution is checked for NaN/inf.

The backend is chosen by cost: the numpy backend needs no compilation but is about 10x slower
per step, so ``backend="auto"`` picks numpy when the whole job would take less than compiling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConfigurationError, SolverError

__all__ = ["Stepper", "choose_backend", "frame_times", "SOLVERS"]

SOLVERS = ("euler", "runge-kutta")
"""Explicit fixed-step schemes: forward Euler and classical 4th-order Runge-Kutta."""

_NUMPY_SECONDS_PER_CELL_STEP = 2.5e-8  # measured: 64x64 diffusion, 1000 Euler steps in 0.095 s
_NUMBA_COMPILE_SECONDS = 15.0  # measured: 16-18 s for the first 64x64 diffusion stepper


def choose_backend(backend: str, cells: int, steps: int, step_overhead: float = 1e-4) -> str:
    """Resolve ``"auto"``: numpy when the whole job is cheaper than a numba compilation.

    ``step_overhead`` is the fixed numpy cost of one right-hand-side evaluation: about 0.1 ms
    for py-pde's built-in PDEs, 0.3-0.5 ms for the field-operator right-hand sides of
    :class:`~lipsurrogate.data.generators.ExpressionProblem` (``rate``), but about 30-60 ms for
    PDEs written as expressions (``pde.PDE``), whose numpy path rebuilds operators on every call
    (measured here).
    """
    if backend not in ("auto", "numpy", "numba"):
        raise ConfigurationError(f"'backend' must be 'auto', 'numpy' or 'numba'. Got {backend!r} instead.")
    if backend != "auto":
        return backend
    cost = steps * (cells * _NUMPY_SECONDS_PER_CELL_STEP + step_overhead)
    return "numpy" if cost < _NUMBA_COMPILE_SECONDS else "numba"


def frame_times(t_end: float, frames: int) -> np.ndarray:
    """``frames`` equally spaced times from 0 to ``t_end`` (both included)."""
    if not (isinstance(frames, int) and not isinstance(frames, bool) and frames >= 2):
        raise ConfigurationError(f"'frames' must be an integer >= 2. Got {frames!r} instead.")
    if not (math.isfinite(t_end) and t_end > 0):
        raise ConfigurationError(f"'t_end' must be a positive finite time. Got {t_end!r} instead.")
    return np.linspace(0.0, float(t_end), frames)


@dataclass
class Stepper:
    """A compiled py-pde stepper for one PDE on one grid, reused across initial conditions.

    Parameters
    ----------
    eq : pde.PDEBase
        The PDE.
    state : pde field
        An example state (its grid and field type fix the stepper).
    dt : float
        The requested time step; the actual one divides the frame interval (see :meth:`run`).
    solver : {"euler", "runge-kutta"}
    backend : {"numpy", "numba"}
    """

    eq: object
    state: object
    dt: float
    solver: str = "euler"
    backend: str = "numpy"
    _steppers: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ConfigurationError(f"'solver' must be one of {SOLVERS}. Got {self.solver!r} instead.")
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ConfigurationError(f"'dt' must be a positive finite time step. Got {self.dt!r} instead.")

    def _stepper(self, dt: float):
        key = round(dt, 15)
        if key not in self._steppers:
            from pde import solvers

            cls = solvers.EulerSolver if self.solver == "euler" else solvers.RungeKuttaSolver
            solver = cls(self.eq, backend=self.backend, adaptive=False)
            self._steppers[key] = solver.make_stepper(self.state, dt=dt)
        return self._steppers[key]

    def run(self, initial: np.ndarray, times: np.ndarray, time_scale: float = 1.0) -> tuple[np.ndarray, float]:
        """Evolve ``initial`` (the field's data array) and return the frames at ``times``.

        ``time_scale`` multiplies the times seen by the PDE (the heat equation with diffusivity
        kappa is solved as u_tau = Laplace u with tau = kappa * t). Returns the frames,
        shape ``(len(times), *initial.shape)``, and the time step actually used (in PDE time).
        """
        interval = float(times[1] - times[0]) * time_scale
        if not np.allclose(np.diff(times) * time_scale, interval, rtol=1e-12, atol=0):
            raise ConfigurationError("Frame times must be equally spaced.")
        n_sub = max(1, math.ceil(interval / self.dt - 1e-9))
        dt = interval / n_sub
        stepper = self._stepper(dt)
        state = self.state.copy()
        state.data[...] = initial
        frames = np.empty((len(times), *np.shape(initial)))
        frames[0] = initial
        t = float(times[0]) * time_scale
        for i in range(1, len(times)):
            target = float(times[i]) * time_scale
            t = stepper(state, t, target)
            if not np.all(np.isfinite(state.data)):
                raise SolverError(
                    f"The solution became NaN or infinite between t={times[i - 1]:.6g} and "
                    f"t={times[i]:.6g} (time step {dt / time_scale:.3g}); reduce dt or check the parameters."
                )
            frames[i] = state.data
        return frames, dt
