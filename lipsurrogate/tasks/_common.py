"""Pieces every certified-surrogate task shares: options, stage timing, training then certify/verify/report."""

from __future__ import annotations

import time
from dataclasses import fields

import numpy as np

from ..exceptions import ConfigurationError

__all__ = ["fit_and_certify", "certify_trained", "config_from_options", "stage", "verify_run"]


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


def verify_run(run_dir, model, reference, config: dict, density=None, seed=None) -> dict:
    """:func:`lipsurrogate.bounds.verify` of a run folder's certificate with the run's sampling settings.

    Returns the JSON document (``verification.json`` without task extras), with the reference
    named as the certificate's statement names it.
    """
    from ..bounds import Certificate, verify

    certificate = Certificate.load(run_dir)
    result = verify(
        certificate, model, reference,
        density=int(density or config["density"]),
        dense_cells=int(config["dense_cells"]),
        random_points=int(config["random_points"]),
        adversarial_starts=int(config["adversarial_starts"]),
        adversarial_steps=int(config["adversarial_steps"]),
        seed=int(config["seed"] if seed is None else seed) + 7,
    )
    document = result.to_dict()
    document["reference"] = certificate.document.get("reference", reference.statement()["reference"])
    return document


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
