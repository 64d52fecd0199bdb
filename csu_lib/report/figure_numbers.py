"""One function per figure that builds the figure's JSON (``figures/<name>.json``): the numbers it
plotted, from the analysis results, and ``runs_behind``, the runs that stand behind it (last key).

The notebooks write what these functions return (:func:`csu_lib.report.figure_files.save_numbers`),
and :mod:`csu_lib.report.catalog` reads its key numbers back from the same layout:
:data:`FIGURE_NUMBERS` maps every figure name to its function. Nothing here computes a
statistic: the analysis tables are turned into records and lists, rows selected.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..corruption import corruption_summary
from .figure_files import runs_behind

#: The interval every across-seed table of the suite gives.
CI_OVER_SEEDS = "95% Student-t over seeds"


def _with_runs(numbers: dict, runs: Iterable[Any]) -> dict:
    numbers["runs_behind"] = runs_behind(runs)
    return numbers


def _records(table: Optional[pd.DataFrame]) -> Optional[list]:
    return None if table is None else table.to_dict(orient="records")


# --- notebooks/corruption.ipynb: no model stands behind these (runs_behind is empty)

def corruption_meta(*, dataset: str, profile: Optional[str], ratio: float, target: str, class_profile: str,
                    k_classes: int, seed: int, published: bool, kinds: Sequence[str], n_train: int,
                    class_names: Sequence[str], families: Optional[Sequence[str]]) -> dict:
    """The settings every corruption figure's JSON starts with (``profile``: None off the embedded benchmark)."""
    return {"dataset": dataset, "profile": profile, "ratio": ratio, "target": target, "class_profile": class_profile,
            "k_classes": k_classes, "seed": seed, "published": published, "kinds": kinds, "n_train": n_train,
            "class_names": class_names, "families": families}


def corruption_class_rates_numbers(meta: dict, results: Mapping[str, Any], class_names: Sequence[str]) -> dict:
    """``corruption_class_rates``: per kind (``{kind: CorruptionResult}``) the corrupted clips, their
    target number, the per-class rates and :func:`csu_lib.corruption.corruption_summary`."""
    n_train = meta["n_train"]
    return _with_runs({**meta, "rates": {k: {
        "n_corrupted": res.n_corrupted, "n_target": int(round(res.config.ratio * n_train)),
        "class_rate": res.class_rate.tolist(), "label_noise_rate": res.label_noise_rate.tolist(),
        "summary": corruption_summary(res, class_names).to_dict(orient="list")} for k, res in results.items()}}, [])


def corruption_man_transitions_numbers(meta: dict, man, matrix: np.ndarray, moves: list, within) -> dict:
    """``corruption_man_transitions``: MAN's source -> target count matrix and its transitions
    (:func:`csu_lib.corruption.man_transition_matrix`, :func:`csu_lib.corruption.transitions`)."""
    return _with_runs({**meta, "matrix": matrix.tolist(), "n_corrupted": man.n_corrupted, "total": int(matrix.sum()),
                       "within_family": within, "transitions": moves}, [])


def corruption_sln_soft_values_numbers(meta: dict, sln, soft: np.ndarray, rows, soft_range, edges: np.ndarray,
                                       counts: np.ndarray) -> dict:
    """``corruption_sln_soft_values``: SLN's soft values (of the clips ``rows``) and their histogram
    (:func:`csu_lib.analysis.figure_stats.soft_value_bins`)."""
    return _with_runs({**meta, "values": soft.tolist(), "n_corrupted": sln.n_corrupted, "soft_range": soft_range,
                       "bin_edges": edges.tolist(), "counts": counts.tolist(), "clips": [int(i) for i in rows]}, [])


def corruption_label_counts_numbers(meta: dict, counts: pd.DataFrame, clean_labels: np.ndarray,
                                    results: Mapping[str, Any]) -> dict:
    """``corruption_label_counts``: positives per class (:func:`csu_lib.analysis.figure_stats.positive_counts`)
    and the target mass per class, clean and per kind."""
    return _with_runs({**meta, "counts": {c: counts[c].astype(int).tolist() for c in counts.columns},
                       "target_mass": {"clean": clean_labels.sum(axis=0).tolist(),
                                       **{k: res.labels.sum(axis=0).tolist() for k, res in results.items()}}}, [])


# --- notebooks/degradation.ipynb, class_precision.ipynb, comparison.ipynb

def degradation_numbers(*, profile: str, metric: str, kinds: Sequence[str], ratios: list, models: list,
                        losses: Sequence[str], table: pd.DataFrame, paired: Optional[pd.DataFrame],
                        convergence: pd.DataFrame, runs: Sequence) -> dict:
    """``degradation``: :func:`csu_lib.analysis.results.degradation_table`, the paired difference
    and the convergence table of the runs (``runs``: their records, or their configs)."""
    return _with_runs({"profile": profile, "metric": metric, "kinds": list(kinds), "ratios": ratios, "models": models,
                       "losses": list(losses), "ci": CI_OVER_SEEDS, "table": _records(table),
                       "paired_difference": _records(paired), "convergence": _records(convergence),
                       "run_ids": [getattr(r, "config", r).run_id for r in runs]}, runs)


def degradation_uneven_numbers(*, profile: str, kinds: Sequence[str], ratio: float, models: list,
                               losses: Sequence[str], definition: str, table: pd.DataFrame,
                               paired: Optional[pd.DataFrame], convergence: pd.DataFrame, runs: Sequence) -> dict:
    """``degradation_uneven``: test mAP per group of classes (all, corrupted, control) under the
    audit design at ``ratio`` (:func:`csu_lib.analysis.class_groups.group_table`), the paired
    differences per group (:func:`~csu_lib.analysis.class_groups.group_paired_difference`) and the
    convergence table of the runs; ``definition``: how the groups are drawn
    (:data:`csu_lib.analysis.class_groups.GROUP_DEFINITION`)."""
    return _with_runs({"profile": profile, "design": {"profile": "audit", "ratio": ratio, "kinds": list(kinds)},
                       "models": models, "losses": list(losses), "metric": "test.mAP", "groups": definition,
                       "ci": CI_OVER_SEEDS, "table": _records(table), "paired_difference": _records(paired),
                       "convergence": _records(convergence),
                       "run_ids": [getattr(r, "config", r).run_id for r in runs]}, runs)


def relative_change_numbers(*, profile: str, metric: str, ratio: float, change: pd.DataFrame,
                            paired: Optional[pd.DataFrame], runs: Sequence) -> dict:
    """``relative_change``: :func:`csu_lib.analysis.results.relative_change` at ``ratio`` and the
    paired difference's rows at that ratio."""
    return _with_runs({"profile": profile, "metric": metric, "ratio": ratio,
                       "definition": "100 * (m_ratio - m_clean) / m_clean, paired by backbone, loss and seed; "
                                     "mean and 95% Student-t CI over seeds", "table": _records(change),
                       "paired_difference": None if paired is None else
                       _records(paired[paired["ratio"].sub(ratio).abs() < 1e-9])}, runs)


def class_precision_numbers(*, profile: str, condition: str, condition_label: str, model: str, split: str,
                            threshold: float, summary: dict, table: pd.DataFrame, configs: Sequence) -> dict:
    """``class_precision``: :func:`csu_lib.analysis.results.class_precision_table` (class order)
    and its :func:`~csu_lib.analysis.results.class_precision_summary`."""
    return _with_runs({"profile": profile, "condition": condition, "condition_label": condition_label, "model": model,
                       "split": split, "threshold": threshold, "seeds": sorted({c.train.seed for c in configs}),
                       "summary": summary, "table": _records(table), "run_ids": [c.run_id for c in configs]}, configs)


def method_comparison_numbers(*, profile: str, condition: str, condition_label: str, model: str, seeds: list,
                              table: pd.DataFrame, groups: Mapping[str, Sequence]) -> dict:
    """``method_comparison``: :func:`csu_lib.analysis.comparison.comparison_table` of the method
    groups (``{method: configs}``)."""
    return _with_runs({"profile": profile, "condition": condition, "condition_label": condition_label, "model": model,
                       "seeds": seeds, "metric": "test.mAP", "ci": CI_OVER_SEEDS, "table": _records(table),
                       "run_ids": {k: [c.run_id for c in v] for k, v in groups.items()}},
                      [c for v in groups.values() for c in v])


def mask_sweep_numbers(*, profile: str, condition: str, condition_label: str, model: str, seeds: list,
                       sweep: pd.DataFrame, groups: Mapping[Any, Sequence]) -> dict:
    """``mask_sweep``: the comparison table by percent discarded (``groups``: ``{percent: configs}``)."""
    return _with_runs({"profile": profile, "condition": condition, "condition_label": condition_label, "model": model,
                       "seeds": seeds, "metric": "test.mAP", "ci": CI_OVER_SEEDS, "table": _records(sweep)},
                      [c for v in groups.values() for c in v])


# --- notebooks/quickstart.ipynb, explorer.ipynb

#: The test metrics of the quickstart run in its JSON.
QUICKSTART_METRICS = ("mAP", "mAUC", "d_prime", "lwlrap")
#: The columns of the quickstart sigma table in its JSON.
QUICKSTART_SIGMA_COLUMNS = ["class_name", "sigma", "class_rate"]


def quickstart_history_numbers(record, test: Mapping[str, float]) -> dict:
    """``quickstart_history``: the run's loss and validation mAP per epoch, and its test metrics."""
    return _with_runs({"run_id": record.config.run_id,
                       "epochs": record.history[["epoch", "train_loss", "val.mAP"]].to_dict(orient="list"),
                       "test": {k: test[k] for k in QUICKSTART_METRICS}}, [record])


def quickstart_sigma_numbers(record, table: pd.DataFrame) -> dict:
    """``quickstart_sigma``: the run's :func:`csu_lib.analysis.sigma.sigma_table` (name, sigma, true rate)."""
    return _with_runs({"run_id": record.config.run_id,
                       "table": table[QUICKSTART_SIGMA_COLUMNS].to_dict(orient="list")}, [record])


def explorer_numbers(selection: dict, table: pd.DataFrame, runs: Iterable[Any]) -> dict:
    """``explorer``: the selection and the table of every method there."""
    return _with_runs({"selection": selection, "table": _records(table)}, runs)


# --- notebooks/sigma_trajectory.ipynb, sigma_analysis.ipynb

#: The estimators of the sigma-vs-truth figure (the rest of the audit is the class-noise audit figure).
TRUTH_ESTIMATORS = ("sigma", "sigma_normalised", "sigma_optimum")
#: The columns of the sigma table stored with the density figure.
SIGMA_TABLE_COLUMNS = ["path", "condition", "model.name", "class", "sigma", "optimum_sigma"]
STATIONARITY_DEFINITION = ("median over classes of |s - s*| for the selected model, "
                           "s* = log(2 * scale * mean training BCE_c)")
#: What the quantities of the sigma figures are (stored with their numbers).
QUANTITIES = {
    "learned s": "the s = log sigma^2 the run learned (for CSU, the paper's form: by the optimiser), of the "
                 "selected model or, per epoch, at the end of the epoch",
    "s*": "the stationary optimum log(2 * scale * mean training loss per class) of a network, recorded, never fed "
          "back: of the selected network (eval mode, all training clips) or, per epoch, of the epoch's own "
          "training steps (train mode)",
    "n_at_clamp": "classes whose learned s sits on a bound of loss.csu_clamp (our addition, not the paper's)",
}


def _stationarity(table: pd.DataFrame) -> dict:
    """The runs' :func:`~csu_lib.analysis.sigma.stationarity_table` with its definitions."""
    return {"definition": STATIONARITY_DEFINITION, "n_at_clamp": QUANTITIES["n_at_clamp"], "runs": _records(table),
            "max_median_abs_gap": float(table["stored"].max()) if len(table) else None}


def sigma_trajectory_numbers(*, profile: str, model: str, seeds: list, curves: Mapping[str, pd.DataFrame],
                             gaps: pd.DataFrame, test_metrics: pd.DataFrame, runs: Sequence) -> dict:
    """``sigma_trajectory``: the curves of :func:`csu_lib.analysis.sigma.grouped_trajectories`
    (``per="epoch"``: the learned s's multiplier, ``mean``, and its companion of each epoch's s*,
    ``optimum``), the runs' :func:`~csu_lib.analysis.sigma.stationarity_table` (``gaps``, with its
    largest stored gap and the classes on the clamp) and :func:`csu_lib.analysis.results.mean_test_metrics`."""
    return _with_runs({"profile": profile, "model": model, "seeds": seeds, "quantities": QUANTITIES,
                       "curves": {k: v.to_dict(orient="list") for k, v in curves.items()},
                       "stationarity": _stationarity(gaps), "test_metrics": _records(test_metrics)}, runs)


def sigma_kde_numbers(*, profile: str, densities: Mapping[str, pd.DataFrame], table: pd.DataFrame,
                      stationarity: pd.DataFrame, runs: Sequence,
                      optimum_densities: Optional[Mapping[str, pd.DataFrame]] = None) -> dict:
    """``sigma_kde``: :func:`csu_lib.analysis.sigma_stats.sigma_densities` of the learned sigma
    (``densities``) and of the sigma at s* of the same networks (``optimum_densities``), the sigma of
    every run and class (:func:`csu_lib.analysis.sigma.sigma_table`) and the runs' stationarity table."""
    return _with_runs({"profile": profile, "quantities": QUANTITIES,
                       "densities": {k: v.to_dict(orient="list") for k, v in densities.items()},
                       "optimum_densities": {k: v.to_dict(orient="list") for k, v in (optimum_densities or {}).items()},
                       "sigma_by_run_class": table[SIGMA_TABLE_COLUMNS].to_dict(orient="list"),
                       "stationarity": _stationarity(stationarity)}, runs)


def sigma_vs_truth_numbers(*, profile: str, audit_ratio: float, kinds: Sequence[str], summary: pd.DataFrame,
                           scores: pd.DataFrame, stationarity: pd.DataFrame, runs: Sequence) -> dict:
    """``sigma_vs_truth``: the rows of the audit ``summary`` (one-sided CSU) and of the per-run
    ``scores`` (:mod:`csu_lib.analysis.class_noise_audit`) of the :data:`TRUTH_ESTIMATORS`."""
    return _with_runs({"profile": profile, "design": {"profile": "audit", "audit_ratio": audit_ratio, "kinds": list(kinds)},
                       "quantities": QUANTITIES,
                       "summary": _records(summary[summary["estimator"].isin(TRUTH_ESTIMATORS)]),
                       "runs": _records(scores[scores["estimator"].isin(TRUTH_ESTIMATORS)]),
                       "stationarity": _stationarity(stationarity)}, runs)


def class_noise_audit_numbers(*, profile: str, audit_ratio: float, summary: pd.DataFrame,
                              top: Mapping[str, pd.DataFrame], runs: Sequence,
                              estimators: Optional[Mapping[str, str]] = None,
                              stationarity: Optional[pd.DataFrame] = None) -> dict:
    """``class_noise_audit``: every estimator's summary (``estimators``: what each reads, as the
    figure names it), per kind the classes of highest normalised sigma
    (:func:`csu_lib.analysis.class_noise_audit.top_classes`) and the runs' stationarity table."""
    return _with_runs({"profile": profile, "audit_ratio": audit_ratio, "quantities": QUANTITIES,
                       "estimators": dict(estimators or {}), "summary": _records(summary),
                       "top_classes_by_normalised_sigma": {k: _records(v) for k, v in top.items()},
                       "stationarity": None if stationarity is None else _stationarity(stationarity)}, runs)


# --- notebooks/score_plane.ipynb, landscape.ipynb

def score_plane_numbers(*, profile: str, model: str, seed: int, grid: np.ndarray, rows: Sequence[Sequence],
                        runs: Sequence) -> dict:
    """``score_plane``: the logit grid and every panel's numbers, row by row
    (:func:`csu_lib.analysis.score_plane.score_plane_panels`)."""
    return _with_runs({"profile": profile, "model": model, "seed": seed, "grid": grid.tolist(),
                       "panels": [p.numbers() for panels in rows for p in panels]}, runs)


def landscape_1d_numbers(*, alphas: np.ndarray, settings: dict, probes: Mapping[str, dict], runs: Sequence) -> dict:
    """``landscape_1d``: the 1-D curve of every probe (:func:`csu_lib.analysis.landscape_probe.probe_run`)."""
    return _with_runs({"alphas": alphas.tolist(), "settings": settings,
                       "curves": {k: v["curve_1d"].tolist() for k, v in probes.items()}}, runs)


def landscape_2d_numbers(*, grid: np.ndarray, settings: dict, probes: Mapping[str, dict], runs: Sequence) -> dict:
    """``landscape_2d``: the 2-D surface of every probe."""
    return _with_runs({"grid": grid.tolist(), "settings": settings,
                       "surfaces": {k: v["surface_2d"].tolist() for k, v in probes.items()}}, runs)


def landscape_geometry_numbers(*, settings: dict, statistics: Mapping[str, Mapping[str, dict]], runs: Sequence) -> dict:
    """``landscape_geometry``: the geometry statistics ``{condition: {loss: statistics}}``."""
    return _with_runs({"settings": settings, "statistics": statistics}, runs)


#: Every figure of the suite and the function that builds its JSON.
FIGURE_NUMBERS = {
    "corruption_class_rates": corruption_class_rates_numbers, "corruption_label_counts": corruption_label_counts_numbers,
    "corruption_man_transitions": corruption_man_transitions_numbers,
    "corruption_sln_soft_values": corruption_sln_soft_values_numbers,
    "degradation": degradation_numbers, "degradation_uneven": degradation_uneven_numbers,
    "relative_change": relative_change_numbers,
    "sigma_trajectory": sigma_trajectory_numbers, "sigma_kde": sigma_kde_numbers,
    "sigma_vs_truth": sigma_vs_truth_numbers, "class_noise_audit": class_noise_audit_numbers,
    "score_plane": score_plane_numbers, "landscape_1d": landscape_1d_numbers, "landscape_2d": landscape_2d_numbers,
    "landscape_geometry": landscape_geometry_numbers, "class_precision": class_precision_numbers,
    "method_comparison": method_comparison_numbers, "mask_sweep": mask_sweep_numbers,
    "quickstart_history": quickstart_history_numbers, "quickstart_sigma": quickstart_sigma_numbers,
    "explorer": explorer_numbers,
}
