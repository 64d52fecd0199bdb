"""Figures of the class-noise audit (:mod:`csu_lib.analysis.class_noise_audit`): AUROC of an estimator by
corruption kind and within-class level, and every estimator side by side."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import finish

#: What each estimator of the audit reads, as the figures name it (learned s, or s* of a network).
ESTIMATOR_LABELS = {"sigma": "CSU: learned sigma", "sigma_optimum": "CSU net: sigma at s*",
                    "sigma_normalised": "CSU: learned sigma^2 / 2H(base rate)",
                    "s_plus": "CSU net: s+ (per positive)", "s_minus": "CSU net: s- (per negative)",
                    "teacher_fp": "teacher: false pos.", "teacher_fn": "teacher: false neg.",
                    "sigma [csu_stationary]": "CSU (stationary): learned sigma",
                    "s_plus [csu2]": "csu2: learned s+", "s_minus [csu2]": "csu2: learned s-",
                    "bce_loss": "BCE net: sigma at s* (its training loss)"}


def plot_auroc_by_level(summary: pd.DataFrame, estimator: str, ax: plt.Axes | None = None, *,
                        title: str | None = None) -> plt.Axes:
    """AUROC (mean and 95% CI over runs, n in the legend) of ``estimator`` separating the
    corrupted classes of each designed level from the controls, one line per kind."""
    ax = ax or plt.subplots(figsize=(4.8, 3.6))[1]
    rows = summary[summary["estimator"] == estimator]
    level_cols = sorted(c for c in rows.columns if c.startswith("auroc@") and not c.endswith(("_lo", "_hi")))
    levels = [float(c.split("@")[1]) for c in level_cols]
    for i, (_, row) in enumerate(rows.iterrows()):
        mean = np.array([row.get(c, np.nan) for c in level_cols], float)
        lo = np.array([row.get(f"{c}_lo", np.nan) for c in level_cols], float)
        hi = np.array([row.get(f"{c}_hi", np.nan) for c in level_cols], float)
        x = np.array(levels) * 100 + (i - len(rows) / 2) * 0.6
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3,
                    label=f"{row['kind']} (n={int(row['n_runs'])})")
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--", label="chance")
    ax.set_ylim(0, 1.02)
    return finish(ax, "within-class corruption level (%)", "AUROC corrupted vs control", title)


def plot_estimator_comparison(summary: pd.DataFrame, estimators: Sequence[str], ax: plt.Axes | None = None, *,
                              metric: str = "auroc", title: str | None = None) -> plt.Axes:
    """Grouped bars: ``metric`` (mean, 95% CI over runs) per corruption kind and estimator."""
    ax = ax or plt.subplots(figsize=(7.5, 3.8))[1]
    kinds = list(dict.fromkeys(summary["kind"]))
    present = [e for e in estimators if e in set(summary["estimator"])]
    width = 0.8 / max(1, len(present))
    for j, est in enumerate(present):
        sub = summary[summary["estimator"] == est].set_index("kind").reindex(kinds)
        mean = sub[metric].to_numpy(float)
        err = [mean - sub[f"{metric}_lo"].to_numpy(float), sub[f"{metric}_hi"].to_numpy(float) - mean]
        n = int(sub["n_runs"].min())
        ax.bar(np.arange(len(kinds)) + (j - (len(present) - 1) / 2) * width, mean, width, yerr=err, capsize=2,
               label=f"{ESTIMATOR_LABELS.get(est, est)} (n={n})")
    ax.set_xticks(np.arange(len(kinds)), kinds)
    if summary.empty or summary[metric].isna().all():
        ax.text(0.5, 0.5, f"{metric.replace('_', ' ')} undefined here\n(e.g. AUROC needs control classes: "
                "none when every class is corrupted)", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    if metric == "auroc":
        ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
    return finish(ax, "corruption kind (audit design)", metric.replace("_", " "), title, legend_size=7)
