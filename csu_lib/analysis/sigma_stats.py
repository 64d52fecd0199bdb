"""Statistics of the learned sigma across classes: kernel densities per setting (the CSU paper's
Fig. 8) and agreement with the true per-class corruption (:func:`sigma_vs_truth`)."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import ConfigError
from ..core.stats import mean_ci, rank_agreement
from ..losses import sigma_of
from ..records import RunRecord
from .sigma import DEFAULT_BY, RUN_COLUMNS, class_truth, config_value, final_log_sigma2, group_label, sigma_table


def sigma_kde(values, grid: np.ndarray | int | None = None, bw_method="scott") -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel density estimate (``scipy.stats.gaussian_kde``) of ``values``.

    ``grid``: the evaluation points, or their number (default 256) spanning the data +- 3
    bandwidths. NaNs are dropped. Constant values (all equal, or a single value) have no
    bandwidth: the result is then a narrow Gaussian spike at the value (standard deviation
    ``1e-3 * max(|value|, 1)``, integrating to 1) and a ``RuntimeWarning`` says so.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("sigma_kde: no finite values")
    n_grid = int(grid) if grid is not None and np.isscalar(grid) else 256
    if np.ptp(v) == 0:
        width = 1e-3 * max(abs(float(v[0])), 1.0)
        warnings.warn(f"sigma_kde: all {v.size} values equal {v[0]:.6g}; returning a narrow spike "
                      f"(normal, sd {width:.3g}) instead of a KDE", RuntimeWarning, stacklevel=2)
        if grid is None or np.isscalar(grid):
            grid = np.linspace(v[0] - 5 * width, v[0] + 5 * width, n_grid)
        grid = np.asarray(grid, dtype=np.float64)
        return grid, stats.norm.pdf(grid, loc=v[0], scale=width)
    kde = stats.gaussian_kde(v, bw_method=bw_method)
    if grid is None or np.isscalar(grid):
        bw = float(np.sqrt(kde.covariance[0, 0]))
        grid = np.linspace(v.min() - 3 * bw, v.max() + 3 * bw, n_grid)
    grid = np.asarray(grid, dtype=np.float64)
    return grid, kde(grid)


def sigma_densities(table: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, *, value: str = "sigma",
                    split_corrupted: bool = False, grid: np.ndarray | int | None = None,
                    bw_method="scott", level: float = 0.95) -> dict[str, pd.DataFrame]:
    """Densities of ``table[value]`` (one value per class and run, :func:`sigma_table`) per group
    of runs: the KDE of each run's classes on a common grid, then the mean over the group's runs
    and its Student-t ``level`` band (a band of zero width for one run). The CSU paper's Fig. 8
    pools its runs; the mean of per-run densities keeps the run-to-run spread visible.

    With ``split_corrupted`` each group is split into its corrupted classes (``class_rate > 0``)
    and its clean classes; the labels get `` (corrupted)`` / `` (clean)`` (groups without a
    corruption record keep one density). All densities share one grid (default: 256 points
    over the whole table's range +- 10%), so they can be compared. Returns ``{label:
    DataFrame(x, density, lo, hi, n, n_runs)}`` (``n``: class values behind the density).
    """
    if value not in table.columns:
        raise KeyError(f"column {value!r} not in the table")
    if grid is None or np.isscalar(grid):
        v = table[value].to_numpy(np.float64)
        lo, hi = np.nanmin(v), np.nanmax(v)
        pad = 0.1 * (hi - lo) if hi > lo else 0.1 * max(abs(lo), 1.0)
        grid = np.linspace(lo - pad, hi + pad, 256 if grid is None else int(grid))
    out: dict[str, pd.DataFrame] = {}
    for keys, group in table.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        label = group_label(dict(zip(by, keys)))
        parts = [(label, group)]
        if split_corrupted and group["class_rate"].notna().all():
            bad = group["class_rate"].to_numpy() > 0
            parts = [(f"{label} (corrupted)", group[bad]), (f"{label} (clean)", group[~bad])]
        for name, part in parts:
            if len(part) == 0:
                continue
            per_run = [sigma_kde(run[value].to_numpy(), grid, bw_method)[1]
                       for _, run in part.groupby("path", sort=False)] if "path" in part.columns else \
                [sigma_kde(part[value].to_numpy(), grid, bw_method)[1]]
            mean, band_lo, band_hi = mean_ci(np.stack(per_run), level=level)
            out[name] = pd.DataFrame({"x": np.asarray(grid, dtype=np.float64), "density": mean, "lo": band_lo,
                                      "hi": band_hi, "n": len(part), "n_runs": len(per_run)})
    return out


def sigma_vs_truth(sigma, true_rate, *, k: int | None = None, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """How well the learned sigma ranks the classes by their true corruption rate:
    :func:`csu_lib.core.stats.rank_agreement` (Spearman rho with a bootstrap CI over classes,
    precision@k of the k largest sigma). Any monotone transform of sigma (s, 1/sigma^2
    reversed) gives the same rho up to sign."""
    return rank_agreement(sigma, true_rate, k=k, n_boot=n_boot, seed=seed, level=level)


def _auto_k(record: RunRecord) -> int | None:
    c = record.config.corruption
    if c.profile == "concentrated" and c.kind != "none" and c.ratio > 0:
        return int(c.k_classes)
    return None


def sigma_vs_truth_table(records: Sequence[RunRecord], *, truth: str = "class_rate", k: int | str | None = "auto",
                         n_boot: int = 1000, seed: int = 0, per: str = "run",
                         by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """:func:`sigma_vs_truth` of the final learned sigma against ``truth`` (``class_rate`` or
    ``label_noise_rate``) for every CSU run with a known truth.

    ``k="auto"``: the profile's ``k_classes`` for concentrated corruption, else no precision@k
    (an int forces it everywhere). ``per="run"``: one row per run (the run columns, ``rho``,
    the bootstrap CI over classes, ``precision_at_k`` ...). ``per="setting"``: one row per
    group of ``by`` with the mean over its runs of rho and precision@k and a Student-t 95%
    interval over runs (``rho_lo``/``rho_hi``; 0-width for one run), and ``n_runs``.
    Clean runs (no corrupted class: the truth is constant) give NaN rho.
    """
    if truth not in ("class_rate", "label_noise_rate"):
        raise ValueError(f"truth must be 'class_rate' or 'label_noise_rate', got {truth!r}")
    if per not in ("run", "setting"):
        raise ValueError(f"per must be 'run' or 'setting', got {per!r}")
    rows = []
    for record in records:
        if not record.learns_sigma:
            continue
        t = class_truth(record)
        if t is None:
            continue
        kk = _auto_k(record) if k == "auto" else k
        res = sigma_vs_truth(sigma_of(final_log_sigma2(record)), t[0] if truth == "class_rate" else t[1],
                             k=kk, n_boot=n_boot, seed=seed)
        row = {key: config_value(record, key) for key in RUN_COLUMNS}
        row.update(condition=record.config.corruption.label, path=str(record.path), truth=truth, **res)
        row.setdefault("precision_at_k", float("nan"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if per == "run" or table.empty:
        return table
    out = []
    for keys, group in table.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rho = group["rho"].to_numpy(np.float64)
        rho = rho[np.isfinite(rho)]
        mean, lo, hi = mean_ci(rho) if rho.size else (np.nan, np.nan, np.nan)
        out.append({**dict(zip(by, keys)), "label": group_label(dict(zip(by, keys))), "truth": truth,
                    "rho": float(mean), "rho_lo": float(lo), "rho_hi": float(hi),
                    "precision_at_k": float(group["precision_at_k"].mean()), "k": group["k"].iloc[0],
                    "n_runs": len(group)})
    return pd.DataFrame(out)


#: The class profiles under which some classes are corrupted more than others.
CLASS_DEPENDENT_PROFILES = ("concentrated", "graded")
#: The per-class truths sigma can be compared with (see :class:`~csu_lib.corruption.CorruptionResult`).
TRUTHS = ("class_rate", "label_noise_rate")


def check_truth_settings(class_profile: str, truth: str) -> None:
    """The parameters of a sigma-vs-truth study: a class-dependent ``class_profile`` (otherwise
    every class has the same true rate) and a known ``truth``."""
    if class_profile not in CLASS_DEPENDENT_PROFILES:
        raise ConfigError(f"class_profile must be 'concentrated' or 'graded', got {class_profile!r}")
    if truth not in TRUTHS:
        raise ConfigError(f"truth must be 'class_rate' or 'label_noise_rate', got {truth!r}")


def truth_panels(records: Sequence[RunRecord], *, truth: str = "class_rate", n_boot: int = 1000,
                 by: Sequence[str] = DEFAULT_BY) -> list[dict]:
    """One panel per setting for the sigma-vs-truth figure: the final sigma and the true rate of
    every class of every run of the setting (``sigma``, ``truth``), and the setting's summary
    (``rho``, ``ci_lo``/``ci_hi`` the Student-t 95% interval of rho over runs, ``k``,
    ``precision_at_k`` (mean over runs), ``n_runs``, ``label``), from
    :func:`sigma_vs_truth_table` with ``per="setting"``."""
    settings = sigma_vs_truth_table(records, truth=truth, n_boot=n_boot, per="setting", by=by)
    table = sigma_table(records)
    panels = []
    for _, row in settings.iterrows():
        sel = np.ones(len(table), dtype=bool)
        for key in by:
            sel &= (table[key] == row[key]).to_numpy()
        panels.append({"label": row["label"], "rho": float(row["rho"]), "ci_lo": float(row["rho_lo"]),
                       "ci_hi": float(row["rho_hi"]), "k": None if pd.isna(row["k"]) else int(row["k"]),
                       "precision_at_k": float(row["precision_at_k"]), "n_runs": int(row["n_runs"]),
                       "level": 0.95, "sigma": table.loc[sel, "sigma"].to_numpy(),
                       "truth": table.loc[sel, truth].to_numpy()})
    return panels
