"""Evaluation metrics for multi-label audio tagging (docs/methods.md, section 7).

Conventions shared by every function here:

- ``scores`` is an (N, C) array of model outputs for N clips and C classes. Logits and
  probabilities give the same results: the ranking metrics (AP, AUC, lwlrap) only use the
  order of the scores. Scores must not contain NaN (``+-inf`` is allowed and ranks as
  expected).
- ``targets`` is an (N, C) array in [0, 1] (hard or soft labels). A target counts as
  *positive* when it is ``>= 0.5``; everything else is negative.
- Tied scores are handled exactly like scikit-learn does: all clips (or labels) sharing a
  score form one threshold / one rank group, so the metrics do not depend on the order in
  which tied items happen to be stored.

Per-metric conventions:

- **mAP**: mean over classes of per-class AP; classes with no positive in the evaluation
  split are excluded and counted (``n_classes_excluded_ap``).
- **mAUC**: mean over classes of per-class ROC AUC; classes with no positive or no negative
  are excluded and counted (``n_classes_excluded_auc``).
- **d'**: ``sqrt(2) * Phi^-1(mAUC)``, computed from the mean AUC (not averaged per class).
- **lwlrap**: label-weighted label-ranking average precision (DCASE 2019 task 2), i.e. the
  mean over every positive (clip, label) pair of the precision of the clip's label ranking at
  that label; clips with no positive do not contribute.

The implementations use numpy only and are vectorised across classes (or clips for lwlrap);
the test-suite checks them against scikit-learn.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from .core.errors import ConfigError

__all__ = [
    "average_precision",
    "roc_auc",
    "per_class_ap",
    "per_class_auc",
    "mean_average_precision",
    "mean_auc",
    "d_prime",
    "lwlrap",
    "precision_at_threshold",
    "elementwise_accuracy",
    "is_single_label",
    "top1_accuracy",
    "balanced_accuracy",
    "evaluate",
]

#: A target is a positive when it is at least this value.
POSITIVE_THRESHOLD = 0.5


# ----------------------------------------------------------------------------- validation
def _check_pair(scores, targets, ndim: int, names=("scores", "targets")):
    """Return ``(scores, positives)`` as float64 / bool arrays after validating them."""
    sname, tname = names
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    what = "(N,)" if ndim == 1 else "(N, C)"
    if s.ndim != ndim:
        raise ConfigError(f"{sname} must be a {ndim}-D array of shape {what}, got shape {s.shape}")
    if t.ndim != ndim:
        raise ConfigError(f"{tname} must be a {ndim}-D array of shape {what}, got shape {t.shape}")
    if s.shape != t.shape:
        raise ConfigError(f"shape mismatch: {sname} has shape {s.shape} but {tname} has shape {t.shape}")
    if np.isnan(s).any():
        raise ConfigError(f"{sname} contain {int(np.isnan(s).sum())} NaN value(s)")
    if np.isnan(t).any():
        raise ConfigError(f"{tname} contain {int(np.isnan(t).sum())} NaN value(s)")
    if t.size and (t.min() < 0.0 or t.max() > 1.0):
        raise ConfigError(f"{tname} must lie in [0, 1], got values in [{t.min()}, {t.max()}]")
    return s, t >= POSITIVE_THRESHOLD


# ------------------------------------------------------------------- vectorised kernels
def _sort_desc(s: np.ndarray, pos: np.ndarray):
    """Sort each column of ``s`` (N, C) by decreasing score; carry ``pos`` along."""
    order = np.argsort(s, axis=0, kind="stable")[::-1]
    return np.take_along_axis(s, order, axis=0), np.take_along_axis(pos, order, axis=0)


def _tie_group_bounds(s_sorted: np.ndarray):
    """For column-sorted scores, the first and last row index of each element's tie group."""
    n = s_sorted.shape[0]
    rows = np.broadcast_to(np.arange(n)[:, None], s_sorted.shape)
    differs = s_sorted[1:] != s_sorted[:-1]  # (N-1, C): row i+1 starts a new group
    is_end = np.concatenate([differs, np.ones((1, s_sorted.shape[1]), bool)], axis=0)
    is_start = np.concatenate([np.ones((1, s_sorted.shape[1]), bool), differs], axis=0)
    end = np.where(is_end, rows, n)
    end = np.minimum.accumulate(end[::-1], axis=0)[::-1]
    start = np.where(is_start, rows, -1)
    start = np.maximum.accumulate(start, axis=0)
    return start, end


def _precision_sums(s: np.ndarray, pos: np.ndarray):
    """Per column: sum over positives of the precision at the positive's tie group.

    With the column sorted by decreasing score, the precision of a positive is
    ``TP(end) / (end + 1)`` where ``end`` is the last row of its tie group (the threshold
    that first admits it), which is how scikit-learn groups ties. Returns ``(sums, n_pos)``.
    """
    n, c = s.shape
    if n == 0:
        return np.zeros(c), np.zeros(c, dtype=np.int64)
    s_sorted, p_sorted = _sort_desc(s, pos)
    _, end = _tie_group_bounds(s_sorted)
    tp = np.cumsum(p_sorted, axis=0)
    tp_at_end = np.take_along_axis(tp, end, axis=0)
    precision = tp_at_end / (end + 1.0)
    return np.where(p_sorted, precision, 0.0).sum(axis=0), tp[-1]


def _per_class_ap(s: np.ndarray, pos: np.ndarray) -> np.ndarray:
    sums, n_pos = _precision_sums(s, pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, sums / np.maximum(n_pos, 1), np.nan)


def _per_class_auc(s: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Mann-Whitney U / (P * Nneg) with average ranks for ties, per column."""
    n, c = s.shape
    n_pos = pos.sum(axis=0)
    n_neg = n - n_pos
    if n == 0:
        return np.full(c, np.nan)
    s_sorted, p_sorted = _sort_desc(s, pos)
    start, end = _tie_group_bounds(s_sorted)
    # 1-based descending rank averaged over the tie group -> ascending average rank.
    asc_rank = n + 1.0 - ((start + end) / 2.0 + 1.0)
    rank_sum = np.where(p_sorted, asc_rank, 0.0).sum(axis=0)
    valid = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where(valid, auc, np.nan)


# ---------------------------------------------------------------------- public metrics
def average_precision(scores_1d, targets_1d) -> float:
    """Average precision of one class, identical to ``sklearn.metrics.average_precision_score``.

    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the distinct score thresholds in decreasing order
    (step-wise, no interpolation; tied scores form one threshold). NaN when there is no
    positive (``targets_1d >= 0.5`` nowhere).
    """
    s, pos = _check_pair(scores_1d, targets_1d, 1, ("scores_1d", "targets_1d"))
    return float(_per_class_ap(s[:, None], pos[:, None])[0])


def roc_auc(scores_1d, targets_1d) -> float:
    """ROC AUC of one class, identical to ``sklearn.metrics.roc_auc_score``.

    Computed as the Mann-Whitney statistic with average ranks for ties (a tied
    positive/negative pair counts 1/2). NaN when there is no positive or no negative.
    """
    s, pos = _check_pair(scores_1d, targets_1d, 1, ("scores_1d", "targets_1d"))
    return float(_per_class_auc(s[:, None], pos[:, None])[0])


def per_class_ap(scores, targets) -> np.ndarray:
    """(C,) average precision of each class; NaN for classes without a positive."""
    s, pos = _check_pair(scores, targets, 2)
    return _per_class_ap(s, pos)


def per_class_auc(scores, targets) -> np.ndarray:
    """(C,) ROC AUC of each class; NaN for classes without a positive or without a negative."""
    s, pos = _check_pair(scores, targets, 2)
    return _per_class_auc(s, pos)


def _nanmean_and_excluded(values: np.ndarray) -> tuple[float, int]:
    ok = ~np.isnan(values)
    excluded = int(values.size - ok.sum())
    mean = float(values[ok].mean()) if ok.any() else float("nan")
    return mean, excluded


def mean_average_precision(scores, targets) -> tuple[float, int]:
    """``(mAP, n_excluded)``: mean over classes of per-class AP.

    Classes with no positive in the evaluation split are excluded from the mean and counted
    in ``n_excluded``. mAP is NaN when every class is excluded.
    """
    return _nanmean_and_excluded(per_class_ap(scores, targets))


def mean_auc(scores, targets) -> tuple[float, int]:
    """``(mAUC, n_excluded)``: mean over classes of per-class ROC AUC.

    Classes with no positive or no negative are excluded from the mean and counted in
    ``n_excluded``. mAUC is NaN when every class is excluded.
    """
    return _nanmean_and_excluded(per_class_auc(scores, targets))


def d_prime(mauc: float) -> float:
    """Sensitivity index ``d' = sqrt(2) * Phi^-1(mAUC)`` from the *mean* AUC.

    Returns ``inf`` for ``mauc == 1``, ``-inf`` for ``mauc == 0`` and NaN for NaN; raises
    :class:`ConfigError` outside [0, 1].
    """
    mauc = float(mauc)
    if math.isnan(mauc):
        return float("nan")
    if not 0.0 <= mauc <= 1.0:
        raise ConfigError(f"d_prime needs a mean AUC in [0, 1], got {mauc}")
    if mauc == 1.0:
        return float("inf")
    if mauc == 0.0:
        return float("-inf")
    return math.sqrt(2.0) * NormalDist().inv_cdf(mauc)


def lwlrap(scores, targets) -> float:
    """Label-weighted label-ranking average precision (DCASE 2019 task 2).

    For every positive (clip, label) pair, the precision of the clip's label ranking at that
    label: ``#{positive labels with score >= s} / #{labels with score >= s}`` (ties counted
    like scikit-learn, i.e. a tied label ranks with its whole tie group). lwlrap is the mean
    of these precisions over all positive pairs, which equals
    ``label_ranking_average_precision_score(y, scores, sample_weight=y.sum(1))`` over the clips
    with at least one positive. Clips without a positive are ignored; NaN if none is left.
    """
    s, pos = _check_pair(scores, targets, 2)
    # Rank labels within each clip: transpose so that clips are columns.
    sums, n_pos = _precision_sums(s.T, pos.T)
    total = int(n_pos.sum())
    if total == 0:
        return float("nan")
    return float(sums.sum() / total)


def precision_at_threshold(probs, targets, threshold: float = 0.5) -> np.ndarray:
    """(C,) precision of the decisions ``probs >= threshold`` for each class.

    ``TP / (number predicted positive)``; NaN for classes where nothing is predicted.
    ``probs`` should be probabilities (e.g. sigmoid outputs) for the threshold to make sense.
    """
    p, pos = _check_pair(probs, targets, 2, ("probs", "targets"))
    pred = p >= threshold
    n_pred = pred.sum(axis=0)
    tp = (pred & pos).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pred > 0, tp / np.maximum(n_pred, 1), np.nan)


def elementwise_accuracy(probs, targets, threshold: float = 0.5) -> float:
    """Fraction of the N*C binary decisions ``probs >= threshold`` that match the targets (not
    the accuracy of the field: with C classes and one positive per clip, predicting nothing
    scores 1 - 1/C; see :func:`top1_accuracy`)."""
    p, pos = _check_pair(probs, targets, 2, ("probs", "targets"))
    if p.size == 0:
        return float("nan")
    return float(np.mean((p >= threshold) == pos))


def is_single_label(targets) -> bool:
    """Whether every clip has exactly one positive (target >= 0.5): single-label data such as
    ESC-50, where the field reports top-1 accuracy."""
    t = np.asarray(targets, dtype=np.float64)
    return t.ndim == 2 and len(t) > 0 and bool(np.all((t >= POSITIVE_THRESHOLD).sum(axis=1) == 1))


def _top1(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    s, pos = _check_pair(scores, targets, 2)
    if not is_single_label(pos):
        raise ValueError("top-1 accuracy needs single-label targets (exactly one positive per clip)")
    return s.argmax(axis=1), pos.argmax(axis=1)


def top1_accuracy(scores, targets) -> float:
    """Share of clips whose highest-scoring class is their (single) positive class."""
    pred, true = _top1(scores, targets)
    return float(np.mean(pred == true))


def balanced_accuracy(scores, targets) -> float:
    """Mean over the classes that have clips of the share of their clips predicted (top-1)
    as that class."""
    pred, true = _top1(scores, targets)
    return float(np.mean([np.mean(pred[true == c] == c) for c in np.unique(true)]))


def evaluate(scores, targets) -> dict[str, float]:
    """All ranking metrics of one evaluation split as plain Python numbers.

    Keys: ``mAP``, ``mAUC``, ``d_prime``, ``lwlrap`` (floats; NaN/inf possible in degenerate
    splits) and ``n_classes_excluded_ap``, ``n_classes_excluded_auc`` (ints).
    """
    s, pos = _check_pair(scores, targets, 2)
    t = pos.astype(np.float64)  # already validated; avoid re-checking soft targets
    m_ap, excl_ap = mean_average_precision(s, t)
    m_auc, excl_auc = mean_auc(s, t)
    return {
        "mAP": float(m_ap),
        "mAUC": float(m_auc),
        "d_prime": float(d_prime(m_auc)),
        "lwlrap": float(lwlrap(s, t)),
        "n_classes_excluded_ap": int(excl_ap),
        "n_classes_excluded_auc": int(excl_auc),
    }
