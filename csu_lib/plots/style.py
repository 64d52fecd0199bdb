"""One visual style for the whole suite, and how figures are written: PNG + PDF
(:func:`save_figure`), the plotted numbers as JSON (:func:`save_numbers`) and interactive plotly
HTML (:func:`save_plotly`), each atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import matplotlib.pyplot as plt  # the backend is matplotlib's choice: inline in Jupyter, Agg headless
import numpy as np
import seaborn as sns

from ..core.io import atomic_path, atomic_write_json, atomic_write_text

#: Colours of conditions and methods, shared by every figure.
PALETTE = {
    "clean": "#4d4d4d", "none": "#4d4d4d",
    "san": "#1b9e77", "man": "#d95f02", "sln": "#7570b3", "missing": "#e7298a",
    "bce": "#7f7f7f", "csu": "#1f77b4",
}


def use_style() -> None:
    """The suite's matplotlib style (seaborn 'whitegrid' look, paper-sized fonts)."""
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


def save_numbers(name: str, numbers: Mapping[str, Any], fig_dir: str | os.PathLike, *,
                 runs: Optional[Iterable[Any]] = None) -> Path:
    """Write the numbers a figure plotted as ``<fig_dir>/<name>.json``.

    ``runs``: the runs behind the figure (run records, run configs, or a run table with
    ``run_id`` and ``train.seed`` columns); stored as ``runs_behind`` = {n_runs, seeds, run_ids}
    for the figure report. An empty list says no model stands behind the figure (e.g. the
    corruption figures); None records nothing.
    """
    numbers = dict(numbers)
    if runs is not None:
        numbers["runs_behind"] = runs_behind(runs)
    path = Path(fig_dir) / f"{name}.json"
    atomic_write_json(path, numbers)
    return path


def runs_behind(runs: Iterable[Any]) -> dict:
    """{n_runs, seeds, run_ids} of run records, run configs or a run table (duplicates counted once)."""
    if hasattr(runs, "columns"):  # a run table (records.load_runs)
        pairs = zip(runs["run_id"], runs["train.seed"])
    else:
        configs = [getattr(r, "config", r) for r in runs]
        pairs = ((c.run_id, c.train.seed) for c in configs)
    seen = dict((str(run_id), int(seed)) for run_id, seed in pairs)
    return {"n_runs": len(seen), "seeds": sorted(set(seen.values())), "run_ids": sorted(seen)}


def save_plotly(fig, name: str, fig_dir: str | os.PathLike) -> Path:
    """Write ``fig`` as a self-contained ``<fig_dir>/<name>.html`` (plotly.js embedded, so it
    opens offline), and its specification as ``<name>.plotly.json`` (for the figure report),
    atomically; returns the HTML path."""
    path = Path(fig_dir) / f"{name}.html"
    atomic_write_text(path.with_suffix(".plotly.json"), fig.to_json())
    atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path


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
