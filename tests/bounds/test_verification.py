import numpy as np
import torch

from lipsurrogate.bounds.cells import CellCertificate, cell_bounds
from lipsurrogate.bounds.verification import verify_certificate


def _setup():
    edges = [np.linspace(0, 1, 9), np.linspace(0, 2, 5)]
    X, Y = np.meshgrid(*edges, indexing="ij")
    e_fn = lambda p: np.sin(4 * p[:, 0]) * np.cos(3 * p[:, 1])  # noqa: E731 - |e_x| <= 4, |e_y| <= 3
    e_torch = lambda p: torch.sin(4 * p[:, 0]) * torch.cos(3 * p[:, 1])  # noqa: E731
    errors = e_fn(np.stack([X.ravel(), Y.ravel()], 1)).reshape(X.shape)
    return edges, errors, e_fn, e_torch


def test_a_valid_certificate_has_no_violations():
    edges, errors, e_fn, e_torch = _setup()
    cert = cell_bounds(errors, edges, [4.0, 3.0], margin=1e-15)
    result = verify_certificate(cert, e_fn, e_torch, density=4, dense_cells=32, random_points=5000,
                                adversarial_starts=8, adversarial_steps=20, vertex_errors=errors,
                                rng=np.random.default_rng(0))
    assert result.violations == 0
    assert 0 < result.max_error_observed <= cert.bound
    assert result.tightness >= 1
    assert set(result.samples) == {"dense", "random", "adversarial"}


def test_a_wrong_certificate_is_caught():
    edges, errors, e_fn, e_torch = _setup()
    good = cell_bounds(errors, edges, [4.0, 3.0], margin=1e-15)
    bad = CellCertificate(good.per_cell * 0.3, good.naive, good.edges, good.lipschitz, good.max_vertex_error)
    result = verify_certificate(bad, e_fn, e_torch, density=3, dense_cells=32, random_points=2000,
                                adversarial_starts=4, adversarial_steps=5, rng=np.random.default_rng(0))
    assert result.violations > 0 and result.worst_violation > 0
