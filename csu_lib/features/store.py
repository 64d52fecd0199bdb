"""Building the on-disk feature cache: log-mel features computed once per (dataset content,
front-end config, clip length) and stored under ``<cache_dir>/features/<key>/``; every run reads
the same store (:mod:`csu_lib.features.shards` reads it).

Every shard holds ``shard_clips`` clips (the last one fewer), chosen so that a shard is about
:data:`SHARD_BYTES`; a 2M-clip AudioSet store is a few thousand files, never one giant one.
A store is written shard by shard (:class:`StoreWriter`, never holding the dataset in RAM) into a
temporary folder that is renamed into place when complete, so a store is never half-read; a
resumable writer (what :func:`csu_lib.features.build.build_features` uses) records its progress
there, and an interrupted build goes on from the last checkpoint.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import FrontendConfig
from ..core.errors import CsuError
from ..core.io import atomic_write_json, publish_dir, read_json
from ..data.manifest import Manifest
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
                 clip_ids: list[str], meta: Optional[dict] = None, shard_clips: Optional[int] = None,
                 resumable: bool = False):
        self.path = Path(path)
        self.n_clips = len(clip_ids)
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        self.shard_clips = int(shard_clips or default_shard_clips(self.n_mels, self.n_frames))
        if self.shard_clips <= 0:
            raise ValueError(f"shard_clips must be positive, got {shard_clips}")
        if self.n_clips == 0:
            raise CsuError(f"cannot build an empty feature store at {self.path}")
        self.frontend, self.clip_ids, self.meta = frontend, list(clip_ids), dict(meta or {})
        self.resumable = resumable
        self.tmp = self.path.parent / (f".{self.path.name}.partial" if resumable else
                                       f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        self.written = 0
        self.shards: list[dict] = []
        self._fh = None
        self._left_in_shard = 0
        self._done = False
        if not (resumable and self._resume()):
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)

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

    # -- resuming ----------------------------------------------------------------------------
    def _identity(self) -> dict:
        ids = hashlib.sha256("\n".join(self.clip_ids).encode()).hexdigest()
        return {"clip_ids": ids, "n_mels": self.n_mels, "n_frames": self.n_frames, "shard_clips": self.shard_clips,
                "frontend": self.frontend.to_dict()}

    def checkpoint(self) -> None:
        """Make the rows written so far durable and record them (``progress.json``), so that a
        resumable writer created after an interruption goes on from here."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        atomic_write_json(self.tmp / "progress.json", {**self._identity(), "written": self.written,
                                                       "shards": self.shards})

    def _resume(self) -> bool:
        """Take the progress of an interrupted build of the same store; False when there is none
        (or it belongs to other clips or settings)."""
        try:
            progress = read_json(self.tmp / "progress.json")
        except (OSError, ValueError):
            return False
        if {k: progress.get(k) for k in self._identity()} != self._identity():
            return False
        self.written, self.shards = int(progress["written"]), list(progress["shards"])
        if self.shards:
            last = self.shards[-1]
            done_before = sum(sh["rows"] for sh in self.shards[:-1])
            in_last = self.written - done_before
            path = self.tmp / last["file"]
            self._fh = open(path, "r+b")
            self._fh.truncate(last["offset"] + in_last * self.n_mels * self.n_frames * DTYPE.itemsize)
            self._fh.seek(0, os.SEEK_END)
            self._left_in_shard = last["rows"] - in_last
            if self._left_in_shard == 0:
                self._close_shard()
        return True

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
        (self.tmp / "progress.json").unlink(missing_ok=True)
        atomic_write_json(self.tmp / "meta.json", {
            **self.meta, "frontend": self.frontend.to_dict(), "n_frames": self.n_frames,
            "clip_ids": self.clip_ids, "shape": [self.n_clips, self.n_mels, self.n_frames],
            "dtype": "float16", "shard_clips": self.shard_clips, "shards": self.shards, "layout": 2})
        publish_dir(self.tmp, self.path, "meta.json")
        self._done = True
        return open_store(self.path)

    def abort(self) -> None:
        """Stop writing; a resumable writer keeps its checkpointed progress for the next build,
        any other one deletes its temporary folder."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if not self.resumable:
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
