"""Metrics against hand computations on small examples."""

import numpy as np
import pytest

from lipsurrogate.exceptions import DataSchemaError
from lipsurrogate.metrics import (
    average_precision,
    roc_auc,
    roc_curve,
    significance_ratio,
    threshold_at_background_rate,
)

LABELS = np.array([1, 0, 1, 1, 0, 0])
SCORES = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.1])


def test_roc_auc_by_hand():
    # Pairs (signal, background) ranked correctly: 0.9 beats all 3; 0.7 beats 2; 0.4 beats 2 -> 7 of 9.
    assert roc_auc(LABELS, SCORES) == pytest.approx(7 / 9)


def test_roc_auc_ties_count_half():
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 0, 1, 0], [0.2, 0.2, 0.9, 0.1]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_roc_curve_steps():
    fpr, tpr, thr = roc_curve(LABELS, SCORES)
    assert thr[0] == np.inf
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])


def test_average_precision_by_hand():
    # Precision at each signal: 1/1, 2/3, 3/4; each recall step is 1/3.
    assert average_precision(LABELS, SCORES) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)


def test_significance_ratio_by_hand():
    # Cuts keep (s, b) = (1,0), (1,1), (2,1), (3,1), (3,2), (3,3): s/sqrt(s+b) max is 3/2 at (3,1).
    assert significance_ratio(LABELS, SCORES) == pytest.approx(1.5 / np.sqrt(3))
    assert significance_ratio([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)


def test_weights_act_as_counts():
    repeated = roc_auc(np.r_[LABELS, LABELS[:1]], np.r_[SCORES, SCORES[:1]])
    weighted = roc_auc(LABELS, SCORES, weights=[2, 1, 1, 1, 1, 1])
    assert weighted == pytest.approx(repeated)


def test_threshold_keeps_at_most_the_rate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    s = rng.normal(size=5000) + y
    c = threshold_at_background_rate(y, s, 0.022)
    kept = np.mean(s[y == 0] >= c)
    assert kept <= 0.022
    assert kept > 0.018


@pytest.mark.parametrize(
    "labels, scores, match",
    [([0, 2], [0.1, 0.2], "0 .background. or 1"), ([0, 1], [0.1], "as many scores"),
     ([0, 1], [0.1, np.nan], "finite"), ([1, 1], [0.1, 0.2], "both signal")],
)
def test_bad_input(labels, scores, match):
    with pytest.raises(DataSchemaError, match=match):
        roc_auc(labels, scores)
