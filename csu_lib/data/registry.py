"""The dataset registry: a :class:`~csu_lib.config.DataConfig` in, a
:class:`~csu_lib.data.manifest.Manifest` out.

Each dataset module registers its reader under the name ``DataConfig.dataset`` takes:
``embedded`` (the procedural benchmark, :mod:`csu_lib.data.benchmark`) with
:func:`register_dataset`, the real datasets read from a folder the user points at
(``esc50``, ``freegen50``, ``fsd50k``, ``audioset``, ``csv``) with :func:`register_folder_loader`.
Nothing is ever downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config import DataConfig
from ..core import registry
from ..core.errors import ConfigError
from .manifest import Manifest

#: A registered reader: (data config, data folder or None, progress) -> manifest.
Reader = Callable[[DataConfig, Optional[Path], bool], Manifest]


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator: register ``reader(data, data_dir, progress)`` as dataset ``name``."""
    return registry.register("dataset", name)


def register_folder_loader(name: str) -> Callable[[Callable[..., Manifest]], Callable[..., Manifest]]:
    """Decorator for a loader ``load(root, **options)`` of a folder layout: registers it as
    dataset ``name``, called with ``data.root`` and ``data.loader_options``; returns it unchanged."""
    def add(load: Callable[..., Manifest]) -> Callable[..., Manifest]:
        def read(data: DataConfig, data_dir: Optional[Path], progress: bool) -> Manifest:
            try:
                return load(Path(data.root), **data.loader_options)
            except TypeError as exc:
                if "argument" not in str(exc):
                    raise
                raise ConfigError(f"data.loader_options {sorted(data.loader_options)} do not fit the "
                                  f"{data.dataset} loader ({exc})") from None
        read.__doc__ = load.__doc__
        registry.register("dataset", name)(read)
        return load
    return add


def load_dataset(data: DataConfig, data_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Manifest:
    """Load (or, for ``embedded``, build once) the dataset a :class:`DataConfig` names."""
    reader: Reader = registry.get("dataset", data.dataset)
    manifest = reader(data, None if data_dir is None else Path(data_dir), progress)
    if data.similarity_file is not None:
        manifest.similarity = read_similarity(Path(data.similarity_file), manifest.n_classes)
    return manifest


def read_similarity(path: Path, n_classes: int) -> np.ndarray:
    """A (C, C) class-similarity ``.npy`` (``DataConfig.similarity_file``), checked."""
    if not path.is_file():
        raise ConfigError(f"data.similarity_file {path} not found")
    try:
        sim = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"data.similarity_file {path} is not a .npy array ({exc})") from None
    if sim.shape != (n_classes, n_classes) or not np.isfinite(sim).all() or (sim < 0).any():
        raise ConfigError(f"data.similarity_file {path}: expected a finite non-negative ({n_classes}, {n_classes}) "
                          f"array for the dataset's {n_classes} classes, got shape {sim.shape}")
    return sim
