"""Tables of results across runs, as the figures plot them.

Every function takes the run table of :func:`csu_lib.records.load_runs` (a runs folder) or
:func:`csu_lib.records.records_frame` (records in hand): one row per run, the config flattened
into dotted columns (``corruption.kind``, ``loss.name``, ``train.seed`` ...) and the final
metrics as ``test.mAP`` etc. Means come with a Student-t 95% confidence interval over seeds
(:func:`csu_lib.core.stats.mean_ci`; with one seed the interval is the point itself).

- :func:`summarise`: mean and CI of a metric per setting (``csu report``).
- :func:`degradation_table`: a metric against the corruption ratio, one curve per corruption
  type x backbone x loss; the clean runs are the ratio-0 point of every type (the CSU paper's
  Fig. 3). The corrupted runs of a table follow one corruption design (:func:`one_design`): a
  uniform ``san 50%`` and an audit ``san 50% (audit)`` run are never averaged together.
- :func:`relative_change`: the change at one ratio relative to clean training of the same
  backbone, loss and seed, in percent (Fig. 4).
- :func:`class_precision_table`: class-wise precision at the evaluation threshold, mean over
  seeds, one column per loss (the spirit of Fig. 9).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..config import audit_conditions, check_audit_ratio, corruption_label
from ..core.errors import ConfigError, CsuError
from ..core import stats
from ..core.stats import mean_ci
from ..corruption import INJECTED_KINDS
from ..records import load_runs

#: The columns that identify a setting (everything but the seed).
SETTING_KEYS = ("condition", "model.name", "method.name", "loss.name")


def with_condition(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus a ``condition`` column (``clean``, ``san 50%``, ``san 50% (audit)`` ...)."""
    _require(runs, ("corruption.kind", "corruption.ratio"))
    return runs.assign(condition=[corruption_label(k, r, p) for k, r, p in zip(
        runs["corruption.kind"], runs["corruption.ratio"], _profiles(runs))])


def _profiles(runs: pd.DataFrame) -> pd.Series:
    """The corruption design (``corruption.profile``) of every run; uniform where the table has none."""
    if "corruption.profile" in runs.columns:
        return runs["corruption.profile"].fillna("uniform")
    return pd.Series("uniform", index=runs.index)


def one_design(runs: pd.DataFrame, profile: Optional[str] = None) -> pd.DataFrame:
    """The runs of one corruption design (``corruption.profile``): those of ``profile``, or, when
    None, all of them provided they share one design. Runs of the same kind and ratio under two
    designs (``san 50%`` and ``san 50% (audit)``) are different conditions: a table that mixes
    them without naming ``profile`` is an error that names the designs."""
    profiles = _profiles(runs)
    if profile is not None:
        return runs[profiles == profile]
    present = sorted(set(profiles))
    if len(present) > 1:
        raise CsuError(f"the corrupted runs follow several corruption designs ({', '.join(present)}); "
                       "pass profile= to pick one")
    return runs


def summarise(runs: pd.DataFrame, keys: Sequence[str] = SETTING_KEYS, *, metric: str = "test.mAP") -> pd.DataFrame:
    """One row per value of ``keys``: ``n`` runs, the mean of ``metric``, its 95% CI
    (``ci_lo``, ``ci_hi``) and the ``seeds``, in sorted order of ``keys``."""
    if "condition" in keys and "condition" not in runs.columns:
        runs = with_condition(runs)
    _require(runs, (*keys, metric, "train.seed"))
    rows = []
    for values, group in runs.groupby(list(keys), sort=True):
        values = values if isinstance(values, tuple) else (values,)
        mean, lo, hi = mean_ci(group[metric].to_numpy(dtype=float))
        rows.append({**dict(zip(keys, values)), "n": len(group), metric: float(mean), "ci_lo": float(lo),
                     "ci_hi": float(hi), "seeds": sorted(int(s) for s in group["train.seed"])})
    return pd.DataFrame(rows)


def degradation_table(runs: pd.DataFrame, *, metric: str = "test.mAP", kinds: Optional[Sequence[str]] = None,
                      profile: Optional[str] = None) -> pd.DataFrame:
    """``metric`` against the corruption ratio: columns ``kind``, ``ratio``, ``model.name``,
    ``method.name``, ``loss.name``, ``n``, ``metric``, ``ci_lo``, ``ci_hi``, ``seeds``.

    The clean runs (kind ``none``) are the ratio-0 point of every corruption type in ``kinds``
    (default: the types present). The corrupted runs are those of one design (:func:`one_design`:
    ``profile``, e.g. ``"audit"``, or the one the runs share). Rows in the order of ``kinds``, then
    by model, method, loss and ratio.
    """
    _require(runs, ("corruption.kind", "corruption.ratio", "model.name", "method.name", "loss.name", metric))
    kinds = list(kinds) if kinds is not None else sorted(runs.loc[runs["corruption.kind"] != "none",
                                                                  "corruption.kind"].unique())
    frame = by_kind(runs, kinds, profile)
    if frame.empty:
        raise CsuError("no runs to draw a degradation curve from")
    keys = ("kind", "model.name", "method.name", "loss.name", "ratio")
    table = summarise(frame, keys, metric=metric)
    order = table["kind"].map({k: i for i, k in enumerate(kinds)})  # the caller's order of types
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def relative_change(runs: pd.DataFrame, *, ratio: float = 0.5, metric: str = "test.mAP",
                    profile: Optional[str] = None) -> pd.DataFrame:
    """Change of ``metric`` at ``ratio`` relative to clean training, in percent:
    ``100 * (m_ratio - m_clean) / m_clean`` per seed, paired with the clean run of the same
    backbone, method, loss and seed; then mean and 95% CI over seeds. One row per corruption
    type x backbone x method x loss; the corrupted runs of one design (:func:`one_design`). A
    corrupted run without its clean partner is an error that names it.
    """
    _require(runs, ("corruption.kind", "corruption.ratio", "model.name", "method.name", "loss.name",
                    "train.seed", metric))
    pair_keys = ["model.name", "method.name", "loss.name", "train.seed"]
    clean = runs[runs["corruption.kind"] == "none"].set_index(pair_keys)[metric]
    if clean.index.duplicated().any():
        raise CsuError("several clean runs share a backbone, method, loss and seed; pass one study's runs")
    at = one_design(runs[runs["corruption.kind"] != "none"], profile)
    at = at[np.isclose(at["corruption.ratio"].astype(float), ratio)]
    if at.empty:
        raise CsuError(f"no corrupted run at ratio {ratio}")
    rows = []
    for values, group in at.groupby(["corruption.kind", "model.name", "method.name", "loss.name"], sort=True):
        changes = []
        for _, run in group.iterrows():
            key = tuple(run[k] for k in pair_keys)
            if key not in clean.index:
                raise CsuError(f"run {run.get('run_id', '?')} ({values[0]} {ratio:.0%}, {values[1]}, "
                               f"{values[3]}, seed {key[-1]}) has no clean run to be normalised by")
            changes.append(100.0 * (run[metric] - clean[key]) / clean[key])
        mean, lo, hi = mean_ci(np.asarray(changes, dtype=float))
        rows.append({"kind": values[0], "model.name": values[1], "method.name": values[2], "loss.name": values[3],
                     "ratio": ratio, "n": len(changes), "change_percent": float(mean), "ci_lo": float(lo),
                     "ci_hi": float(hi)})
    return pd.DataFrame(rows)


def paired_difference(runs: pd.DataFrame, *, metric: str = "test.mAP", losses: tuple[str, str] = ("bce", "csu"),
                      keys: Sequence[str] = ("kind", "ratio", "model.name", "method.name"),
                      profile: Optional[str] = None) -> pd.DataFrame:
    """``losses[1]`` minus ``losses[0]`` on the same seeds: per setting of ``keys`` the
    difference of ``metric`` between the two losses' runs of each seed (same data, same corruption
    draw, same initial weights), then its mean and Student-t 95% CI over the seeds (``n`` pairs,
    the ``seeds``). A setting with a run of one loss but not of the other leaves that seed out.
    ``runs`` carries ``kind`` and ``ratio`` columns when it is a :func:`degradation_table`-style
    frame; else the clean runs are the ratio-0 point of every corruption type present and the
    corrupted runs are those of one design (:func:`one_design`, ``profile``)."""
    if "kind" in keys and "kind" not in runs.columns:
        runs = by_kind(runs, profile=profile)
    _require(runs, (*keys, "loss.name", "train.seed", metric))
    a, b = losses
    rows = []
    for values, group in runs.groupby(list(keys), sort=True):
        values = values if isinstance(values, tuple) else (values,)
        per_loss = {loss: g.set_index("train.seed")[metric] for loss, g in group.groupby("loss.name")}
        if a not in per_loss or b not in per_loss:
            continue
        seeds, mean, lo, hi = stats.paired_difference(per_loss[a].to_dict(), per_loss[b].to_dict())
        rows.append({**dict(zip(keys, values)), "metric": metric, "difference": f"{b} - {a}", "n": len(seeds),
                     "mean": mean, "ci_lo": lo, "ci_hi": hi, "seeds": [int(s) for s in seeds]})
    return pd.DataFrame(rows)


def by_kind(runs: pd.DataFrame, kinds: Optional[Sequence[str]] = None, profile: Optional[str] = None) -> pd.DataFrame:
    """``runs`` with ``kind`` and ``ratio`` columns: corrupted runs (of one design,
    :func:`one_design`) under their type, the clean runs repeated as the ratio-0 point of every
    type in ``kinds`` (default: the types present)."""
    corrupted = one_design(runs[runs["corruption.kind"] != "none"], profile)
    clean = runs[runs["corruption.kind"] == "none"]
    kinds = list(kinds) if kinds is not None else sorted(corrupted["corruption.kind"].unique())
    parts = [corrupted[corrupted["corruption.kind"].isin(kinds)].assign(kind=lambda d: d["corruption.kind"],
                                                                         ratio=lambda d: d["corruption.ratio"])]
    parts += [clean.assign(kind=k, ratio=0.0) for k in kinds]
    return pd.concat(parts, ignore_index=True)


def class_precision_table(runs: pd.DataFrame, class_names: Sequence[str], *, by: str = "loss.name",
                          split: str = "test") -> pd.DataFrame:
    """Class-wise precision at the evaluation threshold, mean over the runs of each value of
    ``by`` (e.g. over seeds): one row per class, one column per value of ``by``. A class with no
    positive prediction has no precision (NaN) in that run; the mean is over the runs where it
    has one, and ``n_<value>`` counts them."""
    column = f"{split}.class_precision"
    _require(runs, (by, column))
    out = pd.DataFrame({"class": list(class_names)})
    for value, group in runs.groupby(by, sort=False):
        matrix = np.array([[np.nan if v is None else float(v) for v in row] for row in group[column]], dtype=float)
        if matrix.shape[1] != len(class_names):
            raise CsuError(f"{column} of {value!r} runs has {matrix.shape[1]} classes, expected {len(class_names)}")
        with warnings.catch_warnings():  # a class without any precision is NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            out[str(value)] = np.nanmean(matrix, axis=0)
        out[f"n_{value}"] = np.isfinite(matrix).sum(axis=0)
    return out


def _require(runs: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise CsuError(f"the run table has no column(s) {missing}; is it a table of complete runs "
                       f"(records.load_runs / records.records_frame)?")


def report(runs_dir, *, metric: str = "test.mAP") -> pd.DataFrame:
    """``csu report``: one row per setting (condition, model, method, loss) of the complete runs
    below ``runs_dir``, with the mean of ``metric``, a Student-t 95% CI over seeds and the seed
    count."""
    runs = load_runs(runs_dir)
    if runs.empty:
        raise CsuError(f"no complete run below {runs_dir}")
    if metric not in runs.columns:
        raise CsuError(f"unknown metric {metric!r}; e.g. test.mAP, test.mAUC, test.d_prime, test.lwlrap")
    return summarise(runs, metric=metric).drop(columns=["seeds"])


#: The metrics a degradation figure may plot.
METRICS = ("test.mAP", "test.mAUC", "test.d_prime", "test.lwlrap")


def degradation_conditions(kinds: Sequence[str], ratios: Sequence[float], change_ratio: float,
                           metric: str) -> list[str]:
    """The conditions of a degradation study (``none`` plus every kind x ratio), after checking
    the parameters of the degradation figures (a bad one is a :class:`ConfigError` naming it)."""
    if isinstance(kinds, str) or not kinds or any(k not in INJECTED_KINDS for k in kinds):
        raise ConfigError(f"kinds must be a list of {', '.join(INJECTED_KINDS)}; got {kinds!r}")
    ratio_list = [float(r) for r in ratios] if not isinstance(ratios, str) else []
    if not ratio_list or any(not 0 < r <= 1 for r in ratio_list):
        raise ConfigError(f"ratios must be a list of numbers in (0, 1], got {ratios!r}")
    if not any(abs(change_ratio - r) < 1e-9 for r in ratio_list):
        raise ConfigError(f"change_ratio={change_ratio!r} is not among the ratios {ratio_list}")
    if metric not in METRICS:
        raise ConfigError(f"metric must be {', '.join(METRICS[:-1])} or {METRICS[-1]}, got {metric!r}")
    return ["none"] + [f"{k}:{r}" for k in kinds for r in ratio_list]


def uneven_conditions(kinds: Sequence[str], ratio: float) -> list[str]:
    """The conditions of the uneven degradation figure: every kind in the audit design at top
    within-class level ``ratio`` (``audit:<kind>:<ratio>``; none for no kinds), after checking
    the parameters (``uneven_kinds``, ``change_ratio``)."""
    if not isinstance(kinds, (list, tuple)) or any(k not in INJECTED_KINDS for k in kinds):
        raise ConfigError(f"uneven_kinds must be a list of {', '.join(INJECTED_KINDS)} (or empty); got {kinds!r}")
    if not list(kinds):
        return []
    check_audit_ratio(ratio, "change_ratio (the audit design's top within-class level when uneven_kinds is given)")
    return audit_conditions(kinds, ratio)


def check_class_precision(losses: Sequence[str], sort_by: Optional[str], split: str) -> None:
    """The parameters of the class-precision figure: ``sort_by`` one of the losses (or None),
    ``split`` test or val."""
    if sort_by is not None and sort_by not in losses:
        raise ConfigError(f"sort_by must be one of the losses {list(losses)} or None, got {sort_by!r}")
    if split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got {split!r}")


def class_precision_summary(table: pd.DataFrame, losses: Sequence[str]) -> dict:
    """What the class-precision figure reports of its table: per loss the mean precision and the
    classes without one; for two losses, the comparison on the classes both define."""
    summary: dict = {loss: {"mean_precision": float(table[loss].mean()),
                            "classes_without_precision": int((table[f"n_{loss}"] == 0).sum())} for loss in losses}
    if len(losses) == 2:
        both = table[losses[0]].notna() & table[losses[1]].notna()  # compare on the classes both define
        summary["common_classes"] = {"n": int(both.sum()), **{f"mean_{loss}": float(table.loc[both, loss].mean())
                                                               for loss in losses}}
        diff = table[losses[1]] - table[losses[0]]
        summary["classes"] = {f"{losses[1]} higher": int((diff > 0).sum()), f"{losses[1]} lower": int((diff < 0).sum()),
                              "equal": int((diff == 0).sum())}
    return summary


def mean_test_metrics(records) -> pd.DataFrame:
    """Mean test mAP, mAUC, d' and lwlrap per condition and loss of run records (in order of
    first appearance), with ``n`` the number of runs (seeds) behind each mean."""
    rows = [{"condition": r.config.corruption.label, "loss": r.config.loss.name, "seed": r.config.train.seed,
             **{k: r.final_metrics["test"][k] for k in ("mAP", "mAUC", "d_prime", "lwlrap")}} for r in records]
    return (pd.DataFrame(rows).groupby(["condition", "loss"], sort=False)
            .agg(mAP=("mAP", "mean"), mAUC=("mAUC", "mean"), d_prime=("d_prime", "mean"),
                 lwlrap=("lwlrap", "mean"), n=("seed", "count")).reset_index())


#: What a run's final metrics say about how it ended (:func:`csu_lib.training.convergence.convergence`).
CONVERGENCE = ("epochs_run", "best_epoch", "stopped_early", "hit_epoch_cap", "plateau", "lr_decays", "converged",
               "loss_change", "val_map_change")


def convergence_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its id, condition, model, method, loss and seed, and how it ended
    (:data:`CONVERGENCE`: epochs run, best epoch, whether early stopping fired, whether it hit
    the epoch cap, whether it reached a validation plateau, learning-rate decays on a plateau, and
    the convergence rule: converged, the relative change of the training loss and the spread of
    validation mAP over the last 10% of its epochs).
    Runs recorded before these fields
    existed have NaN there."""
    runs = with_condition(runs) if "condition" not in runs.columns else runs
    cols = ["run_id", "condition", "model.name", "method.name", "loss.name", "train.seed"]
    _require(runs, cols)
    out = runs[cols].copy()
    for c in CONVERGENCE:
        out[c] = runs[c] if c in runs.columns else np.nan
    return out.reset_index(drop=True)
