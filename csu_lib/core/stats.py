"""Statistics shared by the analyses, the result tables and the figures.

- :func:`mean_ci`: a mean with its Student-t confidence interval over runs (seeds);
- :func:`rank_agreement`: Spearman rho between a score and a truth, with a bootstrap interval
  over the items and precision@k of the top-k scores (:func:`top_k`);
- :func:`rowwise_spearman`: Spearman rho of many row pairs at once (the bootstrap's engine).
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values: np.ndarray, axis: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and a Student-t confidence interval over ``axis`` (the band is 0-width for one run)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(axis=axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(a: dict, b: dict, level: float = 0.95) -> tuple[list, float, float, float]:
    """``b - a`` over the keys (seeds) both mappings have: (the shared keys sorted, mean, and the
    Student-t ``level`` interval of the differences); NaN for no shared key."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return keys, float("nan"), float("nan"), float("nan")
    mean, lo, hi = mean_ci(np.array([float(b[k]) - float(a[k]) for k in keys], dtype=np.float64), level=level)
    return keys, float(mean), float(lo), float(hi)


def rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rho of every row pair (average ranks for ties, as scipy); NaN for a constant row."""
    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (ra * rb).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values (ties broken by the lower index), sorted."""
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    return np.sort(order[:k])


def rank_agreement(sigma, true_rate, *, k: int | None = None, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """How well a per-class score (``sigma``) ranks the classes by a per-class truth
    (``true_rate``); :func:`csu_lib.analysis.sigma_stats.sigma_vs_truth` applies it to the learned sigma.

    - ``rho``, ``p_value``: ``scipy.stats.spearmanr(sigma, true_rate)`` over the classes.
    - ``ci_lo``, ``ci_hi``: percentile bootstrap ``level`` interval of rho, resampling the
      classes with replacement ``n_boot`` times (``numpy.random.default_rng(seed)``; resamples
      in which either variable is constant have no rho and are dropped, ``n_boot_valid`` counts
      the rest).
    - with ``k``: ``precision_at_k`` = |top-k sigma ∩ the k classes with the largest true rate|
      / k (under the concentrated profile the latter are the k corrupted classes); ties are
      broken by the lower class index and ``truth_tied_at_k`` flags an ambiguous truth set
      (the k-th and (k+1)-th true rates equal).
    NaN pairs are dropped first. Any monotone transform of sigma (s, 1/sigma^2 reversed) gives
    the same rho up to sign.
    """
    x = np.asarray(sigma, dtype=np.float64).ravel()
    y = np.asarray(true_rate, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"sigma has {x.size} values, true_rate {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = x.size
    out: dict = {"n": int(n), "n_boot": int(n_boot), "seed": int(seed), "level": float(level), "k": k}
    if n >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        res = stats.spearmanr(x, y)
        out["rho"], out["p_value"] = float(res.statistic), float(res.pvalue)
    else:
        out["rho"], out["p_value"] = float("nan"), float("nan")
    out["ci_lo"] = out["ci_hi"] = float("nan")
    out["n_boot_valid"] = 0
    if n >= 2 and n_boot > 0 and np.isfinite(out["rho"]):
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        boot = rowwise_spearman(x[idx], y[idx])
        boot = boot[np.isfinite(boot)]
        out["n_boot_valid"] = int(boot.size)
        if boot.size:
            alpha = (1 - level) / 2
            out["ci_lo"], out["ci_hi"] = (float(q) for q in np.percentile(boot, [100 * alpha, 100 * (1 - alpha)]))
    if k is not None:
        k = int(k)
        if not 1 <= k <= n:
            raise ValueError(f"k must lie in 1..{n}, got {k}")
        hit = np.intersect1d(top_k(x, k), top_k(y, k))
        out["precision_at_k"] = len(hit) / k
        ys = np.sort(y)[::-1]
        out["truth_tied_at_k"] = bool(k < n and ys[k - 1] == ys[k])
    return out
