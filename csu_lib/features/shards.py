"""Reading a built feature store: float16 shards read with positional reads.

Store layout (``meta.json`` is the completeness marker and lists the shards)::

    <key>/meta.json                  frontend, clip_seconds, n_frames, clip_ids, shape, shards
    <key>/shard-00000.npy            float16 (rows_0, n_mels, n_frames), a plain .npy file
    <key>/shard-00001.npy            ...

Clip ``i`` of the manifest is row ``i`` of the concatenated shards. Stores of the earlier
single-file layout (one ``features.npy``) still open.

Reading (:class:`ShardedFeatures`) uses positional reads (``os.preadv``) straight into the
caller's buffer, not ``np.memmap``: pages touched through a memory map count in the process's
resident set (file-backed pages), so an epoch over a mapped store would show RSS growing with
the store until the kernel reclaims them; with positional reads the file pages live in the
kernel's page cache only, and the process holds just the batch it asked for. Reads of
consecutive rows are merged into one call.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch

from ..config import FrontendConfig
from ..core.errors import CsuError
from ..core.io import read_json

#: The on-disk dtype of every store (little-endian float16).
DTYPE = np.dtype("<f2")
_MAX_OPEN_SHARDS = 64


def _pread_into(fd: int, buf: memoryview, offset: int, path: Path) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (looping over short reads)."""
    while len(buf):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [buf], offset)
        else:  # pragma: no cover - platforms without preadv
            data = os.pread(fd, len(buf), offset)
            n = len(data)
            buf[:n] = data
        if n <= 0:
            raise CsuError(f"feature shard {path} is truncated (read past its end at byte {offset}); "
                           f"delete {path.parent} to rebuild the store")
        buf, offset = buf[n:], offset + n


class ShardedFeatures:
    """Read-only float16 array-like of shape (n_clips, n_mels, n_frames) over the shard files.

    Supports ``len``, ``shape``/``dtype``/``nbytes``, ``np.asarray(...)`` (reads everything) and
    indexing by an int, a slice, a list/array of rows or a boolean mask (optionally followed by
    more indices, as in ``feats[rows, :, :10]``). :meth:`read` gathers rows into a given buffer.
    Thread-safe (one lock per store); picklable (open files are not carried over).
    """

    def __init__(self, paths: list[Path], rows: list[int], offsets: list[int], n_mels: int, n_frames: int):
        if not (len(paths) == len(rows) == len(offsets)) or not paths:
            raise CsuError("a feature store needs at least one shard")
        self.paths = [Path(p) for p in paths]
        self.shard_rows = np.asarray(rows, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.shard_rows)[:-1]]).astype(np.int64)
        self.shape = (int(self.shard_rows.sum()), int(n_mels), int(n_frames))
        self.dtype = DTYPE
        self.clip_bytes = int(n_mels) * int(n_frames) * DTYPE.itemsize
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.RLock()

    # -- array-like ---------------------------------------------------------------------------
    ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.clip_bytes

    @property
    def n_shards(self) -> int:
        return len(self.paths)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = self.read(np.array([int(key)]))[0]
        elif isinstance(key, slice):
            out = self.read(np.arange(*key.indices(len(self))))
        else:
            rows = np.asarray(key)
            if rows.dtype == bool:
                if rows.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {rows.shape} for {len(self)} clips")
                rows = np.flatnonzero(rows)
            out = self.read(rows)
            if rest:
                return out[(slice(None),) + rest]
            return out
        return out[rest] if rest else out

    def __repr__(self) -> str:
        return f"ShardedFeatures(shape={self.shape}, dtype=float16, shards={self.n_shards})"

    # -- reading --------------------------------------------------------------------------------
    def read(self, rows: Iterable[int] | np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float16 array (len(rows), n_mels, n_frames) of the given rows (any order, repeats
        allowed), read into ``out`` if given (a C-contiguous float16 array of that shape)."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise IndexError(f"rows must be a 1-d array of integers, got shape {rows.shape} dtype {rows.dtype}")
        rows = rows.astype(np.int64)
        n = len(self)
        rows = np.where(rows < 0, rows + n, rows)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = rows[(rows < 0) | (rows >= n)][0]
            raise IndexError(f"row {bad} out of range for a feature store of {n} clips")
        shape = (len(rows),) + self.shape[1:]
        if out is None:
            out = np.empty(shape, dtype=DTYPE)
        elif out.shape != shape or out.dtype != DTYPE or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float16 array of shape {shape}, "
                             f"got {out.dtype} {out.shape}")
        if not len(rows):
            return out
        flat = out.reshape(len(rows), -1).view(np.uint8)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        local = rows - self.starts[shard]
        # runs of consecutive rows within one shard are read with one call
        cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(shard) != 0)) + 1
        bounds = np.concatenate([[0], cut, [len(rows)]])
        with self._lock:
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                s = int(shard[a])
                _pread_into(self._fd(s), memoryview(flat[a:b].reshape(-1)),
                            int(self.offsets[s] + local[a] * self.clip_bytes), self.paths[s])
        return out

    def _fd(self, s: int) -> int:
        fd = self._fds.get(s)
        if fd is not None:
            self._fds.move_to_end(s)
            return fd
        path = self.paths[s]
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            raise CsuError(f"cannot open feature shard {path} ({exc}); delete {path.parent} to rebuild "
                           "the store") from exc
        expected = int(self.offsets[s] + self.shard_rows[s] * self.clip_bytes)
        size = os.fstat(fd).st_size
        if size != expected:
            os.close(fd)
            raise CsuError(f"feature shard {path} has {size} bytes, expected {expected}; delete "
                           f"{path.parent} to rebuild the store")
        self._fds[s] = fd
        while len(self._fds) > _MAX_OPEN_SHARDS:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fds"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


@dataclass
class FeatureStore:
    """Read-only view of a built store: ``features[i]`` is clip ``i`` of the manifest."""

    path: Path
    features: ShardedFeatures  # array-like (N, n_mels, frames), float16
    frontend: FrontendConfig
    clip_ids: list[str]

    def __len__(self) -> int:
        return len(self.features)

    @property
    def nbytes(self) -> int:
        return self.features.nbytes

    def read(self, rows: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """float16 array (len(rows), n_mels, frames), see :meth:`ShardedFeatures.read`."""
        return self.features.read(rows, out)

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """float32 tensor (len(rows), n_mels, frames) for the given manifest rows."""
        return torch.from_numpy(self.features.read(rows).astype(np.float32))


def _npy_data_offset(path: Path) -> tuple[int, tuple, np.dtype]:
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise CsuError(f"feature file {path} has .npy format version {version}; delete {path.parent} to rebuild")
        shape, fortran, dtype = read[version](fh)
        if fortran:
            raise CsuError(f"feature file {path} is Fortran-ordered; delete {path.parent} to rebuild")
        return fh.tell(), shape, dtype


def open_store(path: str | os.PathLike) -> FeatureStore:
    """Open a built store (``meta.json`` must exist). Reads no feature data."""
    path = Path(path)
    meta = read_json(path / "meta.json")
    if "shards" in meta:
        n_mels, n_frames = int(meta["shape"][1]), int(meta["shape"][2])
        shards = meta["shards"]
        feats = ShardedFeatures([path / s["file"] for s in shards], [int(s["rows"]) for s in shards],
                                [int(s["offset"]) for s in shards], n_mels, n_frames)
        if feats.shape != tuple(meta["shape"]):
            raise CsuError(f"{path / 'meta.json'}: shards hold {feats.shape[0]} clips, shape says {meta['shape']}")
    else:  # the earlier layout: one features.npy
        npy = path / "features.npy"
        offset, shape, dtype = _npy_data_offset(npy)
        if np.dtype(dtype) != DTYPE or len(shape) != 3:
            raise CsuError(f"{npy} holds {dtype} {shape}, expected float16 (clips, mels, frames)")
        feats = ShardedFeatures([npy], [shape[0]], [offset], shape[1], shape[2])
    clip_ids = list(meta["clip_ids"])
    if len(clip_ids) != len(feats):
        raise CsuError(f"{path / 'meta.json'} lists {len(clip_ids)} clip ids for {len(feats)} feature rows")
    return FeatureStore(path=path, features=feats, frontend=FrontendConfig.from_dict(meta["frontend"]),
                        clip_ids=clip_ids)
