r"""Check a certificate against the truth: dense sampling, random points and adversarial search.

A certificate is checked, not trusted (certificates.md section 5). Every sample :math:`x` is
compared with the bound of the cell that contains it:

* **dense**: a grid ``density`` times finer than the certificate grid inside selected cells
  (the cells with the largest bounds, the largest vertex errors, and random cells);
* **random**: points drawn uniformly in the whole box;
* **adversarial**: gradient ascent on :math:`|f - u|` started in the worst cells, projected back
  into the cell after each step.

Reported: ``violations`` (must be 0), the observed max error (a **measured lower bound** of the
true max error), ``tightness`` = certified bound / observed max (1 is ideal), and the per-cell
tightness distribution over the densely sampled cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..exceptions import ConfigurationError
from .cells import CellCertificate, locate_cells

__all__ = ["VerificationResult", "verify_certificate", "verify", "float64_network"]


@dataclass
class VerificationResult:
    """What the sampling found (all errors are **measured** in float64)."""

    violations: int
    samples: dict
    max_error_observed: float
    bound: float
    worst_point: list
    per_cell_tightness: dict
    worst_violation: float
    non_finite: int = 0

    @property
    def passed(self) -> bool:
        """True when no sample exceeded its cell's bound and every sampled error was finite."""
        return self.violations == 0 and self.non_finite == 0

    @property
    def tightness(self) -> float:
        """Certified bound / observed max error (a ratio; 1 is ideal, below 1 would mean a violation)."""
        return self.bound / self.max_error_observed if self.max_error_observed > 0 else float("inf")

    def to_dict(self) -> dict:
        """The result as JSON-ready numbers, each with its kind (measured or certified)."""
        return {
            "passed": self.passed,
            "violations": self.violations,
            "non_finite": self.non_finite,
            "max_error_observed": self.max_error_observed,
            "max_error_observed_kind": "measured (a lower bound on the true max error)",
            "bound": self.bound,
            "tightness": self.tightness,
            "tightness_definition": "certified bound / observed max error (1 is ideal, lower is better)",
            "samples": self.samples,
            "worst_point": self.worst_point,
            "worst_violation": self.worst_violation,
            "per_cell_tightness": self.per_cell_tightness,
        }


def _dense_points(cert: CellCertificate, cells: np.ndarray, density: int) -> np.ndarray:
    """Points of a grid ``density`` times finer than the cell, vertices included."""
    d = len(cert.edges)
    frac = np.stack(np.meshgrid(*[np.linspace(0, 1, density + 1)] * d, indexing="ij"), -1).reshape(-1, d)
    lo = np.stack([cert.edges[k][cells[:, k]] for k in range(d)], 1)
    hi = np.stack([cert.edges[k][cells[:, k] + 1] for k in range(d)], 1)
    return (lo[:, None, :] + frac[None] * (hi - lo)[:, None, :]).reshape(-1, d)


def verify_certificate(
    cert: CellCertificate,
    error_fn: Callable[[np.ndarray], np.ndarray],
    error_torch: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    density: int = 3,
    dense_cells: int = 600,
    random_points: int = 100_000,
    adversarial_starts: int = 32,
    adversarial_steps: int = 40,
    vertex_errors: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    chunk: int = 65_536,
) -> VerificationResult:
    """Sample :math:`|e| = |f - u|` and compare with the per-cell bounds of ``cert``.

    Parameters
    ----------
    cert : CellCertificate
    error_fn : callable
        ``points (n, d) -> e (n,)`` in float64.
    error_torch : callable, optional
        The same error as a differentiable torch function (float64) for adversarial search.
    density : int
        Refinement factor of the dense grid inside each selected cell.
    dense_cells : int
        Number of cells sampled densely: a third with the largest bounds, a third with the
        largest vertex errors (if ``vertex_errors`` is given), the rest at random.
    random_points, adversarial_starts, adversarial_steps
        Sizes of the other two samplers.
    rng : numpy.random.Generator
        Seeds the random choices.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    d = len(cert.edges)
    shape = cert.per_cell.shape
    flat_bound = cert.per_cell.reshape(-1)
    n_cells = flat_bound.size
    k = min(dense_cells, n_cells)
    chosen = list(np.argsort(flat_bound)[::-1][: k // 3])
    if vertex_errors is not None:
        # cells next to the largest vertex errors
        worst_vertices = np.argsort(np.abs(vertex_errors).reshape(-1))[::-1][: k // 3]
        vidx = np.stack(np.unravel_index(worst_vertices, vertex_errors.shape), 1)
        vidx = np.minimum(vidx, np.asarray(shape) - 1)
        chosen += list(np.ravel_multi_index(tuple(vidx.T), shape))
    chosen += list(rng.choice(n_cells, size=max(0, k - len(chosen)), replace=False))
    chosen = np.unique(np.asarray(chosen, dtype=np.int64))
    cells = np.stack(np.unravel_index(chosen, shape), 1)

    lo_box = np.array([e[0] for e in cert.edges])
    hi_box = np.array([e[-1] for e in cert.edges])
    sources = {
        "dense": _dense_points(cert, cells, density),
        "random": lo_box + rng.uniform(size=(random_points, d)) * (hi_box - lo_box),
    }
    violations, worst_violation, non_finite = 0, 0.0, 0
    observed, worst_point = 0.0, None
    samples = {}

    def check(points: np.ndarray) -> np.ndarray:
        nonlocal violations, worst_violation, observed, worst_point, non_finite
        errs = np.empty(len(points))
        for s in range(0, len(points), chunk):
            errs[s : s + chunk] = np.abs(error_fn(points[s : s + chunk]))
        bad = ~np.isfinite(errs)
        if bad.any():  # a NaN error is unbounded: count it, and let it dominate the maximum
            non_finite += int(bad.sum())
            errs[bad] = np.inf
        bounds = cert.per_cell[locate_cells(points, cert.edges)]
        excess = errs - bounds
        violations += int(np.sum(excess > 0))
        worst_violation = max(worst_violation, float(excess.max(initial=-np.inf)))
        i = int(np.argmax(errs))
        if errs[i] > observed:
            observed, worst_point = float(errs[i]), points[i].tolist()
        return errs

    dense_errs = check(sources["dense"])
    per = dense_errs.reshape(len(chosen), -1)
    cell_max = per.max(axis=1)
    samples["dense"] = {"points": int(len(sources["dense"])), "cells": int(len(chosen)), "density": int(density)}
    check(sources["random"])
    samples["random"] = {"points": int(random_points)}

    if non_finite:
        samples["adversarial"] = {"starts": 0, "method": "skipped: the error is not finite at sampled points"}
    elif error_torch is not None and adversarial_starts > 0:
        starts = chosen[np.argsort(flat_bound[chosen])[::-1][:adversarial_starts]]
        start_cells = np.stack(np.unravel_index(starts, shape), 1)
        lo = np.stack([cert.edges[j][start_cells[:, j]] for j in range(d)], 1)
        hi = np.stack([cert.edges[j][start_cells[:, j] + 1] for j in range(d)], 1)
        x = torch.tensor(lo + rng.uniform(size=lo.shape) * (hi - lo), dtype=torch.float64, requires_grad=True)
        lo_t, hi_t = torch.tensor(lo), torch.tensor(hi)
        step = torch.tensor((hi - lo) / 10)
        trail = []
        for _ in range(adversarial_steps):
            value = error_torch(x).abs().sum()
            (grad,) = torch.autograd.grad(value, x)
            with torch.no_grad():
                x += step * torch.sign(grad)
                x.copy_(torch.minimum(torch.maximum(x, lo_t), hi_t))
            trail.append(x.detach().numpy().copy())
        adv = np.concatenate(trail)
        adv_errs = check(adv)
        # adversarial points count towards their start cells' observed maxima
        index = {int(c): i for i, c in enumerate(chosen)}
        per_start = adv_errs.reshape(adversarial_steps, -1).max(axis=0)
        for c, e in zip(starts, per_start):
            cell_max[index[int(c)]] = max(cell_max[index[int(c)]], e)
        samples["adversarial"] = {"starts": int(len(starts)), "steps": int(adversarial_steps),
                                  "method": "signed-gradient ascent on |f - u|, projected into the start cell"}

    ratio = flat_bound[chosen] / np.maximum(cell_max, 1e-300)
    q = np.quantile(ratio, [0.0, 0.1, 0.5, 0.9, 1.0])
    per_cell_tightness = {
        "cells": int(len(chosen)),
        "min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]), "max": float(q[4]),
        "values": ratio.tolist() if len(ratio) <= 2000 else None,
        "definition": "per-cell certified bound / largest sampled |f - u| in that cell",
    }
    return VerificationResult(
        violations=violations,
        samples=samples,
        max_error_observed=observed,
        bound=cert.bound,
        worst_point=worst_point or [],
        per_cell_tightness=per_cell_tightness,
        worst_violation=worst_violation,
        non_finite=non_finite,
    )


def float64_network(model) -> torch.nn.Module:
    """A float64 copy of ``model`` in evaluation mode that computes with its saved effective weights.

    Networks of :mod:`lipsurrogate.nn` go through :func:`~lipsurrogate.nn.to_plain` (a
    parametrized network in float64 would renormalise its weights in float64, a slightly
    different function); any other module is deep-copied.
    """
    import copy

    from ..nn import to_plain
    from ..nn.serialization import _MODEL_CLASSES

    if type(model).__name__ in _MODEL_CLASSES and hasattr(model, "config"):
        return to_plain(model).double()
    return copy.deepcopy(model).double().eval()


def verify(
    certificate,
    model,
    reference,
    *,
    density: int = 3,
    dense_cells: int = 600,
    random_points: int = 100_000,
    adversarial_starts: int = 32,
    adversarial_steps: int = 40,
    seed: int = 0,
) -> VerificationResult:
    r"""Check a :class:`~lipsurrogate.bounds.Certificate` by sampling :math:`|f - u|` (dense, random, adversarial).

    ``model`` and ``reference`` must be those the certificate is about. Adversarial search needs
    the reference's differentiable :meth:`~lipsurrogate.bounds.reference.Reference.torch`; without
    it only dense and random samples are taken (the result says so). Returns a
    :class:`VerificationResult` whose errors are all **measured**; ``violations`` must be 0.
    """
    for name, value in (("density", density), ("dense_cells", dense_cells)):
        if int(value) < 1:
            raise ConfigurationError(f"'{name}' of verify (--{name.replace('_', '-')}) must be an integer >= 1. Got {value!r}.")
    for name, value in (("random_points", random_points), ("adversarial_starts", adversarial_starts),
                        ("adversarial_steps", adversarial_steps)):
        if int(value) < 0:
            raise ConfigurationError(f"'{name}' of verify must be an integer >= 0. Got {value!r}.")
    net = float64_network(model)

    def error_fn(p: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = net(torch.from_numpy(p))[:, 0].numpy()
        return f - reference.values(p)[0]

    error_torch = None
    if getattr(reference, "has_torch", False):
        def error_torch(p: torch.Tensor) -> torch.Tensor:
            return net(p)[:, 0] - reference.torch(p)

    result = verify_certificate(
        certificate.cells, error_fn, error_torch, density=int(density), dense_cells=int(dense_cells),
        random_points=int(random_points), adversarial_starts=int(adversarial_starts),
        adversarial_steps=int(adversarial_steps), vertex_errors=certificate.vertex_errors,
        rng=np.random.default_rng(int(seed)),
    )
    if error_torch is None:
        result.samples["adversarial"] = {"starts": 0, "method": "skipped: the reference has no differentiable torch form"}
    return result
