r"""``lipsurrogate fit burgers1d | advection1d | allen-cahn1d | reaction-diffusion2d | pdebench FILE``.

A certified surrogate of one field of any gridded dataset, with no PDE assumption: the generated
PDEs of :mod:`lipsurrogate.data.generators` (one initial condition) or one sample of a PDEBench
file. Stages: data -> model (:class:`~lipsurrogate.nn.FeatureLipschitzMLP` on the space
coordinates and t) -> training -> certificate -> verification -> report.

Three levels of statement (certificates.md section 4), each labelled in ``certificate.json``:

1. **Level 1, certified** against the data's own multilinear interpolant :math:`u_I`
   (:class:`~lipsurrogate.bounds.interpolant.MultilinearInterpolant`): vertex values are the
   data, the interpolant's derivative ranges per cell are exact, the network's come from its
   weights (global) and interval propagation (local). Exact per-cell program and adaptive
   refinement as for heat2d. Verified by sampling :math:`|f - u_I|` (violations must be 0).
2. Level 2 (exact solution with constants from theory) needs a PDE with a known maximum
   principle and initial condition: that is ``fit heat2d``.
3. **Level 3, an estimate** against the true solution: the level-1 bound plus
   :math:`\max |u_I - u_\text{ref}|` measured on a reference (the closed form for advection1d, a
   solve with 3x the cells per axis and dt/9 otherwise; for PDEBench, where no reference exists,
   the interpolation-error estimate :math:`\sum_k \max|\Delta_k^2 u| / 8` from second differences),
   plus the solver's own error estimate. It is labelled an estimate everywhere: the reference is
   only sampled at its grid points.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .._format import up, up_fixed
from .._io import read_json, write_json
from ..bounds import extract_chain, lipschitz_bounds
from ..bounds.cells import cell_bounds
from ..bounds.interpolant import MultilinearInterpolant
from ..bounds.refine import refine_certificate
from ..bounds.storage import load_cell_certificate, save_cell_certificate
from ..data.dataset import load_dataset, save_dataset
from ..exceptions import ConfigurationError, DataSchemaError, ModelFileError
from ..nn import FeatureLipschitzMLP, load_model, to_plain
from ._common import LADDER_KINDS, config_from_options, fit_and_certify, ladder, network_intervals, network_values, stage, verify_with_config

__all__ = ["FieldConfig", "run", "certify", "certify_level1", "verify", "report", "field_arrays"]

GENERATED = ("advection1d", "burgers1d", "allen-cahn1d", "reaction-diffusion2d")


@dataclass
class FieldConfig:
    """Every setting of a field run (``config.json`` holds it)."""

    source: str = "burgers1d"
    file: str | None = None
    sample: int = 0
    field: str | None = None
    grid: int | None = None
    frames: int | None = None
    t_end: float | None = None
    reference: bool = True
    hidden: list = dc_field(default_factory=lambda: [128, 128, 128])
    harmonics: int = 6
    lipschitz: float = 1.0
    slope_factor: float = 1.3
    steps: int = 3000
    batch_size: int = 2048
    lr: float = 3e-3
    local_block: int = 1
    refine_budget: int = 200_000
    density: int = 4
    dense_cells: int = 600
    random_points: int = 50_000
    adversarial_starts: int = 32
    adversarial_steps: int = 40
    backend: str = "auto"
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "FieldConfig":
        """Smoke-sized settings (seconds)."""
        base = dict(grid=32, frames=11, hidden=[64, 64], steps=300, refine_budget=10_000, dense_cells=100,
                    random_points=5000, adversarial_starts=8, adversarial_steps=10)
        return cls(**{**base, **overrides})

    @classmethod
    def from_options(cls, quick: bool, seed: int, options: dict) -> "FieldConfig":
        """Defaults (or the quick settings) with ``options`` and ``seed`` applied; unknown options and sources raise."""
        cfg = config_from_options(cls, quick, seed, options, "field-task")
        if cfg.source == "pdebench" and not cfg.file:
            raise ConfigurationError("'lipsurrogate fit pdebench' needs the PDEBench FILE.")
        if cfg.source != "pdebench" and cfg.file:
            raise ConfigurationError(f"Only 'pdebench' takes a file; {cfg.source} generates its data.")
        if cfg.source not in GENERATED + ("pdebench",):
            raise ConfigurationError(f"Unknown field source {cfg.source!r}. Known: {', '.join(GENERATED + ('pdebench',))}.")
        return cfg


def _load_data(cfg: FieldConfig, progress: bool) -> xr.Dataset:
    if cfg.source == "pdebench":
        from ..data.pdebench import load_pdebench

        return load_pdebench(cfg.file, sample=int(cfg.sample), field=cfg.field)
    from ..data.generators import generate_expression

    options = {k: getattr(cfg, k) for k in ("grid", "frames", "t_end") if getattr(cfg, k) is not None}
    return generate_expression(cfg.source, seed=cfg.seed, backend=cfg.backend, reference=cfg.reference,
                               progress=progress, **options)


def field_arrays(ds: xr.Dataset, name: str | None) -> tuple[str, list[str], list[np.ndarray], np.ndarray]:
    """(field name, input names, axes, values with axes ordered as the inputs: space then t)."""
    candidates = [v for v in ds.data_vars if not v.endswith("_reference") and "t" in ds[v].dims]
    if name is None:
        if not candidates:
            raise DataSchemaError(f"No field with a time axis in the dataset (variables: {list(ds.data_vars)}).")
        name = candidates[0]
    if name not in candidates:
        raise DataSchemaError(f"Field {name!r} not in the dataset; fields with a time axis: {candidates}.")
    var = ds[name]
    space = [d for d in var.dims if d != "t"]
    if "sample" in space or len(space) not in (1, 2):
        raise DataSchemaError(f"Expected a field over (t, x) or (t, x, y). Got dims {var.dims}.")
    inputs = [*space, "t"]
    values = var.transpose(*inputs).values.astype(np.float64)
    axes = [np.asarray(ds[d].values, dtype=np.float64) for d in inputs]
    return name, inputs, axes, values


def _grid_points(axes: list[np.ndarray]) -> np.ndarray:
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _build_model(cfg: FieldConfig, axes: list[np.ndarray], slopes: np.ndarray, periodic: bool) -> FeatureLipschitzMLP:
    widths = np.array([a[-1] - a[0] for a in axes])
    spacing = np.array([a[1] - a[0] for a in axes])
    periods = []
    for k in range(len(axes) - 1):
        # periodic data on cell centres: the period is the domain width; otherwise a period of twice
        # the width gives a smooth non-periodic Fourier basis on the domain
        periods.append(float(widths[k] + spacing[k]) if periodic else float(2 * (widths[k] + spacing[k])))
    periods.append(None)
    budget = cfg.slope_factor * np.maximum(slopes, 1e-3 * slopes.max() + 1e-12)
    centre = [float(0.5 * (a[0] + a[-1])) for a in axes]
    scale = [1.0] * (len(axes) - 1) + [2.0 / float(widths[-1])]
    return FeatureLipschitzMLP(len(axes), 1, cfg.hidden, periods=periods, harmonics=cfg.harmonics,
                               offset=[0.0] * (len(axes) - 1) + [centre[-1]], scale=scale,
                               input_budget=budget.tolist(), lipschitz=cfg.lipschitz, seed=cfg.seed)


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Run a field task into ``out_dir`` and return the summary."""
    out_dir = Path(out_dir)
    cfg = FieldConfig.from_options(quick, seed, options)
    times: dict = {}
    start = time.perf_counter()
    ds = _load_data(cfg, progress)
    save_dataset(ds, out_dir / "data.nc")
    name, inputs, axes, values = field_arrays(ds, cfg.field)
    interp = MultilinearInterpolant(axes, values)
    periodic = ds.attrs.get("boundary") == "periodic"
    config = {"task": cfg.source, **asdict(cfg), "field": name, "inputs": inputs, "periodic": periodic,
              "domain": [[float(a[0]), float(a[-1])] for a in axes]}
    write_json(out_dir / "config.json", config)
    start = stage("data", times, start)

    model = _build_model(cfg, axes, interp.global_constants(), periodic)
    points = torch.tensor(_grid_points(axes), dtype=torch.float32)
    target = torch.tensor(values.reshape(-1, 1), dtype=torch.float32)
    fit_stats, certificate, verification = fit_and_certify(
        sys.modules[__name__], model, points, target, cfg, out_dir, times, progress, "measured on the data grid")
    u_max, fit_rmse = fit_stats["u_max"], fit_stats["rmse"]
    summary = {
        "source": cfg.source, "field": name, "u_max": u_max, "fit_rmse": fit_rmse,
        "bound": certificate["bound"], "bound_relative": certificate["bound"] / u_max,
        "ladder": certificate["ladder"],
        "max_error_observed": verification["max_error_observed"], "tightness": verification["tightness"],
        "violations": verification["violations"], "level3": verification.get("level3"),
        "seconds_per_stage": times,
    }
    summary["text"] = _summary_text(summary, certificate)
    return summary


def _summary_text(s: dict, cert: dict) -> str:
    lines = [
        f"{s['source']}: certified surrogate of '{s['field']}' over {' x '.join(cert['inputs'])} "
        f"({'x'.join(map(str, cert['grid']['cells']))} data cells)",
        f"  fit RMSE (measured, data grid)                     {s['fit_rmse']:.3g}  ({100 * s['fit_rmse'] / s['u_max']:.2f}% of max|u| = {s['u_max']:.3g})",
        "  level 1 (certified, against the data's multilinear interpolant; bounds printed rounded up):",
        f"    observed max |f - u_I| (dense + random + adv.)   {s['max_error_observed']:.3g}",
    ]
    for key, value in cert["ladder"].items():
        lines.append(f"    {key.replace('_', ' '):<44} {up(value):>8}  {up_fixed(100 * value / s['u_max']):>5}%  "
                     f"tightness {up_fixed(value / s['max_error_observed'], 2)}")
    lines.append(f"    violations                                       {s['violations']}")
    l3 = s.get("level3")
    if l3:
        lines += [
            f"  level 3 (estimate, against the true solution; reference: {l3['reference_kind']}):",
            f"    bound estimate = level-1 bound + {l3['interpolant_gap']:.3g} (|u_I - u_ref|) + {l3['solver_error']:.3g} (solver) = {l3['bound_estimate']:.3g}",
        ]
        if l3.get("max_error_observed") is not None:
            lines.append(f"    observed max |f - u_ref| at the reference points  {l3['max_error_observed']:.3g}  "
                         f"(exceeds the estimate at {l3['exceedances']} points)")
    lines.append("  seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds_per_stage"].items()))
    return "\n".join(lines)


def _load_run(run_dir: Path, model=None):
    run_dir = Path(run_dir)
    try:
        config = read_json(run_dir / "config.json")
        source = config["source"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{run_dir} is not a field run folder: {err}") from None
    ds = load_dataset(run_dir / "data.nc")
    name, inputs, axes, values = field_arrays(ds, config["field"])
    if model is None:
        model = load_model(run_dir / "model")
    if not isinstance(model, FeatureLipschitzMLP) or model.in_features != len(inputs):
        raise ModelFileError(f"The model in {run_dir} is not a {len(inputs)}-input FeatureLipschitzMLP ({source}).")
    return config, ds, inputs, axes, values, model


def _local_constants(model, interp: MultilinearInterpolant, axes: list[np.ndarray], block: int) -> np.ndarray:
    """Per-cell max |f' - u_I'|: network ranges on blocks of cells, the interpolant's exact ranges per cell."""
    d = len(axes)
    cells = [len(a) - 1 for a in axes]
    step = [block if n % block == 0 else 1 for n in cells]
    block_axes = [a[::s] for a, s in zip(axes, step)]
    lo = np.stack(np.meshgrid(*[a[:-1] for a in block_axes], indexing="ij"), -1).reshape(-1, d)
    hi = np.stack(np.meshgrid(*[a[1:] for a in block_axes], indexing="ij"), -1).reshape(-1, d)
    flo, fhi = network_intervals(model, lo, hi)
    flo = flo.reshape(*[len(a) - 1 for a in block_axes], d)
    fhi = fhi.reshape(flo.shape)
    for axis, k in enumerate(step):
        flo, fhi = np.repeat(flo, k, axis=axis), np.repeat(fhi, k, axis=axis)
    ulo, uhi = interp.cell_derivative_intervals()
    return np.maximum(np.abs(fhi - ulo), np.abs(flo - uhi))


def _errors(chain, interp: MultilinearInterpolant, pts: np.ndarray):
    f, f_err = network_values(chain, pts)
    return f - interp(pts), f_err + interp.rounding


def certify_level1(model, interp: MultilinearInterpolant, local_block: int = 1, refine_budget: int = 0,
                   progress: bool = False) -> dict:
    """The level-1 ladder of ``model`` against the interpolant ``interp`` on the data grid.

    Returns a dict with the certificates ``global`` (constants L_f + L_u), ``local`` (per-cell
    constants, ``local_block`` cells per axis sharing one network range; ``global`` if
    ``local_block < 1``) and ``final`` (after adaptive refinement with ``refine_budget`` error
    evaluations), the vertex errors ``errors``, the ``refinement`` result (or None), the
    certified constants ``lip_f`` and ``lip_u``, and the seconds per step. Works for every model
    :func:`~lipsurrogate.bounds.extract_chain` and, for local constants,
    :func:`~lipsurrogate.bounds.local.network_derivative_intervals` support.
    """
    axes = interp.axes
    lip_f = lipschitz_bounds(model).per_input[0]
    lip_u = interp.global_constants()
    chain = extract_chain(model)
    seconds = {}
    start = time.perf_counter()
    e, margin = _errors(chain, interp, _grid_points(axes))
    e, margin = e.reshape(interp.values.shape), margin.reshape(interp.values.shape)
    seconds["vertex_errors"] = time.perf_counter() - start
    start = time.perf_counter()
    global_cert = cell_bounds(e, axes, lip_f + lip_u, margin)
    seconds["global_bounds"] = time.perf_counter() - start
    local_cert = final = global_cert
    refinement = None
    if local_block >= 1:
        start = time.perf_counter()
        local = _local_constants(model, interp, axes, local_block)
        local_cert = final = cell_bounds(e, axes, lip_f + lip_u, margin, check=False, local_lipschitz=local)
        seconds["local_constants"] = time.perf_counter() - start
    if local_block >= 1 and refine_budget > 0:
        start = time.perf_counter()

        def box_constants(lo, hi):
            flo, fhi = network_intervals(model, lo, hi)
            ulo, uhi = interp.box_derivative_intervals(lo, hi)
            return np.maximum(np.abs(fhi - ulo), np.abs(flo - uhi))

        refinement = refine_certificate(local_cert, lambda p: _errors(chain, interp, p), local_constants=box_constants,
                                        budget=refine_budget, progress=progress)
        final = refinement.certificate
        seconds["refinement"] = time.perf_counter() - start
    return {"global": global_cert, "local": local_cert, "final": final, "errors": e, "refinement": refinement,
            "lip_f": lip_f, "lip_u": lip_u, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def certify(run_dir, *, model=None, progress: bool = False) -> dict:
    """Level-1 certificate of a field run: writes certificate.json and certificate.nc."""
    run_dir = Path(run_dir)
    config, ds, inputs, axes, values, model = _load_run(run_dir, model)
    interp = MultilinearInterpolant(axes, values)
    result = certify_level1(model, interp, int(config.get("local_block", 1)), int(config.get("refine_budget", 0)),
                            progress)
    global_cert, local_cert, final, refinement = result["global"], result["local"], result["final"], result["refinement"]
    lip_f, lip_u, e = result["lip_f"], result["lip_u"], result["errors"]
    document = {
        "bound": final.bound,
        "bound_kind": "certified upper bound on max |f - u_I| over the hull of the data grid (u_I: the data's multilinear interpolant)",
        "level": "level 1: against the data's own multilinear interpolant u_I (no PDE assumption)",
        "reference": "u_I, the multilinear interpolant of the stored data (exact vertex values)",
        "method": "exact per-cell linear program with per-cell constants min(local, global): local = max|f' - u_I'| "
                  "with f's range from interval propagation and u_I's exact range from the cell's edge differences; "
                  "adaptive refinement of the dominating cells; float64 evaluation with certified rounding margins",
        "ladder": ladder(global_cert, local_cert, final),
        "ladder_kinds": LADDER_KINDS,
        "inputs": inputs,
        "field": config["field"],
        "domain": config["domain"],
        "grid": {"cells": [len(a) - 1 for a in axes], "vertices": [len(a) for a in axes]},
        "refinement": refinement.summary() if refinement is not None else None,
        "lipschitz_f": lip_f.tolist(),
        "lipschitz_f_kind": "certified upper bounds on |d f / d x_j| from the weights in float64",
        "lipschitz_u": lip_u.tolist(),
        "lipschitz_u_kind": "exact (rounded up): largest absolute finite difference of the data along each axis",
        "lipschitz_u_source": "the data's multilinear interpolant (level 1)",
        "assumptions": ["the statement is about u_I, the multilinear interpolant of the stored data; how far u_I is "
                        "from the PDE's solution is estimated separately (level 3)",
                        "network certified as it computes in evaluation mode with the saved weights"],
        "per_cell": final.summary()["per_cell"],
        "seconds": result["seconds"],
    }
    write_json(run_dir / "certificate.json", document)
    save_cell_certificate(final, e, inputs, run_dir / "certificate.nc")
    return document


def _level3(config: dict, ds: xr.Dataset, inputs, interp: MultilinearInterpolant, plain, bound: float) -> dict:
    """Level-3 estimate: bound + distance of u_I to a reference + the solver's error estimate."""
    name = config["field"]
    solver_error = float(ds.attrs.get("solver_max_error", 0.0))
    solver_kind = ds.attrs.get("solver_error_kind", "not available")
    ref_name = f"{name}_reference"
    if ref_name in ds:
        ref = ds[ref_name]
        space = [d.replace("_reference", "") for d in ref.dims if d != "t"]
        ref_axes = [ds[f"{s}_reference"].values for s in space]
        ref_values = ref.transpose(*[f"{s}_reference" for s in space], "t").values
        pts = _grid_points([*ref_axes, ds.t.values])
        inside = np.all((pts >= interp.lower) & (pts <= interp.upper), axis=1)
        pts, u_ref = pts[inside], ref_values.reshape(-1)[inside]
        gap = float(np.abs(interp(pts) - u_ref).max())
        with torch.no_grad():
            f = plain(torch.from_numpy(pts))[:, 0].numpy()
        # the closed form has no solver error; a finer solve's own error is not known: the coarse one's estimate
        is_exact = ref.attrs.get("kind", "").startswith("exact")
        ref_error = 0.0 if is_exact else solver_error
        estimate = bound + gap + ref_error
        observed = np.abs(f - u_ref)
        return {"reference_kind": ref.attrs.get("kind", "reference"), "interpolant_gap": gap,
                "interpolant_gap_kind": "measured: max |u_I - u_ref| at the reference grid points inside the hull",
                "solver_error": ref_error, "solver_error_kind": "0 (closed form)" if is_exact else solver_kind,
                "bound_estimate": estimate, "max_error_observed": float(observed.max()),
                "exceedances": int(np.sum(observed > estimate)), "reference_points": int(len(pts)),
                "kind": "estimate (not certified): the reference is only known at its grid points"}
    second = [np.abs(np.diff(interp.values, n=2, axis=k)).max() / 8 if interp.values.shape[k] > 2 else 0.0
              for k in range(interp.d)]
    gap = float(sum(second))
    return {"reference_kind": "none: interpolation error estimated from second differences", "interpolant_gap": gap,
            "interpolant_gap_kind": "estimate: sum_k max |second difference along k| / 8",
            "solver_error": solver_error, "solver_error_kind": solver_kind,
            "bound_estimate": bound + gap + solver_error, "max_error_observed": None, "exceedances": None,
            "kind": "estimate (not certified)"}


def verify(run_dir, *, model=None, density: int | None = None, seed: int | None = None) -> dict:
    """Verify the level-1 certificate against u_I by sampling, and the level-3 estimate against the reference."""
    run_dir = Path(run_dir)
    config, ds, inputs, axes, values, model = _load_run(run_dir, model)
    interp = MultilinearInterpolant(axes, values)
    cert = load_cell_certificate(run_dir / "certificate.nc")
    plain = to_plain(model).double()

    def error_fn(p: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = plain(torch.from_numpy(p))[:, 0].numpy()
        return f - interp(p)

    def error_torch(p: torch.Tensor) -> torch.Tensor:
        return plain(p)[:, 0] - interp.torch(p)

    ds_cert = load_dataset(run_dir / "certificate.nc")
    result = verify_with_config(cert, error_fn, error_torch, config, ds_cert.vertex_error.values, density, seed)
    document = result.to_dict()
    document["reference"] = "u_I, the multilinear interpolant of the data (level 1)"
    document["level3"] = _level3(config, ds, inputs, interp, plain, cert.bound)
    write_json(run_dir / "verification.json", document)
    return document


def report(run_dir) -> Path:
    """Write ``report.html`` and ``figures/`` of a field run folder."""
    from ..report.field import write_report

    return write_report(Path(run_dir))


def _runner(source: str):
    def runner(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
        if "source" in options:
            raise ConfigurationError(f"The task fixes the source ({source}); do not pass 'source'.")
        return run(out_dir, seed=seed, quick=quick, progress=progress, source=source, **options)

    runner.__name__ = f"run_{source.replace('-', '_')}"
    runner.__doc__ = f"``lipsurrogate fit {source}``: :func:`run` with ``source={source!r}``."
    return runner


run_pdebench = _runner("pdebench")
run_advection1d = _runner("advection1d")
run_burgers1d = _runner("burgers1d")
run_allen_cahn1d = _runner("allen-cahn1d")
run_reaction_diffusion2d = _runner("reaction-diffusion2d")
