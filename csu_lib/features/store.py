"""Building the on-disk feature cache: log-mel features computed once per (dataset content,
front-end config, clip length) and stored under ``<cache_dir>/features/<key>/``; every run reads
the same store (:mod:`csu_lib.features.shards` reads it).

Every shard holds ``shard_clips`` clips (the last one fewer), chosen so that a shard is about
:data:`SHARD_BYTES`; a 2M-clip AudioSet store is a few thousand files, never one giant one.
A store is written shard by shard (:class:`StoreWriter`, never holding the dataset in RAM) into a
temporary folder that is renamed into place when complete, so an interrupted build is redone,
never half-read.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import FrontendConfig
from ..core.errors import CsuError
from ..core.io import atomic_write_json, publish_dir
from ..core.paths import default_cache_dir
from ..data.audio import load_audio
from ..data.manifest import Manifest
from .frontend import LogMel
from .shards import DTYPE, FeatureStore, open_store

#: Target size of one shard file; a shard holds ``max(1, SHARD_BYTES // bytes_per_clip)`` clips.
SHARD_BYTES = 128 * 1024**2


def default_shard_clips(n_mels: int, n_frames: int) -> int:
    """Clips per shard for about :data:`SHARD_BYTES` per shard file."""
    return max(1, SHARD_BYTES // (n_mels * n_frames * DTYPE.itemsize))


class StoreWriter:
    """Write a store row block by row block, then publish it atomically.

    ``write(block)`` appends the next rows (float array (k, n_mels, n_frames), cast to float16);
    a shard file is opened when its first row arrives and closed when full, so memory holds at
    most the block being written. :meth:`commit` (or leaving a ``with`` block normally) checks
    that all ``n_clips`` rows were written, writes ``meta.json`` and renames the temporary folder
    to ``path``; an exception in the ``with`` block (or :meth:`abort`) deletes the temporary
    folder, so nothing is published.
    """

    def __init__(self, path: str | os.PathLike, *, n_mels: int, n_frames: int, frontend: FrontendConfig,
                 clip_ids: list[str], meta: Optional[dict] = None, shard_clips: Optional[int] = None):
        self.path = Path(path)
        self.n_clips = len(clip_ids)
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        self.shard_clips = int(shard_clips or default_shard_clips(self.n_mels, self.n_frames))
        if self.shard_clips <= 0:
            raise ValueError(f"shard_clips must be positive, got {shard_clips}")
        if self.n_clips == 0:
            raise CsuError(f"cannot build an empty feature store at {self.path}")
        self.frontend, self.clip_ids, self.meta = frontend, list(clip_ids), dict(meta or {})
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.written = 0
        self.shards: list[dict] = []
        self._fh = None
        self._left_in_shard = 0
        self._done = False

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.commit()

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block)
        if block.ndim != 3 or block.shape[1:] != (self.n_mels, self.n_frames):
            raise ValueError(f"a block must have shape (k, {self.n_mels}, {self.n_frames}), got {block.shape}")
        if self.written + len(block) > self.n_clips:
            raise ValueError(f"store {self.path.name} holds {self.n_clips} clips; got "
                             f"{self.written + len(block)}")
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            half = np.ascontiguousarray(block, dtype=DTYPE)
        if not np.isfinite(half).all():
            raise CsuError(f"non-finite feature values (or beyond the float16 range) in rows "
                           f"{self.written}..{self.written + len(block) - 1} of store {self.path.name}")
        pos = 0
        while pos < len(half):
            if self._left_in_shard == 0:
                self._open_shard()
            k = min(self._left_in_shard, len(half) - pos)
            self._fh.write(half[pos:pos + k].tobytes())
            pos += k
            self.written += k
            self._left_in_shard -= k
            if self._left_in_shard == 0:
                self._close_shard()

    def _open_shard(self) -> None:
        rows = min(self.shard_clips, self.n_clips - self.written)
        name = f"shard-{len(self.shards):05d}.npy"
        self._fh = open(self.tmp / name, "wb")
        np.lib.format.write_array_header_1_0(self._fh, {"descr": DTYPE.str, "fortran_order": False,
                                                        "shape": (rows, self.n_mels, self.n_frames)})
        self.shards.append({"file": name, "rows": rows, "offset": self._fh.tell()})
        self._left_in_shard = rows

    def _close_shard(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None

    def commit(self) -> FeatureStore:
        if self.written != self.n_clips:
            self.abort()
            raise CsuError(f"store {self.path.name}: {self.written} of {self.n_clips} clips written; "
                           "nothing published")
        atomic_write_json(self.tmp / "meta.json", {
            **self.meta, "frontend": self.frontend.to_dict(), "n_frames": self.n_frames,
            "clip_ids": self.clip_ids, "shape": [self.n_clips, self.n_mels, self.n_frames],
            "dtype": "float16", "shard_clips": self.shard_clips, "shards": self.shards, "layout": 2})
        publish_dir(self.tmp, self.path, "meta.json")
        self._done = True
        return open_store(self.path)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True


def feature_key(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float) -> str:
    """The store's folder name: a hash of the dataset content, the front-end and the clip length.
    A ``top_db`` front-end's key also names the per-clip dB floor (stores built when the floor
    was taken over a whole block of clips are not reused)."""
    blob = f"{manifest.content_key()}|{frontend.hash(16)}|{clip_seconds:.6f}"
    if frontend.top_db is not None:
        blob += "|top_db-per-clip"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_features(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, *,
                   cache_dir: Optional[str | os.PathLike] = None, batch_size: int = 64,
                   progress: bool = True, shard_clips: Optional[int] = None) -> FeatureStore:
    """Compute (or reuse) the log-mel features of every clip of ``manifest``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = feature_key(manifest, frontend, clip_seconds)
    final = cache_dir / "features" / key
    if not (final / "meta.json").is_file():
        _build(manifest, frontend, clip_seconds, final, batch_size, progress, shard_clips)
    return open_store(final)


def _build(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, final: Path,
           batch_size: int, progress: bool, shard_clips: Optional[int] = None) -> None:
    logmel = LogMel(frontend)
    n_samples = int(round(clip_seconds * frontend.sample_rate))
    n_frames = logmel.n_frames(n_samples)
    has_offset = "offset" in manifest.clips.columns
    writer = StoreWriter(final, n_mels=frontend.n_mels, n_frames=n_frames, frontend=frontend,
                         clip_ids=manifest.clips["clip_id"].tolist(), shard_clips=shard_clips,
                         meta={"clip_seconds": clip_seconds, "manifest": manifest.name})
    with writer, torch.inference_mode(), tqdm(total=len(manifest), disable=not progress, unit="clip",
                                               desc=f"log-mel features ({frontend.name})") as bar:
        for start in range(0, len(manifest), batch_size):
            rows = range(start, min(start + batch_size, len(manifest)))
            wav = np.stack([
                load_audio(manifest.audio_path(i), frontend.sample_rate, n_samples,
                           offset_seconds=float(manifest.clips.at[i, "offset"]) if has_offset else 0.0,
                           clip_id=str(manifest.clips.at[i, "clip_id"]))
                for i in rows])
            writer.write(logmel(torch.from_numpy(wav)).numpy())
            bar.update(len(rows))
