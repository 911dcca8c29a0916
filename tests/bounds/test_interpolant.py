"""The data's multilinear interpolant: exact on multilinear data, derivative ranges that contain every slope."""

import itertools

import numpy as np
import pytest
import torch

from lipsurrogate.bounds.interpolant import MultilinearInterpolant
from lipsurrogate.exceptions import CertificationError


def _random_grid(rng, d, smooth=True):
    axes = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=rng.integers(2, 6))])) for _ in range(d)]
    mesh = np.meshgrid(*axes, indexing="ij")
    values = np.sin(sum((k + 1.3) * m for k, m in enumerate(mesh))) if smooth else rng.normal(size=mesh[0].shape)
    return axes, values


@pytest.mark.parametrize("d", [1, 2, 3])
def test_reproduces_multilinear_functions_and_vertices(rng, d):
    axes = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=3)])) for _ in range(d)]
    coef = rng.normal(size=2**d)

    def g(x):  # a multilinear function: sum over subsets S of c_S prod_{k in S} x_k
        return sum(c * np.prod(x[:, list(S)], axis=1) if S else c * np.ones(len(x))
                   for c, S in zip(coef, itertools.chain.from_iterable(itertools.combinations(range(d), r) for r in range(d + 1))))

    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    interp = MultilinearInterpolant(axes, g(mesh.reshape(-1, d)).reshape(mesh.shape[:-1]))
    pts = rng.uniform(0, 1, size=(2000, d))
    assert np.allclose(interp(pts), g(pts), atol=1e-12)
    assert np.array_equal(interp(mesh.reshape(-1, d)), interp.data.reshape(-1))
    with torch.no_grad():
        assert np.allclose(interp.torch(torch.from_numpy(pts)).numpy(), interp(pts), atol=1e-13)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_derivative_ranges_contain_every_slope(rng, d):
    axes, values = _random_grid(rng, d, smooth=False)
    interp = MultilinearInterpolant(axes, values)
    lo, hi = interp.cell_derivative_intervals()
    glob = interp.global_constants()
    pts = torch.tensor(rng.uniform(0, 1, size=(3000, d)), requires_grad=True)
    (grad,) = torch.autograd.grad(interp.torch(pts).sum(), pts)
    idx = tuple(np.clip(np.searchsorted(a, pts.detach().numpy()[:, k], side="right") - 1, 0, len(a) - 2)
                for k, a in enumerate(axes))
    g = grad.numpy()
    assert np.all(g >= lo[idx] - 1e-12) and np.all(g <= hi[idx] + 1e-12)
    assert np.all(np.abs(g) <= glob)
    # the global constant is attained: it is the largest finite difference
    for k in range(d):
        assert glob[k] == pytest.approx(np.abs(np.diff(values, axis=k) / np.diff(axes[k]).reshape(
            [-1 if i == k else 1 for i in range(d)])).max(), rel=1e-12)
    # sub-boxes of single cells: the ranges contain the slopes inside and shrink
    cell = tuple(rng.integers(0, len(a) - 1) for a in axes)
    c_lo = np.array([a[i] for a, i in zip(axes, cell)])
    c_hi = np.array([a[i + 1] for a, i in zip(axes, cell)])
    sub_lo = c_lo + rng.uniform(0, 0.5, size=(50, d)) * (c_hi - c_lo)
    sub_hi = sub_lo + rng.uniform(0.05, 0.5, size=(50, d)) * (c_hi - c_lo)
    b_lo, b_hi = interp.box_derivative_intervals(sub_lo, sub_hi)
    assert np.all(b_lo >= lo[cell] - 1e-9) and np.all(b_hi <= hi[cell] + 1e-9)
    inner = torch.tensor(sub_lo + rng.uniform(size=sub_lo.shape) * (sub_hi - sub_lo), requires_grad=True)
    (gi,) = torch.autograd.grad(interp.torch(inner).sum(), inner)
    assert np.all(gi.numpy() >= b_lo - 1e-12) and np.all(gi.numpy() <= b_hi + 1e-12)


def test_bad_input_is_refused():
    with pytest.raises(CertificationError, match="strictly increasing"):
        MultilinearInterpolant([np.array([0.0, 0.0, 1.0])], np.zeros(3))
    with pytest.raises(CertificationError, match="NaN"):
        MultilinearInterpolant([np.arange(3.0)], np.array([0.0, np.nan, 1.0]))
    with pytest.raises(CertificationError, match="one coordinate vector per axis"):
        MultilinearInterpolant([np.arange(3.0)], np.zeros((3, 3)))
    interp = MultilinearInterpolant([np.arange(3.0)], np.zeros(3))
    with pytest.raises(CertificationError, match="outside the data grid"):
        interp(np.array([[2.5]]))
    with pytest.raises(CertificationError, match=r"shape \(n, 1\)"):
        interp(np.zeros((2, 2)))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_derivative_intervals_contain_every_slope_in_the_box(rng, d):
    axes = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=4)])) for _ in range(d)]
    interp = MultilinearInterpolant(axes, rng.normal(size=[len(a) for a in axes]))
    box = np.array([[0.0, 1.0]] * d)
    # sub-boxes: some inside one cell, some across many
    a, b = rng.uniform(0, 1, size=(2, 200, d))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    lo[:50] = hi[:50] - 1e-3 * rng.uniform(size=(50, d))
    dlo, dhi = interp.derivative_intervals(lo, hi, box)
    assert np.all(dlo <= dhi)
    g = interp.global_constants(box)
    assert np.all(np.maximum(np.abs(dlo), np.abs(dhi)) <= g * (1 + 1e-12))
    h = 1e-7
    for _ in range(20):
        x = lo + rng.uniform(size=lo.shape) * (hi - lo)
        for k in range(d):
            step = np.zeros(d)
            step[k] = h
            inside = (x[:, k] - h >= lo[:, k]) & (x[:, k] + h <= hi[:, k])
            slope = (interp(x + step) - interp(x - step)) / (2 * h)  # exact up to rounding off cell faces
            assert np.all(slope[inside] >= dlo[inside, k] - 1e-6) and np.all(slope[inside] <= dhi[inside, k] + 1e-6)
