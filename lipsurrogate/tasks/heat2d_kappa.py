r"""``lipsurrogate fit heat2d-kappa``: one surrogate for a range of diffusivities, certified on (x, y, t, kappa).

A parametric surrogate :math:`f(x, y, t, \kappa)` of :math:`u_t = \kappa \Delta u` for one initial
condition and every :math:`\kappa \in [\kappa_{lo}, \kappa_{hi}]`: the diffusivity is an input,
concatenated at the beginning (the ``concat``/``begin`` mechanism of Anzalone et al.; Fourier
features of x and y, slope budgets per input). Data: a py-pde diffusivity sweep of
``n_kappa`` values (one initial condition, :func:`~lipsurrogate.data.generators.heat2d`).

The certificate is a statement about the **exact solution** over the whole 4-D box (level 2):
vertex values from the closed form :math:`u = \sum_k e^{-q_k \kappa t} (a_k \cos + b_k \sin)`;
global constants of u from the maximum principle in (x, y), :math:`|u_t| \le \kappa_{hi}\|\Delta u_0\|`
and :math:`|u_\kappa| = |t \Delta u| \le t_{end} \|\Delta u_0\|`; local constants from interval
propagation of the network's derivative ranges and the exact modal ranges of u's
(:meth:`~lipsurrogate.data.heat.HeatModes.parametric_derivative_intervals`); the exact per-cell
program in 4 dimensions; adaptive refinement. Verification samples the box densely, at random and
adversarially against the closed form, at diffusivities between the training ones as well.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._format import up, up_fixed
from .._io import read_json, write_json
from ..bounds import HeatSolution
from ..bounds import certify as certify_network
from ..bounds.binding import check_run_folder
from ..data.dataset import load_dataset, save_dataset
from ..data.generators import heat2d
from ..data.heat import HeatModes
from ..exceptions import ConfigurationError, ModelFileError
from ..nn import FeatureLipschitzMLP, load_model
from ..train.stability import PairStability, block_half_widths
from ._common import check_blocks, config_from_options, fit_and_certify, stage, verify_run

__all__ = ["Heat2DKappaConfig", "run", "certify", "verify", "report"]

INPUTS = ["x", "y", "t", "kappa"]


@dataclass
class Heat2DKappaConfig:
    """Settings of a heat2d-kappa run."""

    grid: int = 48
    t_end: float = 1.0
    frames: int = 26
    kappa_min: float = 0.02
    kappa_max: float = 0.1
    n_kappa: int = 9
    n_modes: int = 4
    k_max: int = 3
    hidden: list = field(default_factory=lambda: [128, 128, 128, 128])
    harmonics: int = 3
    lipschitz: float = 1.0
    slope_factor: float = 1.3
    steps: int = 3000
    batch_size: int = 4096
    lr: float = 3e-3
    loss: str = "l8"  # with the backward slope bounds L8 certifies tighter: benchmarks/results/blocks.md
    # weight of the pair-stability penalty over the certificate's slope blocks (lipsurrogate.train.stability;
    # benchmarks/results/stability.md); 0 = off
    stability: float = 0.03
    stability_points: int = 256
    stability_every: int = 4
    # finer cells in x and y with blocks of the earlier physical size: the slope ranges cost the same,
    # the cells' half-widths halve (benchmarks/results/blocks.md)
    cert_cells: list = field(default_factory=lambda: [128, 128, 16, 8])
    local_block: int | list = field(default_factory=lambda: [2, 2, 2, 2])
    # refinement without the children's own slopes costs about 8 microseconds an evaluation: 5M
    # evaluations take about 40 s and bring the bound from 4.62% to 3.97% of max|u| (400,000 until
    # 2026-12-07; benchmarks/results/stability.md)
    refine_budget: int = 5_000_000
    # the children's own slope ranges do not lower this bound (5.10% either way) and cost 22 s
    # (theory/cell-bounds.md section 5)
    refine_slopes: bool = False
    density: int = 2
    dense_cells: int = 400
    random_points: int = 100_000
    adversarial_starts: int = 32
    adversarial_steps: int = 30
    backend: str = "auto"
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "Heat2DKappaConfig":
        """Smoke-sized settings (seconds)."""
        base = dict(grid=16, frames=6, n_kappa=3, hidden=[32, 32], steps=200, batch_size=2048,
                    cert_cells=[16, 16, 4, 4], local_block=1, refine_budget=20_000, dense_cells=60,
                    random_points=3000, adversarial_starts=4, adversarial_steps=5, backend="numpy")
        return cls(**{**base, **overrides})

    @classmethod
    def from_options(cls, quick: bool, seed: int, options: dict) -> "Heat2DKappaConfig":
        """Defaults (or the quick settings) with ``options`` and ``seed`` applied; unknown options raise."""
        cfg = config_from_options(cls, quick, seed, options, "heat2d-kappa")
        if not 0 < cfg.kappa_min < cfg.kappa_max:
            raise ConfigurationError(f"Need 0 < kappa_min < kappa_max. Got {cfg.kappa_min} and {cfg.kappa_max}.")
        if len(cfg.cert_cells) != 4:
            raise ConfigurationError(f"'cert_cells' (--cert-cells) needs 4 cell counts (x, y, t, kappa). "
                                     f"Got {list(cfg.cert_cells)}.")
        check_blocks(cfg.local_block, 4)
        return cfg


def solution_constants(modes: HeatModes, kappa_max: float, t_end: float) -> dict:
    """Certified global bounds on :math:`|\\partial u|` over the box, with their source."""
    ref = HeatSolution(modes)
    statement = ref.statement()
    box = np.array([[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, t_end], [kappa_max / 2, kappa_max]])
    return {"values": ref.global_constants(box).tolist(), "inputs": INPUTS,
            "kind": statement["lipschitz_u_kind"], "source": statement["lipschitz_u_source"]}


def run(out_dir, *, seed: int = 0, quick: bool = False, progress: bool = True, **options) -> dict:
    """Run the parametric heat2d pipeline into ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    cfg = Heat2DKappaConfig.from_options(quick, seed, options)
    times: dict = {}
    start = time.perf_counter()
    kappas = np.linspace(cfg.kappa_min, cfg.kappa_max, cfg.n_kappa)
    ds = heat2d(grid=cfg.grid, t_end=cfg.t_end, frames=cfg.frames, diffusivities=kappas, same_initial_condition=True,
                n_modes=cfg.n_modes, k_max=cfg.k_max, seed=cfg.seed, backend=cfg.backend, progress=progress)
    save_dataset(ds, out_dir / "data.nc")
    modes = HeatModes(ds.mode_wavevector.values[0], ds.mode_cos.values[0], ds.mode_sin.values[0])
    domain = [[0.0, 2 * np.pi], [0.0, 2 * np.pi], [0.0, cfg.t_end], [cfg.kappa_min, cfg.kappa_max]]
    write_json(out_dir / "config.json", {"task": "heat2d-kappa", **asdict(cfg), "initial_condition_modes": modes.to_json(),
                                         "domain": domain, "inputs": INPUTS})
    start = stage("data", times, start)

    lip_u = solution_constants(modes, cfg.kappa_max, cfg.t_end)
    span = cfg.kappa_max - cfg.kappa_min
    model = FeatureLipschitzMLP(
        4, 1, cfg.hidden, periods=[2 * np.pi, 2 * np.pi, None, None], harmonics=cfg.harmonics,
        offset=[0.0, 0.0, cfg.t_end / 2, (cfg.kappa_min + cfg.kappa_max) / 2],
        scale=[1.0, 1.0, 2.0 / cfg.t_end, 2.0 / span],
        input_budget=[cfg.slope_factor * v for v in lip_u["values"]], lipschitz=cfg.lipschitz, seed=cfg.seed,
    )
    K, T, X, Y = np.meshgrid(kappas, ds.t.values, ds.x.values, ds.y.values, indexing="ij")
    points = torch.tensor(np.stack([X.ravel(), Y.ravel(), T.ravel(), K.ravel()], 1), dtype=torch.float32)
    values = torch.tensor(ds.u.values.reshape(-1, 1), dtype=torch.float32)
    regularizer = None
    if cfg.stability > 0:
        regularizer = PairStability(domain, block_half_widths(domain, cfg.cert_cells, cfg.local_block or 1),
                                    weight=cfg.stability, batch_size=cfg.stability_points, every=cfg.stability_every)
    fit_stats, certificate, verification = fit_and_certify(
        sys.modules[__name__], model, points, values, cfg, out_dir, times, progress,
        "measured on the training grid (all diffusivities) against the py-pde data", regularizer=regularizer)
    u_max = fit_stats["u_max"]
    summary = {
        "solver_max_error": float(ds.attrs["solver_max_error"]), "fit_rmse": fit_stats["rmse"], "u_max": u_max,
        "max_error_observed": verification["max_error_observed"], "bound": certificate["bound"],
        "bound_relative": certificate["bound"] / u_max, "ladder": certificate["ladder"],
        "tightness": verification["tightness"], "violations": verification["violations"], "seconds_per_stage": times,
    }
    lines = [
        f"heat2d-kappa: one certified surrogate of u_t = kappa Laplace(u) for kappa in [{cfg.kappa_min}, {cfg.kappa_max}]",
        f"  solver max error (exact, py-pde vs closed form, all kappa) {summary['solver_max_error']:.3g}",
        f"  fit RMSE (measured, training grid)               {summary['fit_rmse']:.3g}  ({100 * summary['fit_rmse'] / u_max:.2f}% of max|u| = {u_max:.3g})",
        f"  observed max error over the (x, y, t, kappa) box  {summary['max_error_observed']:.3g}",
        f"  certified bounds on {'x'.join(map(str, certificate['grid']['cells']))} cells (bound, % of max|u|, tightness):",
    ]
    for key, value in certificate["ladder"].items():
        lines.append(f"    {key.replace('_', ' '):<40} {up(value):>8}  {up_fixed(100 * value / u_max):>5}%  {up_fixed(value / summary['max_error_observed'], 2):>6}")
    lines += [f"  violations {summary['violations']}",
              "  seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items())]
    summary["text"] = "\n".join(lines)
    return summary


def _load_run(run_dir: Path, model=None):
    if model is None:
        check_run_folder(run_dir)
    try:
        config = read_json(Path(run_dir) / "config.json")
        modes = HeatModes.from_json(config["initial_condition_modes"])
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{run_dir} is not a heat2d-kappa run folder: {err}") from None
    model = load_model(Path(run_dir) / "model") if model is None else model
    if not isinstance(model, FeatureLipschitzMLP) or model.in_features != 4:
        raise ModelFileError(f"The model in {run_dir} is not a 4-input FeatureLipschitzMLP.")
    return config, HeatSolution(modes), model


def certify(run_dir, *, model=None, progress: bool = False, cells=None, **where) -> dict:
    """The certificate over the (x, y, t, kappa) box (:func:`lipsurrogate.bounds.certify`); writes certificate.*.

    ``cells`` replaces the configured grid; ``where``: ``tile_cells``, ``scheduler``,
    ``n_workers`` of :func:`~lipsurrogate.bounds.certify`.
    """
    run_dir = Path(run_dir)
    config, reference, model = _load_run(run_dir, model)
    cells = [int(c) for c in (config["cert_cells"] if cells is None else cells)]
    if len(cells) != 4 or min(cells) < 1:
        raise ConfigurationError(f"The certificate grid needs 4 positive cell counts. Got {cells}.")
    certificate = certify_network(model, reference, config["domain"], cells, local_block=config["local_block"],
                                  refine_budget=int(config["refine_budget"]),
                                  refine_slopes=bool(config.get("refine_slopes", True)), progress=progress, **where)
    certificate.save(run_dir)
    return certificate.to_dict()


def verify(run_dir, *, model=None, density: int | None = None, seed: int | None = None) -> dict:
    """Dense, random and adversarial sampling of |f - u| over the 4-D box against the closed form."""
    run_dir = Path(run_dir)
    config, reference, model = _load_run(run_dir, model)
    document = verify_run(run_dir, model, reference, config, density, seed)
    write_json(run_dir / "verification.json", document)
    return document


def report(run_dir) -> Path:
    """Write ``report.html`` and ``figures/`` of a heat2d-kappa run folder."""
    from ..report.heat2d_kappa import write_report

    return write_report(Path(run_dir))
