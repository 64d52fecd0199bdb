"""Landscape probes of trained runs, cached on disk: a 1-D curve, a 2-D surface and the geometry
statistics of one run's loss (:func:`probe_run`), with probe sizes per profile
(:func:`probe_settings`). The cache lives under a folder of the caller's (``<runs>/landscapes``),
keyed by the run and a hash of the settings, written atomically (the JSON last).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core.errors import ConfigError, unknown_name
from ..core.io import atomic_path, atomic_write_json, read_json
from ..losses import BCELoss
from ..pipeline import load_trained, prepare_data
from .geometry import geometry_summary
from .landscape import filter_normalised_direction, fixed_batches, loss_surface_1d, loss_surface_2d


def _landscape_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.parent / f"{path.name}.npz", path.parent / f"{path.name}.json"


def save_landscape(path: str | os.PathLike, arrays: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<path>.npz`` (the arrays) and then ``<path>.json`` (the settings and the array
    names; written last, so it marks a complete result), each atomically. Returns both paths."""
    npz, js = _landscape_paths(path)
    arrays = {str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
              for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; save numeric arrays only")
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    atomic_write_json(js, {"format": 1, "arrays": sorted(arrays), "settings": dict(settings)})
    return npz, js


def load_landscape(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, settings) written by :func:`save_landscape`."""
    npz, js = _landscape_paths(path)
    if not js.is_file() or not npz.is_file():
        raise FileNotFoundError(f"no complete landscape at {npz.with_suffix('')} (need {npz.name} and {js.name})")
    meta = read_json(js)
    with np.load(npz, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if sorted(arrays) != meta["arrays"]:
        raise ValueError(f"{npz} holds arrays {sorted(arrays)}, {js.name} lists {meta['arrays']}")
    return arrays, meta["settings"]


def probe_run(record, settings: Mapping[str, Any], cache_root: str | os.PathLike, *,
              data_dir=None, cache_dir=None) -> dict[str, np.ndarray]:
    """1-D curve, 2-D surface and geometry statistics of one trained run, cached on disk.

    ``settings``: ``n_clips``, ``span``, ``n_points_1d``, ``n_points_2d``, ``power_iters``,
    ``trace_samples``, ``epsilon``, ``radius``, ``n_directions``, ``seed`` and ``eval_loss``:
    ``"own"`` probes the run's training loss (CSU with its learned s -- scaled by the learned
    multipliers 1/sigma^2, so its curvature is larger by about that factor), ``"bce"`` probes
    every run under plain BCE, which compares the geometry of the weights themselves. The result is saved
    under ``cache_root`` keyed by the run and a stable hash of the settings; a second call loads
    it instead of recomputing. Returns arrays ``alphas``, ``curve_1d``, ``grid_2d``,
    ``surface_2d`` and one scalar array per statistic of :func:`geometry_summary`.
    """
    settings = dict(settings)
    settings.setdefault("eval_loss", "own")
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_root) / f"{Path(record.path).name}-{key}"
    if path.with_suffix(".json").is_file():
        return load_landscape(path)[0]
    data = prepare_data(record.config, data_dir=data_dir, cache_dir=cache_dir, progress=False)
    model, loss_fn = load_trained(record)
    if settings["eval_loss"] == "bce":  # compare the weights' geometry under one common loss
        loss_fn = BCELoss()
    batches = fixed_batches(data, n_clips=int(settings["n_clips"]), seed=int(settings["seed"]))
    gen = torch.Generator().manual_seed(int(settings["seed"]))
    d1 = filter_normalised_direction(model, gen)
    d2 = filter_normalised_direction(model, gen)
    alphas = np.linspace(-settings["span"], settings["span"], int(settings["n_points_1d"]))
    grid = np.linspace(-settings["span"], settings["span"], int(settings["n_points_2d"]))
    geo = geometry_summary(model, loss_fn, batches, power_iters=int(settings["power_iters"]),
                           trace_samples=int(settings["trace_samples"]), epsilon=float(settings["epsilon"]),
                           radius=float(settings["radius"]), n_directions=int(settings["n_directions"]),
                           seed=int(settings["seed"]))
    arrays = {"alphas": alphas, "curve_1d": loss_surface_1d(model, loss_fn, batches, [d1], alphas),
              "grid_2d": grid, "surface_2d": loss_surface_2d(model, loss_fn, batches, [d1, d2], grid, grid),
              **{k: np.array(float(geo[k])) for k in GEOMETRY_KEYS}}
    save_landscape(path, arrays, {**settings, "run": str(record.path), "geometry_settings": geo["settings"]})
    return arrays


#: The scalar statistics :func:`probe_run` stores (those of :func:`geometry_summary`).
GEOMETRY_KEYS = ("loss", "top_eigenvalue", "hessian_trace", "epsilon_sharpness", "mean_loss_rise")


#: Probe sizes per profile (smoke: seconds, for the tests; quick: the CPU main job).
PROBE_SETTINGS: dict[str, dict[str, Any]] = {
    # smoke: the test suite's size (every figure on every real layout), seconds per run
    "smoke": dict(n_clips=16, span=1.0, n_points_1d=5, n_points_2d=3, power_iters=3, trace_samples=3,
                  epsilon=1e-3, radius=0.1, n_directions=2),
    "quick": dict(n_clips=64, span=1.0, n_points_1d=15, n_points_2d=9, power_iters=6, trace_samples=6,
                  epsilon=1e-3, radius=0.1, n_directions=3),
    "paper": dict(n_clips=1024, span=1.0, n_points_1d=51, n_points_2d=31, power_iters=100, trace_samples=100,
                  epsilon=1e-3, radius=0.1, n_directions=20),
}


def probe_settings(profile: str, *, seed: int = 0, eval_loss: str = "own", **overrides) -> dict[str, Any]:
    """The :func:`probe_run` settings of a profile; ``None`` overrides are ignored, an unknown
    key or a non-positive size is a :class:`~csu_lib.core.errors.ConfigError` naming it."""
    if profile not in PROBE_SETTINGS:
        raise unknown_name("profile", profile, PROBE_SETTINGS)
    if eval_loss not in ("own", "bce"):
        raise ConfigError(f"eval_loss must be 'own' or 'bce', got {eval_loss!r}")
    settings = dict(PROBE_SETTINGS[profile], seed=int(seed), eval_loss=eval_loss)
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in settings:
            raise ConfigError(f"unknown landscape setting {key!r}; valid: {sorted(settings)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive number, got {value!r}")
        settings[key] = type(settings[key])(value)
    return settings
