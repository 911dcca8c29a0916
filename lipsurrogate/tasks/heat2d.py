r"""``lipsurrogate fit heat2d``: a certified surrogate of the 2D heat equation.

Stages: data (py-pde, :func:`lipsurrogate.data.generators.heat2d`) -> model
(:class:`~lipsurrogate.nn.FeatureLipschitzMLP` on :math:`(x, y, t)`) -> training -> certificate
(:func:`certify`) -> verification (:func:`verify`) -> report.

The certificate is a statement about the **exact PDE solution** (level 2 of certificates.md
section 4): vertex values of :math:`u` come from the closed form, and the Lipschitz constants of
:math:`u` come from the maximum principle applied to the known initial condition,

.. math::

    \|\partial_i u(\cdot, t)\|_\infty \le \|\partial_i u_0\|_\infty \le \sum_k \omega |k_i| \sqrt{a_k^2 + b_k^2},
    \qquad \|u_t\|_\infty \le \kappa \|\Delta u_0\|_\infty \le \kappa \sum_k \omega^2 |k|^2 \sqrt{a_k^2 + b_k^2}.

The network's constants are certified from its weights in float64
(:func:`lipsurrogate.bounds.lipschitz_bounds`). The per-cell bound is the exact per-cell linear
program of :mod:`lipsurrogate.bounds.cells` with the rounding errors of both evaluations as vertex
margins, with per-cell constants from interval propagation (:mod:`lipsurrogate.bounds.local`,
on blocks of cells) and adaptive refinement of the dominating cells
(:mod:`lipsurrogate.bounds.refine`); ``certificate.json`` holds the whole ladder from the naive
bound to the refined one.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .._format import up, up_fixed
from .._io import read_json, write_json
from ..bounds import extract_chain, lipschitz_bounds
from ..bounds.cells import CellCertificate, cell_bounds
from ..bounds.refine import refine_certificate
from ..bounds.storage import load_cell_certificate, save_cell_certificate
from ..data.dataset import load_dataset, save_dataset
from ..data.generators import heat2d, heat_modes_of
from ..data.heat import HeatModes
from ..exceptions import ConfigurationError, ModelFileError
from ..nn import FeatureLipschitzMLP, load_model, to_plain
from ._common import LADDER_KINDS, certify_trained, config_from_options, fit_and_certify, ladder, network_intervals, network_values, stage, verify_with_config

__all__ = ["Heat2DConfig", "MODELS", "run", "certify", "verify", "report", "exact_solution_of"]

MODELS = {
    "mlp": "FeatureLipschitzMLP on (x, y, t), trained on this initial condition's py-pde data",
    "deeponet": "Lipschitz DeepONet trained on a family of other initial conditions, specialised to this one",
}
"""Surrogates ``fit heat2d --model`` can build."""



@dataclass
class Heat2DConfig:
    """Every setting of a heat2d run (``config.json`` holds it, plus the initial condition)."""

    grid: int = 64
    t_end: float = 1.0
    frames: int = 51
    diffusivity: float = 0.05
    n_modes: int = 4
    k_max: int = 3
    amplitude: float = 1.0
    harmonics: int = 3
    hidden: list = field(default_factory=lambda: [128, 128, 128, 128])
    lipschitz: float = 1.0
    slope_factor: float = 1.3
    steps: int = 2500
    batch_size: int = 4096
    lr: float = 3e-3
    cert_cells: list = field(default_factory=lambda: [128, 128, 32])
    cert_cells_coarse: list = field(default_factory=lambda: [64, 64, 16])
    local_block: int = 2
    refine_budget: int = 400_000
    density: int = 3
    dense_cells: int = 600
    random_points: int = 100_000
    adversarial_starts: int = 32
    adversarial_steps: int = 40
    backend: str = "auto"
    model: str = "mlp"
    family_samples: int = 400
    family_grid: int = 32
    family_frames: int = 21
    sensor_grid: int = 8
    basis: int = 64
    branch_hidden: list = field(default_factory=list)
    branch_lipschitz: float = 4.0
    batch_samples: int = 32
    operator_steps: int = 4000
    operator_lr: float = 1e-2
    operator_batch_points: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigurationError(f"'model' of heat2d must be one of {list(MODELS)}. Got {self.model!r} instead.")

    @classmethod
    def quick(cls, **overrides) -> "Heat2DConfig":
        """Smoke-sized settings (seconds)."""
        base = dict(grid=24, frames=11, hidden=[64, 64, 64], steps=300, batch_size=2048,
                    family_samples=24, family_grid=16, family_frames=6, basis=32, batch_samples=8, operator_steps=300,
                    cert_cells=[32, 32, 8], cert_cells_coarse=[16, 16, 4], dense_cells=120,
                    random_points=5000, adversarial_starts=8, adversarial_steps=10, backend="numpy", local_block=1,
                    refine_budget=20_000)
        return cls(**{**base, **overrides})

    @classmethod
    def from_options(cls, quick: bool, seed: int, options: dict) -> "Heat2DConfig":
        """Defaults (or the quick settings) with ``options`` and ``seed`` applied; unknown options raise."""
        return config_from_options(cls, quick, seed, options, "heat2d")


def exact_solution_of(config: dict) -> tuple[HeatModes, float]:
    """The initial condition's modes and the diffusivity recorded in a run's ``config.json``."""
    return HeatModes.from_json(config["initial_condition_modes"]), float(config["diffusivity"])


def _points(ds: xr.Dataset) -> np.ndarray:
    t, x, y = np.meshgrid(ds.t.values, ds.x.values, ds.y.values, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), t.ravel()], axis=1)


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Run the whole heat2d pipeline into ``out_dir`` and return the summary."""
    out_dir = Path(out_dir)
    cfg = Heat2DConfig.from_options(quick, seed, options)
    times: dict = {}
    start = time.perf_counter()

    ds = heat2d(grid=cfg.grid, t_end=cfg.t_end, frames=cfg.frames, diffusivity=cfg.diffusivity,
                n_modes=cfg.n_modes, k_max=cfg.k_max, amplitude=cfg.amplitude, seed=cfg.seed,
                backend=cfg.backend, progress=progress)
    save_dataset(ds, out_dir / "data.nc")
    modes = heat_modes_of(ds)
    config = {"task": "heat2d", **asdict(cfg), "initial_condition_modes": modes.to_json(),
              "domain": [[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, cfg.t_end]], "inputs": ["x", "y", "t"]}
    write_json(out_dir / "config.json", config)
    start = stage("data", times, start)

    lip_u = _solution_constants(modes, cfg.diffusivity)
    points = torch.tensor(_points(ds), dtype=torch.float32)
    values = torch.tensor(ds.u.values.reshape(-1, 1), dtype=torch.float32)
    operator = None
    if cfg.model == "deeponet":
        from ._deeponet import sensor_values, train_operator

        net, operator = train_operator(cfg, lip_u["values"], out_dir, progress)
        model = net.specialise(sensor_values(modes, cfg.sensor_grid))
        fit_stats, certificate, verification = certify_trained(
            sys.modules[__name__], model, points, values, out_dir, times, progress,
            "measured on this initial condition's py-pde grid, which the operator never saw", start)
    else:
        model = FeatureLipschitzMLP(
            3, 1, cfg.hidden, periods=[2 * np.pi, 2 * np.pi, None], harmonics=cfg.harmonics,
            offset=[0.0, 0.0, cfg.t_end / 2], scale=[1.0, 1.0, 2.0 / cfg.t_end],
            input_budget=[cfg.slope_factor * v for v in lip_u["values"]], lipschitz=cfg.lipschitz, seed=cfg.seed,
        )
        fit_stats, certificate, verification = fit_and_certify(
            sys.modules[__name__], model, points, values, cfg, out_dir, times, progress,
            "measured on the training grid against the py-pde data")
    u_max = fit_stats["u_max"]

    summary = {
        "solver_max_error": float(ds.attrs["solver_max_error"]),
        "fit_rmse": fit_stats["rmse"],
        "fit_rmse_relative": fit_stats["rmse"] / u_max,
        "u_max": u_max,
        "max_error_observed": verification["max_error_observed"],
        "bound": certificate["bound"],
        "bound_relative": certificate["bound"] / u_max,
        "bound_coarse": certificate["coarse"]["bound"],
        "naive_bound": certificate["naive_bound"],
        "bound_global": certificate["bound_global_constants"],
        "tightness": verification["tightness"],
        "violations": verification["violations"],
        "seconds_per_stage": times,
        "model": cfg.model,
        "operator": operator,
    }
    summary["text"] = _summary_text(summary, certificate)
    return summary


_LADDER_LABELS = {
    "naive_global": "naive (max vertex |e| + L h / 2, global L)",
    "pair_global": "closed-form pair bound, global L",
    "exact_global": "exact per-cell LP, global L",
    "pair_local": "closed-form pair bound, local L",
    "exact_local": "exact per-cell LP, local L",
    "refined": "exact LP, local L, adaptive refinement",
}


def _summary_text(s: dict, cert: dict) -> str:
    fine, coarse = cert["grid"]["cells"], cert["coarse"]["grid"]["cells"]
    observed = s["max_error_observed"]
    lines = [
        "heat2d: certified surrogate of u_t = kappa Laplace(u) on [0, 2 pi]^2 x [0, T]",
        f"  solver max error (exact, py-pde vs closed form)   {s['solver_max_error']:.3g}",
    ]
    op = s.get("operator")
    if op:
        lines += [
            f"  model: Lipschitz DeepONet trained on {op['train_samples']} other initial conditions "
            f"({op['sensors']} sensors), specialised to this one",
            f"  operator RMSE on {op['held_out_samples']} held-out family members (measured)  "
            f"{100 * op['held_out_relative_rmse']:.2f}% of their RMS",
            f"  RMSE on this initial condition (measured, unseen) {s['fit_rmse']:.3g}  ({100 * s['fit_rmse_relative']:.2f}% of max|u| = {s['u_max']:.3g})",
        ]
    else:
        lines.append(f"  fit RMSE (measured, training grid)               {s['fit_rmse']:.3g}  ({100 * s['fit_rmse_relative']:.2f}% of max|u| = {s['u_max']:.3g})")
    lines += [
        f"  observed max error (measured, dense+random+adv.) {observed:.3g}",
        f"  certified bounds on {'x'.join(map(str, fine))} cells (bound, % of max|u|, tightness = bound / observed; printed rounded up):",
    ]
    for key, label in _LADDER_LABELS.items():
        value = cert["ladder"][key]
        lines.append(f"    {label:<44} {up(value):>8}  {up_fixed(100 * value / s['u_max']):>5}%  {up_fixed(value / observed, 2):>6}")
    if cert.get("refinement"):
        r = cert["refinement"]
        lines.append(f"    (refinement: {r['rounds']} rounds, {r['refined_cells']} cells split, {r['evaluations']} evaluations)")
    lines += [
        f"  certified bound, {'x'.join(map(str, coarse))} cells (exact LP, local L) {up(s['bound_coarse'])}",
        f"  headline: bound {up(s['bound'])} ({up_fixed(100 * s['bound_relative'])}% of max|u|), tightness {up_fixed(s['tightness'], 2)}, "
        f"violations {s['violations']}",
        "  seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds_per_stage"].items()),
    ]
    return "\n".join(lines)


def _solution_constants(modes: HeatModes, kappa: float) -> dict:
    gx, gy = modes.gradient_bounds()
    return {
        "values": [float(gx), float(gy), float(kappa * modes.laplacian_bound())],
        "inputs": ["x", "y", "t"],
        "kind": "certified upper bound (from theory)",
        "source": "heat maximum principle from the initial condition: |d_i u(t)| <= max|d_i u0| "
                  "<= sum_k omega |k_i| sqrt(a_k^2 + b_k^2); |u_t| <= kappa max|Laplace u0| "
                  "<= kappa sum_k omega^2 |k|^2 sqrt(a_k^2 + b_k^2)",
    }


def _load_run(run_dir: Path, model=None):
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ModelFileError(f"{run_dir} is not a heat2d run folder (no config.json).")
    try:
        config = read_json(run_dir / "config.json")
        modes, kappa = exact_solution_of(config)
    except (KeyError, ValueError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{run_dir / 'config.json'} is corrupted or not from a heat2d run: {err}") from None
    if model is None:
        model = load_model(run_dir / "model")
    if not isinstance(model, FeatureLipschitzMLP) or model.in_features != 3:
        raise ModelFileError(f"The model in {run_dir} is not a 3-input FeatureLipschitzMLP.")
    return config, modes, kappa, model


def _errors_at(chain, modes: HeatModes, kappa: float, pts: np.ndarray, chunk: int = 65_536):
    """e = f - u at ``pts`` (n, 3) and a bound on its rounding (both float64)."""
    f, f_err = network_values(chain, pts, chunk)
    u = modes.solution(pts[:, 0], pts[:, 1], pts[:, 2], kappa)
    # closed form: the phase rounding is absolute, so the bound grows with omega |k| |x|
    u_err = modes.rounding_bound(pts, kappa)
    return f - u, f_err + u_err


def _vertex_errors(model, modes: HeatModes, kappa: float, edges: list):
    """e_v = f(v) - u(v) on the grid and its rounding margin (both float64)."""
    X, Y, T = np.meshgrid(*edges, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), T.ravel()], axis=1)
    e, margin = _errors_at(extract_chain(model), modes, kappa, pts)
    return e.reshape(X.shape), margin.reshape(X.shape)


def _box_error_constants(model, modes: HeatModes, kappa: float, lo: np.ndarray, hi: np.ndarray,
                         chunk: int = 8192) -> np.ndarray:
    """Certified bounds on |d(f - u)/dx_k| on each box: the difference of the two derivative ranges."""
    flo, fhi = network_intervals(model, lo, hi, chunk)
    ulo, uhi = modes.derivative_intervals(lo, hi, kappa)
    return np.maximum(np.abs(fhi - ulo), np.abs(flo - uhi))


def _local_error_constants(model, modes: HeatModes, kappa: float, edges: list, block: int = 1) -> np.ndarray:
    """Per-cell bounds on |d(f - u)/dx_k| from :func:`_box_error_constants` on blocks of cells.

    The ranges are computed on blocks of ``block`` cells per axis; a bound on a block holds on
    every cell inside it (a supremum over a larger set), so blocks trade tightness for speed.
    """
    cells = [len(e) - 1 for e in edges]
    step = [block if n % block == 0 else 1 for n in cells]
    block_edges = [e[::s] for e, s in zip(edges, step)]
    lo = np.stack(np.meshgrid(*[e[:-1] for e in block_edges], indexing="ij"), -1).reshape(-1, 3)
    hi = np.stack(np.meshgrid(*[e[1:] for e in block_edges], indexing="ij"), -1).reshape(-1, 3)
    out = _box_error_constants(model, modes, kappa, lo, hi).reshape(*[len(e) - 1 for e in block_edges], 3)
    for axis, k in enumerate(step):
        out = np.repeat(out, k, axis=axis)
    return out


def _certify_grid(model, modes, kappa, cells, t_end, lip_f, lip_u, local_block: int = 2,
                  refine_budget: int = 0, progress: bool = False) -> dict:
    """The ladder of certificates on one grid, from the naive anchor to the refined local bound.

    Returns a dict with the certificates ``global`` (constants L_f + L_u), ``local`` (per-cell
    constants from interval propagation; ``global`` if ``local_block < 1``) and ``final`` (after
    adaptive refinement; ``local`` if ``refine_budget == 0``), plus the vertex errors, the
    refinement result and the seconds per step.
    """
    edges = [np.linspace(0, 2 * np.pi, cells[0] + 1), np.linspace(0, 2 * np.pi, cells[1] + 1),
             np.linspace(0, t_end, cells[2] + 1)]
    seconds = {}
    start = time.perf_counter()
    errors, margin = _vertex_errors(model, modes, kappa, edges)
    seconds["vertex_errors"] = time.perf_counter() - start
    lip = np.asarray(lip_f) + np.asarray(lip_u)
    start = time.perf_counter()
    global_cert = cell_bounds(errors, edges, lip, margin)
    seconds["global_bounds"] = time.perf_counter() - start
    local_cert = global_cert
    if local_block >= 1:
        start = time.perf_counter()
        local_lip = _local_error_constants(model, modes, kappa, edges, block=local_block)
        seconds["local_constants"] = time.perf_counter() - start
        local_cert = cell_bounds(errors, edges, lip, margin, check=False, local_lipschitz=local_lip)
    final, refinement = local_cert, None
    if refine_budget > 0:
        start = time.perf_counter()
        chain = extract_chain(model)
        refinement = refine_certificate(
            local_cert, lambda p: _errors_at(chain, modes, kappa, p),
            local_constants=lambda lo, hi: _box_error_constants(model, modes, kappa, lo, hi),
            budget=refine_budget, progress=progress,
        )
        final = refinement.certificate
        seconds["refinement"] = time.perf_counter() - start
    return {"global": global_cert, "local": local_cert, "final": final, "errors": errors,
            "refinement": refinement, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def certify(run_dir, *, model=None, progress: bool = False) -> dict:
    """(Re)compute the certificate of a heat2d run folder; writes certificate.json and .nc."""
    run_dir = Path(run_dir)
    config, modes, kappa, model = _load_run(run_dir, model)
    t_end = float(config["t_end"])
    lip = lipschitz_bounds(model)
    lip_f = lip.per_input[0].tolist()
    lip_u = _solution_constants(modes, kappa)
    results = {}
    for name, cells in (("fine", config["cert_cells"]), ("coarse", config["cert_cells_coarse"])):
        cells = [int(c) for c in cells]
        if len(cells) != 3 or min(cells) < 1:
            raise ConfigurationError(f"Certificate grids need 3 positive cell counts. Got {cells}.")
        start = time.perf_counter()
        results[name] = _certify_grid(
            model, modes, kappa, cells, t_end, lip_f, lip_u["values"], int(config.get("local_block", 2)),
            int(config.get("refine_budget", 0)) if name == "fine" else 0, progress=progress)
        results[name]["seconds"]["total"] = round(time.perf_counter() - start, 2)
    fine = results["fine"]
    cert, global_cert, errors = fine["final"], fine["global"], fine["errors"]
    summary = cert.summary()
    document = {
        "bound": summary["bound"],
        "bound_kind": "certified upper bound on max |f - u| over the whole space-time box",
        "level": "exact PDE solution: vertex values from the closed form, constants of u from theory",
        "method": "exact per-cell linear program (the smallest valid bound for per-coordinate constants) with "
                  "signed vertex errors; on each cell the constants are min(local, global), local = max|f' - u'| "
                  "from interval propagation of f's and u's derivative ranges, global = L_f + L_u; the dominating "
                  "cells are split adaptively; float64 evaluation with certified rounding margins",
        "ladder": ladder(fine["global"], fine["local"], fine["final"]),
        "ladder_kinds": LADDER_KINDS,
        "bound_global_constants": global_cert.bound,
        "bound_global_constants_kind": "certified, same grid, global constants L_f + L_u only (exact program)",
        "domain": config["domain"],
        "inputs": ["x", "y", "t"],
        "grid": {"cells": cells_of(cert), "vertices": [len(e) for e in cert.edges],
                 "spacing": [float(e[1] - e[0]) for e in cert.edges]},
        "refinement": fine["refinement"].summary() if fine["refinement"] is not None else None,
        "per_cell": summary["per_cell"],
        "naive_bound": float(global_cert.naive.max()),
        "naive_bound_kind": "certified anchor: max vertex |e| + sum_k L_k h_k / 2 with global constants",
        "max_vertex_error": summary["max_vertex_error"],
        "lipschitz_term_global": summary["lipschitz_term_global"],
        "lipschitz_term_global_kind": "0.5 * sum_k (L_f + L_u)_k h_k with global constants (an upper bound of "
                                      "the term each cell's bound adds to its vertex errors)",
        "lipschitz_f": lip_f,
        "lipschitz_f_kind": "certified upper bounds on |d f / d x_j| from the weights in float64",
        "lipschitz_f_method": lip.method,
        "lipschitz_u": lip_u["values"],
        "lipschitz_u_source": lip_u["source"],
        "lipschitz_u_kind": lip_u["kind"],
        "assumptions": [
            "u is the exact solution of u_t = kappa Laplace(u) with the recorded initial condition",
            "network certified as it computes in evaluation mode with the saved weights",
        ],
        "seconds": fine["seconds"],
        "coarse": {
            "bound": results["coarse"]["final"].bound,
            "ladder": ladder(results["coarse"]["global"], results["coarse"]["local"], results["coarse"]["final"]),
            "bound_global_constants": results["coarse"]["global"].bound,
            "naive_bound": float(results["coarse"]["global"].naive.max()),
            "grid": {"cells": cells_of(results["coarse"]["final"])},
            "seconds": results["coarse"]["seconds"],
        },
    }
    write_json(run_dir / "certificate.json", document)
    save_cell_certificate(cert, errors, ["x", "y", "t"], run_dir / "certificate.nc")
    return document


def cells_of(cert: CellCertificate) -> list:
    """Cells per axis of a certificate's grid."""
    return [int(n) for n in cert.per_cell.shape]


def load_certificate(run_dir) -> CellCertificate:
    """The per-cell certificate stored in ``certificate.nc``."""
    return load_cell_certificate(Path(run_dir) / "certificate.nc")


def verify(run_dir, *, model=None, density: int | None = None, seed: int | None = None) -> dict:
    """(Re)run the verification of a heat2d run folder against the exact solution."""
    run_dir = Path(run_dir)
    config, modes, kappa, model = _load_run(run_dir, model)
    cert = load_certificate(run_dir)
    plain = to_plain(model).double()
    w = 2 * np.pi / modes.length
    k = torch.tensor(np.asarray(modes.wavevectors, dtype=np.float64))
    a, b = torch.tensor(modes.cos), torch.tensor(modes.sin)
    rate = torch.tensor(kappa * w**2 * np.sum(np.asarray(modes.wavevectors, float) ** 2, axis=1))

    def error_torch(p: torch.Tensor) -> torch.Tensor:
        phase = w * (p[:, :2] @ k.t())
        u = (torch.exp(-p[:, 2:3] * rate) * (a * torch.cos(phase) + b * torch.sin(phase))).sum(dim=1)
        return plain(p)[:, 0] - u

    def error_fn(p: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = plain(torch.from_numpy(p))[:, 0].numpy()
        return f - modes.solution(p[:, 0], p[:, 1], p[:, 2], kappa)

    ds_cert = load_dataset(run_dir / "certificate.nc")
    result = verify_with_config(cert, error_fn, error_torch, config, ds_cert.vertex_error.values, density, seed)
    document = result.to_dict()
    document["reference"] = "exact closed-form solution"
    document["certificate_grid"] = cells_of(cert)
    write_json(run_dir / "verification.json", document)
    return document


def report(run_dir) -> Path:
    """Write ``report.html`` and ``figures/`` of a heat2d run folder."""
    from ..report.heat2d import write_report

    return write_report(Path(run_dir))
