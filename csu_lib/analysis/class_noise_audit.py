"""The class-noise audit: rank the classes by estimated label unreliability with
several estimators side by side and, where the truth is known (injected corruption), score each
estimator against it.

Estimators (higher = less reliable), per CSU run (one-sided, or two-sided ``csu2``), each named
by the quantity it reads:

- ``sigma``: CSU's LEARNED sigma_c of the selected model (for "CSU", the paper's form, the s the
  optimiser learned, wherever it stands relative to its optimum;
  :attr:`csu_lib.records.RunRecord.final_log_sigma2`, sigma by :func:`csu_lib.losses.sigma_of`);
  for a ``csu2`` run, the one-sided s* of its network (below).
- ``sigma_optimum``: sigma at s*, the stationary optimum of the selected network
  (:attr:`csu_lib.records.RunRecord.optimum_log_sigma2`; else :func:`csu_lib.losses.optimum_log_sigma2`
  of the mean BCE of its training scores): sigma_c^2 = 2 * scale * mean BCE_c over ALL training
  clips, so it carries the class's base rate (docs/methods.md, section 1).
- ``bce_loss`` (a plain BCE run of the same design, ``bce_estimator`` in the notebook): sigma at
  the s* of the BCE network, i.e. exp(s*/2) with s* = log(2 * mean BCE_c) of its training scores
  against its training labels -- the per-class training loss of a network trained without any
  sigma. Does CSU's sigma carry more than that?
- ``sigma_normalised``: the learned sigma_c^2 / (2 * scale * H(prevalence_c)), H the binary
  entropy of the class's noisy training base rate: at s* the share of the class's prior entropy
  the model leaves unexplained (1 = no better than the base rate).
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

from ..config import loss_spec
from ..core.errors import RunRecordError
from ..core.stats import mean_ci
from ..corruption import audit_levels
from ..losses import (TwoSidedCSULoss, bce_from_scores, learns_reliability, optimum_log_sigma2, scale_of, sides_of,
                      sigma2_of, sigma_of)
from ..records import RunRecord

ESTIMATORS = ("sigma", "sigma_optimum", "sigma_normalised", "s_plus", "s_minus", "teacher_fp", "teacher_fn",
              "bce_loss")


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


def network_optimum(record: RunRecord, targets: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The one-sided s* of a run's selected network on its training clips (C,): the record's stored
    optimum of a one-sided CSU run, else :func:`csu_lib.losses.optimum_log_sigma2` of the mean
    BCE of its training scores against ``targets`` (a BCE or ``csu2`` run)."""
    stored = record.optimum_log_sigma2 if sides_of(record.config.loss) == 1 else None
    return stored if stored is not None else optimum_log_sigma2(bce_from_scores(record.scores("train"), targets).mean(0),
                                                                scale)


def class_estimates(record: RunRecord, teacher_scores: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per class of a CSU (or csu2) run: every estimator, the noisy prevalence, the true
    ``label_noise_rate`` and the designed level (audit profile; else NaN). For a plain BCE run:
    ``bce_loss`` (sigma at its network's s*) and the same prevalence, truth and level."""
    targets = training_targets(record)
    result = record.corruption()
    n_classes = targets.shape[1]
    scale = scale_of(record.config.loss)
    prevalence = targets.mean(axis=0)
    cfg = record.config.corruption
    levels = audit_levels(n_classes, cfg) if cfg.profile == "audit" and cfg.kind != "none" else np.full(n_classes, np.nan)
    base = {"class": np.arange(n_classes), "class_name": record.class_names}
    truth = {"prevalence": prevalence, "truth": np.asarray(result.label_noise_rate, np.float64), "level": levels}
    if not learns_reliability(record.config.loss):
        return pd.DataFrame({**base, "bce_loss": sigma_of(network_optimum(record, targets)), **truth})
    star = network_optimum(record, targets, scale)
    if sides_of(record.config.loss) == 2:
        s_both = record.final_log_sigma2
        s_plus, s_minus = s_both[:n_classes], s_both[n_classes:]
        s = star  # the one-sided s of the same network: its stationary optimum
    else:
        s = record.final_log_sigma2
        if s is None:
            raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
        s_plus, s_minus = two_sided_reading(record.scores("train"), targets, scale)
    out = pd.DataFrame({
        **base, "sigma": sigma_of(s), "sigma_optimum": sigma_of(star),
        "sigma_normalised": sigma2_of(s) / (2 * scale * binary_entropy(prevalence)),
        "s_plus": s_plus, "s_minus": s_minus, **truth})
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
    one row per run and estimator with its kind, loss (as spelled: ``csu``, ``csu_stationary``,
    ``csu2``, ``bce``: :func:`csu_lib.config.loss_spec`) and seed."""
    rows = []
    for rec in records:
        table = class_estimates(rec, None if teacher is None else teacher.get(str(rec.path)))
        for row in score_estimates(table):
            rows.append({"kind": rec.config.corruption.kind, "loss": loss_spec(rec.config.loss),
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


#: Beside every estimator of the one-sided CSU runs, the audit figure shows these of other runs
#: (loss spelling -> estimators), named ``"<estimator> [<loss>]"``; the BCE network's loss keeps its name.
OTHER_RUNS = {"csu_stationary": ("sigma",), "csu2": ("s_plus", "s_minus"), "bce": ("bce_loss",)}


def estimator_view(summary: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows of :func:`summarise_scores` the audit figure compares, and their estimator order:
    every estimator of the one-sided CSU runs (the paper's form), then those of :data:`OTHER_RUNS`
    present: the learned sigma of stationary-fit runs (``"sigma [csu_stationary]"``), s+ and s- of
    trained two-sided runs (``"s_plus [csu2]"``) and the BCE network's loss (``"bce_loss"``)."""
    parts = [summary[summary["loss"] == "csu"]]
    for loss, names in OTHER_RUNS.items():
        rows = summary[(summary["loss"] == loss) & summary["estimator"].isin(names)].copy()
        if loss != "bce":
            rows["estimator"] = rows["estimator"] + f" [{loss}]"
        parts.append(rows)
    order = [e for e in ESTIMATORS if e in set(parts[0]["estimator"])]
    order += [e for part in parts[1:] for e in dict.fromkeys(part["estimator"])]
    return pd.concat(parts, ignore_index=True), order
