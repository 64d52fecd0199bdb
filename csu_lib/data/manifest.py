"""The one manifest type every dataset loader produces.

A :class:`Manifest` is a table of clips (``clip_id``, ``path``, ``split`` and optional
``source``/``family``/``offset``/``duration`` columns) plus a label matrix of shape
``(n_clips, n_classes)`` holding multi-hot or soft targets, and the class names.
Paths are relative to ``root`` unless absolute.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from ..core.errors import ManifestError
from ..core.io import atomic_path, atomic_save_npy, atomic_write_json, read_json

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("clip_id", "path", "split")


@dataclass
class Manifest:
    clips: pd.DataFrame
    labels: np.ndarray
    class_names: list[str]
    root: Path
    name: str = "dataset"
    #: Optional (n_classes, n_classes) class-similarity matrix (1 on the diagonal).
    similarity: Optional[np.ndarray] = None
    #: Optional family (group) name per class.
    class_families: Optional[list[str]] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.clips = self.clips.reset_index(drop=True)
        self.labels = np.asarray(self.labels, dtype=np.float32)
        missing = [c for c in REQUIRED_COLUMNS if c not in self.clips.columns]
        if missing:
            raise ManifestError(f"manifest {self.name!r} lacks column(s) {missing}")
        if self.labels.shape != (len(self.clips), len(self.class_names)):
            raise ManifestError(
                f"manifest {self.name!r}: label matrix has shape {self.labels.shape}, expected "
                f"({len(self.clips)}, {len(self.class_names)})"
            )
        dup = self.clips["clip_id"][self.clips["clip_id"].duplicated()]
        if len(dup):
            raise ManifestError(
                f"manifest {self.name!r}: duplicated clip id(s) {sorted(set(dup))[:5]}"
            )
        if len(set(self.class_names)) != len(self.class_names):
            raise ManifestError(f"manifest {self.name!r}: duplicated class names")
        bad = sorted(set(self.clips["split"]) - set(SPLITS))
        if bad:
            raise ManifestError(f"manifest {self.name!r}: unknown split name(s) {bad}; use {SPLITS}")
        if not np.isfinite(self.labels).all() or self.labels.min(initial=0) < 0 or self.labels.max(initial=0) > 1:
            raise ManifestError(f"manifest {self.name!r}: labels must lie in [0, 1]")

    # -- access ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clips)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices of one split; an empty split is an error naming it."""
        if split not in SPLITS:
            raise ManifestError(f"unknown split {split!r}; use one of {SPLITS}")
        idx = np.flatnonzero(self.clips["split"].to_numpy() == split)
        if len(idx) == 0:
            raise ManifestError(f"manifest {self.name!r}: split {split!r} is empty")
        return idx

    def audio_path(self, i: int) -> Path:
        p = Path(self.clips.at[i, "path"])
        return p if p.is_absolute() else self.root / p

    def check_files(self) -> None:
        """Raise naming the first clips whose audio file does not exist."""
        missing = [
            (self.clips.at[i, "clip_id"], str(self.audio_path(i)))
            for i in range(len(self)) if not self.audio_path(i).is_file()
        ]
        if missing:
            head = "; ".join(f"clip {c!r} -> {p}" for c, p in missing[:5])
            raise ManifestError(
                f"manifest {self.name!r} references {len(missing)} missing audio file(s): {head}"
            )

    def content_key(self) -> str:
        """Hash of what determines features: clip ids, paths, offsets and file size/mtime.

        A file that is replaced (other size or modification time) changes the key, so the
        feature cache is rebuilt instead of serving stale features.
        """
        h = hashlib.sha256()
        cols = [c for c in ("clip_id", "path", "offset", "duration") if c in self.clips.columns]
        packed = "hdf5" in self.extra  # the waveforms live in one HDF5 file ("<file>#<row>")
        for i, row in enumerate(self.clips[cols].itertuples(index=False)):
            st = os.stat(str(self.audio_path(i)).rpartition("#")[0] if packed else self.audio_path(i))
            h.update(repr((tuple(row), st.st_size, st.st_mtime_ns)).encode())
        return h.hexdigest()[:16]

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``manifest.csv`` (with positive label names), ``labels.npy`` and ``classes.json``."""
        directory = Path(directory)
        table = self.clips.copy()
        table["labels"] = [";".join(self.class_names[j] for j in np.flatnonzero(row > 0.5))
                           for row in self.labels]
        with atomic_path(directory / "manifest.csv") as tmp:
            table.to_csv(tmp, index=False)
        atomic_save_npy(directory / "labels.npy", self.labels)
        atomic_write_json(directory / "classes.json", {
            "name": self.name,
            "class_names": self.class_names,
            "class_families": self.class_families,
            "similarity": None if self.similarity is None else self.similarity.tolist(),
            "extra": self.extra,
        })

    @classmethod
    def load(cls, directory: str | os.PathLike, root: str | os.PathLike | None = None) -> "Manifest":
        directory = Path(directory)
        for fname in ("manifest.csv", "labels.npy", "classes.json"):
            if not (directory / fname).is_file():
                raise ManifestError(f"{directory / fname} is missing; not a saved manifest")
        meta = read_json(directory / "classes.json")
        clips = pd.read_csv(directory / "manifest.csv", keep_default_na=False,
                            dtype={"clip_id": str, "path": str, "split": str})
        clips = clips.drop(columns=["labels"])
        sim = meta.get("similarity")
        return cls(clips=clips, labels=np.load(directory / "labels.npy"), class_names=meta["class_names"],
                   root=Path(root) if root is not None else directory, name=meta["name"],
                   similarity=None if sim is None else np.asarray(sim, dtype=np.float32),
                   class_families=meta.get("class_families"), extra=meta.get("extra") or {})

    def subset(self, rows: Iterable[int]) -> "Manifest":
        rows = np.asarray(list(rows), dtype=int)
        return Manifest(clips=self.clips.iloc[rows].reset_index(drop=True), labels=self.labels[rows],
                        class_names=list(self.class_names), root=self.root, name=self.name,
                        similarity=self.similarity, class_families=self.class_families,
                        extra=dict(self.extra))


def labels_from_names(names_per_clip: list[list[str]], class_names: list[str], *,
                      where: str = "manifest", clip_ids: Optional[list[str]] = None) -> np.ndarray:
    """Multi-hot matrix from label names; a name outside the vocabulary is an error naming it."""
    index = {n: j for j, n in enumerate(class_names)}
    y = np.zeros((len(names_per_clip), len(class_names)), dtype=np.float32)
    for i, names in enumerate(names_per_clip):
        for n in names:
            if n not in index:
                clip = clip_ids[i] if clip_ids is not None else f"row {i}"
                raise ManifestError(f"{where}: clip {clip!r} has label {n!r}, which is not in the vocabulary")
            y[i, index[n]] = 1.0
    return y
