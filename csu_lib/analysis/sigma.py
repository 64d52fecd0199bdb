"""The learned sigma of CSU runs, read from their run records: per-class tables, trajectories of
the gradient multiplier over training (per step, and per epoch beside the multiplier of the
epoch's s*: the CSU paper's Fig. 7), and runs grouped by setting.

Conventions: a run logs ``s_c = log sigma_c^2`` after every optimiser step
(:attr:`~csu_lib.records.RunRecord.log_sigma2`); sigma and the multiplier are derived from it by
the one definition of :mod:`csu_lib.losses.reliability` (:func:`~csu_lib.losses.sigma_of`,
:func:`~csu_lib.losses.multiplier_of`, the ``csu_scale`` option included). The "final learned
log sigma^2" of a run is the s of its selected model, read from its record
(:attr:`~csu_lib.records.RunRecord.final_log_sigma2`; the log's last row is the last step, which
belongs to later weights when early stopping kept an earlier epoch). Normalised training
progress of step t (0-based) of T logged steps is ``(t + 1) / T``, of epoch e of E ``(e + 1) / E``.
Per epoch a run records the learned s at the epoch's end (the log's last step of the epoch) and
the s* of the epoch's own training steps (:attr:`~csu_lib.records.RunRecord.epoch_optimum_log_sigma2`:
the optimum for the network as it moved through the epoch, in train mode; recorded, never fed
back). Runs without a log (BCE) have no learned sigma and are skipped by the functions below (an
error is raised only when nothing is left).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..config import loss_label
from ..core.errors import RunRecordError
from ..core.stats import mean_ci
from ..losses import bce_from_scores, multiplier_of, optimum_log_sigma2, scale_of, sides_of, sigma_of
from ..records import RunRecord


def multiplier_trajectory(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """(progress (T,), multiplier (T, C)) of one CSU run."""
    if not record.learns_sigma:
        raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
    steps = record.log_sigma2.shape[0]
    return np.arange(1, steps + 1) / steps, record.multiplier


def median_multiplier_trajectory(record: RunRecord, grid: np.ndarray) -> np.ndarray:
    """The class-wise median of 1/sigma^2, interpolated onto ``grid`` of normalised progress."""
    progress, mult = multiplier_trajectory(record)
    return np.interp(grid, progress, np.median(mult, axis=1))


def aggregate_trajectories(records: Sequence[RunRecord], n_points: int = 101) -> pd.DataFrame:
    """Geometric mean and 95% CI over runs of the class-wise median multiplier, on a common
    progress grid.

    The multiplier is positive and spans orders of magnitude across seeds, and the figure draws
    it on a log scale, so the mean and the Student-t interval are taken of its logarithm and
    exponentiated (an arithmetic interval can reach below zero with 3 runs). Returns columns
    ``progress``, ``mean`` (geometric), ``lo``, ``hi``, ``n_runs``.
    """
    if not records:
        raise RunRecordError("no runs to aggregate")
    grid = np.linspace(0.0, 1.0, n_points)
    mean, lo, hi = _geometric_mean_ci(np.stack([median_multiplier_trajectory(r, grid) for r in records]))
    return pd.DataFrame({"progress": grid, "mean": mean, "lo": lo, "hi": hi, "n_runs": len(records)})


def _geometric_mean_ci(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """exp of the mean and Student-t 95% interval over runs (rows) of the log of positive curves."""
    mean, lo, hi = mean_ci(np.log(curves))
    return np.exp(mean), np.exp(lo), np.exp(hi)


def epoch_multipliers(record: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(progress (E,), multiplier ``scale * exp(-s)`` of the learned s at the end of every epoch
    (E, C), the same of every epoch's s* (E, C), or None where the record keeps none) of one CSU run."""
    if not record.learns_sigma:
        raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
    scale = scale_of(record.config.loss)
    learned = record.epoch_log_sigma2
    star = record.epoch_optimum_log_sigma2
    return (np.arange(1, len(learned) + 1) / len(learned), multiplier_of(learned, scale),
            None if star is None else multiplier_of(star, scale))


def aggregate_epoch_trajectories(records: Sequence[RunRecord], n_points: int = 101) -> pd.DataFrame:
    """The trajectory figure's curves of a group of runs: per run the class-wise median of the
    multiplier per epoch, interpolated onto ``n_points`` of normalised progress, then the geometric
    mean and 95% CI over runs (as :func:`aggregate_trajectories`), of the learned s (``mean``,
    ``lo``, ``hi``; from its initial value ``loss.csu_init`` at progress 0) and of each epoch's s*
    (``optimum``, ``optimum_lo``, ``optimum_hi``; NaN before every run's first epoch ended, and
    everywhere when no run records it). ``n_runs``: runs behind the learned curve;
    ``n_runs_optimum``: those with a recorded s*."""
    if not records:
        raise RunRecordError("no runs to aggregate")
    grid = np.linspace(0.0, 1.0, n_points)
    learned, optimum, first = [], [], 0.0
    for record in records:
        progress, mult, star = epoch_multipliers(record)
        start = float(multiplier_of(record.config.loss.csu_init, scale_of(record.config.loss)))
        learned.append(np.interp(grid, np.r_[0.0, progress], np.r_[start, np.median(mult, axis=1)]))
        if star is not None:
            optimum.append(np.interp(grid, progress, np.median(star, axis=1)))
            first = max(first, float(progress[0]))
    mean, lo, hi = _geometric_mean_ci(np.stack(learned))
    out = pd.DataFrame({"progress": grid, "mean": mean, "lo": lo, "hi": hi, "n_runs": len(records)})
    band = _geometric_mean_ci(np.stack(optimum)) if optimum else (np.full(n_points, np.nan),) * 3
    for name, values in zip(("optimum", "optimum_lo", "optimum_hi"), band):
        out[name] = np.where(grid >= first - 1e-12, values, np.nan)
    out["n_runs_optimum"] = len(optimum)
    return out


#: Columns that identify a run's setting in the tables below (dotted config names).
RUN_COLUMNS: tuple[str, ...] = ("corruption.kind", "corruption.ratio", "corruption.profile", "corruption.target",
                                "model.name", "loss.name", "train.seed")


#: Default grouping of the sigma figures: one group per corruption setting, backbone and loss.
DEFAULT_BY: tuple[str, ...] = ("corruption.kind", "corruption.ratio", "model.name", "loss.name")


def config_value(record: RunRecord, key: str):
    """A dotted config value of a run (``"corruption.kind"``, ``"train.seed"``, ...); ``"path"``
    gives the run directory, ``"condition"`` the label ``clean`` / ``san 50%`` and ``"loss.label"``
    the loss as figures name it (``CSU``, the paper's form, or ``CSU (stationary)``:
    :func:`csu_lib.config.loss_label`)."""
    if key == "path":
        return str(record.path)
    if key == "condition":
        return record.config.corruption.label
    if key == "loss.label":
        return loss_label(record.config.loss)
    obj = record.config
    for part in key.split("."):
        if not hasattr(obj, part):
            raise RunRecordError(f"run config has no field {key!r} (at {part!r})")
        obj = getattr(obj, part)
    return obj


def group_label(values: dict) -> str:
    """Readable label of a group: the corruption condition first (``clean``, ``san 50%``; the
    word before the first space picks the colour in :mod:`csu_lib.plots`), then the rest."""
    parts: list[str] = []
    values = dict(values)
    kind, ratio = values.pop("corruption.kind", None), values.pop("corruption.ratio", None)
    if kind is not None:
        if kind == "none" or ratio == 0:
            parts.append("clean")
        elif ratio is not None:
            parts.append(f"{kind} {round(float(ratio) * 100)}%")
        else:
            parts.append(str(kind))
    elif ratio is not None:
        parts.append(f"r={ratio}")
    parts.extend(str(v) for v in values.values())
    return " ".join(parts) if parts else "all"


def final_log_sigma2(record: RunRecord) -> np.ndarray:
    """The learned ``s_c = log sigma_c^2`` (C,) that goes with the run's selected weights (the
    best validation epoch), float64: :attr:`~csu_lib.records.RunRecord.final_log_sigma2` of a
    one-sided CSU run (an error for a run that learns none, or a two-sided one)."""
    if not record.learns_sigma:
        raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
    s = record.final_log_sigma2
    if sides_of(record.config.loss) != 1:
        raise RunRecordError(f"{record.path} is a two-sided CSU run ({len(s)} values of s): read s+ and s- "
                             "with csu_lib.analysis.class_noise_audit, not as one sigma per class")
    return s


def class_truth(record: RunRecord) -> tuple[np.ndarray, np.ndarray] | None:
    """(class_rate, label_noise_rate) of a run, each (C,): from its corruption record; zeros for
    a clean run (nothing was corrupted); None when a corrupted run has no corruption record."""
    result = record.corruption()
    if result is not None:
        return np.asarray(result.class_rate, np.float64), np.asarray(result.label_noise_rate, np.float64)
    c = record.config.corruption
    if (c.kind == "none" or c.ratio == 0) and record.learns_sigma:
        n = record.log_sigma2.shape[1]
        return np.zeros(n), np.zeros(n)
    return None


def sigma_table(records: Sequence[RunRecord], *, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (run, class) with the final learned sigma, its companion at s*, and the class's
    true corruption.

    Columns: the run columns :data:`RUN_COLUMNS`, ``condition`` (``clean`` / ``san 50%``),
    ``path``, ``class`` (index), ``class_name`` (when ``class_names`` is given), ``log_sigma2``
    (the learned s of the selected model), ``sigma = exp(s/2)``, ``multiplier`` (``scale * exp(-s)``),
    ``optimum_log_sigma2`` / ``optimum_sigma`` (the stationary optimum s* of the selected network and
    its sigma, :attr:`~csu_lib.records.RunRecord.optimum_log_sigma2`; NaN where the record keeps
    none), ``class_rate`` and ``label_noise_rate``
    (see :class:`~csu_lib.corruption.CorruptionResult`; 0 for clean runs, NaN when a corrupted
    run has no corruption record) and ``corrupted`` (``class_rate > 0``, nullable boolean:
    <NA> when unknown).
    Runs without a sigma log (BCE) are skipped.
    """
    frames = []
    for record in records:
        if not record.learns_sigma:
            continue
        s = final_log_sigma2(record)
        n = len(s)
        star = record.optimum_log_sigma2
        star = np.full(n, np.nan) if star is None else star
        df = pd.DataFrame({"class": np.arange(n), "log_sigma2": s, "sigma": sigma_of(s),
                           "multiplier": multiplier_of(s, scale_of(record.config.loss)),
                           "optimum_log_sigma2": star, "optimum_sigma": sigma_of(star)})
        if class_names is not None:
            if len(class_names) != n:
                raise RunRecordError(f"{len(class_names)} class names for {n} classes of {record.path}")
            df.insert(1, "class_name", list(class_names))
        truth = class_truth(record)
        if truth is None:
            df["class_rate"] = np.nan
            df["label_noise_rate"] = np.nan
            df["corrupted"] = pd.array([pd.NA] * n, dtype="boolean")
        else:
            df["class_rate"], df["label_noise_rate"] = truth
            df["corrupted"] = pd.array(truth[0] > 0, dtype="boolean")
        for i, key in enumerate(RUN_COLUMNS):
            df.insert(i, key, config_value(record, key))
        df.insert(len(RUN_COLUMNS), "condition", record.config.corruption.label)
        df.insert(len(RUN_COLUMNS) + 1, "path", str(record.path))
        frames.append(df)
    if not frames:
        raise RunRecordError("no run with a sigma log among the records (BCE runs learn no sigma)")
    return pd.concat(frames, ignore_index=True)


def group_records(records: Sequence[RunRecord], by: Sequence[str] = DEFAULT_BY) -> dict[str, list[RunRecord]]:
    """Records grouped by the dotted config keys ``by``, keyed by :func:`group_label`, in order
    of first appearance."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        label = group_label({k: config_value(record, k) for k in by})
        groups.setdefault(label, []).append(record)
    return groups


def grouped_trajectories(records: Sequence[RunRecord], by: Sequence[str] = DEFAULT_BY,
                         n_points: int = 101, *, per: str = "step") -> dict[str, pd.DataFrame]:
    """:func:`aggregate_trajectories` (``per="step"``) or :func:`aggregate_epoch_trajectories`
    (``per="epoch"``: the learned s with each epoch's s* as companion) per group of runs (grouped
    by the config keys ``by``).

    Returns ``{label: DataFrame}`` (columns ``progress, mean, lo, hi, n_runs``, per epoch also the
    ``optimum`` columns, plus one constant column per key of ``by``), ready for
    :func:`csu_lib.plots.plot_multiplier_trajectories`. Runs without a sigma log are skipped.
    """
    if per not in ("step", "epoch"):
        raise ValueError(f"per must be 'step' or 'epoch', got {per!r}")
    aggregate = aggregate_trajectories if per == "step" else aggregate_epoch_trajectories
    out: dict[str, pd.DataFrame] = {}
    for label, group in group_records([r for r in records if r.learns_sigma], by).items():
        df = aggregate(group, n_points)
        for key in by:
            df[key] = config_value(group[0], key)
        out[label] = df
    if not out:
        raise RunRecordError("no run with a sigma log among the records (BCE runs learn no sigma)")
    return out


def class_trajectories(record: RunRecord, grid: int | np.ndarray = 101, *,
                       quantity: str = "multiplier") -> tuple[np.ndarray, np.ndarray]:
    """Per-class trajectories of one run interpolated onto ``grid`` of normalised progress.

    ``grid``: an array in [0, 1] or a number of points. ``quantity``: ``"multiplier"``
    (``scale / sigma^2``), ``"sigma"`` (exp(s/2)) or ``"log_sigma2"`` (s). Returns (grid, (n_points, C)).
    """
    if quantity not in ("multiplier", "sigma", "log_sigma2"):
        raise ValueError(f"quantity must be 'multiplier', 'sigma' or 'log_sigma2', got {quantity!r}")
    grid = np.linspace(0.0, 1.0, int(grid)) if np.isscalar(grid) else np.asarray(grid, dtype=np.float64)
    progress, _ = multiplier_trajectory(record)
    values = {"multiplier": record.multiplier, "sigma": record.sigma,
              "log_sigma2": record.log_sigma2.astype(np.float64)}[quantity]
    return grid, np.stack([np.interp(grid, progress, values[:, c]) for c in range(values.shape[1])], axis=1)


def stationarity_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per CSU run: its loss label (``CSU``, ``CSU (stationary)``), how it learned s (``fit``),
    and the median over classes of |s - s*| for
    the selected model, s* = log(2 * scale * mean BCE_c) over the training clips
    (:func:`~csu_lib.losses.optimum_log_sigma2`) clipped to the allowed range ``loss.csu_clamp``
    (the loss is convex in s, so that is its optimum over the range); ``n_at_clamp``: classes whose
    LEARNED s sits on a bound of the range (the clamp is ours, not the paper's: docs/methods.md,
    section 1). ``recomputed``: the same median computed here from the record's files
    (``scores_train.npy`` and the corrupted training labels, :func:`~csu_lib.losses.bce_from_scores`),
    independently of the training loop;
    NaN for a clean run (its record keeps no training labels) and for a record written before the
    gap was stored (``stored`` NaN)."""
    rows = []
    for rec in records:
        if not rec.learns_sigma or sides_of(rec.config.loss) != 1:
            continue
        stored = rec.stationarity
        s = final_log_sigma2(rec)
        result = rec.corruption()
        recomputed = float("nan")
        if result is not None and rec.config.method.name == "none":
            bce = bce_from_scores(rec.scores("train"), result.labels)
            star = np.clip(optimum_log_sigma2(bce.mean(axis=0), scale_of(rec.config.loss)), *rec.config.loss.csu_clamp)
            recomputed = float(np.median(np.abs(s - star)))
        lo, hi = rec.config.loss.csu_clamp
        rows.append({"path": str(rec.path), "condition": rec.config.corruption.label, "loss": loss_label(rec.config.loss),
                     "seed": rec.config.train.seed, "fit": rec.config.loss.csu_fit,
                     "stored": float(stored.get("median_abs_gap", np.nan)), "recomputed": recomputed,
                     "n_at_clamp": int(np.sum(np.isclose(s, lo) | np.isclose(s, hi)))})
    return pd.DataFrame(rows, columns=["path", "condition", "loss", "seed", "fit", "stored", "recomputed",
                                       "n_at_clamp"])
