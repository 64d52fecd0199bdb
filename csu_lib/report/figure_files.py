"""How a figure is written to ``figures/``: PNG + PDF (:func:`save_figure`), the plotted numbers
as JSON (:func:`save_numbers`, with the runs behind the figure, :func:`runs_behind`) and the
interactive plotly HTML (:func:`save_plotly`), each atomically. The figure is drawn by
:mod:`csu_lib.plots`, its JSON built by :mod:`csu_lib.report.figure_numbers`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..core.io import atomic_path, atomic_write_json, atomic_write_text
from ..plots.style import note_not_converged


def save_figure(fig, name: str, fig_dir: str | os.PathLike, *, runs: Optional[Iterable[Any]] = None) -> list[Path]:
    """Write ``fig`` (a matplotlib figure) as ``<fig_dir>/<name>.png`` and ``.pdf``; returns the paths.

    ``runs``: the trained runs the figure compares (records or a run table); when any of them did
    not converge (:func:`runs_behind`'s ``not_converged``), the figure says how many under its axes."""
    if runs is not None:
        behind = runs_behind(runs)
        if behind.get("not_converged"):
            note_not_converged(fig, len(behind["not_converged"]), behind["n_runs"])
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

    ``numbers``: usually the dict of the figure's function in :mod:`csu_lib.report.figure_numbers`
    (which already holds ``runs_behind``). ``runs``: the runs behind the figure (run records, run
    configs, or a run table with ``run_id`` and ``train.seed`` columns); stored as ``runs_behind``
    = {n_runs, seeds, run_ids} for the figure report. An empty list says no model stands behind
    the figure (e.g. the corruption figures); None adds nothing.
    """
    numbers = dict(numbers)
    if runs is not None:
        numbers["runs_behind"] = runs_behind(runs)
    path = Path(fig_dir) / f"{name}.json"
    atomic_write_json(path, numbers)
    return path


def runs_behind(runs: Iterable[Any]) -> dict:
    """{n_runs, seeds, run_ids} of run records, run configs or a run table (duplicates counted once),
    and, for records or a table with their final metrics, ``not_converged``: the ids of the runs
    the convergence rule (:mod:`csu_lib.training.convergence`) did not find converged (absent for
    configs and for records written before the rule)."""
    if hasattr(runs, "columns"):  # a run table (records.load_runs)
        pairs = list(zip(runs["run_id"], runs["train.seed"]))
        flags = list(runs["converged"]) if "converged" in runs.columns else None
    else:
        runs = list(runs)
        configs = [getattr(r, "config", r) for r in runs]
        pairs = [(c.run_id, c.train.seed) for c in configs]
        metrics = [getattr(r, "final_metrics", None) for r in runs]
        flags = [m.get("converged") for m in metrics] if all(m is not None for m in metrics) else None
    seen = dict((str(run_id), int(seed)) for run_id, seed in pairs)
    out = {"n_runs": len(seen), "seeds": sorted(set(seen.values())), "run_ids": sorted(seen)}
    known = [(str(run_id), bool(f)) for (run_id, _), f in zip(pairs, flags or []) if f is not None and f == f]
    if known:  # (f == f: not NaN, a run recorded before the rule)
        out["not_converged"] = sorted({run_id for run_id, ok in known if not ok})
    return out


def save_plotly(fig, name: str, fig_dir: str | os.PathLike) -> Path:
    """Write ``fig`` as a self-contained ``<fig_dir>/<name>.html`` (plotly.js embedded, so it
    opens offline), and its specification as ``<name>.plotly.json`` (for the figure report),
    atomically; returns the HTML path."""
    path = Path(fig_dir) / f"{name}.html"
    atomic_write_text(path.with_suffix(".plotly.json"), fig.to_json())
    atomic_write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path
