r"""Classification metrics for the HEP tasks, in plain numpy (no scikit-learn needed).

Every number here is **exact** for the given labels, scores and weights: a measurement on the
stated events, not an estimate of a population value.

- :func:`roc_curve` and :func:`roc_auc`: the receiver operating characteristic and the area under
  it, with ties in the score handled as scikit-learn does (one step per distinct threshold, so
  tied scores contribute the trapezoid, i.e. half credit).
- :func:`average_precision` (AUPR): :math:`\mathrm{AP} = \sum_n (R_n - R_{n-1}) P_n`, the
  step-wise area under the precision-recall curve (scikit-learn's definition).
- :func:`significance_ratio`: :math:`\max_c s(c)/\sqrt{s(c) + b(c)}` over cuts ``score >= c``,
  divided by :math:`\sqrt{S_\mathrm{tot}}` (the value of a perfect selection), as in Anzalone et
  al.
- :func:`threshold_at_background_rate`: the cut that keeps a target fraction of background (a
  trigger's working point).
"""

from __future__ import annotations

import numpy as np

from .exceptions import DataSchemaError

__all__ = ["roc_curve", "roc_auc", "average_precision", "significance_ratio", "threshold_at_background_rate"]


def _check(labels, scores, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise DataSchemaError(f"Expected as many scores as labels ({y.size}). Got {s.size} instead.")
    if y.size == 0:
        raise DataSchemaError("Expected at least one event. Got none.")
    if not np.all(np.isin(y, (0, 1))):
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise DataSchemaError(f"Labels must be 0 (background) or 1 (signal). Got {bad.tolist()} among them.")
    if not np.all(np.isfinite(s)):
        raise DataSchemaError(f"Scores must be finite. Got {int((~np.isfinite(s)).sum())} non-finite values.")
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != s.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise DataSchemaError(f"Weights must be {y.size} finite non-negative numbers.")
    return y.astype(bool), s, w


def _cumulative(labels, scores, weights=None):
    """Signal and background weight passing ``score >= threshold`` for each distinct threshold (descending)."""
    y, s, w = _check(labels, scores, weights)
    order = np.argsort(-s, kind="mergesort")
    s, y, w = s[order], y[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tp = np.cumsum(w * y)[last]
    fp = np.cumsum(w * ~y)[last]
    return tp, fp, s[last]


def roc_curve(labels, scores, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (exact), starting at (0, 0).

    Selecting ``score >= thresholds[i]`` keeps the fractions ``fpr[i]`` of background and
    ``tpr[i]`` of signal; ``thresholds[0]`` is ``+inf`` (nothing selected).
    """
    tp, fp, thr = _cumulative(labels, scores, weights)
    if tp[-1] <= 0 or fp[-1] <= 0:
        raise DataSchemaError("A ROC curve needs both signal (1) and background (0) events.")
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], np.r_[np.inf, thr]


def roc_auc(labels, scores, weights=None) -> float:
    """Area under the ROC curve (exact, trapezoids; 0.5 for a constant score)."""
    fpr, tpr, _ = roc_curve(labels, scores, weights)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def average_precision(labels, scores, weights=None) -> float:
    r"""Area under the precision-recall curve as :math:`\sum_n (R_n - R_{n-1}) P_n` (exact)."""
    tp, fp, _ = _cumulative(labels, scores, weights)
    if tp[-1] <= 0:
        raise DataSchemaError("Average precision needs at least one signal (1) event.")
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def significance_ratio(labels, scores, weights=None) -> float:
    r""":math:`\max_c s/\sqrt{s+b}` over cuts ``score >= c``, divided by :math:`\sqrt{S_\mathrm{tot}}` (exact).

    1 means the best cut keeps all signal and no background; the weights (default 1) are
    expected event counts.
    """
    tp, fp, _ = _cumulative(labels, scores, weights)
    if tp[-1] <= 0:
        raise DataSchemaError("The significance ratio needs at least one signal (1) event.")
    total = tp + fp
    ams = np.divide(tp, np.sqrt(total), out=np.zeros_like(tp), where=total > 0)
    return float(ams.max() / np.sqrt(tp[-1]))


def threshold_at_background_rate(labels, scores, rate: float, weights=None) -> float:
    """The smallest cut ``c`` such that ``score >= c`` keeps at most ``rate`` of the background (exact).

    Ties at the cut are kept or dropped together, so the kept fraction can fall below ``rate``
    but never above it.
    """
    if not 0.0 < float(rate) < 1.0:
        raise DataSchemaError(f"'rate' must lie in (0, 1). Got {rate!r} instead.")
    tp, fp, thr = _cumulative(labels, scores, weights)
    if fp[-1] <= 0:
        raise DataSchemaError("A background-rate threshold needs background (0) events.")
    ok = np.flatnonzero(fp / fp[-1] <= rate)
    return float(thr[ok[-1]]) if ok.size else float(np.nextafter(thr[0], np.inf))
