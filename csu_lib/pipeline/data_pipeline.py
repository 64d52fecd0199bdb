"""What a run trains on: dataset -> corruption -> features (cached), as :class:`PreparedData`.

:func:`prepare_data` runs the three stages for one configuration; :func:`data_key` says which
configurations share the same prepared data (same dataset, front-end and corruption), and
:class:`DataCache` prepares each key once for a set of runs (the local sweep, the Ray driver and
vectorised groups all use it).

A run with ``data.holdout_fold = (k, K)`` (an out-of-fold teacher, ``MethodConfig.teacher_folds``)
trains on its training split without fold k: the split is corrupted as a whole first (the fold
teachers see exactly the student's noisy labels), then cut (:func:`training_folds`,
:func:`restrict_training`). It shares the prepared data of its full split (same :func:`data_key`).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch

from ..config import RunConfig
from ..core.errors import ConfigError
from ..corruption import CorruptionResult, corrupt_labels, load_freegen50_noisy, rates_from_labels
from ..data import Manifest, load_dataset, validate_audio
from ..features import FeatureStore, build_features
from ..records.layout import UNLABELLED


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device (``auto``: CUDA when PyTorch sees one, else the CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    return torch.device(name)


@dataclass
class PreparedData:
    """What a run trains on: the manifest, its features and the (possibly corrupted) labels."""

    manifest: Manifest
    store: FeatureStore
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    train_labels: np.ndarray  # (n_train, C) after corruption
    corruption: Optional[CorruptionResult]
    skipped: list = field(default_factory=list)  # clips dropped by data.skip_unreadable, with why
    #: clips whose label cell was blank (no positive), as the loader listed them
    unlabelled: list = field(default_factory=list)
    #: ``(k, K, seed)`` when the training split is cut to all folds but k (:func:`restrict_training`)
    holdout: Optional[tuple[int, int, int]] = None

    def split_rows(self, split: str) -> np.ndarray:
        """The manifest rows of ``split`` (train, val or test)."""
        return {"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[split]


def prepare_data(config: RunConfig, *, data_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = True,
                 manifest: Optional[Manifest] = None) -> PreparedData:
    """Dataset -> corruption -> features (cached). Validation and test labels stay clean."""
    manifest = manifest if manifest is not None else load_dataset(config.data, data_dir, progress=progress)
    skipped: list[dict] = []
    # a real dataset's files are checked before any feature is built: by default their headers
    # (missing, corrupt, empty and truncated files stop here, naming clip, file and row); with
    # skip_unreadable every sample, dropping the unusable clips (listed in the run record)
    if config.data.skip_unreadable or (config.data.dataset != "embedded" and "hdf5" not in manifest.extra):
        checked = validate_audio(manifest, skip_unreadable=config.data.skip_unreadable,
                                 deep=config.data.skip_unreadable)
        manifest, skipped = checked["manifest"], checked["skipped"]
    kept = set(manifest.clips["clip_id"].astype(str))
    unlabelled = [c for c in manifest.extra.get("unlabelled", []) if str(c["clip_id"]) in kept]
    clip_seconds = config.data.clip_seconds or (
        config.data.benchmark.clip_seconds if config.data.dataset == "embedded" else None)
    if clip_seconds is None:
        raise ConfigError(f"data.clip_seconds must be set for dataset {config.data.dataset!r}")
    store = build_features(manifest, config.frontend, clip_seconds, cache_dir=cache_dir, progress=progress)
    train_idx, val_idx, test_idx = (manifest.split_indices(s) for s in ("train", "val", "test"))
    clean = manifest.labels[train_idx]
    corruption = None
    train_labels = clean.copy()
    if config.corruption.published:
        if config.data.dataset != "freegen50":
            raise ConfigError("corruption.published applies to the freegen50 dataset only "
                              f"(data.dataset is {config.data.dataset!r})")
        if skipped:
            raise ConfigError("corruption.published cannot be combined with skipped clips "
                              "(the published files list every training clip)")
        corruption = load_freegen50_noisy(config.data.root, config.corruption.kind, config.corruption.ratio,
                                          clean_manifest=manifest)
        train_labels = corruption.labels
    elif config.corruption.kind != "none" and config.corruption.ratio > 0:
        corruption = corrupt_labels(clean, config.corruption, similarity=manifest.similarity,
                                    class_names=manifest.class_names)
        train_labels = corruption.labels
    if unlabelled:
        warnings.warn(f"{len(unlabelled)} clip(s) of {manifest.name!r} have a blank label cell and train with no "
                      f"positive (first: {unlabelled[0]}); the run record lists them in {UNLABELLED}", stacklevel=2)
    prepared = PreparedData(manifest, store, train_idx, val_idx, test_idx, train_labels, corruption, skipped,
                            unlabelled=unlabelled)
    return restrict_training(prepared, config)


#: The out-of-fold partition of seed s is drawn from numpy's ``default_rng([FOLD_STREAM, s])``:
#: a stream of its own, apart from the torch streams of :mod:`csu_lib.training.seeding` (batch order, transforms).
FOLD_STREAM = 0xF01D


def training_folds(seed: int, n_train: int, n_folds: int) -> np.ndarray:
    """The fold (0..``n_folds``-1) of each of the ``n_train`` clips of a training split, for the
    out-of-fold teachers: a permutation seeded by ``seed`` dealt round-robin, so every clip is in
    exactly one fold and fold sizes differ by at most one. Deterministic for (seed, n, K)."""
    if not (isinstance(n_folds, int) and 2 <= n_folds <= n_train):
        raise ConfigError(f"cannot cut a training split of {n_train} clips into {n_folds} folds "
                          "(method.teacher_folds / data.holdout_fold: K must lie in 2..n_train)")
    perm = np.random.default_rng([FOLD_STREAM, int(seed) % 2**64]).permutation(n_train)
    folds = np.empty(n_train, dtype=np.int64)
    folds[perm] = np.arange(n_train) % n_folds
    return folds


def _subset_corruption(result: Optional[CorruptionResult], keep: np.ndarray) -> Optional[CorruptionResult]:
    """What the corruption did to the kept clips (per-clip arrays cut, per-class rates recomputed)."""
    if result is None:
        return None
    cut = {name: getattr(result, name)[keep]
           for name in ("labels", "clean_labels", "changed", "kind_code", "source_class", "target_class")}
    class_rate, noise_rate = rates_from_labels(cut["clean_labels"], cut["labels"], cut["changed"],
                                               cut["source_class"])
    return replace(result, **cut, class_rate=class_rate, label_noise_rate=noise_rate)


def restrict_training(data: PreparedData, config: RunConfig) -> PreparedData:
    """``data`` as ``config`` trains on it: unchanged without ``data.holdout_fold``; with
    ``(k, K)``, the training split without fold k of :func:`training_folds` (seeded by
    ``train.seed``; labels and corruption cut alike). ``data`` is the full split prepared for the
    same :func:`data_key`, or already cut for ``config`` (then returned as it is)."""
    fold = config.data.holdout_fold
    want = None if fold is None else (int(fold[0]), int(fold[1]), int(config.train.seed))
    if data.holdout == want:
        return data
    if data.holdout is not None:
        needs = "its whole training split" if want is None else f"fold {want[0]} of {want[1]} (seed {want[2]}) cut"
        raise ConfigError(f"run {config.run_id} was given data cut to fold {data.holdout[0]} of {data.holdout[1]} "
                          f"(seed {data.holdout[2]}) but needs {needs}")
    k, n_folds, seed = want
    keep = training_folds(seed, len(data.train_idx), n_folds) != k
    return replace(data, train_idx=data.train_idx[keep], train_labels=data.train_labels[keep],
                   corruption=_subset_corruption(data.corruption, keep), holdout=want)


def full_split(config: RunConfig) -> RunConfig:
    """``config`` without ``data.holdout_fold`` (the run whose prepared data it shares)."""
    return config if config.data.holdout_fold is None else config.replace(
        data=config.data.replace(holdout_fold=None))


def data_key(config: RunConfig) -> str:
    """Runs with the same key train on the same :class:`PreparedData` (or on a part of its
    training split, ``data.holdout_fold``): the same dataset, front-end and corruption (the
    model, loss, method and training settings may differ)."""
    return full_split(config).data.hash() + config.frontend.hash() + config.corruption.hash()


class DataCache:
    """:func:`prepare_data` once per :func:`data_key` for a set of runs (features are read once)."""

    def __init__(self, *, data_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = True):
        self.data_dir, self.cache_dir, self.progress = data_dir, cache_dir, progress
        self._prepared: dict[str, PreparedData] = {}

    def __call__(self, config: RunConfig) -> PreparedData:
        key = data_key(config)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(full_split(config), data_dir=self.data_dir, cache_dir=self.cache_dir,
                                               progress=self.progress)
        return restrict_training(self._prepared[key], config)
