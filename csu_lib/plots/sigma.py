"""Figures of CSU's learned sigma: multiplier trajectories (the CSU paper's Fig. 7), densities
across classes (Fig. 8) and sigma against the true per-class corruption."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .style import LINESTYLES, PALETTE, finish, label_colour


def plot_multiplier_trajectories(curves: Mapping[str, pd.DataFrame], ax: plt.Axes | None = None,
                                 *, title: str | None = None) -> plt.Axes:
    """The multiplier exp(-s) (class-wise median; geometric mean over runs with 95% CI band) vs
    normalised progress, one colour per condition.

    ``curves`` maps a condition label (e.g. ``"clean"``, ``"san 50%"``) to the DataFrame of
    :func:`csu_lib.analysis.sigma.aggregate_trajectories` or
    :func:`~csu_lib.analysis.sigma.aggregate_epoch_trajectories`: the solid line is the learned
    s; where the frame has ``optimum`` values, the multiplier of each epoch's s* (the optimum of
    the epoch's own training steps, recorded, never fed back) is its dashed companion in the same
    colour. The legend names both. The y axis is logarithmic, as in the CSU paper's Fig. 7.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4))
    for label, df in curves.items():
        colour = PALETTE.get(label.split()[0].lower())
        n = int(df["n_runs"].iloc[0])
        line, = ax.plot(df["progress"], df["mean"], label=f"{label}: learned s (n={n})", color=colour, lw=1.8)
        if n > 1:
            ax.fill_between(df["progress"], df["lo"], df["hi"], color=line.get_color(), alpha=0.2, lw=0)
        if "optimum" in df.columns and df["optimum"].notna().any():
            m = int(df["n_runs_optimum"].iloc[0])
            ax.plot(df["progress"], df["optimum"], color=line.get_color(), lw=1.4, ls="--",
                    label=f"{label}: s* of the epoch's steps (n={m})")
    ax.set_yscale("log")
    ax.set_xlabel("normalised training progress")
    ax.set_ylabel(r"median$_c$ multiplier $e^{-s_c} = 1/\sigma_c^2$")
    ax.set_xlim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=7)
    return ax


def plot_sigma_kde(densities, ax: plt.Axes | None = None, *, title: str | None = None,
                   xlabel: str = r"learned $\sigma_c$", fill: bool = True, log_x: bool = False) -> plt.Axes:
    """KDE curves of the learned sigma (the CSU paper's Fig. 8), one line per group.

    ``densities``: ``{label: DataFrame(x, density[, n])}`` from
    :func:`csu_lib.analysis.sigma_stats.sigma_densities`, or ``{label: (x, density)}``. The colour follows the
    label's first word (the corruption condition); groups sharing a colour get different line
    styles; a ``(clean)`` subset (of ``split_corrupted``) is drawn dashed and unfilled. With
    several runs behind a density (``n_runs`` > 1) its 95% band over runs is drawn.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4))
    seen: dict[str, int] = {}
    for i, (label, value) in enumerate(densities.items()):
        band, n_runs = None, None
        if isinstance(value, pd.DataFrame):
            x, d = value["x"].to_numpy(float), value["density"].to_numpy(float)
            n = int(value["n"].iloc[0]) if "n" in value.columns and len(value) else None
            n_runs = int(value["n_runs"].iloc[0]) if "n_runs" in value.columns and len(value) else None
            if n_runs and n_runs > 1 and {"lo", "hi"} <= set(value.columns):
                band = value["lo"].to_numpy(float), value["hi"].to_numpy(float)
        else:
            x, d = (np.asarray(v, dtype=float) for v in value)
            n = None
        colour = label_colour(label, i)
        clean_part = str(label).endswith("(clean)")
        style = "--" if clean_part else LINESTYLES[seen.get(colour, 0) % len(LINESTYLES)]
        if not clean_part:
            seen[colour] = seen.get(colour, 0) + 1
        counts = ", ".join(part for part in (f"n={n_runs} run" + ("s" if n_runs != 1 else "") if n_runs else "", f"{n} values" if n else "") if part)
        ax.plot(x, d, color=colour, ls=style, lw=1.8, label=f"{label}" + (f" ({counts})" if counts else ""))
        if band is not None:  # 95% band over runs
            ax.fill_between(x, band[0], band[1], color=colour, alpha=0.25, lw=0)
        elif fill and not clean_part:
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


def plot_sigma_vs_truth(sigma, true_rate, result: dict, ax: plt.Axes | None = None, *,
                        label: str = "classes", colour: str | None = None, top: Optional[Sequence[int]] = None,
                        xlabel: str = "true class corruption rate", ylabel: str = r"learned $\sigma_c$",
                        title: str | None = None, interval: str = "CI") -> plt.Axes:
    """Learned sigma against the true per-class corruption rate, one point per class (and run).

    ``result``: :func:`csu_lib.analysis.sigma_stats.sigma_vs_truth` of the same numbers, or a
    setting's row of ``sigma_vs_truth_table(per="setting")`` renamed to the same keys (``rho``,
    ``ci_lo``, ``ci_hi``, ``k``, ``precision_at_k``, ``n_runs``); the legend gives Spearman rho
    with its interval (named by ``interval``, e.g. "bootstrap CI" or "CI over runs"), the runs
    behind it and, when there, precision@k. ``top``: indices of the points to ring, e.g. the top-k
    sigma classes of one run (:func:`csu_lib.analysis.figure_stats.top_sigma_classes`).
    """
    sigma = np.asarray(sigma, dtype=float).ravel()
    true_rate = np.asarray(true_rate, dtype=float).ravel()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6))
    colour = colour or label_colour(label)
    text = (f"{label}: Spearman $\\rho$ = {result['rho']:.2f} "
            f"[{result['ci_lo']:.2f}, {result['ci_hi']:.2f}] ({100 * result.get('level', 0.95):.0f}% {interval})")
    if result.get("k") and np.isfinite(result.get("precision_at_k", np.nan)):
        text += f", P@{result['k']} = {result['precision_at_k']:.2f}"
    if result.get("n_runs"):
        text += f" (n={int(result['n_runs'])} runs)"
    ax.scatter(true_rate, sigma, s=22, color=colour, alpha=0.8, lw=0, label=text)
    if top is not None and len(top) and result.get("k"):
        idx = np.asarray(top, dtype=np.int64)
        ax.scatter(true_rate[idx], sigma[idx], s=70, facecolors="none", edgecolors="k", lw=0.9,
                   label=f"top-{result['k']} $\\sigma$")
    return finish(ax, xlabel, ylabel, title, legend_size=7)
