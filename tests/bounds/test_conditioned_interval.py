"""The certified slope in the condition as an interpolation guarantee (issue 19).

``condition_interval`` against analytic functions (a function at the bounded rate pins the
interval to one point, a constant one leaves it as wide as the bound allows) and on random
conditioned networks whose condition is in GeV-like units (``cond_range`` 300 GeV per unit):
every measured value lies inside its certified interval, the interval shrinks to 0 as the
mass approaches a neighbour, and the per-event segment slopes are certified and tighter.
"""

import numpy as np
import pytest
import torch

from lipsurrogate.bounds.conditioned import (condition_interval, conditioned_constants, conditioned_derivative_intervals,
                                             segment_condition_slopes)
from lipsurrogate.exceptions import CertificationError
from lipsurrogate.nn.conditioning import ConditionedLipschitzMLP

D = 4
BOX = [[-2.0, 2.0]] * D + [[500.0, 1500.0]]  # features, then a mass in GeV


def _model(mechanism, position, seed):
    # cond_range in GeV: c = (m - 600) / 300, so one unit of c is 300 GeV, not 1
    model = ConditionedLipschitzMLP(D, 1, 1, [16, 16], mechanism=mechanism, position=position,
                                    cond_range=[[300.0, 900.0]], lipschitz=2.0, cond_strength=1.5, seed=seed)
    with torch.no_grad():  # raw weights large enough that the norm constraints are active
        for name, p in model.named_parameters():
            if name.endswith("original"):
                p.mul_(3.0)
    return model.plain_float64()


def _inside(f, lo, hi, *ends):
    """Inside up to the float64 evaluation error of the network values (the interval is certified for
    the exact function; where it closes to one point, that rounding decides): 1e-12 relative."""
    slack = 1e-12 * (1 + np.abs(f) + sum(np.abs(e) for e in ends))
    return np.all((f >= lo - slack) & (f <= hi + slack))


def _f(plain, x, mass):
    with torch.no_grad():
        return plain(torch.from_numpy(np.c_[x, np.full(len(x), float(mass))]))[:, 0].numpy()


def test_interval_of_analytic_functions():
    L, ca, cb = 0.5, 1.0, 5.0
    for c in (1.0, 2.0, 4.5, 5.0):
        # f at the full rate L from one end to the other: the interval is the single value L c
        lo, hi = condition_interval(L * ca, L * cb, ca, cb, c, L)
        assert lo <= L * c <= hi and hi - lo <= 1e-14
        # f constant: nothing is learnt from the ends beyond |f - f_a| <= L d
        lo, hi = condition_interval(3.0, 3.0, ca, cb, c, L)
        assert hi - lo == pytest.approx(2 * L * min(c - ca, cb - c), abs=1e-14)
    # separate bounds on each side: the tighter one decides
    lo, hi = condition_interval(np.array([0.0]), np.array([0.0]), 0.0, 4.0, 1.0, 2.0, 0.1)
    assert hi[0] == pytest.approx(0.3) and lo[0] == pytest.approx(-0.3)
    with pytest.raises(CertificationError, match="c_low <= c <= c_high"):
        condition_interval(0.0, 0.0, 1.0, 2.0, 3.0, 1.0)
    with pytest.raises(CertificationError, match=">= 0"):
        condition_interval(0.0, 0.0, 1.0, 2.0, 1.5, -1.0)
    with pytest.raises(CertificationError, match=">= 0"):
        condition_interval(0.0, 0.0, 1.0, 2.0, 1.5, np.nan)


@pytest.mark.parametrize("mechanism, position", [("affine", "all"), ("concat", "begin"), ("scale", "end"),
                                                 ("bias", "begin")])
def test_network_values_lie_in_their_certified_intervals(rng, mechanism, position):
    plain = _model(mechanism, position, seed=int(rng.integers(1000)))
    L = conditioned_constants(plain, BOX, splits=1)[-1]  # per GeV
    x = rng.uniform(-2, 2, size=(3000, D))
    ma, mb = 500.0, 1500.0
    fa, fb = _f(plain, x, ma), _f(plain, x, mb)
    for mh in (510.0, 750.0, 1000.0, 1250.0):
        fh = _f(plain, x, mh)
        lo, hi = condition_interval(fa, fb, ma, mb, mh, L)
        assert _inside(fh, lo, hi, fa, fb)
        assert np.all(hi - lo <= 2 * L * min(mh - ma, mb - mh) * (1 + 1e-12))
        # not vacuous: the mass moves f by a fair share of what the bound allows, so a bound in
        # the wrong units (c instead of GeV: 300 times narrower) would be violated
        assert np.abs(fh - fa).max() > 0.01 * L * (mh - ma)
        # per-event slopes on each event's segments: certified, and never looser than the box's
        sa = segment_condition_slopes(plain, x, ma, mh)[:, 0]
        sb = segment_condition_slopes(plain, x, mh, mb, chunk=700)[:, 0]
        assert np.all(sa <= L * (1 + 1e-9)) and np.all(sb <= L * (1 + 1e-9))
        lo2, hi2 = condition_interval(fa, fb, ma, mb, mh, sa, sb)
        assert _inside(fh, lo2, hi2, fa, fb)
        assert np.all(hi2 - lo2 <= hi - lo + 1e-12)


def test_interval_shrinks_to_zero_at_a_neighbour(rng):
    plain = _model("affine", "all", seed=5)
    L = conditioned_constants(plain, BOX, splits=1)[-1]
    x = rng.uniform(-2, 2, size=(500, D))
    fa, fb = _f(plain, x, 500.0), _f(plain, x, 1500.0)
    widths = []
    for eps in (200.0, 20.0, 2.0, 0.2, 0.0):
        lo, hi = condition_interval(fa, fb, 500.0, 1500.0, 500.0 + eps, L)
        fh = _f(plain, x, 500.0 + eps)
        assert _inside(fh, lo, hi, fa, fb)
        widths.append((hi - lo).max())
        assert widths[-1] <= 2 * L * eps * (1 + 1e-12) + 1e-12
    assert widths == sorted(widths, reverse=True) and widths[-1] <= 1e-12


def test_condition_derivatives_alone_match_all_derivatives(rng):
    plain = _model("affine", "all", seed=2)
    x = rng.uniform(-2, 2, size=(300, D))
    lo = np.c_[x - 0.1, np.full(300, 600.0)]
    hi = np.c_[x + 0.1, np.full(300, 900.0)]
    a, b = conditioned_derivative_intervals(plain, lo, hi)
    c, d = conditioned_derivative_intervals(plain, lo, hi, wrt="condition")
    assert c.shape == (300, 1)
    # the same intervals up to the order of the float64 sums (each certified with its own padding)
    scale = np.abs(a[:, -1:]).max() + np.abs(b[:, -1:]).max()
    assert np.allclose(c, a[:, -1:], rtol=0, atol=1e-12 * scale) and np.allclose(d, b[:, -1:], rtol=0, atol=1e-12 * scale)
    with pytest.raises(CertificationError, match="'wrt' must be"):
        conditioned_derivative_intervals(plain, lo, hi, wrt="x")
    with pytest.raises(CertificationError, match="c_low <= c_high"):
        segment_condition_slopes(plain, x, 900.0, 600.0)
    with pytest.raises(CertificationError, match="shape"):
        segment_condition_slopes(plain, x[:, :2], 600.0, 900.0)
