"""Probes on trained runs. Sigma trajectories: the effective gradient multiplier 1/sigma_c^2.

A CSU run logs ``s_c = log sigma_c^2`` after every optimiser step (``sigma.npy``). The
multiplier is ``exp(-s_c)``; normalised training progress of step t (0-based) of T logged
steps is ``(t + 1) / T``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .errors import RunRecordError
from .records import RunRecord


def multiplier_trajectory(record: RunRecord) -> tuple[np.ndarray, np.ndarray]:
    """(progress (T,), multiplier (T, C)) of one CSU run."""
    if record.sigma is None or len(record.sigma) == 0:
        raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
    steps = record.sigma.shape[0]
    return np.arange(1, steps + 1) / steps, np.exp(-record.sigma.astype(np.float64))


def median_multiplier_trajectory(record: RunRecord, grid: np.ndarray) -> np.ndarray:
    """The class-wise median of 1/sigma^2, interpolated onto ``grid`` of normalised progress."""
    progress, mult = multiplier_trajectory(record)
    return np.interp(grid, progress, np.median(mult, axis=1))


def mean_ci(values: np.ndarray, axis: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a Student-t confidence interval over ``axis`` (the band is 0-width for one run)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def aggregate_trajectories(records: Sequence[RunRecord], n_points: int = 101) -> pd.DataFrame:
    """Mean and 95% CI over runs of the class-wise median multiplier, on a common progress grid.

    Returns columns ``progress``, ``mean``, ``lo``, ``hi``, ``n_runs``.
    """
    if not records:
        raise RunRecordError("no runs to aggregate")
    grid = np.linspace(0.0, 1.0, n_points)
    curves = np.stack([median_multiplier_trajectory(r, grid) for r in records])
    mean, lo, hi = mean_ci(curves)
    return pd.DataFrame({"progress": grid, "mean": mean, "lo": lo, "hi": hi, "n_runs": len(records)})
