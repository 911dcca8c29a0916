"""Pieces every certified-surrogate task shares: options, stage timing, training then certify/verify/report."""

from __future__ import annotations

import math
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..exceptions import ConfigurationError

__all__ = ["fit_and_certify", "certify_trained", "config_from_options", "check_blocks", "check_config", "stage", "verify_run"]

_AT_LEAST = {
    # integers that may be 0 (sizes of optional work, seeds and indices)
    "seed": 0, "sample": 0, "local_block": 0, "refine_budget": 0, "random_points": 0, "adversarial_starts": 0,
    "adversarial_steps": 0, "early_stopping": 0,
    # grids too coarse to mean anything: a 1-cell grid "certified" 306% of max|u|
    "grid": 8, "frames": 3, "family_grid": 8, "family_frames": 3, "n_kappa": 2, "sensor_grid": 2,
}
"""Smallest allowed value of integer options; every other integer option must be >= 1."""

_FRACTIONS = {"test_fraction", "signal_fraction", "background_rate"}
"""Real options that must lie strictly between 0 and 1; every other real option must be > 0."""

_NON_NEGATIVE = {"stability"}
"""Real options that may be 0 (weights of optional penalties: 0 turns them off)."""

_MIN_CERT_CELLS = 2
"""Cells per axis of a certificate grid, at least."""


def _flag(name: str) -> str:
    return f"'{name}' (--{name.replace('_', '-')})"


def check_config(cfg) -> None:
    """Refuse out-of-range options before any work, naming the option.

    Integers must be integers (>= 1, or the minimum in :data:`_AT_LEAST`), reals finite and
    > 0 (fractions in (0, 1)), integer lists positive (certificate grids >= 2 per axis). ``None``
    means "the task's default" and strings are checked by the tasks themselves.
    """
    for f in fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        declared = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if declared == "int" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ConfigurationError(f"{_flag(name)} must be an integer. Got {value!r}.")
        if declared == "float" and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            raise ConfigurationError(f"{_flag(name)} must be a number. Got {value!r}.")
        if declared == "list" and value is not None and not isinstance(value, (list, tuple)):
            raise ConfigurationError(f"{_flag(name)} must be a list (from Python e.g. [32, 32]; on the command line "
                                     f"32,32). Got {value!r}.")
        if name == "loss" and value is not None:
            from ..train.loop import resolve_loss

            try:
                resolve_loss(value)
            except ConfigurationError as err:
                raise ConfigurationError(f"{_flag(name)}: {err}") from None
        if value is None or isinstance(value, (bool, str)):
            continue
        if isinstance(value, (int, np.integer)):
            minimum = _AT_LEAST.get(name, 1)
            if value < minimum:
                raise ConfigurationError(f"{_flag(name)} must be an integer >= {minimum}. Got {value}.")
        elif isinstance(value, (float, np.floating)):
            if name in _FRACTIONS:
                if not 0 < value < 1:
                    raise ConfigurationError(f"{_flag(name)} must lie strictly between 0 and 1. Got {value}.")
            elif name in _NON_NEGATIVE:
                if not (math.isfinite(value) and value >= 0):
                    raise ConfigurationError(f"{_flag(name)} must be a finite number >= 0. Got {value}.")
            elif not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{_flag(name)} must be a finite number > 0. Got {value}.")
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                                 for v in value):
            minimum = _MIN_CERT_CELLS if name.startswith("cert_cells") else 1
            if min(value) < minimum:
                raise ConfigurationError(f"{_flag(name)} must hold integers >= {minimum}. Got {list(value)}.")
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (int, float)) for v in value):
            bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                   or not math.isfinite(v)]
            if bad:
                raise ConfigurationError(f"{_flag(name)} must hold finite numbers. Got {list(value)}.")


def check_blocks(local_block, d: int) -> None:
    """Refuse a ``local_block`` that is not one size >= 0 or ``d`` sizes >= 1, naming the option."""
    from ..bounds.certifier import block_sizes

    try:
        block_sizes(local_block, d)
    except ConfigurationError:
        raise ConfigurationError(f"{_flag('local_block')} must be an integer >= 0 or {d} integers >= 1 (one per "
                                 f"axis). Got {local_block!r}.") from None


def config_from_options(cls, quick: bool, seed: int, options: dict, what: str):
    """``cls.quick(**options)`` or ``cls(**options)`` with ``seed``, checked; unknown options raise clearly."""
    known = {f.name for f in fields(cls)}
    unknown = set(options) - known
    if unknown:
        raise ConfigurationError(f"Unknown {what} option(s) {sorted(unknown)}; known: {sorted(known)}.")
    cfg = (cls.quick if quick else cls)(**{**options, "seed": seed})
    check_config(cfg)
    return cfg


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
        density=int(config["density"] if density is None else density),
        dense_cells=int(config["dense_cells"]),
        random_points=int(config["random_points"]),
        adversarial_starts=int(config["adversarial_starts"]),
        adversarial_steps=int(config["adversarial_steps"]),
        seed=int(config["seed"] if seed is None else seed) + 7,
    )
    from .._io import sha256_of

    document = result.to_dict()
    document["reference"] = certificate.document.get("reference", reference.statement()["reference"])
    document["certificate_sha256"] = sha256_of(Path(run_dir) / "certificate.json")  # what was verified
    document["certificate_grid"] = [int(n) for n in certificate.cells.per_cell.shape]
    return document


def fit_and_certify(module, model, points, target, cfg, out_dir, times: dict, progress: bool, fit_kind: str,
                    regularizer=None):
    """Train ``model`` on (points, target), save it, then the module's certify, verify and report.

    ``regularizer`` (e.g. :class:`~lipsurrogate.train.stability.PairStability`) is added to the
    training loss. Writes ``model.*``, ``training.json``, ``fit.json`` and ``timings.json`` into ``out_dir`` and
    returns ``(fit_stats, certificate, verification)``.
    """
    from .._io import write_json
    from ..train import train

    start = time.perf_counter()
    history = train(model, points, target, getattr(cfg, "loss", "mse"), steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    seed=cfg.seed, progress=progress, description=f"{module.__name__.rsplit('.', 1)[-1]} training",
                    threads="auto", regularizer=regularizer)
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
    from .._threads import threads_for_load, torch_threads
    from ..nn import save_model

    start = time.perf_counter() if start is None else start
    save_model(model, out_dir / "model")
    with torch.no_grad():
        residual = model(points).numpy()[:, 0] - target.numpy()[:, 0]
    fit_stats = {"rmse": float(np.sqrt(np.mean(residual**2))), "max_abs": float(np.abs(residual).max()),
                 "u_max": float(np.abs(target.numpy()).max()), "kind": fit_kind}
    write_json(out_dir / "fit.json", fit_stats)
    start = stage("training", times, start)
    with torch_threads(threads_for_load()):  # the free cores now: concurrent runs share them
        certificate = module.certify(out_dir, model=model, progress=progress)
        start = stage("certificate", times, start)
        verification = module.verify(out_dir, model=model)
    start = stage("verification", times, start)
    module.report(out_dir)
    stage("report", times, start)
    write_json(out_dir / "timings.json", times)
    return fit_stats, certificate, verification
