"""The class-noise audit: the audit corruption design (corrupted classes at several
within-class levels beside untouched controls, drawn anew per seed) and the estimators and
scores of csu_lib.analysis.class_noise_audit, each against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from csu_lib.analysis.class_noise_audit import (audit_scores, auroc, binary_entropy, class_estimates, estimator_view,
                                                partial_spearman, score_estimates, summarise_scores,
                                                teacher_estimates, two_sided_reading)
from csu_lib.config import CorruptionConfig
from csu_lib.core.errors import ConfigError
from csu_lib.corruption import LEVEL_FRACTIONS, audit_levels, corrupt_labels
from csu_lib.pipeline import load_trained
from csu_lib.study import audit_configs
from csu_lib.training import train_run


def _clean(n_clips=1200, n_classes=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros((n_clips, n_classes), np.float32)
    y[np.arange(n_clips), rng.integers(0, n_classes, n_clips)] = 1.0
    return y


@pytest.mark.parametrize("kind", ["san", "man", "sln", "missing"])
def test_controls_are_untouched_and_levels_are_as_designed(kind):
    clean = _clean()
    cfg = CorruptionConfig(kind=kind, ratio=0.5, profile="audit", seed=3)
    res = corrupt_labels(clean, cfg)
    levels = audit_levels(clean.shape[1], cfg)
    control = levels == 0
    assert control.sum() == clean.shape[1] // 2 and set(np.round(levels[~control] / 0.5, 6)) == set(LEVEL_FRACTIONS)
    # no control column changed in any clip: no lost, weakened or spurious label
    np.testing.assert_array_equal(res.labels[:, control], clean[:, control])
    assert np.all(res.label_noise_rate[control] == 0) and np.all(res.label_noise_rate[~control] > 0)
    n_pos = clean.sum(0)
    for c in np.flatnonzero(~control):
        if kind == "san":  # spurious labels are `level` of the class's positive labels
            spurious = ((res.labels[:, c] >= 0.5) & (clean[:, c] < 0.5)).sum()
            assert abs(spurious / (n_pos[c] + spurious) - levels[c]) < 1.0 / n_pos[c]
        else:  # `level` of the class's clean positives are the source
            assert abs(res.class_rate[c] - levels[c]) <= 0.5 / n_pos[c] + 1e-9
    if kind == "man":  # moved positives land in the corrupted set only
        assert np.all(~control[res.target_class[res.changed]])


def test_the_design_is_drawn_anew_for_every_seed_and_refuses_majority_noise():
    clean = _clean()
    sets = {tuple(np.flatnonzero(audit_levels(12, CorruptionConfig(kind="man", ratio=0.5, profile="audit", seed=s))))
            for s in range(4)}
    assert len(sets) > 1
    with pytest.raises(ConfigError, match="50%"):
        corrupt_labels(clean, CorruptionConfig(kind="san", ratio=0.6, profile="audit"))
    with pytest.raises(ConfigError, match="audit_ratio"):
        audit_configs("smoke", ratio=0.7)
    with pytest.raises(ConfigError, match="audit_kinds"):
        audit_configs("smoke", kinds=["noisy"])
    # each training seed corrupts its own draw
    configs = audit_configs("smoke", kinds=["man"], seeds=[0, 1])
    assert [c.corruption.seed for c in configs] == [0, 1] and {c.corruption.profile for c in configs} == {"audit"}


def test_auroc_and_partial_spearman_against_independent_formulas():
    rng = np.random.default_rng(1)
    score, truth, base = rng.normal(size=40), rng.random(40), rng.random(40)
    positive = truth > 0.5
    score[3] = score[4]  # a tie
    assert auroc(score, positive) == pytest.approx(roc_auc_score(positive, score))
    # partial correlation of ranks from the 3x3 rank correlation matrix
    r = np.corrcoef([stats.rankdata(score), stats.rankdata(truth), stats.rankdata(base)])
    want = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert partial_spearman(score, truth, base) == pytest.approx(want)
    assert np.isnan(auroc(score, np.zeros(40, bool)))


def test_two_sided_reading_and_teacher_estimates_by_hand():
    rng = np.random.default_rng(2)
    y = (rng.random((300, 5)) < 0.3).astype(float)
    p = np.clip(rng.random((300, 5)), 0.01, 0.99)
    s_plus, s_minus = two_sided_reading(p, y)
    for c in range(5):
        assert np.exp(s_plus[c]) == pytest.approx(2 * np.mean(-np.log(p[y[:, c] == 1, c])))
        assert np.exp(s_minus[c]) == pytest.approx(2 * np.mean(-np.log(1 - p[y[:, c] == 0, c])))
    fp, fn = teacher_estimates(p, y)
    assert fp[0] == pytest.approx(np.mean(1 - p[y[:, 0] == 1, 0]))
    assert fn[0] == pytest.approx(np.mean(p[y[:, 0] == 0, 0]))
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(np.log(2))


def _sigma_at_optimum(rec) -> np.ndarray:
    """exp(s*/2), s* = log(2 * mean BCE) of the run's training scores against its training labels."""
    p = np.clip(rec.scores("train").astype(float), 1e-7, 1 - 1e-7)
    y = rec.corruption().labels.astype(float)
    return np.sqrt(2 * (-(y * np.log(p) + (1 - y) * np.log(1 - p))).mean(0))


def test_class_estimates_of_a_real_audit_run(tmp_path, smoke_config):
    csu, bce = audit_configs("smoke", kinds=["missing"], losses=["csu", "bce"], seeds=[0], epochs=2, device="cpu")
    rec = train_run(csu, tmp_path / csu.run_id, progress=False)
    assert rec.config.loss.csu_fit == "gradient"  # CSU: the paper's form
    table = class_estimates(rec)
    _, loss = load_trained(rec)
    s = loss.log_sigma2().double().numpy()
    np.testing.assert_allclose(table["sigma"], np.exp(s / 2), rtol=1e-6)  # the learned sigma
    np.testing.assert_allclose(table["sigma_optimum"], _sigma_at_optimum(rec), rtol=1e-4)  # sigma at s*
    y = rec.corruption().labels.astype(float)
    prev = y.mean(0)
    np.testing.assert_allclose(table["sigma_normalised"], np.exp(s) / (2 * binary_entropy(prev)), rtol=1e-6)
    assert set(table.loc[table["truth"] > 0, "level"]) <= {0.2, 0.35, 0.5}
    rows = {r["estimator"]: r for r in score_estimates(table)}
    assert set(rows) == {"sigma", "sigma_optimum", "sigma_normalised", "s_plus", "s_minus"}
    assert rows["sigma"]["k"] == int((table["truth"] > 0).sum())
    assert rows["sigma"]["auroc"] == pytest.approx(roc_auc_score(table["truth"] > 0, table["sigma"]))
    # a plain BCE run of the same design: its network's training loss per class is the estimator
    bce_rec = train_run(bce, tmp_path / bce.run_id, progress=False)
    bce_table = class_estimates(bce_rec)
    np.testing.assert_allclose(bce_table["bce_loss"], _sigma_at_optimum(bce_rec), rtol=1e-6)
    np.testing.assert_array_equal(bce_table["truth"], table["truth"])  # the same corruption draw
    scores = audit_scores([rec, bce_rec])
    assert set(scores.loc[scores["loss"] == "bce", "estimator"]) == {"bce_loss"}
    view, order = estimator_view(summarise_scores(scores))
    assert order[-1] == "bce_loss" and "sigma_optimum" in order
    row = view[view["estimator"] == "bce_loss"].iloc[0]
    assert row["auroc"] == pytest.approx(roc_auc_score(bce_table["truth"] > 0, bce_table["bce_loss"]))


def test_the_audit_takes_bce_only_beside_a_csu_form():
    assert {c.loss.name for c in audit_configs("smoke", kinds=["san"], losses=["csu_stationary", "bce"], seeds=[0])} \
        == {"csu", "bce"}
    with pytest.raises(ConfigError, match="at least one CSU form"):
        audit_configs("smoke", kinds=["san"], losses=["bce"])


@pytest.mark.slow
def test_audit_notebook_with_trained_two_sided_runs_and_an_out_of_fold_teacher(tmp_path):
    import json

    from csu_lib import notebook_runner as notebooks

    notebooks.execute("sigma_analysis", tmp_path / "out.ipynb", {
        "profile": "smoke", "conditions": ["none"], "audit_kinds": ["san", "missing"], "two_sided": True,
        "teacher_folds": 2, "bce_estimator": True, "runs_dir": str(tmp_path / "runs"),
        "fig_dir": str(tmp_path / "figures")})
    numbers = json.loads((tmp_path / "figures" / "class_noise_audit.json").read_text())
    rows = numbers["summary"]
    assert {(r["loss"], r["kind"]) for r in rows} == {(loss, kind) for loss in ("csu", "csu2", "bce")
                                                      for kind in ("san", "missing")}
    estimators = {r["estimator"] for r in rows if r["loss"] == "csu"}
    assert estimators == {"sigma", "sigma_optimum", "sigma_normalised", "s_plus", "s_minus", "teacher_fp",
                          "teacher_fn"}
    assert {r["estimator"] for r in rows if r["loss"] == "bce"} >= {"bce_loss"}
    assert all(0 <= r["auroc"] <= 1 and r["n_runs"] == 1 for r in rows)
    assert numbers["estimators"]["sigma"] == "CSU: learned sigma" and "bce_loss" in numbers["estimators"]
    # the fold teachers are ordinary runs of the study: two per kind (shared by its audit runs, the
    # BCE audit run among them), beside the BCE audit run of each kind
    teachers = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("bce-")]
    assert len(teachers) == 2 * 2 + 2
    # CSU learns s by gradient: the stored gap to s* is what the record's files give, and the
    # classes of the learned s on the clamp are counted
    stationarity = json.loads((tmp_path / "figures" / "sigma_vs_truth.json").read_text())["stationarity"]
    assert stationarity["runs"] and all(abs(r["recomputed"] - r["stored"]) < 1e-4 and r["n_at_clamp"] >= 0
                                        for r in stationarity["runs"])
    assert {r["loss"] for r in stationarity["runs"]} == {"CSU"}


def test_summary_intervals_stay_in_the_range_of_each_score():
    import pandas as pd

    from csu_lib.analysis.class_noise_audit import summarise_scores
    from csu_lib.core.stats import mean_ci

    scores = pd.DataFrame({"kind": ["san"] * 3, "loss": ["csu"] * 3, "estimator": ["sigma"] * 3,
                           "auroc": [1.0, 0.7, 1.0], "spearman": [-0.9, -1.0, -0.2], "partial_spearman": [0.1, 0.2, 0.3],
                           "precision_at_k": [0.5, 0.5, 0.5]})
    (row,) = summarise_scores(scores).to_dict(orient="records")
    mean, lo, hi = mean_ci(np.array([1.0, 0.7, 1.0]))
    assert hi > 1 and row["auroc_hi"] == 1.0 and row["auroc_lo"] == pytest.approx(lo) and row["auroc"] == pytest.approx(mean)
    assert row["spearman_lo"] == -1.0 and row["n_runs"] == 3
    assert row["precision_at_k_lo"] == row["precision_at_k_hi"] == 0.5
