"""Tests of csu_lib.metrics against scikit-learn (used only here) and hand-worked examples."""
from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score, roc_auc_score

from csu_lib import metrics as M
from csu_lib.core.errors import ConfigError

SEEDS = [0, 1, 2, 3, 7, 42]
RTOL = 1e-10


def make_case(seed: int, n: int = 80, c: int = 9, decimals: int | None = 1):
    """Random scores and soft targets with the awkward cases built in.

    - ``decimals`` rounds the scores so that ties occur (``None``: no rounding);
    - soft targets in [0, 1], some exactly 0.5 (positive) and some at 0.4999 (negative);
    - class 0 has no positive (soft values < 0.5), class 1 is positive in every clip;
    - clip 4 has all of its scores tied.
    """
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, c)) * 2.0
    if decimals is not None:
        scores = np.round(scores, decimals)
    targets = np.where(
        rng.random((n, c)) < 0.3, rng.uniform(0.5, 1.0, (n, c)), rng.uniform(0.0, 0.49, (n, c))
    )
    targets[rng.random((n, c)) < 0.05] = 0.5  # boundary: positive
    targets[rng.random((n, c)) < 0.05] = 0.4999  # just below: negative
    targets[:, 0] = rng.uniform(0.0, 0.49, n)  # class 0: no positive
    targets[:, 1] = rng.uniform(0.5, 1.0, n)  # class 1: all positive
    scores[4, :] = scores[4, 0]  # a clip with all its scores tied
    return scores, targets


def sk_binary(targets):
    return (np.asarray(targets) >= 0.5).astype(int)


# ------------------------------------------------------------------------ vs sklearn
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_per_class_ap_and_average_precision_match_sklearn(seed, decimals):
    scores, targets = make_case(seed, decimals=decimals)
    y = sk_binary(targets)
    got = M.per_class_ap(scores, targets)
    assert got.shape == (scores.shape[1],)
    assert np.isnan(got[0])  # no positive
    expected = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        if y[:, c].any():
            expected[c] = average_precision_score(y[:, c], scores[:, c])
            np.testing.assert_allclose(M.average_precision(scores[:, c], targets[:, c]), expected[c], rtol=RTOL)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    assert math.isnan(M.average_precision(scores[:, 0], targets[:, 0]))
    assert got[1] == pytest.approx(1.0)  # all positive -> AP 1


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_roc_auc_matches_sklearn(seed, decimals):
    scores, targets = make_case(seed, decimals=decimals)
    y = sk_binary(targets)
    got = M.per_class_auc(scores, targets)
    assert np.isnan(got[0]) and np.isnan(got[1])  # no positive / no negative
    for c in range(2, scores.shape[1]):
        expected = roc_auc_score(y[:, c], scores[:, c])
        np.testing.assert_allclose(got[c], expected, rtol=RTOL)
        np.testing.assert_allclose(M.roc_auc(scores[:, c], targets[:, c]), expected, rtol=RTOL)
    assert math.isnan(M.roc_auc(scores[:, 0], targets[:, 0]))
    assert math.isnan(M.roc_auc(scores[:, 1], targets[:, 1]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1])
def test_means_match_sklearn_and_count_exclusions(seed, decimals):
    scores, targets = make_case(seed, decimals=decimals)
    y = sk_binary(targets)
    c_all = scores.shape[1]
    aps = [average_precision_score(y[:, c], scores[:, c]) for c in range(c_all) if y[:, c].any()]
    aucs = [roc_auc_score(y[:, c], scores[:, c]) for c in range(c_all) if 0 < y[:, c].sum() < len(y)]
    m_ap, excl_ap = M.mean_average_precision(scores, targets)
    m_auc, excl_auc = M.mean_auc(scores, targets)
    np.testing.assert_allclose(m_ap, np.mean(aps), rtol=RTOL)
    np.testing.assert_allclose(m_auc, np.mean(aucs), rtol=RTOL)
    assert excl_ap == c_all - len(aps) == 1
    assert excl_auc == c_all - len(aucs) == 2


def sk_lwlrap(scores, targets):
    y = sk_binary(targets)
    keep = y.sum(1) > 0
    return label_ranking_average_precision_score(y[keep], scores[keep], sample_weight=y[keep].sum(1))


def lwlrap_bruteforce(scores, targets):
    """Direct definition: mean over positive (clip, label) pairs of the ranking precision."""
    y = np.asarray(targets) >= 0.5
    precisions = []
    for s, p in zip(scores, y):
        for j in np.flatnonzero(p):
            above = s >= s[j]
            precisions.append((above & p).sum() / above.sum())
    return float(np.mean(precisions))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_lwlrap_matches_sklearn(seed, decimals):
    scores, targets = make_case(seed, decimals=decimals)
    targets[:3] = 0.2  # clips with no positive (dropped, must not count)
    targets[3, :] = 1.0  # a clip with every label positive
    assert (sk_binary(targets).sum(1) == 0).sum() >= 3
    expected = sk_lwlrap(scores, targets)
    got = M.lwlrap(scores, targets)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    np.testing.assert_allclose(got, lwlrap_bruteforce(scores, targets), rtol=RTOL)


def test_lwlrap_clips_without_positive_are_ignored():
    scores, targets = make_case(5)
    extra_scores = np.random.default_rng(9).normal(size=(4, scores.shape[1]))
    extra_targets = np.full((4, scores.shape[1]), 0.1)
    both = M.lwlrap(np.vstack([scores, extra_scores]), np.vstack([targets, extra_targets]))
    np.testing.assert_allclose(both, M.lwlrap(scores, targets), rtol=RTOL)
    assert math.isnan(M.lwlrap(extra_scores, extra_targets))


def test_larger_random_case_matches_sklearn():
    rng = np.random.default_rng(123)
    scores = np.round(rng.normal(size=(1500, 25)), 2)
    targets = (rng.random((1500, 25)) < 0.1).astype(float)
    y = targets.astype(int)
    ap = [average_precision_score(y[:, c], scores[:, c]) for c in range(25)]
    auc = [roc_auc_score(y[:, c], scores[:, c]) for c in range(25)]
    np.testing.assert_allclose(M.per_class_ap(scores, targets), ap, rtol=RTOL)
    np.testing.assert_allclose(M.per_class_auc(scores, targets), auc, rtol=RTOL)
    np.testing.assert_allclose(M.lwlrap(scores, targets), sk_lwlrap(scores, targets), rtol=RTOL)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_ranking_metrics_ignore_monotone_transform_and_row_order(seed):
    scores, targets = make_case(seed, decimals=None)
    probs = 1.0 / (1.0 + np.exp(-scores))
    perm = np.random.default_rng(seed).permutation(len(scores))
    a, b, c = M.evaluate(scores, targets), M.evaluate(probs, targets), M.evaluate(scores[perm], targets[perm])
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL)
        np.testing.assert_allclose(c[key], a[key], rtol=RTOL)


# ---------------------------------------------------------------------- hand-worked
def test_ties_by_hand():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    targets = np.array([1.0, 0.0, 0.7, 0.2])  # positives: rows 0 and 2 (0.7 >= 0.5)
    # thresholds 0.9: P=1, R=1/2 ; 0.5 (two tied rows): P=2/3, R=1 -> AP = 1/2 + 1/2 * 2/3
    assert M.average_precision(scores, targets) == pytest.approx(5 / 6, rel=RTOL)
    # pos/neg pairs: (.9,.5)=1 (.9,.1)=1 (.5,.5)=1/2 (.5,.1)=1 -> 3.5 / 4
    assert M.roc_auc(scores, targets) == pytest.approx(0.875, rel=RTOL)


def test_lwlrap_by_hand():
    scores = np.array([[0.9, 0.5, 0.5], [0.1, 0.8, 0.3], [0.2, 0.3, 0.4]])
    targets = np.array([[0.0, 1.0, 0.6], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # clip 0: labels 1, 2 tie at 0.5, 3 labels >= 0.5, 2 of them positive -> 2/3 each.
    # clip 1: label 0 is last: 1 positive among 3 labels -> 1/3. clip 2 has no positive.
    assert M.lwlrap(scores, targets) == pytest.approx((2 / 3 + 2 / 3 + 1 / 3) / 3, rel=RTOL)


def test_d_prime():
    assert M.d_prime(0.5) == 0.0
    np.testing.assert_allclose(M.d_prime(NormalDist().cdf(1 / math.sqrt(2))), 1.0, rtol=RTOL)
    np.testing.assert_allclose(M.d_prime(NormalDist().cdf(-1.5)), -1.5 * math.sqrt(2), rtol=RTOL)
    assert M.d_prime(1.0) == math.inf
    assert M.d_prime(0.0) == -math.inf
    assert math.isnan(M.d_prime(float("nan")))
    with pytest.raises(ConfigError):
        M.d_prime(1.2)


PROBS = np.array(
    [
        [0.9, 0.2, 0.5, 0.1],
        [0.6, 0.7, 0.1, 0.2],
        [0.3, 0.8, 0.4, 0.3],
        [0.5, 0.1, 0.0, 0.4],
    ]
)
TARGETS = np.array(
    [
        [1.0, 0.0, 0.0, 1.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.6, 0.0, 0.0],
        [1.0, 0.4, 0.0, 0.0],
    ]
)


def test_precision_and_accuracy_by_hand():
    # threshold 0.5 (>=): predicted rows per class: c0 {0,1,3} (pos {0,3}) -> 2/3;
    # c1 {1,2} (pos {1,2}; 0.4 is negative) -> 1; c2 {0} (no pos) -> 0; c3 nothing -> NaN.
    prec = M.precision_at_threshold(PROBS, TARGETS)
    np.testing.assert_allclose(prec, [2 / 3, 1.0, 0.0, np.nan], rtol=RTOL)
    # wrong decisions: (1,0) false pos, (0,2) false pos, (0,3) false neg -> 13 of 16 right.
    assert M.elementwise_accuracy(PROBS, TARGETS) == pytest.approx(13 / 16, rel=RTOL)
    # threshold 0.75: c0 {0} -> 1; c1 {2} -> 1; c2, c3 nothing -> NaN.
    prec = M.precision_at_threshold(PROBS, TARGETS, threshold=0.75)
    np.testing.assert_allclose(prec, [1.0, 1.0, np.nan, np.nan], rtol=RTOL)
    # wrong: (3,0) FN, (1,1) FN, (0,3) FN -> 13 of 16.
    assert M.elementwise_accuracy(PROBS, TARGETS, threshold=0.75) == pytest.approx(13 / 16, rel=RTOL)
    # threshold 0.05: everything but (3,2)=0.0 predicted; right = 5 positives + (3,2) -> 6/16.
    assert M.elementwise_accuracy(PROBS, TARGETS, threshold=0.05) == pytest.approx(6 / 16, rel=RTOL)


def test_top1_and_balanced_accuracy_by_hand():
    targets = np.eye(3)[[0, 0, 0, 1, 2]]
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.3], [0.3, 0.2, 0.1]])
    # argmax: 0, 1, 0, 1, 0 -> right for clips 0, 2, 3 -> 3/5; per class: 2/3, 1, 0 -> 5/9
    assert M.top1_accuracy(scores, targets) == pytest.approx(3 / 5)
    assert M.balanced_accuracy(scores, targets) == pytest.approx(5 / 9)
    assert M.is_single_label(targets) and not M.is_single_label(TARGETS)
    with pytest.raises(ValueError, match="single-label"):
        M.top1_accuracy(PROBS, TARGETS)
    # predicting nothing scores high element-wise, nothing on top-1 of a wrong argmax
    assert M.elementwise_accuracy(np.zeros((5, 3)), targets) == pytest.approx(10 / 15)


# ------------------------------------------------------------------------- evaluate
def test_evaluate_keys_types_and_values():
    scores, targets = make_case(11)
    out = M.evaluate(scores, targets)
    assert set(out) == {"mAP", "mAUC", "d_prime", "lwlrap", "n_classes_excluded_ap", "n_classes_excluded_auc"}
    json.dumps(out)
    for key in ("mAP", "mAUC", "d_prime", "lwlrap"):
        assert type(out[key]) is float
    assert type(out["n_classes_excluded_ap"]) is int and type(out["n_classes_excluded_auc"]) is int
    m_ap, excl_ap = M.mean_average_precision(scores, targets)
    m_auc, excl_auc = M.mean_auc(scores, targets)
    assert out["mAP"] == m_ap and out["mAUC"] == m_auc
    assert (out["n_classes_excluded_ap"], out["n_classes_excluded_auc"]) == (excl_ap, excl_auc) == (1, 2)
    np.testing.assert_allclose(out["d_prime"], math.sqrt(2) * NormalDist().inv_cdf(m_auc), rtol=RTOL)
    np.testing.assert_allclose(out["lwlrap"], sk_lwlrap(scores, targets), rtol=RTOL)


# --------------------------------------------------------------------------- errors
def test_errors():
    scores, targets = make_case(0)
    with pytest.raises(ConfigError, match="shape mismatch"):
        M.per_class_ap(scores, targets[:, :-1])
    with pytest.raises(ConfigError, match="shape mismatch"):
        M.evaluate(scores[:-1], targets)
    with pytest.raises(ConfigError, match="shape mismatch"):
        M.average_precision(scores[:, 0], targets[:-1, 0])
    bad = scores.copy()
    bad[3, 2] = np.nan
    for fn in (M.per_class_ap, M.mean_average_precision, M.mean_auc, M.lwlrap, M.evaluate, M.precision_at_threshold, M.elementwise_accuracy):
        with pytest.raises(ConfigError, match="NaN"):
            fn(bad, targets)
    with pytest.raises(ConfigError, match="NaN"):
        M.roc_auc(bad[:, 2], targets[:, 2])
    with pytest.raises(ConfigError, match="2-D"):
        M.per_class_ap(scores[:, 0], targets[:, 0])
    with pytest.raises(ConfigError, match="1-D"):
        M.average_precision(scores, targets)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        M.lwlrap(scores, targets * 2.0)
