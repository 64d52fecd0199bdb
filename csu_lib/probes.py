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


# =============================================================================================
# Learned sigma per class: tables, grouped trajectories, densities, agreement with the truth.
#
# Conventions: the "final learned s" of a run is the last logged row of ``sigma.npy`` (the s the
# loss held when training stopped; ``model.pt`` stores the same loss state). sigma = exp(s/2),
# multiplier = exp(-s) = 1/sigma^2. Runs without a sigma log (BCE) have no learned sigma and are
# skipped by the sigma functions below (an error is raised only when nothing is left).

#: Columns that identify a run's setting in the tables below (dotted config names).
RUN_COLUMNS: tuple[str, ...] = ("corruption.kind", "corruption.ratio", "corruption.profile", "corruption.target",
                                "model.name", "loss.name", "train.seed")
#: Default grouping of the sigma figures: one group per corruption setting, backbone and loss.
DEFAULT_BY: tuple[str, ...] = ("corruption.kind", "corruption.ratio", "model.name", "loss.name")


def config_value(record: RunRecord, key: str):
    """A dotted config value of a run (``"corruption.kind"``, ``"train.seed"``, ...); ``"path"``
    gives the run directory and ``"condition"`` the label ``clean`` / ``san 50%``."""
    if key == "path":
        return str(record.path)
    if key == "condition":
        return _condition(record)
    obj = record.config
    for part in key.split("."):
        if not hasattr(obj, part):
            raise RunRecordError(f"run config has no field {key!r} (at {part!r})")
        obj = getattr(obj, part)
    return obj


def _condition(record: RunRecord) -> str:
    return record.config.corruption.label


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


def _has_sigma(record: RunRecord) -> bool:
    return record.sigma is not None and len(record.sigma) > 0


def final_s(record: RunRecord) -> np.ndarray:
    """The final learned ``s_c = log sigma_c^2`` (C,) of a CSU run (last logged step)."""
    if not _has_sigma(record):
        raise RunRecordError(f"{record.path} has no sigma log (loss {record.config.loss.name!r} learns no sigma)")
    return record.sigma[-1].astype(np.float64)


def class_truth(record: RunRecord) -> tuple[np.ndarray, np.ndarray] | None:
    """(class_rate, label_noise_rate) of a run, each (C,): from its corruption record; zeros for
    a clean run (nothing was corrupted); None when a corrupted run has no corruption record."""
    result = record.corruption()
    if result is not None:
        return np.asarray(result.class_rate, np.float64), np.asarray(result.label_noise_rate, np.float64)
    c = record.config.corruption
    if (c.kind == "none" or c.ratio == 0) and _has_sigma(record):
        n = record.sigma.shape[1]
        return np.zeros(n), np.zeros(n)
    return None


def sigma_table(records: Sequence[RunRecord], *, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (run, class) with the final learned sigma and the class's true corruption.

    Columns: the run columns :data:`RUN_COLUMNS`, ``condition`` (``clean`` / ``san 50%``),
    ``path``, ``class`` (index), ``class_name`` (when ``class_names`` is given), ``s``,
    ``sigma = exp(s/2)``, ``multiplier = exp(-s)``, ``class_rate`` and ``label_noise_rate``
    (see :class:`~csu_lib.corruption.CorruptionResult`; 0 for clean runs, NaN when a corrupted
    run has no corruption record) and ``corrupted`` (``class_rate > 0``, nullable boolean:
    <NA> when unknown).
    Runs without a sigma log (BCE) are skipped.
    """
    frames = []
    for record in records:
        if not _has_sigma(record):
            continue
        s = final_s(record)
        n = len(s)
        df = pd.DataFrame({"class": np.arange(n), "s": s, "sigma": np.exp(s / 2), "multiplier": np.exp(-s)})
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
        df.insert(len(RUN_COLUMNS), "condition", _condition(record))
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
                         n_points: int = 101) -> dict[str, pd.DataFrame]:
    """:func:`aggregate_trajectories` per group of runs (grouped by the config keys ``by``).

    Returns ``{label: DataFrame}`` (columns ``progress, mean, lo, hi, n_runs`` plus one constant
    column per key of ``by``), ready for :func:`csu_lib.plots.plot_multiplier_trajectories`.
    Runs without a sigma log are skipped.
    """
    out: dict[str, pd.DataFrame] = {}
    for label, group in group_records([r for r in records if _has_sigma(r)], by).items():
        df = aggregate_trajectories(group, n_points)
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
    (exp(-s) = 1/sigma^2), ``"sigma"`` (exp(s/2)) or ``"s"``. Returns (grid, (n_points, C)).
    """
    if quantity not in ("multiplier", "sigma", "s"):
        raise ValueError(f"quantity must be 'multiplier', 'sigma' or 's', got {quantity!r}")
    grid = np.linspace(0.0, 1.0, int(grid)) if np.isscalar(grid) else np.asarray(grid, dtype=np.float64)
    progress, _ = multiplier_trajectory(record)
    s = record.sigma.astype(np.float64)
    values = {"multiplier": np.exp(-s), "sigma": np.exp(s / 2), "s": s}[quantity]
    return grid, np.stack([np.interp(grid, progress, values[:, c]) for c in range(values.shape[1])], axis=1)


# ---------------------------------------------------------------------------------------------
# Densities


def sigma_kde(values, grid: np.ndarray | int | None = None, bw_method="scott") -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernel density estimate (``scipy.stats.gaussian_kde``) of ``values``.

    ``grid``: the evaluation points, or their number (default 256) spanning the data +- 3
    bandwidths. NaNs are dropped. Constant values (all equal, or a single value) have no
    bandwidth: the result is then a narrow Gaussian spike at the value (standard deviation
    ``1e-3 * max(|value|, 1)``, integrating to 1) and a ``RuntimeWarning`` says so.
    """
    import warnings

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
                    bw_method="scott") -> dict[str, pd.DataFrame]:
    """KDE of ``table[value]`` per group of :func:`sigma_table` rows (classes of all runs of a
    group pooled, as the CSU paper's Fig. 8 pools its runs).

    With ``split_corrupted`` each group is split into its corrupted classes (``class_rate > 0``)
    and its clean classes; the labels get `` (corrupted)`` / `` (clean)`` (groups without a
    corruption record keep one density). All densities share one grid (default: 256 points
    over the whole table's range +- 10%), so they can be compared. Returns ``{label:
    DataFrame(x, density, n)}``.
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
            x, d = sigma_kde(part[value].to_numpy(), grid, bw_method)
            out[name] = pd.DataFrame({"x": x, "density": d, "n": len(part)})
    return out


# ---------------------------------------------------------------------------------------------
# Learned sigma vs the true corruption


def _rowwise_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def sigma_vs_truth(sigma, true_rate, *, k: int | None = None, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """How well the learned sigma ranks the classes by their true corruption rate.

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
        boot = _rowwise_spearman(x[idx], y[idx])
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
        if not _has_sigma(record):
            continue
        t = class_truth(record)
        if t is None:
            continue
        kk = _auto_k(record) if k == "auto" else k
        res = sigma_vs_truth(np.exp(final_s(record) / 2), t[0] if truth == "class_rate" else t[1],
                             k=kk, n_boot=n_boot, seed=seed)
        row = {key: config_value(record, key) for key in RUN_COLUMNS}
        row.update(condition=_condition(record), path=str(record.path), truth=truth, **res)
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


# =============================================================================================
# Score plane (methods.md §8): the per-sample loss the training method applies, restricted to a
# class pair, as a function of that pair's two logits.


def _pair_loss_module(loss, s_pair):
    import torch

    from .config import LossConfig
    from .losses import BCELoss, CSULoss, build_loss

    if isinstance(loss, torch.nn.Module):
        name = "csu" if isinstance(loss, CSULoss) else "bce"
        cfg = LossConfig(name=name, csu_scale="half" if getattr(loss, "scale", 1.0) == 0.5 else "full",
                         csu_class_reduction=getattr(loss, "class_reduction", "sum"))
    elif isinstance(loss, LossConfig):
        cfg = loss
    else:
        cfg = LossConfig(name=str(loss))
    module = build_loss(cfg, 2).double()
    if isinstance(module, CSULoss):
        if s_pair is None:
            raise ValueError("the CSU score plane needs the learned s of the two classes (s_pair)")
        s = torch.as_tensor(np.asarray(s_pair, dtype=np.float64).reshape(2))
        with torch.no_grad():
            module.s.copy_(s)
    else:
        assert isinstance(module, BCELoss)
    return module


def score_plane(loss_name, s_pair, targets_pair, grid_a, grid_b) -> np.ndarray:
    """The per-sample training loss of a class pair over a grid of their logits (z_a, z_b).

    ``loss_name``: ``"bce"`` / ``"csu"``, a :class:`~csu_lib.config.LossConfig` (keeps
    ``csu_scale`` / ``csu_class_reduction``) or a loss module of :mod:`csu_lib.losses`.
    ``s_pair``: the learned (s_a, s_b) (ignored for BCE). ``targets_pair``: (y_a, y_b), e.g.
    the clean or the corrupted label of a clip. Returns ``surface[i, j]`` = the loss of one
    sample with logits (grid_a[i], grid_b[j]):

    - BCE: bce(z_a, y_a) + bce(z_b, y_b)
    - CSU: sum over the pair of exp(-s_c) * bce(z_c, y_c) + s_c / 2 (with ``csu_scale="half"``
      the factor is exp(-s_c)/2; with ``csu_class_reduction="mean"`` the pair's two terms are
      averaged, i.e. the training contribution times C/2).

    It is computed by the loss modules themselves (a 2-class :class:`~csu_lib.losses.CSULoss`
    holding s_pair, or :class:`~csu_lib.losses.BCELoss`), vectorised over the grid points with
    ``torch.vmap`` (every grid point is one batch of one sample). The other classes are left
    out: their terms do not depend on (z_a, z_b).
    """
    import torch

    module = _pair_loss_module(loss_name, s_pair)
    ga = torch.as_tensor(np.asarray(grid_a, dtype=np.float64))
    gb = torch.as_tensor(np.asarray(grid_b, dtype=np.float64))
    za, zb = torch.meshgrid(ga, gb, indexing="ij")
    z = torch.stack([za.reshape(-1), zb.reshape(-1)], dim=1)  # (A*B, 2)
    y = torch.as_tensor(np.asarray(targets_pair, dtype=np.float64).reshape(1, 2)).expand_as(z)
    with torch.no_grad():
        per_point = torch.vmap(lambda zi, yi: module(zi[None], yi[None]))(z, y)
    return per_point.reshape(len(ga), len(gb)).double().numpy()


def load_model(record: RunRecord, *, device="cpu"):
    """(model, loss_fn) of a run's selected weights (``model.pt``), in eval mode, on ``device``.

    The loss module holds the final learned s (CSU) or nothing (BCE).
    """
    import torch

    from .losses import build_loss
    from .models import build_model

    path = record.path / "model.pt"
    if not path.is_file():
        raise RunRecordError(f"{record.path} has no model.pt (run not complete?)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    n_classes = len(saved["class_names"])
    model = build_model(record.config.model, n_classes, record.config.frontend.n_mels)
    model.load_state_dict(saved["model"])
    loss_fn = build_loss(record.config.loss, n_classes)
    loss_fn.load_state_dict(saved["loss"])
    return model.to(device).eval(), loss_fn.to(device)


def train_logits(model, data, *, batch_size: int = 128, device="cpu") -> np.ndarray:
    """Raw logits (n_train, C) of every training clip of ``data`` (a
    :class:`~csu_lib.train.PreparedData`), in eval mode, float32 (no autocast). The model's
    training mode is restored afterwards."""
    import torch

    from .features import FeatureLoader

    device = torch.device(device)
    feats = FeatureLoader(data.store, device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            rows = np.asarray(data.train_idx)
            for start in range(0, len(rows), batch_size):
                out.append(model(feats(rows[start:start + batch_size])).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def clip_logits(source, data, class_pair: tuple[int, int], *, logits: np.ndarray | None = None,
                subset: str = "pair", batch_size: int = 128, device="cpu") -> pd.DataFrame:
    """The training clips' actual logits for a class pair, with their targets and flags.

    ``source``: a :class:`RunRecord` (its ``model.pt`` is loaded), a model, or None when
    ``logits`` (n_train, C) — e.g. from :func:`train_logits` — are given (preferred: compute
    them once per run). ``data``: the run's :class:`~csu_lib.train.PreparedData`.
    Columns: ``row`` (training row), ``index`` (manifest row), ``z_a``, ``z_b``, ``y_a``,
    ``y_b`` (the targets trained on), ``clean_a``, ``clean_b`` (the clean targets),
    ``corrupted`` (the pair's targets differ from the clean ones: what the plane's loss sees),
    ``clip_corrupted`` (the clip was corrupted anywhere). ``subset="pair"`` keeps the clips
    with a positive (clean or trained-on) in either class; ``"all"`` keeps every clip.
    """
    a, b = (int(c) for c in class_pair)
    if logits is None:
        if source is None:
            raise ValueError("clip_logits needs a record, a model or a logits matrix")
        model = load_model(source, device=device)[0] if isinstance(source, RunRecord) else source
        logits = train_logits(model, data, batch_size=batch_size, device=device)
    logits = np.asarray(logits)
    n_train = len(data.train_idx)
    if logits.shape[0] != n_train:
        raise ValueError(f"logits has {logits.shape[0]} rows, the training split {n_train}")
    trained = np.asarray(data.train_labels, dtype=np.float64)
    clean = (np.asarray(data.corruption.clean_labels, dtype=np.float64) if data.corruption is not None
             else trained)
    changed = (np.asarray(data.corruption.changed, dtype=bool) if data.corruption is not None
               else np.zeros(n_train, dtype=bool))
    df = pd.DataFrame({"row": np.arange(n_train), "index": np.asarray(data.train_idx),
                       "z_a": logits[:, a].astype(np.float64), "z_b": logits[:, b].astype(np.float64),
                       "y_a": trained[:, a], "y_b": trained[:, b], "clean_a": clean[:, a], "clean_b": clean[:, b]})
    df["corrupted"] = (np.abs(df["y_a"] - df["clean_a"]) > 1e-6) | (np.abs(df["y_b"] - df["clean_b"]) > 1e-6)
    df["clip_corrupted"] = changed
    if subset == "pair":
        keep = (df[["y_a", "y_b", "clean_a", "clean_b"]] > 0).any(axis=1)
        df = df[keep].reset_index(drop=True)
    elif subset != "all":
        raise ValueError(f"subset must be 'pair' or 'all', got {subset!r}")
    return df


def corruption_pairs(corruption) -> pd.DataFrame:
    """(source, target, count) of the corrupted clips of a
    :class:`~csu_lib.corruption.CorruptionResult`, most frequent first — candidates for the
    class pair of a score plane (target -1: SLN / missing, no second class involved)."""
    ch = np.asarray(corruption.changed, dtype=bool)
    df = pd.DataFrame({"source": np.asarray(corruption.source_class)[ch],
                       "target": np.asarray(corruption.target_class)[ch]})
    return (df.value_counts().rename("count").reset_index()
            .sort_values(["count", "source", "target"], ascending=[False, True, True], ignore_index=True))


def default_class_pair(data) -> tuple[int, int]:
    """The class pair a score plane follows for a corrupted run's :class:`PreparedData`:
    the most frequent (source, target) of the corruption (SAN/MAN), else -- SLN and missing
    positives touch one class -- the most frequent source class and its most similar other
    class (the manifest's similarity; the next class when there is none)."""
    if data.corruption is None:
        raise RunRecordError("the run has no corruption record: a score plane follows a corrupted class pair")
    pairs = corruption_pairs(data.corruption)
    with_target = pairs[pairs["target"] >= 0]
    if len(with_target):
        return int(with_target.iloc[0]["source"]), int(with_target.iloc[0]["target"])
    source = int(pairs.iloc[0]["source"])
    n = data.manifest.n_classes
    if data.manifest.similarity is not None:
        sim = np.array(data.manifest.similarity[source], dtype=float)
        sim[source] = -np.inf
        return source, int(np.argmax(sim))
    return source, (source + 1) % n


def typical_corrupted_targets(clips: pd.DataFrame) -> tuple[float, float]:
    """The trained-on targets (y_a, y_b) the score plane's loss is drawn for: the most common
    among the clips the pair's own corruption hit (clean positive in a, and b raised -- SAN
    gives (1, 1), MAN (0, 1)); else among the corrupted clips of class a (SLN (soft, 0),
    missing (0, 0)); else among all corrupted clips of the pair; else among all of them."""
    source = clips["clean_a"] >= 0.5
    raised_b = (clips["y_b"] - clips["clean_b"]) > 1e-6
    for mask in (source & raised_b, source & clips["corrupted"], clips["corrupted"]):
        if mask.any():
            rows = clips[mask]
            break
    else:
        rows = clips
    counts = rows.groupby(["y_a", "y_b"]).size().sort_values(ascending=False)
    y_a, y_b = counts.index[0]
    return float(y_a), float(y_b)


def pair_s(loss_fn, pair: tuple[int, int]) -> np.ndarray | None:
    """The learned (s_a, s_b) of a CSU loss module, None for losses without s."""
    if not hasattr(loss_fn, "s"):
        return None
    return loss_fn.s.detach().cpu().numpy()[list(pair)].astype(np.float64)
