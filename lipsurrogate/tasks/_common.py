"""Pieces every certified-surrogate task shares: options, stage timing, float64 values, the ladder."""

from __future__ import annotations

import time
from dataclasses import fields

import numpy as np

from ..bounds import evaluate_float64
from ..bounds.cells import CellCertificate
from ..bounds.local import network_derivative_intervals
from ..bounds.verification import verify_certificate
from ..exceptions import ConfigurationError

__all__ = ["fit_and_certify", "certify_trained", "config_from_options", "stage", "network_values", "network_intervals", "ladder", "verify_with_config"]


def config_from_options(cls, quick: bool, seed: int, options: dict, what: str):
    """``cls.quick(**options)`` or ``cls(**options)`` with ``seed``; unknown options raise clearly."""
    known = {f.name for f in fields(cls)}
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"Unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}.")
    return (cls.quick if quick else cls)(**{**options, "seed": seed})


def stage(name: str, times: dict, start: float) -> float:
    """Record the seconds since ``start`` under ``name``; return now."""
    now = time.perf_counter()
    times[name] = round(now - start, 2)
    return now


def network_values(chain, points: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """First output of the network at ``points`` in float64, and its certified rounding bound."""
    f = np.empty(len(points))
    err = np.empty(len(points))
    for s in range(0, len(points), chunk):
        v, e = evaluate_float64(chain, points[s : s + chunk])
        f[s : s + chunk], err[s : s + chunk] = v[:, 0], e[:, 0]
    return f, err


def network_intervals(model, lo: np.ndarray, hi: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Certified ranges of the network's partial derivatives on each box (interval propagation)."""
    flo, fhi = np.empty_like(lo), np.empty_like(lo)
    for s in range(0, len(lo), chunk):
        flo[s : s + chunk], fhi[s : s + chunk] = network_derivative_intervals(model, lo[s : s + chunk], hi[s : s + chunk])
    return flo, fhi


LADDER_KINDS = {
    "naive_global": "max vertex |e| + sum_k L_k h_k / 2, global constants L_f + L_u (the anchor)",
    "pair_global": "closed-form opposite-vertex-pair bound, global constants",
    "exact_global": "exact per-cell linear program, global constants",
    "pair_local": "closed-form pair bound, per-cell constants from interval propagation",
    "exact_local": "exact linear program, per-cell constants",
    "refined": "exact linear program with per-cell constants after adaptive refinement of the dominating cells",
}


def ladder(global_cert: CellCertificate, local_cert: CellCertificate, final: CellCertificate) -> dict:
    """The bounds of one grid side by side (all certified), loosest first; keys of :data:`LADDER_KINDS`."""
    return {
        "naive_global": float(global_cert.naive.max()),
        "pair_global": float(global_cert.closed_form.max()),
        "exact_global": global_cert.bound,
        "pair_local": float(local_cert.closed_form.max()),
        "exact_local": local_cert.bound,
        "refined": final.bound,
    }


def verify_with_config(cert, error_fn, error_torch, config: dict, vertex_errors, density=None, seed=None):
    """:func:`~lipsurrogate.bounds.verification.verify_certificate` with a run's sampling settings."""
    return verify_certificate(
        cert, error_fn, error_torch,
        density=int(density or config["density"]),
        dense_cells=int(config["dense_cells"]),
        random_points=int(config["random_points"]),
        adversarial_starts=int(config["adversarial_starts"]),
        adversarial_steps=int(config["adversarial_steps"]),
        vertex_errors=vertex_errors,
        rng=np.random.default_rng(int(config["seed"] if seed is None else seed) + 7),
    )


def fit_and_certify(module, model, points, target, cfg, out_dir, times: dict, progress: bool, fit_kind: str):
    """Train ``model`` on (points, target), save it, then the module's certify, verify and report.

    Writes ``model.*``, ``training.json``, ``fit.json`` and ``timings.json`` into ``out_dir`` and
    returns ``(fit_stats, certificate, verification)``.
    """
    from .._io import write_json
    from ..train import train

    start = time.perf_counter()
    history = train(model, points, target, "mse", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    seed=cfg.seed, progress=progress, description=f"{module.__name__.rsplit('.', 1)[-1]} training")
    write_json(out_dir / "training.json", history.to_dict())
    return certify_trained(module, model, points, target, out_dir, times, progress, fit_kind, start)


def certify_trained(module, model, points, target, out_dir, times: dict, progress: bool, fit_kind: str,
                    start: float | None = None):
    """Save a trained ``model``, measure its fit, then the module's certify, verify and report.

    ``start`` (a ``time.perf_counter()`` value) opens the "training" stage; returns
    ``(fit_stats, certificate, verification)``.
    """
    import torch

    from .._io import write_json
    from ..nn import save_model

    start = time.perf_counter() if start is None else start
    save_model(model, out_dir / "model")
    with torch.no_grad():
        residual = model(points).numpy()[:, 0] - target.numpy()[:, 0]
    fit_stats = {"rmse": float(np.sqrt(np.mean(residual**2))), "max_abs": float(np.abs(residual).max()),
                 "u_max": float(np.abs(target.numpy()).max()), "kind": fit_kind}
    write_json(out_dir / "fit.json", fit_stats)
    start = stage("training", times, start)
    certificate = module.certify(out_dir, model=model, progress=progress)
    start = stage("certificate", times, start)
    verification = module.verify(out_dir, model=model)
    start = stage("verification", times, start)
    module.report(out_dir)
    stage("report", times, start)
    write_json(out_dir / "timings.json", times)
    return fit_stats, certificate, verification
