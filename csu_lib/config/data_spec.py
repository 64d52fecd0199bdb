"""One data spec for everything: which dataset a study trains on, given the same way to every
figure notebook (parameter ``data``), to a study file (``data:``), to ``csu figures --data`` and
to ``csu data check``.

A spec is a mapping (or the path of a YAML file holding one, at its top level or under
``data:``) with the keys of :data:`DATA_SPEC_KEYS`::

    dataset: freegen50            # embedded | esc50 | freegen50 | fsd50k | audioset | csv
    root: /data/ESC-FreeGen50     # the folder (csv: the CSV file); relative to the YAML file,
                                  # else to the repository root
    clip_seconds: 5               # every clip cropped or padded to it (required to train)
    loader_options: {}            # keyword arguments of the dataset's loader
    skip_unreadable: false        # drop unreadable clips (listed in each run record) instead of stopping
    frontend: null                # a front-end preset (config.FRONTEND_PRESETS); null: the default
    published_noise: false        # freegen50: every corrupted condition reads the published label files
    similarity_file: null         # a (C, C) .npy class similarity for target="similar" (relative as root)

``None`` (the default everywhere) is the embedded benchmark at the profile's size; a profile then
only sets training sizes (epochs, seeds, backbones, ratios).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core.errors import ConfigError
from ..core.io import read_yaml_mapping
from ..core.paths import resolve_path
from .data import FRONTEND_PRESETS, DataConfig

DATA_SPEC_KEYS = ("dataset", "root", "clip_seconds", "loader_options", "skip_unreadable", "frontend",
                  "published_noise", "similarity_file")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: the run's :class:`DataConfig` (without a benchmark), the front-end
    preset name (None: the default front-end) and whether corrupted conditions are the
    published noisy labels."""

    data: DataConfig
    frontend: Optional[str] = None
    published_noise: bool = False

    @property
    def name(self) -> str:
        """How figures name the data: the dataset and the root's last part."""
        return self.data.dataset if not self.data.root else f"{self.data.dataset} ({Path(self.data.root).name})"

    def to_dict(self) -> dict:
        return {"dataset": self.data.dataset, "root": self.data.root, "clip_seconds": self.data.clip_seconds,
                "loader_options": dict(self.data.loader_options), "skip_unreadable": self.data.skip_unreadable,
                "frontend": self.frontend, "published_noise": self.published_noise,
                "similarity_file": self.data.similarity_file}


def parse_data_spec(spec: Any, *, where: str = "data") -> Optional[DataSpec]:
    """``spec`` (None, a mapping, a YAML file path or a :class:`DataSpec`) as a DataSpec, or None
    for the embedded benchmark at the profile's size. A bad key or value is a
    :class:`ConfigError` naming it and ``where``."""
    if spec is None or isinstance(spec, DataSpec):
        return spec
    base = None
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser()
        loaded = read_yaml_mapping(path, "data spec file", (*DATA_SPEC_KEYS, "data"))
        spec = loaded.get("data", loaded)
        where, base = str(path), path.parent
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a data spec is a mapping of {', '.join(DATA_SPEC_KEYS)}, got {spec!r}")
    unknown = sorted(set(spec) - set(DATA_SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown data key(s) {unknown}; valid keys: {', '.join(DATA_SPEC_KEYS)}")
    if "dataset" not in spec:
        raise ConfigError(f"{where}: 'dataset' is required (embedded, esc50, freegen50, fsd50k, audioset or csv)")
    if spec["dataset"] == "embedded":
        if set(spec) - {"dataset"}:
            raise ConfigError(f"{where}: the embedded benchmark takes no other data key (its size is the "
                              f"profile's), got {sorted(set(spec) - {'dataset'})}")
        return None
    frontend = spec.get("frontend")
    if frontend is not None and frontend not in FRONTEND_PRESETS:
        raise ConfigError(f"{where}: frontend {frontend!r} is not a preset; use one of {sorted(FRONTEND_PRESETS)}")
    published = spec.get("published_noise", False)
    if not isinstance(published, bool) or (published and spec["dataset"] != "freegen50"):
        raise ConfigError(f"{where}: published_noise must be true or false, and true only for freegen50 "
                          f"(got {published!r} for {spec['dataset']!r})")
    try:
        data = DataConfig(dataset=spec["dataset"], root=_path(spec.get("root"), base),
                          clip_seconds=spec.get("clip_seconds"), loader_options=dict(spec.get("loader_options") or {}),
                          skip_unreadable=bool(spec.get("skip_unreadable", False)),
                          similarity_file=_path(spec.get("similarity_file"), base))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return DataSpec(data, frontend, published)


def _path(value: Any, base: Optional[Path]) -> Optional[str]:
    """A path of the spec: relative to the YAML file holding it, else to the repository root (as
    every path parameter of the notebooks)."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve() if base is not None else resolve_path(path))
