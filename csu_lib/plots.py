"""Figures: one visual style for the whole suite, PNG + PDF output, and the plotted numbers.

Every figure function takes data already computed by the probes (never trains or probes
itself), draws onto matplotlib axes, and :func:`save_figure` writes ``<name>.png`` and
``<name>.pdf`` atomically; :func:`save_numbers` writes ``<name>.json`` with what was plotted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import matplotlib.pyplot as plt  # the backend is matplotlib's choice: inline in Jupyter, Agg headless
import numpy as np
import pandas as pd

from .io import atomic_path, atomic_write_json

#: Colours of conditions and methods, shared by every figure.
PALETTE = {
    "clean": "#4d4d4d", "none": "#4d4d4d",
    "san": "#1b9e77", "man": "#d95f02", "sln": "#7570b3", "missing": "#e7298a",
    "bce": "#7f7f7f", "csu": "#1f77b4",
}


def use_style() -> None:
    """The suite's matplotlib style (seaborn 'whitegrid' look, paper-sized fonts)."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight",
                         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False})


def save_figure(fig: plt.Figure, name: str, fig_dir: str | os.PathLike) -> list[Path]:
    """Write ``fig`` as ``<fig_dir>/<name>.png`` and ``.pdf``; returns the paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = Path(fig_dir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext)
        paths.append(path)
    return paths


def save_numbers(name: str, numbers: Mapping[str, Any], fig_dir: str | os.PathLike) -> Path:
    """Write the numbers a figure plotted as ``<fig_dir>/<name>.json``."""
    path = Path(fig_dir) / f"{name}.json"
    atomic_write_json(path, dict(numbers))
    return path


def _finish(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None, *, legend_size: int = 8) -> plt.Axes:
    """Axis labels, optional title and the legend: the common last step of the figure functions."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=legend_size)
    return ax


def plot_multiplier_trajectories(curves: Mapping[str, pd.DataFrame], ax: plt.Axes | None = None,
                                 *, title: str | None = None) -> plt.Axes:
    """1/sigma^2 (class-wise median; mean over runs with 95% CI band) vs normalised progress.

    ``curves`` maps a condition label (e.g. ``"clean"``, ``"san 50%"``) to the DataFrame of
    :func:`csu_lib.probes.aggregate_trajectories`. The y axis is logarithmic, as in the CSU
    paper's Fig. 7.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4))
    for label, df in curves.items():
        colour = PALETTE.get(label.split()[0].lower())
        n = int(df["n_runs"].iloc[0])
        ax.plot(df["progress"], df["mean"], label=f"{label} (n={n})", color=colour, lw=1.8)
        if n > 1:
            ax.fill_between(df["progress"], df["lo"], df["hi"], color=colour, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("normalised training progress")
    ax.set_ylabel(r"median$_c$ $1/\sigma_c^2$")
    ax.set_xlim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax


# ---------------------------------------------------------------------------------------------
# Corruption figures (notebooks/corruption.ipynb): what the injectors did to the training labels.
# Classes are drawn grouped by family when ``families`` (one family name per class) is given:
# families in order of first appearance, classes in their own order inside a family.


#: Above this many classes the per-class tick labels are left out (the axis says how many).
MAX_CLASS_TICKS = 60


def _family_spans(n_classes: int, families: Optional[Sequence[str]]) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Display order of the classes and the ``(family, start, stop)`` spans in that order."""
    if families is None:
        return np.arange(n_classes), []
    families = [str(f) for f in families]
    if len(families) != n_classes:
        from .errors import ConfigError

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
    from matplotlib.patches import Rectangle

    m = np.asarray(matrix)
    n = len(class_names)
    if m.shape != (n, n):
        from .errors import ConfigError

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


# ---------------------------------------------------------------------------------------------
# Sigma, score-plane and parameter-space figures (csu_lib.probes / csu_lib.landscape results).


#: Marker styles of the training clips on a score plane.
CLIP_STYLE = {"clean": dict(marker="o", s=14, facecolors="white", edgecolors="k", linewidths=0.6),
              "corrupted": dict(marker="X", s=26, color="#d62728", edgecolors="white", linewidths=0.4)}

#: The statistics of :func:`csu_lib.landscape.geometry_summary`, with their axis labels.
GEOMETRY_STATISTICS = {"top_eigenvalue": r"top Hessian eigenvalue $\lambda_{max}$",
                       "hessian_trace": "Hessian trace (Hutchinson)",
                       "epsilon_sharpness": r"$\epsilon$-sharpness (loss rise)",
                       "mean_loss_rise": "mean loss rise (random dirs)"}

_LINESTYLES = ("-", "--", ":", "-.")


def _label_colour(label: str, fallback_index: int = 0) -> str:
    """PALETTE colour of a label's first word (``san 50% ...``), else a cycle colour."""
    colour = PALETTE.get(str(label).split()[0].lower()) if str(label).split() else None
    return colour or f"C{fallback_index % 10}"


def plot_sigma_kde(densities, ax: plt.Axes | None = None, *, title: str | None = None,
                   xlabel: str = r"learned $\sigma_c$", fill: bool = True, log_x: bool = False) -> plt.Axes:
    """KDE curves of the learned sigma (the CSU paper's Fig. 8), one line per group.

    ``densities``: ``{label: DataFrame(x, density[, n])}`` from
    :func:`csu_lib.probes.sigma_densities`, or ``{label: (x, density)}``. The colour follows the
    label's first word (the corruption condition); groups sharing a colour get different line
    styles; a ``(clean)`` subset (of ``split_corrupted``) is drawn dashed and unfilled.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4))
    seen: dict[str, int] = {}
    for i, (label, value) in enumerate(densities.items()):
        if isinstance(value, pd.DataFrame):
            x, d = value["x"].to_numpy(float), value["density"].to_numpy(float)
            n = int(value["n"].iloc[0]) if "n" in value.columns and len(value) else None
        else:
            x, d = (np.asarray(v, dtype=float) for v in value)
            n = None
        colour = _label_colour(label, i)
        clean_part = str(label).endswith("(clean)")
        style = "--" if clean_part else _LINESTYLES[seen.get(colour, 0) % len(_LINESTYLES)]
        if not clean_part:
            seen[colour] = seen.get(colour, 0) + 1
        ax.plot(x, d, color=colour, ls=style, lw=1.8, label=f"{label}" + (f" (n={n})" if n is not None else ""))
        if fill and not clean_part:
            ax.fill_between(x, d, color=colour, alpha=0.12, lw=0)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_sigma_vs_truth(sigma, true_rate, result: Optional[dict] = None, ax: plt.Axes | None = None, *,
                        label: str = "classes", colour: str | None = None, highlight_top_k: bool = True,
                        xlabel: str = "true class corruption rate", ylabel: str = r"learned $\sigma_c$",
                        title: str | None = None) -> plt.Axes:
    """Learned sigma against the true per-class corruption rate, one point per class.

    ``result``: :func:`csu_lib.probes.sigma_vs_truth` of the same numbers (computed here when
    None); the legend gives Spearman rho with its bootstrap CI and, when there, precision@k
    (the top-k sigma classes are ringed).
    """
    from .probes import sigma_vs_truth, top_k

    sigma = np.asarray(sigma, dtype=float).ravel()
    true_rate = np.asarray(true_rate, dtype=float).ravel()
    if result is None:
        result = sigma_vs_truth(sigma, true_rate)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6))
    colour = colour or _label_colour(label)
    text = (f"{label}: Spearman $\\rho$ = {result['rho']:.2f} "
            f"[{result['ci_lo']:.2f}, {result['ci_hi']:.2f}] ({100 * result.get('level', 0.95):.0f}% CI)")
    if result.get("k") and np.isfinite(result.get("precision_at_k", np.nan)):
        text += f", P@{result['k']} = {result['precision_at_k']:.2f}"
    ax.scatter(true_rate, sigma, s=22, color=colour, alpha=0.8, lw=0, label=text)
    if highlight_top_k and result.get("k"):
        keep = np.isfinite(sigma) & np.isfinite(true_rate)
        idx = np.flatnonzero(keep)[top_k(sigma[keep], int(result["k"]))]
        ax.scatter(true_rate[idx], sigma[idx], s=70, facecolors="none", edgecolors="k", lw=0.9,
                   label=f"top-{result['k']} $\\sigma$")
    return _finish(ax, xlabel, ylabel, title, legend_size=7)


def _surface_inputs(surface, axis_a, axis_b):
    """Float arrays of a surface and its two axes; the surface must be (len(axis_a), len(axis_b))."""
    surface = np.asarray(surface, dtype=float)
    axis_a, axis_b = np.asarray(axis_a, dtype=float), np.asarray(axis_b, dtype=float)
    if surface.shape != (len(axis_a), len(axis_b)):
        raise ValueError(f"surface has shape {surface.shape}, expected ({len(axis_a)}, {len(axis_b)})")
    return surface, axis_a, axis_b


def plot_score_plane(surface, grid_a, grid_b, clips_df: Optional[pd.DataFrame] = None,
                     ax: plt.Axes | None = None, *, levels: int = 20, class_names: Sequence[str] = ("a", "b"),
                     title: str | None = None, colorbar: bool = True, cmap: str = "viridis",
                     vmin: float | None = None, vmax: float | None = None) -> plt.Axes:
    """Filled contours of a score-plane loss surface with the training clips on top.

    ``surface[i, j]``: the loss at logits (grid_a[i], grid_b[j]) (:func:`csu_lib.probes.score_plane`);
    ``clips_df``: :func:`csu_lib.probes.clip_logits` (columns ``z_a``, ``z_b``, ``corrupted``):
    clean clips as open circles, corrupted ones as red crosses. For BCE and CSU side by side,
    call it on two axes with the same ``vmin``/``vmax``.
    """
    surface, grid_a, grid_b = _surface_inputs(surface, grid_a, grid_b)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    lo = float(np.nanmin(surface)) if vmin is None else vmin
    hi = float(np.nanmax(surface)) if vmax is None else vmax
    bounds = np.linspace(lo, hi if hi > lo else lo + 1e-9, levels + 1)
    cs = ax.contourf(grid_a, grid_b, surface.T, levels=bounds, cmap=cmap, extend="both")
    ax.contour(grid_a, grid_b, surface.T, levels=bounds, colors="k", linewidths=0.3, alpha=0.4)
    if clips_df is not None and len(clips_df):
        bad = clips_df["corrupted"].to_numpy(dtype=bool)
        for name, sel in (("clean", ~bad), ("corrupted", bad)):
            if sel.any():
                ax.scatter(clips_df["z_a"].to_numpy()[sel], clips_df["z_b"].to_numpy()[sel],
                           label=f"{name} clips (n={int(sel.sum())})", zorder=3, **CLIP_STYLE[name])
        ax.legend(loc="upper right", fontsize=7, frameon=True)
    ax.set_xlim(grid_a[0], grid_a[-1])
    ax.set_ylim(grid_b[0], grid_b[-1])
    ax.set_xlabel(f"logit $z$ of {class_names[0]}")
    ax.set_ylabel(f"logit $z$ of {class_names[1]}")
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label="per-sample loss")
    if title:
        ax.set_title(title)
    return ax


def plot_landscape_1d(alphas, curves, ax: plt.Axes | None = None, *, title: str | None = None,
                      xlabel: str = r"step $\alpha$ along a filter-normalised direction",
                      ylabel: str = "loss") -> plt.Axes:
    """1-D loss curves L(theta + alpha d).

    ``curves``: an array (one curve), or ``{label: array}``; an array of shape (n_dirs, A) is
    drawn as thin lines (one per direction) with their mean in bold. Colours: PALETTE by the
    label's first word (``bce``, ``csu``, ``san`` ...).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4))
    alphas = np.asarray(alphas, dtype=float)
    if not isinstance(curves, dict):
        curves = {"loss": curves}
    for i, (label, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        colour = _label_colour(label, i)
        if values.ndim == 2:
            for row in values:
                ax.plot(alphas, row, color=colour, lw=0.6, alpha=0.35)
            ax.plot(alphas, values.mean(axis=0), color=colour, lw=2.0, label=f"{label} (mean of {len(values)})")
        else:
            ax.plot(alphas, values, color=colour, lw=1.8, label=str(label))
    ax.axvline(0.0, color="0.5", lw=0.7, ls=":")
    return _finish(ax, xlabel, ylabel, title, legend_size=8)


def plot_landscape_2d(alphas, betas, surface, ax: plt.Axes | None = None, *, levels: int = 20,
                      title: str | None = None, log: bool = False, colorbar: bool = True,
                      cmap: str = "viridis") -> plt.Axes:
    """Contour plot of a 2-D loss surface ``surface[i, j] = L(theta + alphas[i] d1 + betas[j] d2)``
    (:func:`csu_lib.landscape.loss_surface_2d`); the trained weights are marked at (0, 0).
    ``log``: contour log10 of the loss (positive surfaces only)."""
    surface, alphas, betas = _surface_inputs(surface, alphas, betas)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.8))
    z = np.log10(surface) if log else surface
    cs = ax.contourf(alphas, betas, z.T, levels=levels, cmap=cmap)
    lines = ax.contour(alphas, betas, z.T, levels=cs.levels, colors="k", linewidths=0.4, alpha=0.6)
    ax.clabel(lines, lines.levels[::max(1, len(lines.levels) // 5)], fontsize=6, fmt="%.3g")
    ax.plot([0], [0], marker="*", color="white", mec="k", ms=11, ls="none", label="trained weights")
    ax.set_xlabel(r"$\alpha$ (direction 1)")
    ax.set_ylabel(r"$\beta$ (direction 2)")
    ax.set_aspect("equal", adjustable="box")
    ax.grid(False)
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label="log10 loss" if log else "loss")
    if title:
        ax.set_title(title)
    return ax


def plotly_landscape_2d(alphas, betas, surface, *, title: str | None = None, zlabel: str = "loss",
                        colorscale: str = "Viridis"):
    """Interactive 3-D view of a 2-D loss surface (plotly ``Surface`` with projected contours)."""
    import plotly.graph_objects as go

    surface, alphas, betas = _surface_inputs(surface, alphas, betas)
    fig = go.Figure(go.Surface(x=alphas, y=betas, z=surface.T, colorscale=colorscale,  # z[row=beta][col=alpha]
                               colorbar=dict(title=zlabel),
                               contours=dict(z=dict(show=True, usecolormap=True, project=dict(z=True)))))
    fig.update_layout(title=title, scene=dict(xaxis_title="alpha", yaxis_title="beta", zaxis_title=zlabel),
                      margin=dict(l=0, r=0, t=40 if title else 10, b=0))
    return fig


def save_plotly(fig, name: str, fig_dir: str | os.PathLike) -> Path:
    """Write ``fig`` as a self-contained ``<fig_dir>/<name>.html`` (plotly.js embedded, so it
    opens offline), atomically; returns the path."""
    from .io import atomic_write_text

    path = Path(fig_dir) / f"{name}.html"
    atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path


def _geometry_rows(summaries) -> pd.DataFrame:
    """Tidy rows (condition, method, statistics...) from the accepted inputs of
    :func:`plot_geometry_summary`."""
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


def plot_geometry_summary(summaries, axes: Sequence[plt.Axes] | None = None, *,
                          statistics: Sequence[str] = tuple(GEOMETRY_STATISTICS), title: str | None = None):
    """Bars of the parameter-space geometry statistics, BCE vs CSU (the CSU paper's Fig. 6).

    ``summaries``: ``{method: summary or [summaries]}``, ``{condition: {method: ...}}`` (a
    summary is the dict of :func:`csu_lib.landscape.geometry_summary`), or a DataFrame with
    columns ``method``, optional ``condition``, and one column per statistic (one row per run).
    One panel per statistic (their scales differ); conditions along x, one bar per method
    (PALETTE colours), the mean over runs with a Student-t 95% CI when there are several.
    Returns the array of axes.
    """
    from .probes import mean_ci

    df = _geometry_rows(summaries)
    statistics = [s for s in statistics if s in df.columns]
    if axes is None:
        _, axes = plt.subplots(1, len(statistics), figsize=(3.0 * len(statistics), 3.2), squeeze=False)
        axes = axes[0]
    axes = np.atleast_1d(np.asarray(axes, dtype=object))
    conditions = list(dict.fromkeys(df["condition"]))
    methods = list(dict.fromkeys(df["method"]))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(conditions))
    for ax, stat in zip(axes, statistics):
        for j, method in enumerate(methods):
            means, errs, n_max = [], [[], []], 0
            for cond in conditions:
                v = df.loc[(df["condition"] == cond) & (df["method"] == method), stat].to_numpy(dtype=float)
                v = v[np.isfinite(v)]
                n_max = max(n_max, v.size)
                m, lo, hi = mean_ci(v) if v.size else (np.nan, np.nan, np.nan)
                means.append(float(m))
                errs[0].append(float(m - lo))
                errs[1].append(float(hi - m))
            ax.bar(x - 0.4 + (j + 0.5) * width, means, width, color=_label_colour(method, j), lw=0,
                   yerr=np.asarray(errs) if n_max > 1 else None, capsize=3, label=str(method).upper())
        ax.set_xticks(x, [c if c else "" for c in conditions])
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(GEOMETRY_STATISTICS.get(stat, stat), fontsize=9)
        ax.grid(False, axis="x")
    axes[0].legend(loc="best", fontsize=8)
    if title:
        axes[0].figure.suptitle(title)
    return axes


# ---------------------------------------------------------------------------------------------
# Method comparison figures (notebooks/comparison.ipynb): one corruption setting, every method,
# mean and 95% CI over seeds (tables from csu_lib.methods.comparison_table).


def _method_colour(label: str) -> str:
    """Colour of a method spec such as ``bce``, ``csu+mixup_or``: by its loss (grey BCE, blue CSU)."""
    return PALETTE.get(str(label).split("+")[0].strip().lower(), "#4d4d4d")


def plot_method_comparison(table: pd.DataFrame, ax: plt.Axes | None = None, *, key: str = "method",
                           reference: str | None = "bce", xlabel: str | None = None,
                           title: str | None = None) -> plt.Axes:
    """Point + CI per method, one row per method (top to bottom in table order).

    ``table``: columns ``key`` (method label), ``mean``, ``lo``, ``hi``, ``n`` (and optionally
    ``metric``), e.g. :func:`csu_lib.methods.comparison_table`. Methods are coloured by their loss
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
        colour = _method_colour(label)
        ax.errorbar([m], [yi], xerr=[[m - a], [b - m]], fmt="o", color=colour, ms=6, capsize=3, lw=1.4)
    if reference is not None and reference in labels:
        ax.axvline(mean[labels.index(reference)], color=_method_colour(reference), ls="--", lw=0.9, zorder=0.5)
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
    colour = PALETTE["bce"] if "loss" not in df or not len(df) else _method_colour(str(df["loss"].iloc[0]))
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


# ---------------------------------------------------------------------------------------------
# Degradation and class-wise precision (notebooks/degradation.ipynb, notebooks/class_precision.ipynb):
# tables from csu_lib.results.


def plot_degradation(table: pd.DataFrame, *, metric: str = "test.mAP", title: str | None = None) -> plt.Figure:
    """The metric against the corruption ratio (the CSU paper's Fig. 3): one panel per corruption
    type, one line per backbone x loss (colour: loss, line style: backbone), 95% CI bands when
    there are several seeds. ``table``: :func:`csu_lib.results.degradation_table`."""
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
            name = f"{model}, {loss.upper()}" + ("" if method == "none" else f"+{method}")
            n = int(line["n"].min())
            ax.plot(x, line[metric], marker="o", ms=4, lw=1.6, color=colour,
                    ls=_LINESTYLES[models.index(model) % len(_LINESTYLES)], label=f"{name} (n={n})")
            if n > 1:
                ax.fill_between(x, line["ci_lo"], line["ci_hi"], color=colour, alpha=0.15, lw=0)
        ax.set_title(str(kind).upper())
        ax.set_xlabel("corrupted training clips (%)")
    axes[0, 0].set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    axes[0, -1].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_relative_change(table: pd.DataFrame, ax: plt.Axes | None = None, *, title: str | None = None) -> plt.Axes:
    """Relative change at one ratio, normalised to clean training (the CSU paper's Fig. 4): one
    group of bars per corruption type x backbone, one bar per loss, 95% CI over seeds as error
    bars. ``table``: :func:`csu_lib.results.relative_change`."""
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
        ax.bar(x, y, width=width, color=PALETTE.get(str(loss), f"C{j}"), label=f"{str(loss).upper()} (n={n})",
               yerr=err if n > 1 else None, capsize=3)
    ax.axhline(0, color="black", lw=0.8)
    single_model = len({m for _, m in groups}) == 1
    ax.set_xticks(range(len(groups)), [k.upper() if single_model else f"{k.upper()}\n{m}" for k, m in groups])
    ratio = float(table["ratio"].iloc[0]) if len(table) else 0.5
    return _finish(ax, "", f"change vs clean training at {ratio:.0%} (%)", title)


def plot_class_precision(table: pd.DataFrame, columns: Sequence[str], ax: plt.Axes | None = None, *,
                         sort_by: str | None = None, title: str | None = None, threshold: float = 0.5) -> plt.Axes:
    """Class-wise precision at ``threshold`` (the spirit of the CSU paper's Fig. 9): one marker
    per class and column (e.g. ``bce``, ``csu``), classes sorted by ``sort_by`` (a column,
    descending) or kept in class order (``None``). A class never predicted positive has no
    precision: it is a gap. ``table``: :func:`csu_lib.results.class_precision_table`."""
    df = table.sort_values(sort_by, ascending=False, na_position="last") if sort_by else table
    if ax is None:
        _, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.16 * len(df))), 3.6))
    x = np.arange(len(df))
    for j, column in enumerate(columns):
        values = df[column].to_numpy(dtype=float)
        n = int(np.isfinite(values).sum())
        ax.plot(x, values, "o-", ms=3.5, lw=0.9, color=PALETTE.get(str(column), f"C{j}"),
                label=f"{str(column).upper()} (mean {np.nanmean(values):.3f} over its {n} classes with a precision)"
                if n else f"{str(column).upper()} (no class predicted positive)")
    ax.set_xticks(x, df["class"], rotation=90, fontsize=6 if len(df) > 30 else 8)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(False, axis="x")
    order = f"sorted by {str(sort_by).upper()} precision" if sort_by else "class order"
    return _finish(ax, f"class ({order})", f"precision at {threshold:g}", title)
