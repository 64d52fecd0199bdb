"""The numbers a figure shows beyond an analysis table: the bars of the geometry statistics (mean
and 95% CI over runs), the mean of several 1-D landscape curves, the classes whose sigma is
highest, the display order and legend means of the class-precision figure, the SLN soft-value
histogram and the positives per class before and after corruption. :mod:`csu_lib.plots` draws
these numbers and computes none."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..core.stats import mean_ci, top_k

#: The statistics of :func:`csu_lib.analysis.geometry.geometry_summary`, with their axis labels.
GEOMETRY_STATISTICS = {"top_eigenvalue": r"top Hessian eigenvalue $\lambda_{max}$",
                       "hessian_trace": "Hessian trace (Hutchinson)",
                       "epsilon_sharpness": r"$\epsilon$-sharpness (loss rise)",
                       "mean_loss_rise": "mean loss rise (random dirs)"}


def geometry_rows(summaries) -> pd.DataFrame:
    """Tidy rows (condition, method, statistics...), one per run, of geometry summaries:
    ``{method: summary or [summaries]}``, ``{condition: {method: ...}}`` (a summary is the dict of
    :func:`csu_lib.analysis.geometry.geometry_summary`), or such a DataFrame already (``condition``
    optional)."""
    if isinstance(summaries, pd.DataFrame):
        df = summaries.copy()
        if "condition" not in df.columns:
            df["condition"] = ""
        return df
    rows = []

    def add(condition, method, value):
        for s in (value if isinstance(value, (list, tuple)) else [value]):
            rows.append({"condition": condition, "method": method, **{k: s[k] for k in GEOMETRY_STATISTICS if k in s}})

    for key, value in summaries.items():
        first = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(first, dict) and not any(k in first for k in GEOMETRY_STATISTICS):
            for method, v in value.items():  # {condition: {method: summary(s)}}
                add(str(key), str(method), v)
        else:
            add("", str(key), value)  # {method: summary(s)}
    return pd.DataFrame(rows)


def geometry_bars(summaries, statistics: Sequence[str] = tuple(GEOMETRY_STATISTICS)) -> pd.DataFrame:
    """One row per statistic, condition and method (in order of first appearance): ``mean``,
    ``lo``, ``hi`` (Student-t 95% CI over the runs with a finite value; NaN where none) and ``n``.
    ``summaries``: as :func:`geometry_rows` takes them; statistics absent from them are left out."""
    df = geometry_rows(summaries)
    statistics = [s for s in statistics if s in df.columns]
    conditions = list(dict.fromkeys(df["condition"]))
    methods = list(dict.fromkeys(df["method"]))
    rows = []
    for stat in statistics:
        for method in methods:
            for cond in conditions:
                v = df.loc[(df["condition"] == cond) & (df["method"] == method), stat].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                m, lo, hi = mean_ci(v) if v.size else (np.nan, np.nan, np.nan)
                rows.append({"statistic": stat, "condition": cond, "method": method, "mean": float(m),
                             "lo": float(lo), "hi": float(hi), "n": int(v.size)})
    return pd.DataFrame(rows, columns=["statistic", "condition", "method", "mean", "lo", "hi", "n"])


def mean_curves(curves: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The mean over directions of every (n_dirs, A) curve array of ``{label: curves}`` (the bold
    line of :func:`csu_lib.plots.plot_landscape_1d`); single curves are left out."""
    out = {}
    for label, values in curves.items():
        values = np.asarray(values, dtype=float)
        if values.ndim == 2:
            out[label] = values.mean(axis=0)
    return out


def top_sigma_classes(sigma, true_rate, k: Optional[int]) -> np.ndarray:
    """Indices (into the flattened ``sigma``) of the ``k`` highest sigma among the points where
    sigma and the true rate are both finite (the classes the sigma-vs-truth figure rings)."""
    sigma = np.asarray(sigma, dtype=float).ravel()
    true_rate = np.asarray(true_rate, dtype=float).ravel()
    if not k:
        return np.zeros(0, dtype=np.int64)
    keep = np.isfinite(sigma) & np.isfinite(true_rate)
    return np.flatnonzero(keep)[top_k(sigma[keep], int(k))]


def class_precision_view(table: pd.DataFrame, columns: Sequence[str],
                         sort_by: Optional[str] = None) -> tuple[pd.DataFrame, dict[str, tuple[float, int]]]:
    """What the class-precision figure draws: the rows of
    :func:`csu_lib.analysis.results.class_precision_table` in display order (by ``sort_by``, a
    column, descending, classes without a precision last; class order when None) and, per column,
    (mean precision over the classes that have one, how many do)."""
    shown = table.sort_values(sort_by, ascending=False, na_position="last") if sort_by else table
    coverage = {}
    for column in columns:
        values = shown[column].to_numpy(dtype=float)
        n = int(np.isfinite(values).sum())
        coverage[column] = (float(np.nanmean(values)) if n else float("nan"), n)
    return shown, coverage


def soft_value_bins(values, soft_range: Optional[tuple[float, float]], n_bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges (``n_bins`` equal bins over ``soft_range``, else [0, 1]) and counts of SLN's soft values."""
    edges = np.linspace(*(soft_range or (0.0, 1.0)), n_bins + 1)
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts


def positive_counts(clean_labels: np.ndarray, corrupted: Mapping[str, np.ndarray], class_names: Sequence[str]) -> pd.DataFrame:
    """Positives (target >= 0.5) per class: column ``clean`` of the clean training labels, then one
    column per corruption kind (``{kind: corrupted labels}``); one row per class."""
    return pd.DataFrame({"clean": (clean_labels >= 0.5).sum(axis=0),
                         **{k: (labels >= 0.5).sum(axis=0) for k, labels in corrupted.items()}}, index=class_names)
