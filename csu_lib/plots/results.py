"""Figures of results across runs: degradation curves (the CSU paper's Fig. 3), the mAP per group
of classes under uneven noise (corrupted vs control classes), relative change
(Fig. 4), class-wise precision (the spirit of Fig. 9), and the method comparison with Fonseca's
teacher-masking sweep; tables from :mod:`csu_lib.analysis.results` and
:mod:`csu_lib.analysis.comparison`, mean and 95% CI over seeds."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..config import loss_label
from .style import LINESTYLES, PALETTE, finish, method_colour


def plot_method_comparison(table: pd.DataFrame, ax: plt.Axes | None = None, *, key: str = "method",
                           reference: str | None = "bce", xlabel: str | None = None,
                           title: str | None = None) -> plt.Axes:
    """Point + CI per method, one row per method (top to bottom in table order).

    ``table``: columns ``key`` (method label), ``mean``, ``lo``, ``hi``, ``n`` (and optionally
    ``metric``), e.g. :func:`csu_lib.analysis.comparison.comparison_table`. Methods are coloured by their loss
    (``bce`` grey, ``csu`` blue; the method spec is ``<loss>+<method>``); the mean of the
    ``reference`` row, when present, is drawn as a dashed line.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 0.42 * max(len(table), 2) + 1.0))
    labels = [str(v) for v in table[key]]
    y = np.arange(len(labels))[::-1]
    mean = table["mean"].to_numpy(dtype=float)
    lo, hi = table["lo"].to_numpy(dtype=float), table["hi"].to_numpy(dtype=float)
    for yi, label, m, a, b in zip(y, labels, mean, lo, hi):
        colour = method_colour(label)
        ax.errorbar([m], [yi], xerr=[[m - a], [b - m]], fmt="o", color=colour, ms=6, capsize=3, lw=1.4)
    if reference is not None and reference in labels:
        ax.axvline(mean[labels.index(reference)], color=method_colour(reference), ls="--", lw=0.9, zorder=0.5)
    n = table["n"].to_numpy() if "n" in table else None
    ticks = [f"{lab} (n={int(k)})" for lab, k in zip(labels, n)] if n is not None else labels
    ax.set_yticks(y, ticks)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    metric = str(table["metric"].iloc[0]) if "metric" in table and len(table) else "score"
    ax.set_xlabel(xlabel or f"{metric} (mean, 95% CI over seeds)")
    ax.grid(False, axis="y")
    if title:
        ax.set_title(title)
    return ax


def plot_mask_sweep(sweep: pd.DataFrame, ax: plt.Axes | None = None, *, key: str = "percent",
                    xlabel: str = "top-scored negatives discarded per class (%)", ylabel: str | None = None,
                    label: str | None = None, title: str | None = None) -> plt.Axes:
    """Performance vs % of top-scored negatives discarded (Fonseca et al. 2020, Fig. 2).

    ``sweep``: columns ``key`` (percent), ``mean``, ``lo``, ``hi``, ``n``; one row per percent.
    The 0 % point (normal training, no label ignored) is drawn as a square, as in the paper.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.2))
    df = sweep.sort_values(key)
    x = df[key].to_numpy(dtype=float)
    mean = df["mean"].to_numpy(dtype=float)
    lo, hi = df["lo"].to_numpy(dtype=float), df["hi"].to_numpy(dtype=float)
    colour = PALETTE["bce"] if "loss" not in df or not len(df) else method_colour(str(df["loss"].iloc[0]))
    n = int(df["n"].min()) if "n" in df and len(df) else 0
    ax.plot(x, mean, "-o", color=colour, lw=1.6, ms=5, label=label or f"teacher mask (n={n} seeds)")
    if n > 1:
        ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
    base = x == 0
    if base.any():
        ax.plot(x[base], mean[base], "s", color=colour, ms=8, mfc="white", mew=1.6, label="0 %: all negatives used")
    ax.set_xlabel(xlabel)
    metric = str(df["metric"].iloc[0]) if "metric" in df and len(df) else "score"
    ax.set_ylabel(ylabel or f"{metric} (mean, 95% CI)")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_degradation(table: pd.DataFrame, *, metric: str = "test.mAP", title: str | None = None) -> plt.Figure:
    """The metric against the corruption ratio (the CSU paper's Fig. 3): one panel per corruption
    type, one line per backbone x loss (colour: loss, line style: backbone), 95% CI bands when
    there are several seeds. ``table``: :func:`csu_lib.analysis.results.degradation_table`."""
    kinds = list(dict.fromkeys(table["kind"]))
    models = list(dict.fromkeys(table["model.name"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.0 * len(kinds), 3.4), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, kind in zip(axes[0], kinds):
        sub = table[table["kind"] == kind]
        for (model, method, loss), line in sub.groupby(["model.name", "method.name", "loss.name"], sort=False):
            line = line.sort_values("ratio")
            x = 100 * line["ratio"].to_numpy(dtype=float)
            colour = PALETTE.get(str(loss), "#4d4d4d")
            name = f"{model}, {loss_label(loss)}" + ("" if method == "none" else f"+{method}")
            n = int(line["n"].min())
            ax.plot(x, line[metric], marker="o", ms=4, lw=1.6, color=colour,
                    ls=LINESTYLES[models.index(model) % len(LINESTYLES)], label=f"{name} (n={n})")
            if n > 1:
                ax.fill_between(x, line["ci_lo"], line["ci_hi"], color=colour, alpha=0.15, lw=0)
        ax.set_title(str(kind).upper())
        ax.set_xlabel("corrupted training clips (%)")
    axes[0, 0].set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    axes[0, -1].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


#: The axis names of the class groups of :func:`plot_degradation_uneven`.
GROUP_NAMES = {"all": "all\nclasses", "corrupted": "corrupted\nclasses", "control": "control\nclasses"}


def plot_degradation_uneven(table: pd.DataFrame, paired: pd.DataFrame | None, *, metric: str = "test.mAP",
                            title: str | None = None) -> plt.Figure:
    """A metric per group of classes under a class-dependent corruption: one column per corruption
    type; top, the mean and 95% CI over seeds of every backbone x loss on all, the corrupted and the
    control classes; below (when ``paired`` has rows), each paired difference (e.g. CSU - BCE on the
    same seeds) per group with its 95% CI, 0 dashed. ``n`` (runs) in the legends. ``table``:
    :func:`csu_lib.analysis.class_groups.group_table`; ``paired``:
    :func:`csu_lib.analysis.class_groups.group_paired_difference`."""
    kinds = list(dict.fromkeys(table["kind"]))
    groups = list(dict.fromkeys(table["group"]))
    n_rows = 2 if paired is not None and len(paired) else 1
    fig, axes = plt.subplots(n_rows, len(kinds), figsize=(4.2 * len(kinds), 3.1 * n_rows), sharey="row",
                             squeeze=False, layout="constrained")
    for j, kind in enumerate(kinds):
        sub = table[table["kind"] == kind]
        _group_points(axes[0, j], sub, groups, ["model.name", "method.name", "loss.name"], "mean",
                      lambda key: (PALETTE.get(str(key[2]), "#4d4d4d"),
                                   f"{key[0]}, {str(key[2]).upper()}" + ("" if key[1] == "none" else f"+{key[1]}")))
        axes[0, j].set_title(f"{str(kind).upper()}, top level {float(sub['ratio'].iloc[0]):.0%}")
        if n_rows == 2:
            diff = paired[paired["kind"] == kind]
            _group_points(axes[1, j], diff, groups, ["model.name", "method.name", "difference"], "mean",
                          lambda key: (PALETTE.get(str(key[2]).split()[0], "#4d4d4d"), f"{key[2]} ({key[0]})"))
            axes[1, j].axhline(0, color="black", lw=0.8, ls="--")
    axes[0, 0].set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    if n_rows == 2:
        axes[1, 0].set_ylabel("paired difference (95% CI)")
    if title:
        fig.suptitle(title)
    return fig


def _group_points(ax: plt.Axes, rows: pd.DataFrame, groups: list, keys: list, value: str, style) -> None:
    """One marker with its 95% CI per group of classes for every line of ``rows`` (by ``keys``),
    side by side; ``style(key) -> (colour, label)``."""
    lines = list(rows.groupby(keys, sort=False))
    x = np.arange(len(groups))
    for i, (key, line) in enumerate(lines):
        line = line.set_index("group").reindex(groups)
        mean = line[value].to_numpy(dtype=float)
        err = [mean - line["ci_lo"].to_numpy(dtype=float), line["ci_hi"].to_numpy(dtype=float) - mean]
        colour, label = style(key)
        offset = (i - (len(lines) - 1) / 2) * 0.6 / max(1, len(lines))
        ax.errorbar(x + offset, mean, yerr=err, fmt="o", ms=5, capsize=3, lw=1.3, color=colour,
                    label=f"{label} (n={int(line['n'].min())})")
    ax.set_xticks(x, [GROUP_NAMES.get(g, g) for g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.grid(False, axis="x")
    ax.legend(loc="best", fontsize=7)


def plot_relative_change(table: pd.DataFrame, ax: plt.Axes | None = None, *, title: str | None = None) -> plt.Axes:
    """Relative change at one ratio, normalised to clean training (the CSU paper's Fig. 4): one
    group of bars per corruption type x backbone, one bar per loss, 95% CI over seeds as error
    bars. ``table``: :func:`csu_lib.analysis.results.relative_change`."""
    groups = list(dict.fromkeys(zip(table["kind"], table["model.name"])))
    losses = list(dict.fromkeys(table["loss.name"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(groups) + 1.5), 3.4))
    width = 0.8 / max(1, len(losses))
    for j, loss in enumerate(losses):
        sub = table[table["loss.name"] == loss].set_index(["kind", "model.name"])
        x, y, err = [], [], [[], []]
        for i, key in enumerate(groups):
            if key not in sub.index:
                continue
            row = sub.loc[key]
            x.append(i + (j - (len(losses) - 1) / 2) * width)
            y.append(float(row["change_percent"]))
            err[0].append(float(row["change_percent"] - row["ci_lo"]))
            err[1].append(float(row["ci_hi"] - row["change_percent"]))
        n = int(table[table["loss.name"] == loss]["n"].min())
        ax.bar(x, y, width=width, color=PALETTE.get(str(loss), f"C{j}"), label=f"{loss_label(loss)} (n={n})",
               yerr=err if n > 1 else None, capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    single_model = len({m for _, m in groups}) == 1
    ax.set_xticks(range(len(groups)), [k.upper() if single_model else f"{k.upper()}\n{m}" for k, m in groups])
    ratio = float(table["ratio"].iloc[0]) if len(table) else 0.5
    return finish(ax, "", f"change vs clean training at {ratio:.0%} (%)", title)


def plot_class_precision(table: pd.DataFrame, columns: Sequence[str], coverage: Mapping[str, tuple[float, int]],
                         ax: plt.Axes | None = None, *, sort_by: str | None = None, title: str | None = None,
                         threshold: float = 0.5) -> plt.Axes:
    """Class-wise precision at ``threshold`` (the spirit of the CSU paper's Fig. 9): one marker
    per class and column (e.g. ``bce``, ``csu``), classes in the order of ``table``. A class never
    predicted positive has no precision: it is a gap. ``table`` and ``coverage`` (per column: the
    mean precision over the classes with one, and how many) are
    :func:`csu_lib.analysis.figure_stats.class_precision_view` of
    :func:`csu_lib.analysis.results.class_precision_table`; ``sort_by`` names the column the
    view sorted by (None: class order), for the axis label."""
    df = table
    if ax is None:
        _, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.16 * len(df))), 3.6))
    x = np.arange(len(df))
    for j, column in enumerate(columns):
        values = df[column].to_numpy(dtype=float)
        mean, n = coverage[column]
        ax.plot(x, values, "o-", ms=3.5, lw=0.9, color=PALETTE.get(str(column), f"C{j}"),
                label=f"{loss_label(column)} (mean {mean:.3f} over its {n} classes with a precision)"
                if n else f"{loss_label(column)} (no class predicted positive)")
    ax.set_xticks(x, df["class"], rotation=90, fontsize=6 if len(df) > 30 else 8)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(False, axis="x")
    order = f"sorted by {loss_label(sort_by)} precision" if sort_by else "class order"
    return finish(ax, f"class ({order})", f"precision at {threshold:g}", title)
