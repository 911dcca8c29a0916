r"""``lipsurrogate fit field FILE | pdebench FILE | burgers1d | advection1d | allen-cahn1d | reaction-diffusion2d``.

A certified surrogate of one field of any gridded dataset, with no PDE assumption: a user's own
file (any variable over 1 to 4 dims of any names and order, :mod:`lipsurrogate.data.gridded`),
the generated PDEs of :mod:`lipsurrogate.data.generators` (one initial condition) or one sample
of a PDEBench file. Stages: data -> model (:class:`~lipsurrogate.nn.FeatureLipschitzMLP`) ->
training -> certificate (:func:`lipsurrogate.bounds.certify` against the data's interpolant) ->
verification (:func:`lipsurrogate.bounds.verify`) -> report.

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
from ..bounds import MultilinearInterpolant
from ..bounds import certify as certify_network
from ..bounds.binding import check_run_folder
from ..data.dataset import load_dataset, save_dataset
from ..data.gridded import field_arrays, gridded_field, open_gridded
from ..exceptions import ConfigurationError, DataSchemaError, ModelFileError
from ..nn import FeatureLipschitzMLP, load_model, to_plain
from ._common import config_from_options, fit_and_certify, stage, verify_run

__all__ = ["FieldConfig", "run", "certify", "verify", "report", "field_arrays"]

GENERATED = ("advection1d", "burgers1d", "allen-cahn1d", "reaction-diffusion2d")
SOURCE_STEPS = {"burgers1d": 6000}
"""Training steps where a source's default differs from :attr:`FieldConfig.steps`: burgers1d's fit had
not converged at 3000 (certified 2.83% of max|u| against 1.67% at 6000, README "The training loss")."""
FILES = ("pdebench", "file")


@dataclass
class FieldConfig:
    """Every setting of a field run (``config.json`` holds it)."""

    source: str = "burgers1d"
    file: str | None = None
    sample: int = 0
    field: str | None = None
    var: str | None = None
    inputs: list | None = None
    grid: int | None = None
    frames: int | None = None
    t_end: float | None = None
    reference: bool = True
    hidden: list = dc_field(default_factory=lambda: [128, 128, 128])
    harmonics: int | None = None
    passthrough: list | None = None
    lipschitz: float = 1.0
    slope_factor: float = 1.3
    steps: int = 3000
    batch_size: int = 2048
    lr: float = 3e-3
    # L8: towards the max error the certificate bounds; lower bounds on every generated case
    # (benchmarks/results/loss.md)
    loss: str = "l8"
    local_block: int | list = 1
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
        if cfg.source not in GENERATED + FILES:
            raise ConfigurationError(f"Unknown field source {cfg.source!r}. Known: {', '.join(GENERATED + FILES)}.")
        if not quick and "steps" not in options:
            cfg.steps = SOURCE_STEPS.get(cfg.source, cfg.steps)
        if cfg.source == "pdebench" and not cfg.file:
            raise ConfigurationError("'lipsurrogate fit pdebench' needs the PDEBench FILE.")
        if cfg.source not in FILES and cfg.file:
            raise ConfigurationError(f"Only 'field' and 'pdebench' take a file; {cfg.source} generates its data.")
        if cfg.source != "file" and (cfg.var is not None or cfg.inputs is not None):
            raise ConfigurationError("'var' and 'inputs' are options of 'fit field'; pdebench takes 'field'.")
        if isinstance(cfg.inputs, str):
            cfg.inputs = [v.strip() for v in cfg.inputs.split(",") if v.strip()]
        return cfg


def _load_data(cfg: FieldConfig, progress: bool, dataset=None) -> xr.Dataset:
    if cfg.source == "file":
        data = open_gridded(cfg.file) if dataset is None else dataset
        grid = gridded_field(data, cfg.var, cfg.inputs)
        attrs = {"source": str(cfg.file) if dataset is None else "an xarray object passed from Python",
                 "equation": "as in the file", "notes": "; ".join(grid.notes)}
        return grid.to_dataset({k: v for k, v in attrs.items() if v})
    if cfg.source == "pdebench":
        from ..data.pdebench import load_pdebench

        return load_pdebench(cfg.file, sample=int(cfg.sample), field=cfg.field)
    from ..data.generators import generate_expression

    options = {k: getattr(cfg, k) for k in ("grid", "frames", "t_end") if getattr(cfg, k) is not None}
    return generate_expression(cfg.source, seed=cfg.seed, backend=cfg.backend, reference=cfg.reference,
                               progress=progress, **options)


def _grid_points(axes: list[np.ndarray]) -> np.ndarray:
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def _build_model(cfg: FieldConfig, axes: list[np.ndarray], slopes: np.ndarray, periodic: bool,
                 fourier: list[bool] | None = None) -> FeatureLipschitzMLP:
    """Fourier features on the axes flagged in ``fourier`` (default: all but the last), the rest affine.

    Periodic data on cell centres have the domain width plus one spacing as period; otherwise a
    period of twice that gives a smooth non-periodic Fourier basis on the domain.
    """
    d = len(axes)
    fourier = [k < d - 1 for k in range(d)] if fourier is None else list(fourier)
    widths = np.array([a[-1] - a[0] for a in axes])
    spacing = np.array([a[1] - a[0] for a in axes])
    periods = [(float(widths[k] + spacing[k]) if periodic else float(2 * (widths[k] + spacing[k]))) if fourier[k] else None
               for k in range(d)]
    budget = cfg.slope_factor * np.maximum(slopes, 1e-3 * slopes.max() + 1e-12)
    offset = [0.0 if fourier[k] else float(0.5 * (axes[k][0] + axes[k][-1])) for k in range(d)]
    scale = [1.0 if fourier[k] else 2.0 / float(widths[k]) for k in range(d)]
    return FeatureLipschitzMLP(d, 1, cfg.hidden, periods=periods, harmonics=cfg.harmonics, offset=offset, scale=scale,
                               input_budget=budget.tolist(), lipschitz=cfg.lipschitz, seed=cfg.seed)


def _fourier_axes(cfg: FieldConfig, inputs: list[str]) -> list[bool]:
    """Which inputs get Fourier features: all but ``t`` for the PDE sources; for files all but ``passthrough``."""
    if cfg.source != "file":
        return [name != "t" for name in inputs]
    plain = set(cfg.passthrough or [])
    unknown = plain - set(inputs)
    if unknown:
        raise ConfigurationError(f"'passthrough' names {sorted(unknown)}, which are not inputs ({inputs}).")
    fourier = [name not in plain for name in inputs]
    if not any(fourier):
        raise ConfigurationError("At least one input needs Fourier features; 'passthrough' names them all.")
    return fourier


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, dataset=None, **options) -> dict:
    """Run a field task into ``out_dir`` and return the summary.

    ``dataset`` (an xarray Dataset or DataArray, with ``source="file"``) replaces the file: this
    is how :func:`lipsurrogate.fit_field` passes in-memory data.
    """
    out_dir = Path(out_dir)
    cfg = FieldConfig.from_options(quick, seed, options)
    if cfg.source == "file" and cfg.file is None and dataset is None:
        raise ConfigurationError("'lipsurrogate fit field' needs the FILE (or, from Python, a DataArray).")
    times: dict = {}
    start = time.perf_counter()
    ds = _load_data(cfg, progress, dataset)
    name, inputs, axes, values = field_arrays(ds, cfg.field if cfg.source != "file" else None, _stored_inputs(cfg, ds))
    if cfg.harmonics is None:
        cfg.harmonics = default_harmonics(len(inputs), cfg.source)
    fourier = _fourier_axes(cfg, inputs)
    save_dataset(ds, out_dir / "data.nc")
    interp = MultilinearInterpolant(axes, values, inputs)
    periodic = ds.attrs.get("boundary") == "periodic"
    config = {"task": "field" if cfg.source == "file" else cfg.source, **asdict(cfg), "field": name, "inputs": inputs,
              "periodic": periodic, "fourier": fourier, "domain": [[float(a[0]), float(a[-1])] for a in axes]}
    write_json(out_dir / "config.json", config)
    start = stage("data", times, start)

    model = _build_model(cfg, axes, interp.global_constants(), periodic, fourier)
    points = torch.tensor(_grid_points(axes), dtype=torch.float32)
    target = torch.tensor(values.reshape(-1, 1), dtype=torch.float32)
    fit_stats, certificate, verification = fit_and_certify(
        sys.modules[__name__], model, points, target, cfg, out_dir, times, progress, "measured on the data grid")
    u_max, fit_rmse = fit_stats["u_max"], fit_stats["rmse"]
    summary = {
        "source": cfg.source, "field": name, "inputs": inputs, "u_max": u_max, "fit_rmse": fit_rmse,
        "bound": certificate["bound"], "bound_relative": certificate["bound"] / u_max,
        "ladder": certificate["ladder"],
        "max_error_observed": verification["max_error_observed"], "tightness": verification["tightness"],
        "violations": verification["violations"], "level3": verification.get("level3"),
        "seconds_per_stage": times,
    }
    summary["text"] = _summary_text(summary, certificate)
    return summary


def default_harmonics(d: int, source: str) -> int:
    """Harmonics per Fourier input: 6 for the PDE sources; for files, fewer as inputs grow (feature count)."""
    if source != "file":
        return 6
    return {1: 12, 2: 6, 3: 3, 4: 2}[d]


def _stored_inputs(cfg: FieldConfig, ds: xr.Dataset):
    """The inputs of the stored dataset: for files, the checked variable's dims (in input order)."""
    if cfg.source != "file":
        return None
    (name,) = list(ds.data_vars)
    return list(ds[name].dims)


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
    if model is None:
        check_run_folder(run_dir)
    try:
        config = read_json(run_dir / "config.json")
        source = config["source"]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{run_dir} is not a field run folder: {err}") from None
    ds = load_dataset(run_dir / "data.nc")
    name, inputs, axes, values = field_arrays(ds, config["field"], config.get("inputs") if source == "file" else None)
    if model is None:
        model = load_model(run_dir / "model")
    if not isinstance(model, FeatureLipschitzMLP) or model.in_features != len(inputs):
        raise ModelFileError(f"The model in {run_dir} is not a {len(inputs)}-input FeatureLipschitzMLP ({source}).")
    return config, ds, inputs, MultilinearInterpolant(axes, values, inputs), model


def certify(run_dir, *, model=None, progress: bool = False, cells=None, **where) -> dict:
    """Level-1 certificate of a field run on its data grid (:func:`lipsurrogate.bounds.certify`); writes certificate.*.

    ``where``: ``tile_cells``, ``scheduler``, ``n_workers`` of :func:`~lipsurrogate.bounds.certify`.
    """
    if cells is not None:
        raise ConfigurationError("A field certificate is on the data's own grid (level 1); it takes no other cells. "
                                 f"Got cells={cells}.")
    run_dir = Path(run_dir)
    config, ds, inputs, interp, model = _load_run(run_dir, model)
    certificate = certify_network(model, interp, edges=interp.axes, local_block=config.get("local_block", 1),
                                  refine_budget=int(config.get("refine_budget", 0)), progress=progress, **where)
    certificate.document["field"] = config["field"]
    certificate.save(run_dir, bind=["data.nc"])
    return certificate.to_dict()


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
    second = [np.abs(np.diff(interp.data, n=2, axis=k)).max() / 8 if interp.data.shape[k] > 2 else 0.0
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
    config, ds, inputs, interp, model = _load_run(run_dir, model)
    document = verify_run(run_dir, model, interp, config, density, seed)
    document["level3"] = _level3(config, ds, inputs, interp, to_plain(model).double(), document["bound"])
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


run_field = _runner("file")
run_field.__name__ = "run_field"
run_field.__doc__ = "``lipsurrogate fit field FILE --var NAME [--inputs a,b,c]``: :func:`run` with ``source='file'``."
run_pdebench = _runner("pdebench")
run_advection1d = _runner("advection1d")
run_burgers1d = _runner("burgers1d")
run_allen_cahn1d = _runner("allen-cahn1d")
run_reaction_diffusion2d = _runner("reaction-diffusion2d")
