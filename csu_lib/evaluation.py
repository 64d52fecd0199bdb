"""Final evaluation of a run from its saved scores: what goes into ``final_metrics.json``.

The run record keeps the sigmoid scores of every split (``scores_<split>.npy``), so every
number here can be recomputed later without the model:

- ``test`` / ``val``: mAP, mAUC, d', lwlrap (:func:`csu_lib.metrics.evaluate`), top-1 and
  balanced accuracy when every clip has exactly one positive, the element-wise accuracy of the
  N*C decisions, class-wise precision at ``threshold`` and the AP of every class
  (``class_ap``, None for a class without a positive: the mAP of a group of classes is read
  from it, :mod:`csu_lib.analysis.class_groups`);
- ``test_by_source``: the same metrics on each ``source`` of the test split (recorded vs
  generated on the embedded benchmark), when the manifest has a source column;
- ``train_fit``: how the model fits its TRAINING labels, split by corrupted vs clean clips
  (when labels were corrupted): mAP against the clean labels, and on corrupted clips the mean
  score of the entries the corruption changed (high = the noise was memorised).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import metrics as M
from .corruption.result import CorruptionResult
from .data.manifest import Manifest

THRESHOLD = 0.5


def split_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = THRESHOLD) -> dict:
    out = M.evaluate(scores, targets)
    # single-label data (one positive per clip): the accuracy the field reports
    if M.is_single_label(targets):
        out["top1_accuracy"] = M.top1_accuracy(scores, targets)
        out["balanced_accuracy"] = M.balanced_accuracy(scores, targets)
    out["elementwise_accuracy"] = float(M.elementwise_accuracy(scores, targets, threshold))
    precision = M.precision_at_threshold(scores, targets, threshold)
    out["class_precision"] = [None if np.isnan(p) else float(p) for p in precision]
    # AP per class (None without a positive): what the mAP of a group of classes is computed from
    out["class_ap"] = [None if np.isnan(a) else float(a) for a in M.per_class_ap(scores, targets)]
    out["threshold"] = threshold
    return out


def train_fit(scores: np.ndarray, corruption: CorruptionResult) -> dict:
    """Fit of the training labels on corrupted vs clean clips (scores: (N_train, C))."""
    changed = corruption.changed.astype(bool)
    out: dict = {"n_corrupted": int(changed.sum()), "n_clean": int((~changed).sum())}
    for name, rows in (("clean_clips", ~changed), ("corrupted_clips", changed)):
        if rows.any():
            out[f"{name}.mAP_vs_clean_labels"] = M.mean_average_precision(scores[rows], corruption.clean_labels[rows])[0]
    if changed.any():
        diff = np.abs(corruption.labels[changed] - corruption.clean_labels[changed]) > 1e-6
        s = scores[changed][diff]
        noisy = corruption.labels[changed][diff]
        # mean score on entries the corruption turned positive (SAN/MAN targets) / lowered (MAN,SLN,missing sources)
        out["corrupted_entries.mean_score_where_noisy_label_higher"] = (
            float(s[noisy > corruption.clean_labels[changed][diff]].mean())
            if (noisy > corruption.clean_labels[changed][diff]).any() else None)
        out["corrupted_entries.mean_score_where_noisy_label_lower"] = (
            float(s[noisy < corruption.clean_labels[changed][diff]].mean())
            if (noisy < corruption.clean_labels[changed][diff]).any() else None)
    return out


def final_metrics(manifest: Manifest, scores: dict[str, np.ndarray], rows: dict[str, np.ndarray],
                  corruption: Optional[CorruptionResult], threshold: float = THRESHOLD) -> dict:
    """``scores``/``rows``: per split name, the (n, C) scores and the manifest rows they belong to."""
    out: dict = {}
    for split in ("test", "val"):
        out[split] = split_metrics(scores[split], manifest.labels[rows[split]], threshold)
    if "source" in manifest.clips.columns:
        sources = manifest.clips["source"].to_numpy()[rows["test"]]
        out["test_by_source"] = {
            str(src): M.evaluate(scores["test"][sources == src], manifest.labels[rows["test"]][sources == src])
            for src in sorted(set(sources))}
    if corruption is not None and "train" in scores:
        out["train_fit"] = train_fit(scores["train"], corruption)
    return out
