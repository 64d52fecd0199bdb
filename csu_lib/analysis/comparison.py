"""The method comparison (notebooks/comparison.ipynb): one corruption setting, every method, the
mean and a 95% CI over seeds of a test metric, and what the teacher-based methods flagged
(:data:`SUMMARY_COUNTS`). The run configurations come from
:func:`csu_lib.study.comparison_configs` / :func:`csu_lib.study.mask_sweep_configs`.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..core.errors import RunRecordError
from ..core.stats import mean_ci, paired_difference
from ..records import RunRecord
from .class_groups import run_group_map


def group_records(groups: Mapping[Any, Sequence[RunConfig]],
                  records: Sequence[RunRecord]) -> dict[Any, list[RunRecord]]:
    """The records of each group's configs (matched by run id)."""
    by_id = {r.config.run_id: r for r in records}
    missing = [c.run_id for cs in groups.values() for c in cs if c.run_id not in by_id]
    if missing:
        raise RunRecordError(f"no record for run(s) {missing[:5]}")
    return {k: [by_id[c.run_id] for c in cs] for k, cs in groups.items()}


#: The counts of the methods' summaries that :func:`comparison_table` carries (means over seeds):
#: flags of the teacher, and -- with a known corruption -- how many hit entries it had changed.
SUMMARY_COUNTS = ("masked", "masked_changed", "masked_precision", "changed_negatives", "changed_positives",
                  "corrected_fn", "corrected_fn_changed", "corrected_fn_right", "corrected_fp",
                  "corrected_fp_changed", "corrected_fp_right", "masked_fn", "masked_fn_changed", "masked_fp",
                  "masked_fp_changed")


def comparison_table(groups: Mapping[Any, Sequence[RunRecord]], *, metric: str = "mAP", split: str = "test",
                     key: str = "method", level: float = 0.95, reference: Any = None,
                     data_dir: Optional[str | os.PathLike] = None) -> pd.DataFrame:
    """One row per group: ``<key>``, ``loss``, ``method_name``, ``n`` (runs = seeds), ``mean``,
    ``lo``, ``hi`` (Student-t ``level`` CI over seeds of ``split`` ``metric``), ``std``, the means
    of the other metrics (``mAP``, ``mAUC``, ``d_prime``, ``lwlrap``), the seeds, and the means of
    the method summary counts of :data:`SUMMARY_COUNTS` present in every run of the group
    (e.g. ``masked``, ``masked_precision``), prefixed ``method.``.

    Under a class-dependent corruption (``corruption.profile`` not uniform, e.g. the audit
    design ``audit:san:0.5``) also the mean test mAP over the corrupted and over the control
    classes (``mAP_corrupted``, ``mAP_control``: :mod:`csu_lib.analysis.class_groups`; a record
    without stored class APs is rescored with its dataset's test labels from ``data_dir``).

    With ``reference`` (a key of ``groups``, e.g. ``"bce"``), every other group also gets the
    paired difference to it on the seeds both have (same seed: same data, corruption draw and
    initial weights): ``paired_n``, ``paired_mean``, ``paired_lo``, ``paired_hi``."""
    ref = {int(r.config.train.seed): r.final_metrics[split][metric] for r in groups.get(reference, [])} \
        if reference is not None else {}
    rows = []
    for label, recs in groups.items():
        if not recs:
            continue
        values = np.array([r.final_metrics[split][metric] for r in recs], dtype=np.float64)
        mean, lo, hi = mean_ci(values, level=level)
        c = recs[0].config
        row: dict[str, Any] = {key: label, "loss": c.loss.name, "method_name": c.method.name, "n": len(recs),
                               "metric": f"{split}.{metric}", "mean": float(mean), "lo": float(lo), "hi": float(hi),
                               "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        for m in ("mAP", "mAUC", "d_prime", "lwlrap"):
            row[m] = float(np.mean([r.final_metrics[split][m] for r in recs]))
        if split == "test" and c.corruption.profile != "uniform":
            maps = [run_group_map(r, data_dir) for r in recs]
            row.update({m: float(np.mean([g[m] for g in maps])) for m in ("mAP_corrupted", "mAP_control")})
        row["seeds"] = [int(r.config.train.seed) for r in recs]
        if ref and label != reference:
            seeds, d_mean, d_lo, d_hi = paired_difference(
                ref, {int(r.config.train.seed): r.final_metrics[split][metric] for r in recs}, level=level)
            if seeds:
                row.update(paired_to=str(reference), paired_n=len(seeds), paired_mean=d_mean, paired_lo=d_lo,
                           paired_hi=d_hi)
        summaries = [r.summary.get("method", {}) or {} for r in recs]
        for k in SUMMARY_COUNTS:
            vals = [s.get(k) for s in summaries]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                row[f"method.{k}"] = float(np.mean(vals))
        rows.append(row)
    return pd.DataFrame(rows)
