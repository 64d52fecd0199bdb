"""One visual style for the whole suite: the palette, the matplotlib style and the small drawing
helpers the figure modules share. Writing figures to files is :mod:`csu_lib.report.figure_files`."""
from __future__ import annotations

import matplotlib.pyplot as plt  # the backend is matplotlib's choice: inline in Jupyter, Agg headless
import numpy as np
import seaborn as sns

#: Colours of conditions and methods, shared by every figure.
PALETTE = {
    "clean": "#4d4d4d", "none": "#4d4d4d",
    "san": "#1b9e77", "man": "#d95f02", "sln": "#7570b3", "missing": "#e7298a",
    "bce": "#7f7f7f", "csu": "#1f77b4", "csu_stationary": "#17becf",
}


def use_style() -> None:
    """The suite's matplotlib style (seaborn 'whitegrid' look, paper-sized fonts)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight",
                         "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False})


def finish(ax: plt.Axes, xlabel: str, ylabel: str, title: str | None, *, legend_size: int = 8) -> plt.Axes:
    """Axis labels, optional title and the legend: the common last step of the figure functions."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=legend_size)
    return ax


LINESTYLES = ("-", "--", ":", "-.")


def label_colour(label: str, fallback_index: int = 0) -> str:
    """PALETTE colour of a label's first word (``san 50% ...``), else a cycle colour."""
    colour = PALETTE.get(str(label).split()[0].lower()) if str(label).split() else None
    return colour or f"C{fallback_index % 10}"


def method_colour(label: str) -> str:
    """Colour of a method spec such as ``bce``, ``csu+mixup_or``: by its loss (grey BCE, blue CSU)."""
    return PALETTE.get(str(label).split("+")[0].strip().lower(), "#4d4d4d")


def surface_inputs(surface, axis_a, axis_b):
    """Float arrays of a surface and its two axes; the surface must be (len(axis_a), len(axis_b))."""
    surface = np.asarray(surface, dtype=float)
    axis_a, axis_b = np.asarray(axis_a, dtype=float), np.asarray(axis_b, dtype=float)
    if surface.shape != (len(axis_a), len(axis_b)):
        raise ValueError(f"surface has shape {surface.shape}, expected ({len(axis_a)}, {len(axis_b)})")
    return surface, axis_a, axis_b


def note_not_converged(fig: plt.Figure, n_not: int, n_runs: int) -> None:
    """Say under the axes of ``fig`` how many of the runs behind it did not converge (the rule of
    :mod:`csu_lib.training.convergence`)."""
    fig.text(0.01, -0.02, f"{n_not} of {n_runs} runs did not converge (last 10% of epochs: training loss "
             "changed by >= 2% or validation mAP by >= 0.01)", fontsize=7, color="#b2182b", ha="left", va="top")
