"""Generators against closed-form solutions, with explicit tolerances (tiny grids, numpy backend)."""

import json

import numpy as np
import pytest
import xarray as xr

from lipsurrogate.data.dataset import load_dataset, save_dataset
from lipsurrogate.data.generators import PROBLEMS, choose_backend, generate, heat2d, heat_modes_of
from lipsurrogate.data.heat import HeatModes, random_dirichlet_modes, random_periodic_modes
from lipsurrogate.data.simulate import Stepper
from lipsurrogate.exceptions import ConfigurationError, DataSchemaError, SolverError

FAST = dict(backend="numpy", progress=False)


def test_heat_modes_solve_the_heat_equation(rng):
    modes = random_periodic_modes(rng, n_modes=5, k_max=3)
    kappa, h = 0.3, 1e-4
    x, y, t = rng.uniform(0, 2 * np.pi, size=(3, 50))
    u = lambda x, y, t: modes.solution(x, y, t, kappa)  # noqa: E731
    u_t = (u(x, y, t + h) - u(x, y, t - h)) / (2 * h)
    lap = (u(x + h, y, t) + u(x - h, y, t) + u(x, y + h, t) + u(x, y - h, t) - 4 * u(x, y, t)) / h**2
    np.testing.assert_allclose(u_t, kappa * lap, atol=2e-4)
    # periodic with period 2 pi
    np.testing.assert_allclose(u(x + 2 * np.pi, y - 2 * np.pi, t), u(x, y, t), atol=1e-12)


def test_derivative_bounds_dominate_sampled_derivatives(rng):
    modes = random_periodic_modes(rng, n_modes=6, k_max=4)
    g = np.linspace(0, 2 * np.pi, 201)
    x, y = np.meshgrid(g, g, indexing="ij")
    h = 1e-6
    dx = (modes.solution(x + h, y, 0, 1) - modes.solution(x - h, y, 0, 1)) / (2 * h)
    dy = (modes.solution(x, y + h, 0, 1) - modes.solution(x, y - h, 0, 1)) / (2 * h)
    bx, by = modes.gradient_bounds()
    assert np.abs(dx).max() <= bx and np.abs(dy).max() <= by
    assert np.abs(modes.solution(x, y, 0, 1)).max() <= modes.sup_bound()


def test_dirichlet_bounds_dominate_sampled_derivatives(rng):
    modes = random_dirichlet_modes(rng, n_modes=5, k_max=4)
    g = np.linspace(0, modes.length, 201)
    x, y = np.meshgrid(g, g, indexing="ij")
    h = 1e-6
    dx = (modes.solution(x + h, y, 0, 1) - modes.solution(x - h, y, 0, 1)) / (2 * h)
    dy = (modes.solution(x, y + h, 0, 1) - modes.solution(x, y - h, 0, 1)) / (2 * h)
    lap = (modes.solution(x + 1e-4, y, 0, 1) + modes.solution(x - 1e-4, y, 0, 1) + modes.solution(x, y + 1e-4, 0, 1)
           + modes.solution(x, y - 1e-4, 0, 1) - 4 * modes.solution(x, y, 0, 1)) / 1e-8
    bx, by = modes.gradient_bounds()
    assert np.abs(dx).max() <= bx and np.abs(dy).max() <= by
    assert np.abs(lap).max() <= modes.laplacian_bound() * (1 + 1e-3)
    assert np.abs(modes.solution(x, y, 0, 1)).max() <= modes.sup_bound()


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_rounding_bound_of_the_closed_form_holds_in_extended_precision(rng, boundary):
    """Against 80-bit long double, including a mode with a large phase omega |k| |x| (about 3800)."""
    big = np.array([[300, 300]]) if boundary == "periodic" else np.array([[300, 299]])
    k = np.concatenate([np.array([[1, 2], [3, 1]]), big])
    coef = np.array([0.7, -1.1, 0.4])
    modes = HeatModes(k, coef, np.zeros(3) if boundary == "dirichlet" else np.array([0.2, 0.5, -0.3]),
                      boundary=boundary)
    pts = np.column_stack([rng.uniform(0, 2 * np.pi, 4000), rng.uniform(0, 2 * np.pi, 4000), rng.uniform(0, 1, 4000)])
    kappa = 0.05
    approx = modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], kappa)
    L = np.longdouble
    w = (2 * L(np.pi) if boundary == "periodic" else L(np.pi)) / L(modes.length)
    x, y, t = (pts[:, i].astype(L) for i in range(3))
    exact = np.zeros(len(pts), dtype=L)
    for (kx, ky), a, b in zip(k, coef, modes.sin):
        decay = np.exp(-L(kappa) * w**2 * L(kx * kx + ky * ky) * t)
        if boundary == "periodic":
            phase = w * (L(kx) * x + L(ky) * y)
            exact += decay * (L(a) * np.cos(phase) + L(b) * np.sin(phase))
        else:
            exact += decay * L(a) * np.sin(w * L(kx) * x) * np.sin(w * L(ky) * y)
    error = np.abs(approx.astype(L) - exact).max()
    bound = modes.rounding_bound(pts, kappa)
    assert error <= bound
    assert bound < 1e-11  # still a tiny margin


def test_modes_json_round_trip(rng):
    m = random_periodic_modes(rng)
    back = HeatModes.from_json(m.to_json())
    np.testing.assert_array_equal(back.cos, m.cos)
    np.testing.assert_array_equal(back.wavevectors, m.wavevectors)


@pytest.mark.parametrize("boundary, tol", [("periodic", 0.02), ("dirichlet", 0.01)])
def test_heat2d_matches_closed_form(boundary, tol):
    ds = heat2d(grid=24, t_end=1.0, frames=6, diffusivity=0.1, boundary=boundary, seed=3, **FAST)
    modes = heat_modes_of(ds)
    x, y = np.meshgrid(ds.x, ds.y, indexing="ij")
    exact = modes.solution(x[None], y[None], ds.t.values[:, None, None], 0.1)
    err = np.abs(ds.u.values - exact).max()
    assert err == pytest.approx(ds.attrs["solver_max_error"], rel=1e-12)
    assert err < tol * np.abs(exact).max()
    assert ds.attrs["solver_error_kind"].startswith("exact")
    assert ds.u.dims == ("t", "x", "y") and ds.x.attrs["units"] == "1"


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_the_numpy_heat_stepper_takes_the_laplacian_of_pydes_default_backend(boundary, rng):
    """_heat_pde for the numpy stepper: the same right-hand side as py-pde's DiffusionPDE (its default,
    compiled Laplacian) to rounding, from the sparse Laplacian where this py-pde has one."""
    from pde import CartesianGrid, DiffusionPDE, ScalarField

    from lipsurrogate.data.generators import _has_sparse_laplace, _heat_pde

    grid = CartesianGrid([[0, 2 * np.pi]] * 2, [16, 16], periodic=boundary == "periodic")
    bc = "periodic" if boundary == "periodic" else {"value": 0}
    state = ScalarField(grid, rng.standard_normal((16, 16)))
    eq = _heat_pde(grid, bc, "numpy")
    assert (type(eq) is not DiffusionPDE) == _has_sparse_laplace(grid)
    assert type(_heat_pde(grid, bc, "numba")) is DiffusionPDE  # the compiled stepper keeps py-pde's own
    default = DiffusionPDE(diffusivity=1.0, bc=bc).evolution_rate(state).data
    got = eq.evolution_rate(state).data
    assert np.abs(default).max() > 1.0
    np.testing.assert_allclose(got, default, rtol=0, atol=1e-13 * np.abs(default).max())


def test_heat2d_error_shrinks_with_resolution():
    errors = [heat2d(grid=g, t_end=0.5, frames=3, diffusivity=0.1, seed=1, **FAST).attrs["solver_max_error"] for g in (12, 24)]
    assert errors[1] < errors[0] / 3  # second order in space: about 4x


def test_heat2d_family_with_diffusivity_range_and_round_trip(tmp_path):
    ds = heat2d(grid=12, t_end=0.5, frames=3, samples=4, diffusivity_range=(0.05, 0.5), seed=2, **FAST)
    assert ds.u.dims == ("sample", "t", "x", "y") and ds.sizes["sample"] == 4
    kappas = ds.diffusivity.values
    assert np.all((kappas >= 0.05) & (kappas <= 0.5)) and len(set(kappas)) == 4
    for i in range(4):
        modes = heat_modes_of(ds, sample=i)
        x, y = np.meshgrid(ds.x, ds.y, indexing="ij")
        exact = modes.solution(x[None], y[None], ds.t.values[:, None, None], kappas[i])
        assert np.abs(ds.u.values[i] - exact).max() == pytest.approx(ds.solver_error.values[i], rel=1e-12)
    out = save_dataset(ds, tmp_path / "family.nc")
    xr.testing.assert_identical(load_dataset(out), ds)
    assert json.loads(ds.attrs["versions"])["py-pde"]


def test_heat2d_family_in_two_processes_matches_one():
    kw = dict(grid=8, t_end=0.2, frames=3, samples=3, seed=5, **FAST)
    xr.testing.assert_identical(heat2d(workers=2, **kw), heat2d(workers=1, **kw))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grid=0), "grid"),
        (dict(diffusivity=-1.0), "diffusivity"),
        (dict(dt=10.0), "Unstable explicit time step"),
        (dict(frames=1), "frames"),
        (dict(t_end=0), "t_end"),
        (dict(boundary="neumann"), "boundary"),
        (dict(backend="gpu"), "backend"),
        (dict(n_modes=500), "wave vectors"),
        (dict(solver="leapfrog"), "solver"),
    ],
)
def test_bad_heat_arguments(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        heat2d(**{**dict(grid=8, frames=3, **FAST), **kwargs})


def test_unknown_pde_and_parameter():
    with pytest.raises(ConfigurationError, match="Unknown PDE"):
        generate("navier-stokes")
    with pytest.raises(ConfigurationError, match="viscosty"):
        generate("burgers1d", viscosty=0.1, **FAST)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_nan_names_the_time():
    from pde import CartesianGrid, DiffusionPDE, ScalarField

    grid = CartesianGrid([[0, 1]], [16], periodic=True)
    state = ScalarField.random_normal(grid, rng=np.random.default_rng(0))
    stepper = Stepper(DiffusionPDE(1.0), state, dt=0.05, backend="numpy")  # 80x the stable step
    with pytest.raises(SolverError, match=r"between t=\S+ and t=\S+"):
        stepper.run(state.data, np.linspace(0, 50, 11))


def test_advection_matches_shifted_initial_condition():
    ds = generate("advection1d", grid=128, t_end=0.1, frames=3, seed=0, **FAST)
    assert ds.attrs["solver_error_kind"].startswith("exact")
    # central differences: phase speed error sin(k dx)/(k dx) - 1, about 0.6% for k = 4 here
    assert ds.attrs["solver_max_error"] < 0.02 * float(np.abs(ds.u).max())


@pytest.mark.parametrize("name", ["burgers1d", "allen-cahn1d"])
def test_1d_expression_pdes_have_a_finer_solve_estimate(name):
    ds = generate(name, grid=16, t_end=0.1, frames=3, seed=0, **FAST)
    assert ds.attrs["solver_error_kind"].startswith("estimate")
    assert ds.attrs["right_hand_side"].startswith("py-pde field operators")
    assert 0 <= ds.attrs["solver_max_error"] < 0.1
    assert np.all(np.isfinite(ds.u))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_numpy_rate_is_the_expression_pde(name):
    """Each problem's numpy ``rate`` (py-pde field operators) is the right-hand side of its expressions."""
    from pde import PDE, FieldCollection, ScalarField

    from lipsurrogate.data.generators import _field_rate_pde, _grid

    problem = PROBLEMS[name]
    params = {k: (v if k in ("t_end", "grid", "frames", "solver") else float(v)) for k, v in problem.defaults.items()}
    grid = _grid(problem, 16 if len(problem.domain) == 1 else 6)  # the grids of the tests below: compiled once
    values = problem.initial(np.random.default_rng(3), params)(np.meshgrid(*grid.axes_coords, indexing="ij"))
    fields = [ScalarField(grid, values[f], label=f) for f in problem.fields]
    state = fields[0] if len(fields) == 1 else FieldCollection(fields)
    with_rate = _field_rate_pde(problem, params).evolution_rate(state).data
    with_expressions = PDE(problem.rhs(params), bc=problem.bc).evolution_rate(state).data
    assert np.abs(with_expressions).max() > 0.1
    np.testing.assert_allclose(with_rate, with_expressions, rtol=0, atol=1e-13 * np.abs(with_expressions).max())


def test_default_field_problems_solve_without_compilation():
    """With their numpy rates, the default grids (coarse and 3x finer) cost less than numba's compile."""
    from lipsurrogate.data.generators import _step_overhead

    for problem in PROBLEMS.values():
        p = {**problem.defaults}
        cells, d = p["grid"], len(problem.domain)
        steps = np.ceil(p["t_end"] / (0.5 * problem.dt_limit((problem.domain[0][1] - problem.domain[0][0]) / cells,
                                                               {k: float(v) for k, v in p.items() if k != "solver"})))
        evals = 4 if p["solver"] == "runge-kutta" else 1
        fine = choose_backend("auto", (3 * cells) ** d, int(steps) * 9 * evals, _step_overhead(problem))
        assert fine == "numpy", problem.name


def test_reaction_diffusion_two_fields():
    ds = generate("reaction-diffusion2d", grid=6, t_end=0.1, frames=2, seed=0, estimate_error=False, **FAST)
    assert set(ds.data_vars) == {"u", "v"} and ds.u.dims == ("t", "x", "y")


def test_save_dataset_checks_suffix_and_attrs(tmp_path):
    ds = xr.Dataset({"u": ("x", np.zeros(3))}, attrs={"flag": True})
    with pytest.raises(DataSchemaError, match="end in one of"):
        save_dataset(ds, tmp_path / "x.txt")
    with pytest.raises(DataSchemaError, match="Attribute 'flag'"):
        save_dataset(ds, tmp_path / "x.nc")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(DataSchemaError, match="not a readable"):
        (tmp_path / "junk.nc").write_bytes(b"junk")
        load_dataset(tmp_path / "junk.nc")


def test_heat_derivative_intervals_contain_sampled_derivatives(rng):
    modes = random_periodic_modes(rng, n_modes=5, k_max=3)
    kappa = 0.2
    n = 400
    lo = np.column_stack([rng.uniform(-3, 9, n), rng.uniform(-3, 9, n), rng.uniform(0, 2, n)])
    width = rng.choice([1e-3, 0.05, 0.5], size=(n, 1)) * np.ones((1, 3))
    dlo, dhi = modes.derivative_intervals(lo, lo + width, kappa)
    pts = lo[:, None] + rng.uniform(size=(n, 40, 3)) * width[:, None]
    x, y, t = pts[..., 0], pts[..., 1], pts[..., 2]
    h = 1e-6
    u = lambda x, y, t: modes.solution(x, y, t, kappa)  # noqa: E731
    grads = np.stack([(u(x + h, y, t) - u(x - h, y, t)) / (2 * h), (u(x, y + h, t) - u(x, y - h, t)) / (2 * h),
                      (u(x, y, t + h) - u(x, y, t - h)) / (2 * h)], -1)
    assert np.all(grads >= dlo[:, None] - 1e-6) and np.all(grads <= dhi[:, None] + 1e-6)
    small = width[:, 0] == 1e-3
    assert np.median((dhi - dlo)[small]) < 0.05  # tight on small boxes


def test_parametric_heat_intervals_contain_sampled_derivatives(rng):
    modes = random_periodic_modes(rng, n_modes=5, k_max=3)
    lo = np.column_stack([rng.uniform(0, 6, 300), rng.uniform(0, 6, 300), rng.uniform(0, 0.9, 300), rng.uniform(0.01, 0.15, 300)])
    hi = lo + rng.uniform(0.01, 0.3, size=lo.shape) * np.array([1, 1, 0.3, 0.1])
    dlo, dhi = modes.parametric_derivative_intervals(lo, hi)
    p = lo + rng.uniform(size=lo.shape) * (hi - lo)
    h = 1e-6
    for axis in range(4):
        e = np.zeros(4)
        e[axis] = h
        a, b = p + e, p - e
        fd = (modes.solution(a[:, 0], a[:, 1], a[:, 2], a[:, 3]) - modes.solution(b[:, 0], b[:, 1], b[:, 2], b[:, 3])) / (2 * h)
        assert np.all(fd >= dlo[:, axis] - 1e-6) and np.all(fd <= dhi[:, axis] + 1e-6)
    # consistent with the 3-input version at a fixed kappa
    fixed_lo, fixed_hi = lo.copy(), hi.copy()
    fixed_hi[:, 3] = fixed_lo[:, 3] = 0.05
    plo, phi = modes.parametric_derivative_intervals(fixed_lo, fixed_hi)
    qlo, qhi = modes.derivative_intervals(lo[:, :3], hi[:, :3], 0.05)
    assert np.allclose(plo[:, :3], qlo) and np.allclose(phi[:, :3], qhi)


def test_diffusivity_sweep_shares_one_initial_condition():
    ds = heat2d(grid=12, t_end=0.5, frames=3, diffusivities=[0.02, 0.1], same_initial_condition=True, seed=1, **FAST)
    assert ds.sizes["sample"] == 2 and np.allclose(ds.diffusivity.values, [0.02, 0.1])
    assert np.array_equal(ds.mode_cos.values[0], ds.mode_cos.values[1])
    assert np.allclose(ds.u.values[0, 0], ds.u.values[1, 0])  # same start, different decay
    assert not np.allclose(ds.u.values[0, -1], ds.u.values[1, -1])
    with pytest.raises(ConfigurationError, match="does not match"):
        heat2d(grid=12, frames=3, diffusivities=[0.02, 0.1], samples=3, **FAST)
