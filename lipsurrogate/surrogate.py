"""Use a certified surrogate inside a solver code: ``lipsurrogate.load(run_dir)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .exceptions import CertificationError, ConfigurationError

__all__ = ["Surrogate", "load"]


class Surrogate:
    """A trained network with its per-cell certificate.

    ``predict(points)`` evaluates the network (float64); with ``with_bound=True`` it also returns,
    per point, the **certified** bound on :math:`|f - u|` of the certificate cell containing the
    point. Points outside the certified box raise an error instead of extrapolating silently.
    """

    def __init__(self, model, certificate, document: dict, run_dir: Path) -> None:
        from .nn import to_plain

        # the certificate is about the saved effective weights: evaluate exactly those, in float64
        # (a parametrized model in float64 would renormalise its weights in float64, which is a
        # slightly different function)
        self.model = to_plain(model).double()
        self.certificate = certificate
        self.document = document
        self.run_dir = run_dir
        self.inputs = list(document.get("inputs", [f"x{i}" for i in range(len(certificate.edges))]))
        """Names of the columns that :meth:`predict` expects, in order."""
        self.box = np.array([[e[0], e[-1]] for e in certificate.edges])

    @property
    def bound(self) -> float:
        """The global certified bound on :math:`\\max |f - u|` over the box."""
        return self.certificate.bound

    def predict(self, points, with_bound: bool = False):
        """Values at ``points`` of shape (n, d); and per-point certified bounds if ``with_bound``.

        The bound of a point is its cell's certified bound. Certificates computed with
        ``tighten="dominant"`` (the default of :func:`~lipsurrogate.bounds.certify`) tighten only
        the cells that may hold the largest bound; the others keep a wider, still certified,
        bound below 0.9 times the largest vertex error (``certificate.json``, key ``tightened``).
        Certify with ``tighten="all"`` (``--tighten all``) for the tightest bound in every cell.
        """
        from .bounds.cells import locate_cells

        x = np.asarray(points, dtype=np.float64)
        d = len(self.box)
        if x.ndim != 2 or x.shape[1] != d:
            raise ConfigurationError(f"Expected points of shape (n, {d}) with columns {self.inputs}. Got {x.shape}.")
        outside = np.any((x < self.box[:, 0]) | (x > self.box[:, 1]) | ~np.isfinite(x), axis=1)
        if np.any(outside):
            i = int(np.flatnonzero(outside)[0])
            raise CertificationError(
                f"{int(outside.sum())} point(s) lie outside the certified box {self.box.tolist()} "
                f"(first: {x[i].tolist()}); the surrogate does not extrapolate silently."
            )
        with torch.no_grad():
            values = self.model(torch.from_numpy(x))[:, 0].numpy()
        if not np.all(np.isfinite(values)):
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise CertificationError(f"The network is not finite at {x[i].tolist()} ({values[i]}); no bound holds for "
                                     "such a value.")
        if not with_bound:
            return values
        return values, self.certificate.per_cell[locate_cells(x, self.certificate.edges)]


def load(run_dir) -> Surrogate:
    """Load the surrogate and certificate of any certified run folder (no unpickling anywhere)."""
    from .bounds import Certificate
    from .nn import load_model

    run_dir = Path(run_dir)
    certificate = Certificate.load(run_dir)
    model = load_model(run_dir / "model")
    return Surrogate(model, certificate.cells, certificate.document, run_dir)
