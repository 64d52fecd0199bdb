"""Dataset registry: a :class:`~csu_lib.config.DataConfig` in, a :class:`~csu_lib.manifest.Manifest` out.

``embedded`` is the procedural benchmark (:mod:`csu_lib.benchmark`); the real datasets are read
from a folder the user points at (:mod:`csu_lib.loaders`); nothing is ever downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import ConfigError
from .manifest import Manifest

DATASETS: tuple[str, ...] = ("embedded", "esc50", "freegen50", "fsd50k", "audioset", "csv")


def load_dataset(data, data_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Manifest:
    """Load (or, for ``embedded``, build once) the dataset a :class:`DataConfig` names."""
    from . import benchmark

    if data.dataset == "embedded":
        return benchmark.build_benchmark(data.benchmark, data_dir or benchmark.default_data_dir(),
                                         progress=progress)
    from . import loaders

    root = Path(data.root)
    readers: dict[str, Callable[[Path], Manifest]] = {
        "esc50": loaders.load_esc50,
        "freegen50": loaders.load_freegen50,
        "fsd50k": loaders.load_fsd50k,
        "audioset": loaders.load_audioset,
        "csv": loaders.load_csv_manifest,
    }
    try:
        return readers[data.dataset](root, **data.loader_options)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise ConfigError(f"data.loader_options {sorted(data.loader_options)} do not fit the {data.dataset} "
                          f"loader ({exc})") from None
