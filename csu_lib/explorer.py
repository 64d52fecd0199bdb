"""Interactive exploration of run records (notebooks/explorer.ipynb).

An :class:`Explorer` reads the complete runs of one or more studies (folders of run records,
e.g. ``runs/study`` written by ``csu figures`` or ``runs/<name>`` by ``csu sweep``) and draws one
view of a selection: study, corruption condition, backbone, method (``<loss>`` or
``<loss>+<method>``) and class:

(a) validation mAP per epoch of the selected runs (one line per seed);
(b) the class's CSU multiplier 1/sigma^2 over training for every CSU run of that condition and
    backbone;
(c) test mAP of every method at that condition and backbone (mean over seeds), the selection
    highlighted;
(d) the class's test precision at the threshold for every method, with the class's true
    corruption rate in the title.

:meth:`Explorer.view` draws a view (static: what papermill renders); :meth:`Explorer.widget`
wraps it in ipywidgets dropdowns for JupyterLab. Nothing here trains or probes.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from .errors import CsuError
from .records import find_runs, is_complete, load_run, load_runs


class Explorer:
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
            from .methods import method_spec
            from .results import with_condition

            runs = load_runs(self.runs_dir.parent / study)
            if runs.empty:
                raise CsuError(f"no complete run in {self.runs_dir.parent / study}")
            runs = with_condition(runs)
            runs["method"] = [method_spec(l, m) for l, m in zip(runs["loss.name"], runs["method.name"])]
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
        runs = self._select(study, condition, backbone, method)
        rate = _class_rate(runs.iloc[0]["path"])
        cls = opts["class"][int(np.argmax(rate))] if rate is not None else opts["class"][0]
        return {"study": study, "condition": condition, "backbone": backbone, "method": method, "class_name": cls}

    # -- one view -------------------------------------------------------------------------------

    def _select(self, study, condition, backbone, method) -> pd.DataFrame:
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
        from .results import class_precision_table

        sel = self._select(study, condition, backbone, method)
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
             method: Optional[str] = None, class_name: Optional[str] = None):
        """Draw the four panels for a selection (None: :meth:`defaults`); returns (figure, summary)."""
        import matplotlib.pyplot as plt

        from .plots import PALETTE

        d = self.defaults(study)
        study = study or d["study"]
        condition = condition or d["condition"]
        backbone = backbone or d["backbone"]
        method = method or d["method"]
        class_name = class_name or d["class_name"]
        table = self.summary(study, condition, backbone, method, class_name)
        sel = self._select(study, condition, backbone, method)
        c = list(self.class_names(study)).index(class_name)
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), layout="constrained")
        colour = PALETTE.get(method.split("+")[0], "C0")
        ax = axes[0, 0]
        for _, run in sel[sel["method"] == method].iterrows():
            hist = load_run(run["path"]).history
            ax.plot(hist["epoch"] + 1, hist["val.mAP"], "o-", ms=3, color=colour, label=f"seed {run['train.seed']}")
        ax.set(xlabel="epoch", ylabel="validation mAP", title=f"(a) {method}: {condition}, {backbone}")
        ax.legend(fontsize=8)
        ax = axes[0, 1]
        drawn = False
        for i, (_, run) in enumerate(sel[sel["loss.name"] == "csu"].iterrows()):
            rec = load_run(run["path"])
            if rec.multiplier is None:
                continue
            x = np.linspace(0, 1, len(rec.multiplier))
            ax.plot(x, rec.multiplier[:, c], lw=1.2, color=f"C{i % 10}", label=f"{run['method']} seed {run['train.seed']}")
            drawn = True
        if drawn:
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no CSU run here:\nBCE learns no sigma", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="training progress", ylabel=r"$1/\sigma^2$", title=f"(b) CSU multiplier of {class_name}")
        y = np.arange(len(table))[::-1]
        colours = [PALETTE.get(m.split("+")[0], "C0") for m in table["method"]]
        edge = ["black" if s else "none" for s in table["selected"]]
        axes[1, 0].barh(y, table["test.mAP"], color=colours, edgecolor=edge, linewidth=1.5)
        axes[1, 0].set_yticks(y, table["method"])
        axes[1, 0].set(xlabel="test mAP (mean over seeds)", title="(c) every method here")
        axes[1, 1].barh(y, table["class precision"].fillna(0), color=colours, edgecolor=edge, linewidth=1.5)
        for yi, value in zip(y, table["class precision"]):
            if not np.isfinite(value):
                axes[1, 1].text(0.01, yi, "no positive prediction", va="center", fontsize=8)
        axes[1, 1].set_yticks(y, table["method"])
        rate = float(table["class corruption rate"].iloc[0])
        axes[1, 1].set(xlabel=f"test precision at {float(sel['test.threshold'].iloc[0]):g}", xlim=(0, 1),
                       title=f"(d) {class_name}: precision (corrupted: {rate:.0%} of its clips)")
        fig.suptitle(f"study {study}")
        return fig, table

    def widget(self, **initial):
        """Dropdowns (study, condition, backbone, method, class) over :meth:`view` (JupyterLab)."""
        import ipywidgets as W
        import matplotlib.pyplot as plt
        from IPython.display import display

        start = {**self.defaults(initial.get("study")), **{k: v for k, v in initial.items() if v}}
        boxes = {k: W.Dropdown(description=k.replace("_name", ""), layout=W.Layout(width="300px"))
                 for k in ("study", "condition", "backbone", "method", "class_name")}
        out = W.Output()

        def refresh(*_):
            opts = self.options(boxes["study"].value, boxes["condition"].value, boxes["backbone"].value)
            for key, name in (("condition", "condition"), ("backbone", "backbone"), ("method", "method"),
                              ("class_name", "class")):
                box = boxes[key]
                value = box.value if box.value in opts[name] else opts[name][0]
                with box.hold_trait_notifications():
                    box.options, box.value = opts[name], value
            out.clear_output(wait=True)
            with out:
                try:
                    fig, table = self.view(**{k: b.value for k, b in boxes.items()})
                    display(table.round(3))
                    plt.show()
                except CsuError as exc:
                    print(exc)

        boxes["study"].options = self.studies()
        boxes["study"].value = start["study"]
        opts = self.options(start["study"], start["condition"], start["backbone"])
        for key, name in (("condition", "condition"), ("backbone", "backbone"), ("method", "method"),
                          ("class_name", "class")):
            boxes[key].options = opts[name]
            boxes[key].value = start[key]
        for box in boxes.values():
            box.observe(refresh, names="value")
        refresh()
        return W.VBox([W.HBox(list(boxes.values())[:3]), W.HBox(list(boxes.values())[3:]), out])


def _method_order(spec: str) -> tuple:
    """BCE methods before CSU ones, the plain loss first: bce, bce+..., csu, csu+..."""
    return (spec.split("+")[0] != "bce", "+" in spec, spec)


def _ordered_conditions(values) -> list[str]:
    """``clean`` first, then by type and ratio."""
    def key(label: str):
        kind, _, pct = label.partition(" ")
        return (label != "clean", kind, float(pct.rstrip("%") or 0))
    return sorted(set(values), key=key)


@lru_cache(maxsize=64)
def _class_names(run_path: str) -> tuple[str, ...]:
    import torch

    saved = torch.load(Path(run_path) / "model.pt", map_location="cpu", weights_only=True)
    return tuple(saved["class_names"])


def _class_rate(run_path: str) -> Optional[np.ndarray]:
    rec = load_run(run_path)
    corruption = rec.corruption()
    return None if corruption is None else np.asarray(corruption.class_rate)


def _final_sigma(run_path: str, c: int) -> Optional[float]:
    from .probes import final_s

    rec = load_run(run_path)
    return None if rec.sigma is None else float(np.exp(final_s(rec)[c] / 2))
