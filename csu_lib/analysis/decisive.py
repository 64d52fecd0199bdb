"""The decisive study (``studies/decisive_uneven.yaml``, ``decisive_uniform.yaml``, ``decisive_sgd.yaml``,
``notebooks/decisive.ipynb``): does a class-wise loss weight (CSU) beat BCE, and how does it
compare with what any class-wise weighting could reach (the class oracle), with what sample
selection could reach (the sample oracle) and with the sample-wise robust losses?

Every run is compared with the BCE run of the same setting (:data:`SETTING`: condition, model,
optimiser, learning rate) and the same seed: same data, same corruption draw, same initial weights.

- :func:`run_summary`: one row per complete run (:data:`SUMMARY_COLUMNS`), the small table kept
  under ``docs/results/`` (:func:`write_summary`);
- :func:`paired_to_bce`: every run spec minus BCE on the same seeds, mean and Student-t 95% CI
  (:func:`csu_lib.analysis.results.paired_difference`), over all classes and, where the run
  has them, over the corrupted and the control classes (:mod:`csu_lib.analysis.class_groups`);
- :func:`oracle_recovery`: the share of the sample oracle's gain over BCE that each run recovers;
- :func:`best_robust_loss`: the sample-wise robust loss with the largest paired gain, per condition.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..config import RunConfig, method_label, method_spec
from ..core.errors import CsuError
from ..core.io import atomic_write_text
from ..records import RunRecord
from .class_groups import GROUP_METRICS, run_group_map
from .results import paired_difference

#: The run every other run is paired with.
REFERENCE = "bce"
#: The run whose gain over BCE :func:`oracle_recovery` takes as what sample selection could reach.
SAMPLE_ORACLE = "bce+sample_oracle"
#: The methods that read the corruption record (reference points, no competitors).
ORACLE_METHODS = ("class_oracle", "sample_oracle")
#: The sample-wise robust losses :func:`best_robust_loss` chooses among.
ROBUST_LOSSES = ("gce", "sce", "bootstrap", "asl", "apl")
#: What two paired runs share besides the seed: they differ only in the run spec (loss + method).
SETTING = ("condition", "design", "kind", "ratio", "model", "optimizer", "lr")
#: The columns of :func:`run_summary`.
SUMMARY_COLUMNS = ("run_id", "condition", "design", "kind", "ratio", "run", "loss", "method", "model", "optimizer",
                   "lr", "seed", *GROUP_METRICS.values(), "n_corrupted_classes", "n_control_classes", "converged",
                   "epochs_run", "train_seconds")
#: The columns of :func:`paired_to_bce`.
PAIRED_COLUMNS = (*SETTING, "run", "oracle", "metric", "difference", "n", "mean", "ci_lo", "ci_hi", "verdict", "seeds")


def run_label(config: RunConfig) -> str:
    """The run spec of a run as the study files spell it: :func:`csu_lib.config.method_label`
    (``bce``, ``bce+sample_oracle`` ...), with CSU whose s is set to its stationary optimum
    (``loss.csu_fit="stationary"``) spelled ``csu_stationary`` (``csu2_stationary``), so that it
    never shares a label with the paper's CSU (s learned by gradient)."""
    label = method_label(config)
    loss = config.loss
    stationary = f"{loss.name}_stationary"
    if loss.name in ("csu", "csu2") and loss.csu_fit == "stationary" and not label.startswith(stationary):
        return method_spec(stationary, config.method.name)
    return label


def is_oracle(run: str) -> bool:
    """Whether a run spec (``<loss>+<method>``) names an oracle method (:data:`ORACLE_METHODS`)."""
    return str(run).partition("+")[2] in ORACLE_METHODS


def run_summary(records: Sequence[RunRecord], data_dir: Optional[str | os.PathLike] = None) -> pd.DataFrame:
    """One row per complete run of ``records`` (incomplete ones are left out), columns
    :data:`SUMMARY_COLUMNS`: its id; its condition (``clean``, ``san 50%``, ``san 50% (audit)``),
    corruption design (``corruption.profile``: ``uniform``, ``audit`` ...; ``none`` for the clean
    runs), kind and ratio; its run spec (:func:`run_label`), loss and method; model, optimiser,
    learning rate and seed; test mAP over all classes, over the corrupted classes and over the
    control classes (:func:`csu_lib.analysis.class_groups.run_group_map`: NaN for an empty group,
    e.g. the controls under uniform noise; a record without stored class APs is rescored with the
    test labels of its dataset from ``data_dir``) and the size of both groups; whether the
    convergence rule found it converged, the epochs it ran and its training time in seconds."""
    rows = []
    for record in records:
        if not record.complete:
            continue
        c, final = record.config, record.final_metrics
        groups = run_group_map(record, data_dir)
        rows.append({
            "run_id": c.run_id, "condition": c.corruption.label,
            "design": "none" if c.corruption.kind == "none" else c.corruption.profile,
            "kind": c.corruption.kind, "ratio": float(c.corruption.ratio), "run": run_label(c), "loss": c.loss.name,
            "method": c.method.name, "model": c.model.name, "optimizer": c.train.optimizer, "lr": float(c.train.lr),
            "seed": int(c.train.seed), GROUP_METRICS["all"]: float(final["test"]["mAP"]),
            **{GROUP_METRICS[g]: groups[f"mAP_{g}"] for g in ("corrupted", "control")},
            "n_corrupted_classes": groups["n_corrupted_classes"], "n_control_classes": groups["n_control_classes"],
            "converged": final.get("converged"), "epochs_run": final.get("epochs_run"),
            "train_seconds": record.summary.get("train_seconds")})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def write_summary(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table of this module as CSV (no index), atomically; returns the path."""
    path = Path(path)
    atomic_write_text(path, frame.to_csv(index=False))
    return path


def verdict(n: int, lo: float, hi: float) -> str:
    """Where a paired interval lies: ``above 0``, ``below 0``, ``covers 0``, or ``n < 2`` (one
    pair has no interval)."""
    if n < 2:
        return "n < 2"
    if lo > 0:
        return "above 0"
    if hi < 0:
        return "below 0"
    return "covers 0"


def paired_to_bce(summary: pd.DataFrame, metric: str = "test.mAP", *, groups: bool = True,
                  reference: str = REFERENCE) -> pd.DataFrame:
    """Every run spec but ``reference`` minus ``reference`` (BCE) on the same seeds, per
    :data:`SETTING`: ``n`` pairs, their ``mean`` difference and Student-t 95% CI (``ci_lo``,
    ``ci_hi``), the ``verdict`` (:func:`verdict`), the ``seeds``, and whether the run is an
    ``oracle``. ``metric`` is a column of :func:`run_summary`; with ``groups`` also the group
    metrics (corrupted and control classes) where both runs of a pair have them. A seed that one
    of the two runs lacks is left out. Rows in the order of the summary's settings and runs, then
    metric. Two runs of one setting, run spec and seed are an error naming them."""
    _require(summary, (*SETTING, "run", "seed", metric))
    _check_unique(summary)
    metrics = [metric] + ([m for m in GROUP_METRICS.values() if m != metric and m in summary] if groups else [])
    table = summary.rename(columns={"run": "loss.name", "seed": "train.seed"})
    runs = [r for r in dict.fromkeys(summary["run"]) if r != reference]
    parts = []
    for m in metrics:
        scored = table[np.isfinite(table[m].to_numpy(dtype=float))]
        for run in runs:
            part = paired_difference(scored, metric=m, losses=(reference, run), keys=SETTING)
            if len(part):
                parts.append(part.assign(run=run))
    if not parts:
        return pd.DataFrame(columns=list(PAIRED_COLUMNS))
    out = pd.concat(parts, ignore_index=True)
    out["oracle"] = out["run"].map(is_oracle)
    out["verdict"] = [verdict(n, lo, hi) for n, lo, hi in zip(out["n"], out["ci_lo"], out["ci_hi"])]
    return _in_summary_order(out[list(PAIRED_COLUMNS)], summary, metrics)


def oracle_recovery(summary: pd.DataFrame, metric: str = "test.mAP", *, reference: str = REFERENCE,
                    oracle: str = SAMPLE_ORACLE) -> pd.DataFrame:
    """How much of the sample oracle's gain over BCE each other run recovers, per setting:
    ``recovery = (m - bce) / (oracle - bce)`` with the paired means of :func:`paired_to_bce`
    (``gain``: the run's, ``oracle_gain``: the oracle's, with its CI and ``oracle_n``). 1 is all of
    the oracle's gain, 0 none, below 0 worse than BCE. NaN where the oracle's gain is not
    significantly above 0 (its 95% interval reaches 0, or fewer than two pairs) or the setting has
    no oracle runs; ``note`` then says which."""
    paired = paired_to_bce(summary, metric, groups=False, reference=reference)
    rows = []
    for setting, part in paired.groupby(list(SETTING), sort=False):
        found = part[part["run"] == oracle]
        o = found.iloc[0] if len(found) else None
        significant = o is not None and o["n"] >= 2 and o["ci_lo"] > 0
        if o is None:
            note = f"no {oracle} runs in this setting"
        elif not significant:
            note = (f"{oracle}'s gain over {reference} is not significantly above 0 "
                    f"(n={int(o['n'])}, 95% CI [{o['ci_lo']:.4f}, {o['ci_hi']:.4f}]): no recovery to measure")
        else:
            note = ""
        for _, row in part[part["run"] != oracle].iterrows():
            rows.append({**dict(zip(SETTING, setting)), "run": row["run"], "oracle": row["oracle"], "metric": metric,
                         "n": int(row["n"]), "gain": row["mean"],
                         "oracle_n": int(o["n"]) if o is not None else 0,
                         "oracle_gain": o["mean"] if o is not None else np.nan,
                         "oracle_ci_lo": o["ci_lo"] if o is not None else np.nan,
                         "oracle_ci_hi": o["ci_hi"] if o is not None else np.nan,
                         "recovery": row["mean"] / o["mean"] if significant else np.nan, "note": note})
    columns = [*SETTING, "run", "oracle", "metric", "n", "gain", "oracle_n", "oracle_gain", "oracle_ci_lo",
               "oracle_ci_hi", "recovery", "note"]
    return pd.DataFrame(rows, columns=columns)


def best_robust_loss(paired: pd.DataFrame, metric: str = "test.mAP", *,
                     losses: Sequence[str] = ROBUST_LOSSES) -> pd.DataFrame:
    """Per setting (each corruption kind under each design, and the clean data), the robust loss
    among ``losses`` with the largest mean paired gain over BCE in ``metric`` (``paired``:
    :func:`paired_to_bce`): ``best``, its ``n``, ``mean``, CI and ``verdict``, and the losses
    compared (``compared``, with their means in ``compared_means``). A tie goes to the loss named
    first in ``losses``. Settings without any of ``losses`` have no row."""
    rows = paired[(paired["metric"] == metric) & paired["run"].isin(list(losses))]
    rank = {loss: i for i, loss in enumerate(losses)}
    out = []
    for setting, part in rows.groupby(list(SETTING), sort=False):
        part = part.sort_values("run", key=lambda s: s.map(rank), kind="stable")
        best = part.loc[part["mean"].idxmax()]
        out.append({**dict(zip(SETTING, setting)), "metric": metric, "best": best["run"], "n": int(best["n"]),
                    "mean": best["mean"], "ci_lo": best["ci_lo"], "ci_hi": best["ci_hi"], "verdict": best["verdict"],
                    "compared": " ".join(part["run"]),
                    "compared_means": " ".join(f"{m:.4f}" for m in part["mean"])})
    columns = [*SETTING, "metric", "best", "n", "mean", "ci_lo", "ci_hi", "verdict", "compared", "compared_means"]
    return pd.DataFrame(out, columns=columns)


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CsuError(f"the table has no column(s) {missing}; is it a run_summary?")


def _check_unique(summary: pd.DataFrame) -> None:
    """No two runs of one setting, run spec and seed (they would be paired ambiguously)."""
    keys = [*SETTING, "run", "seed"]
    twice = summary[summary.duplicated(keys, keep=False)]
    if len(twice):
        ids = list(twice["run_id"]) if "run_id" in twice else list(twice.index)
        raise CsuError(f"several runs share a setting, run spec and seed ({ids[:6]}); pass one study's runs")


def _in_summary_order(table: pd.DataFrame, summary: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``table``'s rows by the order in which the summary first names each condition, model,
    optimiser, learning rate and run, then by ``metrics``."""
    order = {"condition": summary["condition"], "model": summary["model"], "optimizer": summary["optimizer"],
             "lr": summary["lr"], "run": summary["run"]}
    ranks = {key: {v: i for i, v in enumerate(dict.fromkeys(values))} for key, values in order.items()}
    ranks["metric"] = {m: i for i, m in enumerate(metrics)}
    ranked = pd.DataFrame({key: table[key].map(rank) for key, rank in ranks.items()})
    rows = ranked.sort_values(list(ranks), kind="stable").index
    return table.loc[rows].reset_index(drop=True)
