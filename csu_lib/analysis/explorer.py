"""What the interactive explorer shows (notebooks/explorer.ipynb), computed from run records.

:class:`ExplorerData` reads the complete runs of one or more studies (folders of run records,
e.g. ``runs/study`` written by ``csu figures`` or ``runs/<name>`` by ``csu sweep``) and computes
one view of a selection -- study, corruption condition, backbone, method (``<loss>`` or
``<loss>+<method>``) and class -- as an :class:`ExplorerView`:

(a) validation mAP per epoch of the selected runs (one line per seed);
(b) the class's CSU multiplier over training for every CSU run of that condition and backbone;
(c) test mAP of every method at that condition and backbone (mean over seeds), the selection
    highlighted;
(d) the class's test precision at the threshold for every method, with the class's true
    corruption rate.

:func:`csu_lib.plots.plot_explorer` draws it and :class:`csu_lib.explorer.Explorer` adds the
dropdowns. Nothing here trains, probes or draws.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..config import method_spec
from ..core.errors import CsuError
from ..losses import sigma_of
from ..records import find_runs, is_complete, load_run, load_runs
from .results import class_precision_table, with_condition
from .sigma import final_log_sigma2


@dataclass
class ExplorerView:
    """The numbers of one explorer view (see the module notes)."""

    selection: dict
    #: (a) per selected run: (seed, epochs (1-based), validation mAP)
    val_curves: list[tuple[int, np.ndarray, np.ndarray]]
    #: (b) per CSU run here: (label, normalised progress, the class's multiplier per step)
    multiplier_curves: list[tuple[str, np.ndarray, np.ndarray]]
    #: (c), (d) one row per method: runs, mean test mAP, the class's precision, sigma, corruption rate
    summary: pd.DataFrame
    threshold: float


class ExplorerData:
    """The run records below ``runs_dir`` and its sibling study folders."""

    def __init__(self, runs_dir: str | os.PathLike):
        self.runs_dir = Path(runs_dir)
        if not self.runs_dir.is_dir():
            raise CsuError(f"runs_dir {self.runs_dir} does not exist: train runs first (csu figures / csu sweep)")
        self._tables: dict[str, pd.DataFrame] = {}

    # -- what there is ------------------------------------------------------------------------

    def studies(self) -> list[str]:
        """Study folders: ``runs_dir`` itself first, then its siblings that hold complete runs."""
        names = [self.runs_dir.name]
        for folder in sorted(self.runs_dir.parent.iterdir()):
            if folder.is_dir() and folder.name not in names and any(is_complete(p) for p in find_runs(folder)):
                names.append(folder.name)
        return names

    def table(self, study: Optional[str] = None) -> pd.DataFrame:
        """The complete runs of a study with ``condition``, ``method`` and ``run_id`` columns."""
        study = study or self.runs_dir.name
        if study not in self._tables:
            runs = load_runs(self.runs_dir.parent / study)
            if runs.empty:
                raise CsuError(f"no complete run in {self.runs_dir.parent / study}")
            runs = with_condition(runs)
            runs["method"] = [method_spec(lo, m) for lo, m in zip(runs["loss.name"], runs["method.name"])]
            self._tables[study] = runs
        return self._tables[study]

    def options(self, study: Optional[str] = None, condition: Optional[str] = None,
                backbone: Optional[str] = None) -> dict[str, list]:
        """The values each dropdown offers, narrowed by the choices already made."""
        runs = self.table(study)
        out = {"study": self.studies(), "condition": _ordered_conditions(runs["condition"])}
        if condition is not None:
            runs = runs[runs["condition"] == condition]
        out["backbone"] = sorted(runs["model.name"].unique())
        if backbone is not None:
            runs = runs[runs["model.name"] == backbone]
        out["method"] = sorted(runs["method"].unique(), key=_method_order)
        out["class"] = list(self.class_names(study))
        return out

    def class_names(self, study: Optional[str] = None) -> tuple[str, ...]:
        return _class_names(str(self.table(study)["path"].iloc[0]))

    def defaults(self, study: Optional[str] = None) -> dict[str, str]:
        """A sensible first view: a corrupted condition, the first backbone, CSU when
        present, and the class that condition corrupted most (by the run's corruption record).
        The condition is the corrupted one with the most runs (the richest comparison)."""
        study = study or self.runs_dir.name
        opts = self.options(study)
        runs = self.table(study)
        conditions = [c for c in opts["condition"] if c != "clean"] or opts["condition"]
        counts = runs["condition"].value_counts()
        condition = max(conditions, key=lambda c: (counts.get(c, 0), -conditions.index(c)))  # the most runs
        backbone = self.options(study, condition)["backbone"][0]
        methods = self.options(study, condition, backbone)["method"]
        method = "csu" if "csu" in methods else methods[0]
        runs = self.select(study, condition, backbone, method)
        rate = _class_rate(runs.iloc[0]["path"])
        cls = opts["class"][int(np.argmax(rate))] if rate is not None else opts["class"][0]
        return {"study": study, "condition": condition, "backbone": backbone, "method": method, "class_name": cls}

    # -- one view -------------------------------------------------------------------------------

    def select(self, study, condition, backbone, method) -> pd.DataFrame:
        """The runs of a condition and backbone (a :class:`CsuError` listing what exists if none,
        or if ``method`` has no run there)."""
        runs = self.table(study)
        sel = runs[(runs["condition"] == condition) & (runs["model.name"] == backbone)]
        if sel.empty:
            raise CsuError(f"study {study!r} has no run for condition {condition!r} and backbone {backbone!r}; "
                           f"conditions: {_ordered_conditions(runs['condition'])}, backbones: "
                           f"{sorted(runs['model.name'].unique())}")
        if method not in set(sel["method"]):
            raise CsuError(f"study {study!r} has no {method!r} run for {condition} / {backbone}; "
                           f"methods there: {sorted(sel['method'].unique())}")
        return sel

    def summary(self, study: str, condition: str, backbone: str, method: str, class_name: str) -> pd.DataFrame:
        """One row per method at the condition and backbone: runs, mean test mAP, the class's
        mean test precision and (CSU) final sigma, and the class's true corruption rate."""
        names = list(self.class_names(study))
        if class_name not in names:
            raise CsuError(f"unknown class {class_name!r}; classes: {names[:10]}{' ...' if len(names) > 10 else ''}")
        c = names.index(class_name)
        sel = self.select(study, condition, backbone, method)
        precision = class_precision_table(sel, names, by="method").iloc[c]  # mean over seeds, NaN: none
        rows = []
        for name, group in sel.groupby("method", sort=False):
            sigma = [_final_sigma(p, c) for p in group["path"]]
            sigma = [s for s in sigma if s is not None]
            rate = _class_rate(group["path"].iloc[0])
            rows.append({"method": name, "selected": name == method, "n": len(group),
                         "test.mAP": float(group["test.mAP"].mean()),
                         "class precision": float(precision[name]),
                         "class sigma": float(np.mean(sigma)) if sigma else np.nan,
                         "class corruption rate": float(rate[c]) if rate is not None else 0.0})
        return pd.DataFrame(rows).sort_values("method", key=lambda s: s.map(_method_order)).reset_index(drop=True)

    def view(self, study: Optional[str] = None, condition: Optional[str] = None, backbone: Optional[str] = None,
             method: Optional[str] = None, class_name: Optional[str] = None) -> ExplorerView:
        """The numbers of a view (None: :meth:`defaults`)."""
        d = self.defaults(study)
        selection = {"study": study or d["study"], "condition": condition or d["condition"],
                     "backbone": backbone or d["backbone"], "method": method or d["method"],
                     "class_name": class_name or d["class_name"]}
        summary = self.summary(**selection)
        sel = self.select(selection["study"], selection["condition"], selection["backbone"], selection["method"])
        c = list(self.class_names(selection["study"])).index(selection["class_name"])
        val_curves = []
        for _, run in sel[sel["method"] == selection["method"]].iterrows():
            hist = load_run(run["path"]).history
            val_curves.append((int(run["train.seed"]), hist["epoch"].to_numpy() + 1, hist["val.mAP"].to_numpy()))
        mult_curves = []
        for _, run in sel[sel["loss.name"] == "csu"].iterrows():
            rec = load_run(run["path"])
            if rec.learns_sigma:
                mult = rec.multiplier
                mult_curves.append((f"{run['method']} seed {run['train.seed']}", np.linspace(0, 1, len(mult)),
                                    mult[:, c]))
        return ExplorerView(selection, val_curves, mult_curves, summary, float(sel["test.threshold"].iloc[0]))


def _method_order(spec: str) -> tuple:
    """BCE methods before CSU ones, the plain loss first: bce, bce+..., csu, csu+..."""
    return (spec.split("+")[0] != "bce", "+" in spec, spec)


def _ordered_conditions(values) -> list[str]:
    """``clean`` first, then by type, ratio and design (``san 50%`` before ``san 50% (audit)``)."""
    def key(label: str):
        kind, _, rest = label.partition(" ")
        pct, _, design = rest.partition(" ")
        return (label != "clean", kind, float(pct.rstrip("%") or 0), design)
    return sorted(set(values), key=key)


@lru_cache(maxsize=64)
def _class_names(run_path: str) -> tuple[str, ...]:
    return tuple(load_run(run_path).class_names)


def _class_rate(run_path: str) -> Optional[np.ndarray]:
    corruption = load_run(run_path).corruption()
    return None if corruption is None else np.asarray(corruption.class_rate)


def _final_sigma(run_path: str, c: int) -> Optional[float]:
    rec = load_run(run_path)
    return float(sigma_of(final_log_sigma2(rec))[c]) if rec.learns_sigma else None
