"""Property tests: per-cell certificates (exact program, local constants, refinement) are never exceeded.

Random Lipschitz networks minus random smooth functions with known per-coordinate constants, on
random rectilinear grids: every sampled point's error stays below its cell's certified bound.
"""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipsurrogate.bounds import evaluate_float64, extract_chain, lipschitz_bounds
from lipsurrogate.bounds.cells import cell_bounds, locate_cells
from lipsurrogate.bounds.local import network_derivative_intervals
from lipsurrogate.bounds.refine import refine_certificate
from lipsurrogate.nn import LipschitzMLP, to_plain


def _smooth(rng, d):
    """u(x) = A sin(w . x + phi): |d u / d x_k| <= |A w_k|, derivative range known on every box."""
    amp, w, phi = rng.uniform(0.2, 2.0), rng.uniform(-4, 4, size=d), rng.uniform(0, 6.3)

    def u(x):
        return amp * np.sin(x @ w + phi)

    return u, np.abs(amp * w)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 3), width=st.sampled_from([8, 16]), depth=st.integers(1, 3),
       lam=st.floats(0.3, 4.0), scale=st.sampled_from([0.1, 1.0, 10.0]), local=st.booleans(),
       refine=st.booleans(), seed=st.integers(0, 10_000))
def test_certificates_hold_on_random_networks_functions_and_grids(d, width, depth, lam, scale, local, refine, seed):
    rng = np.random.default_rng(seed)
    model = LipschitzMLP(d, 1, [width] * depth, lipschitz=lam, norm="l1", seed=seed).eval()
    with torch.no_grad():  # raw weights large enough that the norm constraints are active
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(scale)
    u, lip_u = _smooth(rng, d)
    lip_f = lipschitz_bounds(model).per_input[0]
    edges = [np.sort(np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=rng.integers(1, 6 if d < 3 else 4))]))
             for _ in range(d)]
    chain = extract_chain(model)

    def errors(p):
        f, err = evaluate_float64(chain, p)
        return f[:, 0] - u(p), err[:, 0] + 1e-14 * (1 + np.abs(u(p)))

    grid = np.stack(np.meshgrid(*edges, indexing="ij"), -1)
    e, m = errors(grid.reshape(-1, d))
    local_lip = None
    box_constants = None
    if local:  # network ranges by interval propagation; u's range bounded crudely by its constant
        def network_plus_u(lo, hi):
            flo, fhi = network_derivative_intervals(model, lo, hi)
            return np.maximum(np.abs(fhi), np.abs(flo)) + lip_u

        box_constants = network_plus_u

        lo = np.stack(np.meshgrid(*[a[:-1] for a in edges], indexing="ij"), -1).reshape(-1, d)
        hi = np.stack(np.meshgrid(*[a[1:] for a in edges], indexing="ij"), -1).reshape(-1, d)
        local_lip = box_constants(lo, hi).reshape(*[len(a) - 1 for a in edges], d)
    cert = cell_bounds(e.reshape(grid.shape[:-1]), edges, lip_f + lip_u, m.reshape(grid.shape[:-1]),
                       local_lipschitz=local_lip)
    assert np.all(cert.per_cell <= cert.closed_form) and np.all(cert.closed_form <= cert.naive)
    if refine:
        cert = refine_certificate(cert, errors, local_constants=box_constants, budget=3000, max_rounds=3).certificate
    pts = rng.uniform(0, 1, size=(4000, d))
    with torch.no_grad():
        f = to_plain(model).double()(torch.from_numpy(pts))[:, 0].numpy()
    assert np.all(np.abs(f - u(pts)) <= cert.per_cell[locate_cells(pts, edges)])


class _SineReference:
    """u = A sin(w . x + phi) with exact derivative ranges and affine forms (Hessian range) on boxes."""

    def __init__(self, rng, d):
        from lipsurrogate.bounds.reference import FunctionReference

        self.amp, self.w, self.phi = rng.uniform(0.2, 2.0), rng.uniform(-4, 4, size=d), rng.uniform(0, 6.3)
        self.inner = FunctionReference(lambda x: self.amp * np.sin(x @ self.w + self.phi), np.abs(self.amp * self.w),
                                       margin=1e-14 * (1 + 10 * np.abs(self.w).sum()))
        self.in_features = d

    def values(self, p):
        return self.inner.values(p)

    def global_constants(self, box):
        return self.inner.global_constants(box)

    def statement(self):
        return self.inner.statement()

    def _phase(self, lo, hi):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        return c @ self.w + self.phi, r @ np.abs(self.w) * (1 + 1e-12) + 1e-12 * (1 + np.abs(c) @ np.abs(self.w))

    def derivative_intervals(self, lo, hi, box):
        from lipsurrogate.bounds.local import cos_range

        clo, chi = cos_range(*self._phase(lo, hi))
        a, b = self.amp * self.w * clo[:, None], self.amp * self.w * chi[:, None]
        pad = 1e-12 * np.abs(self.amp * self.w)
        return np.minimum(a, b) - pad, np.maximum(a, b) + pad

    def derivative_forms(self, lo, hi, centre, half, box):
        from lipsurrogate.bounds.affine import DerivativeForms
        from lipsurrogate.bounds.local import cos_range

        at = DerivativeForms.from_intervals(*self.derivative_intervals(centre, centre, box))
        pc, pr = self._phase(lo, hi)
        slo, shi = cos_range(pc - np.pi / 2, pr)  # the range of sin(p)
        ww = -self.amp * self.w[:, None] * self.w[None, :]  # d_j d_k u = -A w_j w_k sin(p)
        a, b = ww[None] * slo[:, None, None], ww[None] * shi[:, None, None]
        hlo, hhi = np.minimum(a, b) - 1e-12 * np.abs(ww), np.maximum(a, b) + 1e-12 * np.abs(ww)
        gen = (hlo + hhi) / 2
        rad = (hhi - hlo) / 2 * (1 + 1e-12)
        return DerivativeForms(at.centre, gen, at.radius + np.einsum("nkj,nj->nk", rad, half) * (1 + 1e-12))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 3), width=st.sampled_from([8, 16]), depth=st.integers(1, 3),
       lam=st.floats(0.3, 4.0), scale=st.sampled_from([0.1, 1.0, 10.0]), block=st.sampled_from([1, 2]),
       budget=st.sampled_from([0, 3000]), seed=st.integers(0, 10_000))
def test_signed_affine_certificates_hold_through_certify(d, width, depth, lam, scale, block, budget, seed):
    """The certifier's default path (affine error slopes, signed program, refinement) on random cases."""
    from lipsurrogate.bounds import certify

    rng = np.random.default_rng(seed)
    model = LipschitzMLP(d, 1, [width] * depth, lipschitz=lam, norm="l1", seed=seed).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(scale)
    ref = _SineReference(rng, d)
    cert = certify(model, ref, np.array([[0.0, 1.0]] * d), [4] * d, local_block=block, refine_budget=budget)
    assert cert.document["slopes"] == "both" and "affine" in cert.document["local_constants"]
    pts = rng.uniform(0, 1, size=(4000, d))
    with torch.no_grad():
        f = to_plain(model).double()(torch.from_numpy(pts))[:, 0].numpy()
    assert np.all(np.abs(f - ref.values(pts)[0]) <= cert.cells.per_cell[locate_cells(pts, cert.cells.edges)])
