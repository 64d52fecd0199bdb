"""What a run trains on: dataset -> corruption -> features (cached), as :class:`PreparedData`.

:func:`prepare_data` runs the three stages for one configuration; :func:`data_key` says which
configurations share the same prepared data (same dataset, front-end and corruption), and
:class:`DataCache` prepares each key once for a set of runs (the local sweep, the Ray driver and
vectorised groups all use it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..config import RunConfig
from ..core.errors import ConfigError
from ..corruption import CorruptionResult, corrupt_labels, load_freegen50_noisy
from ..data import Manifest, load_dataset, validate_audio
from ..features import FeatureStore, build_features


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

    def split_rows(self, split: str) -> np.ndarray:
        """The manifest rows of ``split`` (train, val or test)."""
        return {"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[split]


def prepare_data(config: RunConfig, *, data_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = True,
                 manifest: Optional[Manifest] = None) -> PreparedData:
    """Dataset -> corruption -> features (cached). Validation and test labels stay clean."""
    manifest = manifest if manifest is not None else load_dataset(config.data, data_dir, progress=progress)
    skipped: list[dict] = []
    if config.data.skip_unreadable:
        checked = validate_audio(manifest, skip_unreadable=True)
        manifest, skipped = checked["manifest"], checked["skipped"]
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
    return PreparedData(manifest, store, train_idx, val_idx, test_idx, train_labels, corruption, skipped)


def data_key(config: RunConfig) -> str:
    """Runs with the same key train on the same :class:`PreparedData`: the same dataset,
    front-end and corruption (the model, loss, method and training settings may differ)."""
    return config.data.hash() + config.frontend.hash() + config.corruption.hash()


class DataCache:
    """:func:`prepare_data` once per :func:`data_key` for a set of runs (features are read once)."""

    def __init__(self, *, data_dir: Optional[str | os.PathLike] = None,
                 cache_dir: Optional[str | os.PathLike] = None, progress: bool = True):
        self.data_dir, self.cache_dir, self.progress = data_dir, cache_dir, progress
        self._prepared: dict[str, PreparedData] = {}

    def __call__(self, config: RunConfig) -> PreparedData:
        key = data_key(config)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(config, data_dir=self.data_dir, cache_dir=self.cache_dir,
                                               progress=self.progress)
        return self._prepared[key]
