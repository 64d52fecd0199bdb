"""The class-noise audit: rank the classes by estimated label unreliability with
several estimators side by side and, where the truth is known (injected corruption), score each
estimator against it.

Estimators (higher = less reliable), per CSU run (one-sided, or two-sided ``csu2``):

- ``sigma``: CSU's learned sigma_c of the selected model
  (:attr:`csu_lib.records.RunRecord.final_log_sigma2`, sigma by :func:`csu_lib.losses.sigma_of`);
  for a ``csu2`` run, the one-sided stationary s of its network
  (:func:`csu_lib.losses.optimum_log_sigma2` of the mean BCE of its training scores); at its
  stationary point sigma_c^2 = 2 * scale * mean BCE_c over ALL training clips, so it
  carries the class's base rate (docs/methods.md, section 1).
- ``sigma_normalised``: sigma_c^2 / (2 * scale * H(prevalence_c)), H the binary entropy of the
  class's noisy training base rate: the share of the class's prior entropy the model leaves
  unexplained (1 = no better than the base rate).
- ``s_plus`` / ``s_minus``: the two-sided reading, log of twice the mean loss per positive
  (-log p) and per negative (-log(1 - p)) of the class -- the stationary s+ and s- of two-sided
  CSU. For a ``csu2`` run they are its own learned values; for a one-sided run they are read off
  its network's training scores (the two-sided stationary point at that network). Spurious
  positives should raise s+ of the class that received them, lost positives s- of the class that
  lost them.
- ``teacher_fp`` / ``teacher_fn`` (when out-of-fold teacher scores are given): per class, the
  expected share of its given positives that the teacher calls negative, sum_n y (1 - q) / sum y,
  and of its given negatives that the teacher calls positive, sum_n (1 - y) q / sum (1 - y).

Scores against the truth (``label_noise_rate`` of the corruption record; a class is corrupted
when it is > 0): AUROC of corrupted vs control classes (also per designed level of the audit
profile), Spearman rho with the true rate, the partial Spearman with the noisy base rate
partialled out, and precision@k with k = the number of corrupted classes.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import RunRecordError
from ..core.stats import mean_ci
from ..corruption import audit_levels
from ..losses import (TwoSidedCSULoss, bce_from_scores, optimum_log_sigma2, scale_of, sides_of, sigma2_of,
                      sigma_of)
from ..records import RunRecord

ESTIMATORS = ("sigma", "sigma_normalised", "s_plus", "s_minus", "teacher_fp", "teacher_fn")


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in nats, 0 at p in {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def training_targets(record: RunRecord) -> np.ndarray:
    """(n_train, C) the labels the run trained on: its corruption record's labels."""
    result = record.corruption()
    if result is None:
        raise ValueError(f"{record.path} has no corruption record (the audit reads the labels the run trained on)")
    return np.asarray(result.labels, dtype=np.float64)


def two_sided_reading(scores: np.ndarray, targets: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(s+, s-) per class: the two-sided CSU stationary point at the network with ``scores``."""
    n_classes = targets.shape[1]
    loss = TwoSidedCSULoss(n_classes, scale="half" if scale == 0.5 else "full")
    both = loss.stationary_log_sigma2(scores, targets)
    return both[:n_classes], both[n_classes:]


def teacher_estimates(teacher_scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(expected false-positive share of the given positives, expected false-negative share of the
    given negatives) per class, from out-of-fold teacher scores ``q`` (n_train, C)."""
    q, y = np.asarray(teacher_scores, np.float64), np.asarray(targets, np.float64)
    fp = (y * (1 - q)).sum(0) / np.maximum(y.sum(0), 1e-12)
    fn = ((1 - y) * q).sum(0) / np.maximum((1 - y).sum(0), 1e-12)
    return fp, fn


def class_estimates(record: RunRecord, teacher_scores: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per class of a CSU (or csu2) run: every estimator, the noisy prevalence, the true
    ``label_noise_rate`` and the designed level (audit profile; else NaN)."""
    targets = training_targets(record)
    result = record.corruption()
    n_classes = targets.shape[1]
    scale = scale_of(record.config.loss)
    prevalence = targets.mean(axis=0)
    if sides_of(record.config.loss) == 2:
        s_both = record.final_log_sigma2
        s_plus, s_minus = s_both[:n_classes], s_both[n_classes:]
        # the one-sided s of the same network: its stationary optimum from the mean BCE of its scores
        s = optimum_log_sigma2(bce_from_scores(record.scores("train"), targets).mean(0), scale)
    else:
        s = record.final_log_sigma2
        if s is None:
            raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
        s_plus, s_minus = two_sided_reading(record.scores("train"), targets, scale)
    cfg = record.config.corruption
    levels = audit_levels(n_classes, cfg) if cfg.profile == "audit" and cfg.kind != "none" else np.full(n_classes, np.nan)
    out = pd.DataFrame({
        "class": np.arange(n_classes), "class_name": record.class_names,
        "sigma": sigma_of(s), "sigma_normalised": sigma2_of(s) / (2 * scale * binary_entropy(prevalence)),
        "s_plus": s_plus, "s_minus": s_minus, "prevalence": prevalence,
        "truth": np.asarray(result.label_noise_rate, np.float64), "level": levels})
    if teacher_scores is not None:
        out["teacher_fp"], out["teacher_fn"] = teacher_estimates(teacher_scores, targets)
    return out


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` separating ``positive`` from the rest (ties: 1/2)."""
    score, positive = np.asarray(score, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of x and y with z partialled out (Pearson of the rank residuals after
    a linear fit on the ranks of z)."""
    rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    res = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in (rx, ry)]
    if np.std(res[0]) == 0 or np.std(res[1]) == 0:
        return float("nan")
    return float(np.corrcoef(res[0], res[1])[0, 1])


def score_estimates(table: pd.DataFrame, estimators: Sequence[str] = ESTIMATORS) -> list[dict]:
    """Per estimator of one run's :func:`class_estimates`: AUROC (all corrupted classes, and per
    designed level, vs the controls), Spearman rho and partial rho (base rate out) with the true
    rate, precision@k (k = number of corrupted classes)."""
    corrupted = table["truth"].to_numpy() > 0
    k = int(corrupted.sum())
    rows = []
    for name in estimators:
        if name not in table:
            continue
        score = table[name].to_numpy(np.float64)
        row = {"estimator": name, "auroc": auroc(score, corrupted),
               "spearman": float(stats.spearmanr(score, table["truth"]).statistic),
               "partial_spearman": partial_spearman(score, table["truth"].to_numpy(), table["prevalence"].to_numpy()),
               "precision_at_k": float(corrupted[np.argsort(-score, kind="stable")[:k]].mean()) if k else float("nan"),
               "k": k}
        for level in sorted(set(table["level"].dropna()) - {0.0}):
            sel = (table["level"].to_numpy() == level) | (table["level"].to_numpy() == 0)
            row[f"auroc@{level:.2f}"] = auroc(score[sel], corrupted[sel])
        rows.append(row)
    return rows


def audit_scores(records: Sequence[RunRecord], teacher: Optional[Mapping[str, np.ndarray]] = None) -> pd.DataFrame:
    """:func:`score_estimates` of every run (``teacher``: run path -> out-of-fold teacher scores),
    one row per run and estimator with its kind, loss and seed."""
    rows = []
    for rec in records:
        table = class_estimates(rec, None if teacher is None else teacher.get(str(rec.path)))
        for row in score_estimates(table):
            rows.append({"kind": rec.config.corruption.kind, "loss": rec.config.loss.name,
                         "seed": rec.config.train.seed, "path": str(rec.path), **row})
    return pd.DataFrame(rows)


#: The scores of an estimator against the truth (:func:`summarise_scores`).
SCORES = ("auroc", "spearman", "partial_spearman", "precision_at_k")


def summarise_scores(scores: pd.DataFrame, by: Sequence[str] = ("kind", "loss", "estimator")) -> pd.DataFrame:
    """Mean and 95% t-interval over runs (seeds) of every score column, with ``n_runs``. With 3
    runs a t-interval can leave the range of a bounded score; it is clipped to that range (AUROC
    and precision@k: [0, 1]; correlations: [-1, 1])."""
    # the four scores always have a column: NaN where undefined (e.g. AUROC without a control
    # class, as under published noise that corrupts every class)
    value_cols = list(SCORES) + [c for c in scores.columns if c.startswith("auroc@")]
    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n_runs"] = len(group)
        for col in value_cols:
            vals = group[col].dropna().to_numpy(np.float64) if col in group else np.empty(0)
            row.update({col: np.nan, f"{col}_lo": np.nan, f"{col}_hi": np.nan})
            if len(vals):
                mean, lo, hi = mean_ci(vals)
                floor = -1.0 if "spearman" in col else 0.0
                row.update({col: float(mean), f"{col}_lo": float(max(lo, floor)), f"{col}_hi": float(min(hi, 1.0))})
        rows.append(row)
    return pd.DataFrame(rows)


def top_classes(records: Sequence[RunRecord], estimator: str = "sigma_normalised", top: int = 10) -> pd.DataFrame:
    """The ``top`` classes by an estimator averaged over runs, with the evidence for each (every
    estimator's mean, the noisy prevalence and, where known, the true rate): what the audit
    lists on a real dataset, which has no truth."""
    tables = [class_estimates(r) for r in records]
    merged = pd.concat(tables).groupby(["class", "class_name"], sort=False).mean(numeric_only=True).reset_index()
    return merged.sort_values(estimator, ascending=False).head(top).reset_index(drop=True)


def estimator_view(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of :func:`summarise_scores` the audit figure compares, and their estimator order:
    every estimator of the one-sided CSU runs, plus s+ and s- of trained two-sided runs (``csu2``,
    named ``"s_plus [csu2]"``) when there are any."""
    one = summary[summary["loss"] == "csu"]
    two = summary[(summary["loss"] == "csu2") & summary["estimator"].isin(["s_plus", "s_minus"])].copy()
    two["estimator"] = two["estimator"] + " [csu2]"
    order = [e for e in ESTIMATORS if e in set(one["estimator"])] + list(dict.fromkeys(two["estimator"]))
    return pd.concat([one, two], ignore_index=True), order
