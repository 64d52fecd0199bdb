"""Figures over planes of the loss: the score plane of a class pair's logits (the CSU paper's
Fig. 5), loss landscapes along random directions (1-D, 2-D, interactive 3-D) and the
parameter-space geometry statistics (Fig. 6)."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.figure_stats import GEOMETRY_STATISTICS
from .style import finish, label_colour, surface_inputs

#: Marker styles of the training clips on a score plane.
CLIP_STYLE = {"clean": dict(marker="o", s=14, facecolors="white", edgecolors="k", linewidths=0.6),
              "corrupted": dict(marker="X", s=26, color="#d62728", edgecolors="white", linewidths=0.4)}


def plot_score_plane(surface, grid_a, grid_b, clips_df: Optional[pd.DataFrame] = None,
                     ax: plt.Axes | None = None, *, levels: int = 20, class_names: Sequence[str] = ("a", "b"),
                     title: str | None = None, colorbar: bool = True, cmap: str = "viridis",
                     vmin: float | None = None, vmax: float | None = None) -> plt.Axes:
    """Filled contours of a score-plane loss surface with the training clips on top.

    ``surface[i, j]``: the loss at logits (grid_a[i], grid_b[j]) (:func:`csu_lib.analysis.score_plane.score_plane`);
    ``clips_df``: :func:`csu_lib.analysis.score_plane.clip_logits` (columns ``z_a``, ``z_b``, ``corrupted``):
    clean clips as open circles, corrupted ones as red crosses. For BCE and CSU side by side,
    call it on two axes with the same ``vmin``/``vmax``.
    """
    surface, grid_a, grid_b = surface_inputs(surface, grid_a, grid_b)
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


def plot_landscape_1d(alphas, curves, ax: plt.Axes | None = None, *, means: Optional[dict] = None,
                      title: str | None = None, xlabel: str = r"step $\alpha$ along a filter-normalised direction",
                      ylabel: str = "loss") -> plt.Axes:
    """1-D loss curves L(theta + alpha d).

    ``curves``: an array (one curve), or ``{label: array}``; an array of shape (n_dirs, A) is
    drawn as thin lines (one per direction) with its mean, ``means[label]``
    (:func:`csu_lib.analysis.figure_stats.mean_curves`), in bold. Colours: PALETTE by the
    label's first word (``bce``, ``csu``, ``san`` ...).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4))
    alphas = np.asarray(alphas, dtype=float)
    if not isinstance(curves, dict):
        curves = {"loss": curves}
    for i, (label, values) in enumerate(curves.items()):
        values = np.asarray(values, dtype=float)
        colour = label_colour(label, i)
        if values.ndim == 2:
            if means is None or label not in means:
                raise ValueError(f"curves[{label!r}] holds several directions: pass their mean as means[{label!r}] "
                                 "(csu_lib.analysis.figure_stats.mean_curves)")
            for row in values:
                ax.plot(alphas, row, color=colour, lw=0.6, alpha=0.35)
            ax.plot(alphas, np.asarray(means[label], dtype=float), color=colour, lw=2.0,
                    label=f"{label} (mean of {len(values)})")
        else:
            ax.plot(alphas, values, color=colour, lw=1.8, label=str(label))
    ax.axvline(0.0, color="0.5", lw=0.7, ls=":")
    return finish(ax, xlabel, ylabel, title, legend_size=8)


def plot_landscape_2d(alphas, betas, surface, ax: plt.Axes | None = None, *, levels: int = 20,
                      title: str | None = None, log: bool = False, colorbar: bool = True,
                      cmap: str = "viridis") -> plt.Axes:
    """Contour plot of a 2-D loss surface ``surface[i, j] = L(theta + alphas[i] d1 + betas[j] d2)``
    (:func:`csu_lib.analysis.landscape.loss_surface_2d`); the trained weights are marked at (0, 0).
    ``log``: contour log10 of the loss (positive surfaces only)."""
    surface, alphas, betas = surface_inputs(surface, alphas, betas)
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
    import plotly.graph_objects as go  # optional heavy dependency: imported when used

    surface, alphas, betas = surface_inputs(surface, alphas, betas)
    fig = go.Figure(go.Surface(x=alphas, y=betas, z=surface.T, colorscale=colorscale,  # z[row=beta][col=alpha]
                               colorbar=dict(title=zlabel),
                               contours=dict(z=dict(show=True, usecolormap=True, project=dict(z=True)))))
    fig.update_layout(title=title, scene=dict(xaxis_title="alpha", yaxis_title="beta", zaxis_title=zlabel),
                      margin=dict(l=0, r=0, t=40 if title else 10, b=0))
    return fig


def plot_geometry_summary(bars: pd.DataFrame, axes: Sequence[plt.Axes] | None = None, *,
                          title: str | None = None):
    """Bars of the parameter-space geometry statistics, BCE vs CSU (the CSU paper's Fig. 6).

    ``bars``: :func:`csu_lib.analysis.figure_stats.geometry_bars` (one row per statistic,
    condition and method: ``mean``, ``lo``, ``hi``, ``n``). One panel per statistic (their
    scales differ); conditions along x, one bar per method (PALETTE colours), the mean over runs
    with its 95% CI as error bars when a bar has several runs. Returns the array of axes.
    """
    statistics = list(dict.fromkeys(bars["statistic"]))
    if axes is None:
        _, axes = plt.subplots(1, len(statistics), figsize=(3.0 * len(statistics), 3.2), squeeze=False)
        axes = axes[0]
    axes = np.atleast_1d(np.asarray(axes, dtype=object))
    conditions = list(dict.fromkeys(bars["condition"]))
    methods = list(dict.fromkeys(bars["method"]))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(conditions))
    for ax, stat in zip(axes, statistics):
        for j, method in enumerate(methods):
            rows = bars[(bars["statistic"] == stat) & (bars["method"] == method)].set_index("condition").loc[conditions]
            means = rows["mean"].to_numpy(dtype=float)
            errs = [means - rows["lo"].to_numpy(dtype=float), rows["hi"].to_numpy(dtype=float) - means]
            ax.bar(x - 0.4 + (j + 0.5) * width, list(means), width, color=label_colour(method, j), lw=0,
                   yerr=np.asarray(errs) if rows["n"].max() > 1 else None, capsize=3, label=str(method).upper())
        ax.set_xticks(x, [c if c else "" for c in conditions])
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(GEOMETRY_STATISTICS.get(stat, stat), fontsize=9)
        ax.grid(False, axis="x")
    axes[0].legend(loc="best", fontsize=8)
    if title:
        axes[0].figure.suptitle(title)
    return axes
