"""Corruption figures (notebooks/corruption.ipynb): what the injectors did to the training labels.

Classes are drawn grouped by family when ``families`` (one family name per class) is given:
families in order of first appearance, classes in their own order inside a family.
"""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from ..core.errors import ConfigError
from .style import PALETTE

#: Above this many classes the per-class tick labels are left out (the axis says how many).
MAX_CLASS_TICKS = 60


def _family_spans(n_classes: int, families: Optional[Sequence[str]]) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Display order of the classes and the ``(family, start, stop)`` spans in that order."""
    if families is None:
        return np.arange(n_classes), []
    families = [str(f) for f in families]
    if len(families) != n_classes:
        raise ConfigError(f"families has {len(families)} entries for {n_classes} classes")
    first: dict[str, int] = {}
    for f in families:
        first.setdefault(f, len(first))
    order = np.array(sorted(range(n_classes), key=lambda c: (first[families[c]], c)), dtype=np.int64)
    spans, start = [], 0
    for i in range(1, n_classes + 1):
        if i == n_classes or families[order[i]] != families[order[start]]:
            spans.append((families[order[start]], start, i))
            start = i
    return order, spans


def _label_class_axis(ax: plt.Axes, names: Sequence[str], spans: list[tuple[str, int, int]], *,
                      axis: str = "x", separators: bool = True) -> None:
    """Family names at the family centres (with thin separators), else class names (<= 60)."""
    n = len(names)
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_lim = ax.set_xlim if axis == "x" else ax.set_ylim
    if spans and len(spans) < n:
        set_ticks([(a + b - 1) / 2 for _, a, b in spans], [f for f, _, _ in spans])
        set_ticks(np.arange(n), minor=True)
        if separators:
            line = ax.axvline if axis == "x" else ax.axhline
            for _, a, _ in spans[1:]:
                line(a - 0.5, color="0.6", lw=0.6, zorder=0.5)
        label = f"class, grouped by family ({n} classes)"
    elif n <= MAX_CLASS_TICKS:
        set_ticks(np.arange(n), list(names))
        label = "class"
    else:
        set_ticks([])
        label = f"class ({n} classes)"
    if axis == "x":
        ax.tick_params(axis="x", labelsize=7 if n > 20 else 8)
        if spans and len(spans) < n:  # family names: slanted, anchored at the family centre
            plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        else:
            plt.setp(ax.get_xticklabels(), rotation=90)
        ax.set_xlabel(label)
        ax.grid(False, axis="x")
    else:
        ax.tick_params(axis="y", labelsize=7 if n > 20 else 8)
        ax.set_ylabel(label)
        ax.grid(False, axis="y")
    set_lim(-0.5, n - 0.5)


def _grouped_bars(ax: plt.Axes, table: pd.DataFrame, order: np.ndarray, *, width: float = 0.8) -> None:
    """One bar per class and column of ``table``, the columns side by side within a class."""
    k = table.shape[1]
    w = width / max(k, 1)
    x = np.arange(len(order))
    for j, column in enumerate(table.columns):
        ax.bar(x - width / 2 + (j + 0.5) * w, table[column].to_numpy(dtype=float)[order], w,
               color=PALETTE.get(str(column).split()[0].lower()), label=str(column), lw=0)


def plot_class_rates(rates: pd.DataFrame, ax: plt.Axes | None = None, *,
                     families: Optional[Sequence[str]] = None, reference: float | None = None,
                     ylabel: str = "true corruption rate", title: str | None = None) -> plt.Axes:
    """Per-class corruption rates, one bar per class and kind.

    ``rates``: one row per class (the index gives the class names), one column per kind
    (``san``, ``man``, ...), e.g. :attr:`CorruptionResult.class_rate` or ``label_noise_rate``.
    ``reference`` (e.g. the nominal ratio) is drawn as a dashed line.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.2 * len(rates) * max(1, rates.shape[1]) ** 0.5), 3.2))
    order, spans = _family_spans(len(rates), families)
    _grouped_bars(ax, rates, order)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=0.9, label=f"nominal ratio {reference:g}")
    _label_class_axis(ax, [str(c) for c in np.asarray(rates.index)[order]], spans)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(1.0, float(np.nanmax(rates.to_numpy(dtype=float), initial=0.0)) * 1.05))
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    return ax


def plot_transition_matrix(matrix: np.ndarray, class_names: Sequence[str], ax: plt.Axes | None = None, *,
                           families: Optional[Sequence[str]] = None, title: str | None = None,
                           cmap: str = "Oranges", colorbar: bool = True) -> plt.Axes:
    """Heatmap of source -> target counts (rows: clean source class; columns: class assigned).

    ``matrix``: (C, C) counts, e.g. :func:`csu_lib.corruption.man_transition_matrix`. Empty
    cells are left white; with ``families`` the classes are grouped and each family's diagonal
    block is outlined (transitions inside a family fall inside the outlines).
    """
    m = np.asarray(matrix)
    n = len(class_names)
    if m.shape != (n, n):
        raise ConfigError(f"transition matrix has shape {m.shape}, expected ({n}, {n}) for {n} class names")
    if ax is None:
        side = min(9.0, max(4.0, 0.12 * n + 2.5))
        _, ax = plt.subplots(figsize=(side + 0.8, side))
    order, spans = _family_spans(n, families)
    shown = m[np.ix_(order, order)].astype(float)
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_equal(shown, 0), cmap=colours, interpolation="nearest", aspect="equal",
                   vmin=0, vmax=max(1.0, float(shown.max(initial=0))))
    names = [str(class_names[c]) for c in order]
    _label_class_axis(ax, names, spans, axis="x", separators=False)
    _label_class_axis(ax, names, spans, axis="y", separators=False)
    ax.set_ylim(n - 0.5, -0.5)  # row 0 at the top, as a matrix
    ax.set_xlabel(ax.get_xlabel().replace("class", "target class", 1))
    ax.set_ylabel(ax.get_ylabel().replace("class", "source class", 1))
    for _, a, b in (spans if len(spans) < n else []):
        ax.add_patch(Rectangle((a - 0.5, a - 0.5), b - a, b - a, fill=False, ec="0.35", lw=0.7))
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="clips")
    if not shown.sum():
        ax.text(0.5, 0.5, "no transitions", transform=ax.transAxes, ha="center", va="center")
    if title:
        ax.set_title(title)
    return ax


def plot_soft_values(values: np.ndarray, ax: plt.Axes | None = None, *, bins: int | Sequence[float] = 20,
                     soft_range: tuple[float, float] | None = None, title: str | None = None) -> plt.Axes:
    """Histogram of the soft targets SLN gave the corrupted positives (a clean positive is 1.0).

    ``bins``: bin edges, or a number of equal bins spanning ``soft_range`` (drawn as dashed
    lines) when given, else [0, 1].
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.2))
    values = np.asarray(values, dtype=float).ravel()
    lo, hi = soft_range if soft_range is not None else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
    edges = np.asarray(bins, dtype=float) if np.ndim(bins) else np.linspace(lo, hi, int(bins) + 1)
    lo = min(lo, float(edges[0]))
    ax.hist(values, bins=edges, color=PALETTE["sln"], edgecolor="white", lw=0.5,
            label=f"corrupted positives (n={len(values)})")
    if soft_range is not None:
        for edge in soft_range:
            ax.axvline(edge, color="k", ls="--", lw=0.8)
    ax.axvline(1.0, color=PALETTE["clean"], lw=1.5, label="clean positive (1.0)")
    ax.set_xlim(min(0.0, lo), 1.02)
    ax.set_xlabel("target value of the corrupted positive")
    ax.set_ylabel("clips")
    ax.yaxis.get_major_locator().set_params(integer=True)
    if not len(values):
        ax.text(0.5, 0.5, "no soft values", transform=ax.transAxes, ha="center", va="center")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_label_counts(counts: pd.DataFrame, ax: plt.Axes | None = None, *, clean: str = "clean",
                      families: Optional[Sequence[str]] = None, title: str | None = None) -> plt.Axes:
    """Positives per class before (wide grey bar, column ``clean``) and after each corruption
    (narrow coloured bars, the other columns), one row of ``counts`` per class."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.2 * len(counts) * max(1, counts.shape[1] - 1) ** 0.5), 3.2))
    order, spans = _family_spans(len(counts), families)
    x = np.arange(len(counts))
    ax.bar(x, counts[clean].to_numpy(dtype=float)[order], 0.9, facecolor=(0.3, 0.3, 0.3, 0.18),
           edgecolor=PALETTE["clean"], lw=0.8, label=clean)
    _grouped_bars(ax, counts.drop(columns=[clean]), order, width=0.7)
    _label_class_axis(ax, [str(c) for c in np.asarray(counts.index)[order]], spans)
    ax.set_ylabel("positives per class")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    return ax
