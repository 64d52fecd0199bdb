"""Test mAP per group of classes: over all classes, over the classes a run's corruption corrupted
and over the classes it left untouched (the controls).

Which classes are corrupted: those whose recorded true ``label_noise_rate`` is above 0 (the
share of the clips with a clean or noisy positive of the class whose target of that class differs
from the clean one, :class:`csu_lib.corruption.CorruptionResult`); the controls are those where it
is 0. Under the audit design (:mod:`csu_lib.corruption.audit_design`) these are exactly the
classes the design corrupted and its untouched controls, for every kind -- unlike ``class_rate``
(corrupted as the source class), which is 0 for every class under SAN (a spurious label takes no
positive from a source class). A clean run has no corrupted class; a uniform corruption reaches
nearly every class, so its control group is usually empty (its mAP NaN).

The AP of every test class is stored in the run's final metrics (``test.class_ap``,
:mod:`csu_lib.evaluation`); a record written before it was stored is rescored from its test
scores and the test labels of its dataset (:func:`class_ap`). :func:`group_map` is the one
definition of a group's mAP.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..core.errors import RunRecordError
from ..corruption import CorruptionResult
from ..data import load_dataset
from ..metrics import per_class_ap
from ..records import RunRecord, records_frame
from .results import by_kind, degradation_table, paired_difference

#: The groups of classes and the run-table column of each group's test mAP.
GROUP_METRICS = {"all": "test.mAP", "corrupted": "test.mAP_corrupted", "control": "test.mAP_control"}
#: How the groups are defined, for the figures' JSON.
GROUP_DEFINITION = ("test mAP over all classes, over the corrupted classes (the run's true label_noise_rate > 0: "
                    "under the audit design, the classes the design corrupted) and over the control classes "
                    "(label_noise_rate == 0); classes without a test positive are left out, as in mAP")


def corrupted_classes(result: Optional[CorruptionResult], n_classes: int) -> np.ndarray:
    """(C,) bool: the classes a run's corruption (its :class:`~csu_lib.corruption.CorruptionResult`)
    corrupted, ``label_noise_rate > 0``; none for a clean run (None)."""
    if result is None:
        return np.zeros(n_classes, dtype=bool)
    return np.asarray(result.label_noise_rate, dtype=np.float64) > 0


def group_map(class_ap: Sequence[Optional[float]], corrupted: Sequence[bool]) -> dict[str, Any]:
    """Mean AP over all classes (``mAP``), over the ``corrupted`` ones (``mAP_corrupted``) and
    over the others (``mAP_control``), each over the classes of the group that have an AP (None
    or NaN: no test positive, left out as mAP leaves it out; NaN when none has one), and the size
    of both groups (``n_corrupted_classes``, ``n_control_classes``)."""
    ap = np.array([np.nan if a is None else float(a) for a in class_ap], dtype=np.float64)
    corrupted = np.asarray(corrupted, dtype=bool)
    if ap.shape != corrupted.shape:
        raise ValueError(f"{ap.size} class APs but {corrupted.size} corrupted-class flags")
    scored = np.isfinite(ap)

    def mean(group: np.ndarray) -> float:
        return float(ap[group & scored].mean()) if (group & scored).any() else float("nan")

    return {"mAP": mean(np.ones_like(corrupted)), "mAP_corrupted": mean(corrupted), "mAP_control": mean(~corrupted),
            "n_corrupted_classes": int(corrupted.sum()), "n_control_classes": int((~corrupted).sum())}


def dataset_test_labels(data: DataConfig, data_dir: Optional[str | os.PathLike] = None) -> np.ndarray:
    """(n_test, C) the test labels of a run's dataset, in the order of its stored test scores."""
    manifest = load_dataset(data, data_dir, progress=False)
    return manifest.labels[manifest.split_indices("test")]


def class_ap(record: RunRecord, data_dir: Optional[str | os.PathLike] = None) -> np.ndarray:
    """(C,) the test AP of every class of a run (NaN without a test positive): as stored in its
    final metrics, or, for a record written before that, from its test scores and the test
    labels of its dataset (read from ``data_dir``)."""
    stored = (record.final_metrics.get("test") or {}).get("class_ap")
    if stored is not None:
        return np.array([np.nan if a is None else a for a in stored], dtype=np.float64)
    scores = record.scores("test")
    labels = dataset_test_labels(record.config.data, data_dir)
    if labels.shape != scores.shape:
        raise RunRecordError(f"{record.path}: its test scores {scores.shape} do not match the test labels "
                             f"{labels.shape} of its dataset (clips skipped?); retrain it to store test.class_ap")
    return per_class_ap(scores, labels)


def run_group_map(record: RunRecord, data_dir: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """:func:`group_map` of a run: its test class AP grouped by what its corruption corrupted."""
    ap = class_ap(record, data_dir)
    return group_map(ap, corrupted_classes(record.corruption(), len(ap)))


def group_frame(records: Sequence[RunRecord], data_dir: Optional[str | os.PathLike] = None) -> pd.DataFrame:
    """The run table of ``records`` (:func:`csu_lib.records.records_frame`) with the group mAPs
    (:data:`GROUP_METRICS` columns) and the group sizes (``n_corrupted_classes``,
    ``n_control_classes``)."""
    frame = records_frame(records)
    if frame.empty:
        return frame
    groups = pd.DataFrame([run_group_map(r, data_dir) for r in records])
    for column in ("mAP_corrupted", "mAP_control"):
        frame[f"test.{column}"] = groups[column].to_numpy()
    for column in ("n_corrupted_classes", "n_control_classes"):
        frame[column] = groups[column].to_numpy()
    return frame


def group_table(runs: pd.DataFrame, *, kinds: Optional[Sequence[str]] = None,
                profile: Optional[str] = None) -> pd.DataFrame:
    """Test mAP per group of classes: :func:`csu_lib.analysis.results.degradation_table` of every
    :data:`GROUP_METRICS` column of a :func:`group_frame`, stacked with a ``group`` column and the
    mean in ``mean`` (``n`` runs, Student-t 95% CI over seeds ``ci_lo``, ``ci_hi``). Rows by kind
    (in the order of ``kinds``), model, method, loss, ratio and group."""
    parts = [degradation_table(runs, metric=column, kinds=kinds, profile=profile)
             .rename(columns={column: "mean"}).assign(group=group, metric=column)
             for group, column in GROUP_METRICS.items()]
    return _in_order(pd.concat(parts, ignore_index=True), kinds, ["model.name", "method.name", "loss.name", "ratio"])


def group_paired_difference(runs: pd.DataFrame, *, losses: Sequence[str], kinds: Optional[Sequence[str]] = None,
                            profile: Optional[str] = None) -> pd.DataFrame:
    """Every later loss minus the first (e.g. CSU - BCE) on the same seeds, per group of classes:
    :func:`csu_lib.analysis.results.paired_difference` of every :data:`GROUP_METRICS` column, with a
    ``group`` column (empty when fewer than two losses)."""
    frame = by_kind(runs, kinds, profile)
    parts = [paired_difference(frame, metric=column, losses=(losses[0], other)).assign(group=group)
             for other in list(losses)[1:] for group, column in GROUP_METRICS.items()]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    return _in_order(pd.concat(parts, ignore_index=True), kinds, ["model.name", "method.name", "difference", "ratio"])


def _in_order(table: pd.DataFrame, kinds: Optional[Sequence[str]], keys: list[str]) -> pd.DataFrame:
    """``table`` with ``kind`` and ``group`` first, its rows by kind (in the order of ``kinds``, else
    of first appearance), then ``keys``, then group (all, corrupted, control)."""
    kinds = list(kinds) if kinds is not None else list(dict.fromkeys(table["kind"]))
    rank = table.assign(kind=table["kind"].map({k: i for i, k in enumerate(kinds)}),
                        group=table["group"].map({g: i for i, g in enumerate(GROUP_METRICS)}))
    rows = rank.sort_values(["kind", *keys, "group"], kind="stable").index
    columns = ["kind", "group", *(c for c in table.columns if c not in ("kind", "group"))]
    return table.loc[rows, columns].reset_index(drop=True)
