"""Figures: one visual style for the whole suite, PNG + PDF output, and the plotted numbers.

Every figure function takes data already computed by the probes (never trains or probes
itself), draws onto matplotlib axes, and :func:`save_figure` writes ``<name>.png`` and
``<name>.pdf`` atomically; :func:`save_numbers` writes ``<name>.json`` with what was plotted.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless unless a backend is chosen
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path, atomic_write_json  # noqa: E402

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
