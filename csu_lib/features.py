"""Front-end (torchaudio log-mel) and the on-disk feature cache.

Features are computed once per (dataset content, front-end config, clip length) and stored
under ``<cache_dir>/features/<key>/``; every run reads the same store.

Store layout (``meta.json`` is the completeness marker and lists the shards)::

    <key>/meta.json                  frontend, clip_seconds, n_frames, clip_ids, shape, shards
    <key>/shard-00000.npy            float16 (rows_0, n_mels, n_frames), a plain .npy file
    <key>/shard-00001.npy            ...

Clip ``i`` of the manifest is row ``i`` of the concatenated shards. Every shard holds
``shard_clips`` clips (the last one fewer), chosen so that a shard is about
:data:`SHARD_BYTES`; a 2M-clip AudioSet store is a few thousand files, never one giant one.
A store is written shard by shard (:class:`StoreWriter`, never holding the dataset in RAM) into a
temporary folder that is renamed into place when complete, so an interrupted build is redone,
never half-read. Stores of the earlier single-file layout (one ``features.npy``) still open.

Reading (:class:`ShardedFeatures`) uses positional reads (``os.preadv``) straight into the
caller's buffer, not ``np.memmap``: pages touched through a memory map count in the process's
resident set (file-backed pages), so an epoch over a mapped store would show RSS growing with
the store until the kernel reclaims them; with positional reads the file pages live in the
kernel's page cache only, and the process holds just the batch it asked for. Reads of
consecutive rows are merged into one call.

What training holds in memory (:func:`hold_in_memory`, ``train.features_in_memory``):

- ``"auto"`` (default): a store of at most :data:`IN_MEMORY_BYTES` (2 GiB) that also fits in a
  quarter of the free memory of the training device is copied once into a float16 tensor on that
  device (GPU memory when training on CUDA); larger stores are streamed.
- ``"always"``: held in memory; refused (ConfigError) if larger than 80% of the free memory.
- ``"never"``: always streamed.

Streamed batches on CUDA go through pinned (page-locked) host buffers and are copied with
``non_blocking=True``; :meth:`FeatureLoader.prefetch` starts a background thread that reads the
announced next batches into those buffers while the GPU works. On the CPU there is no prefetch
thread (it would compete with the model for the same cores). Neither changes the numbers or the
order of the batches: a batch is always exactly the rows asked for, converted float16 -> float32
(exact).
"""
from __future__ import annotations

import os
import queue
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn
import torchaudio.transforms as T
from tqdm.auto import tqdm

from .audio import load_audio
from .config import FrontendConfig
from .errors import ConfigError, CsuError
from .io import atomic_write_json, publish_dir, read_json
from .manifest import Manifest

#: Target size of one shard file; a shard holds ``max(1, SHARD_BYTES // bytes_per_clip)`` clips.
SHARD_BYTES = 128 * 1024**2
#: Stores up to this size may be held in memory by ``train.features_in_memory="auto"``.
IN_MEMORY_BYTES = 2 * 1024**3
IN_MEMORY_MODES = ("auto", "always", "never")
_DTYPE = np.dtype("<f2")
_MAX_OPEN_SHARDS = 64


class LogMel(nn.Module):
    """waveform (B, samples) -> log-mel in dB (B, n_mels, frames)."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.mel = T.MelSpectrogram(sample_rate=config.sample_rate, n_fft=config.n_fft,
                                    win_length=config.win_length, hop_length=config.hop_length,
                                    f_min=config.f_min, f_max=config.f_max, n_mels=config.n_mels,
                                    power=2.0, center=True, pad_mode="reflect")
        self.to_db = T.AmplitudeToDB(stype="power", top_db=config.top_db)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(wav))

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.config.hop_length + 1


def default_cache_dir() -> Path:
    """``$CSU_CACHE_DIR`` or ``~/.cache/csu-lab``."""
    return Path(os.environ.get("CSU_CACHE_DIR", Path.home() / ".cache" / "csu-lab"))


# ---------------------------------------------------------------------------------------------
# Reading


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
        self.dtype = _DTYPE
        self.clip_bytes = int(n_mels) * int(n_frames) * _DTYPE.itemsize
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
            out = np.empty(shape, dtype=_DTYPE)
        elif out.shape != shape or out.dtype != _DTYPE or not out.flags.c_contiguous:
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
        if np.dtype(dtype) != _DTYPE or len(shape) != 3:
            raise CsuError(f"{npy} holds {dtype} {shape}, expected float16 (clips, mels, frames)")
        feats = ShardedFeatures([npy], [shape[0]], [offset], shape[1], shape[2])
    clip_ids = list(meta["clip_ids"])
    if len(clip_ids) != len(feats):
        raise CsuError(f"{path / 'meta.json'} lists {len(clip_ids)} clip ids for {len(feats)} feature rows")
    return FeatureStore(path=path, features=feats, frontend=FrontendConfig.from_dict(meta["frontend"]),
                        clip_ids=clip_ids)


# ---------------------------------------------------------------------------------------------
# Writing


def default_shard_clips(n_mels: int, n_frames: int) -> int:
    """Clips per shard for about :data:`SHARD_BYTES` per shard file."""
    return max(1, SHARD_BYTES // (n_mels * n_frames * _DTYPE.itemsize))


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
            half = np.ascontiguousarray(block, dtype=_DTYPE)
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
        np.lib.format.write_array_header_1_0(self._fh, {"descr": _DTYPE.str, "fortran_order": False,
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
    import hashlib

    blob = f"{manifest.content_key()}|{frontend.hash(16)}|{clip_seconds:.6f}"
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


# ---------------------------------------------------------------------------------------------
# Loading batches for training and evaluation


def available_memory(device: torch.device) -> Optional[int]:
    """Free memory of ``device`` in bytes: CUDA free memory, or MemAvailable of /proc/meminfo on
    the CPU (None where unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def hold_in_memory(nbytes: int, device: torch.device, mode: str = "auto",
                   available: Optional[int] = None) -> tuple[bool, str]:
    """Whether a store of ``nbytes`` (float16) is held in memory on ``device``, and why.

    ``"never"``: no. ``"always"``: yes, unless it exceeds 80% of the free memory (ConfigError).
    ``"auto"``: yes iff ``nbytes <= min(IN_MEMORY_BYTES, free memory / 4)``; the free memory
    is the GPU's when training on CUDA (the copy lives there), the host's otherwise.
    """
    if mode not in IN_MEMORY_MODES:
        raise ConfigError(f"train.features_in_memory must be one of {IN_MEMORY_MODES}, got {mode!r}")
    free = available_memory(device) if available is None else available
    where = "GPU" if device.type == "cuda" else "host"
    size = f"{nbytes / 1024**2:.0f} MiB"
    if mode == "never":
        return False, f"streamed ({size}; train.features_in_memory='never')"
    if mode == "always":
        if free is not None and nbytes > 0.8 * free:
            raise ConfigError(f"train.features_in_memory='always' but the feature store ({size}) exceeds 80% "
                              f"of the free {where} memory ({free / 1024**2:.0f} MiB); use 'auto' or 'never'")
        return True, f"held in {where} memory ({size}; train.features_in_memory='always')"
    limit = IN_MEMORY_BYTES if free is None else min(IN_MEMORY_BYTES, free // 4)
    if nbytes <= limit:
        return True, f"held in {where} memory ({size} <= {limit / 1024**2:.0f} MiB)"
    return False, f"streamed ({size} > {limit / 1024**2:.0f} MiB in-memory limit)"


class _Slot:
    """One staging buffer (pinned on CUDA) and the event of the last copy out of it."""

    def __init__(self) -> None:
        self.host: Optional[torch.Tensor] = None
        self.event = None

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()
            self.event = None

    def view(self, n: int, shape: tuple, pin: bool) -> torch.Tensor:
        """A float16 host tensor (n, *shape) in this slot (grown if needed; call wait() first)."""
        if self.host is None or self.host.shape[0] < n:
            self.host = torch.empty((n,) + shape, dtype=torch.float16, pin_memory=pin)
        return self.host[:n]


_END = object()


class FeatureLoader:
    """``loader(rows)`` -> float32 tensor (len(rows), n_mels, frames) on ``device``.

    Small stores are copied once into a float16 tensor on ``device`` (see
    :func:`hold_in_memory`); larger ones are streamed from the shards with positional reads.
    Streamed batches on CUDA are staged in pinned host buffers and copied with
    ``non_blocking=True``. :meth:`prefetch` announces the row batches of the next calls; a
    background thread then reads them ahead (by default only for streamed stores on CUDA). A
    call for other rows than announced drops the announcement and is read directly, so the
    result never depends on prefetching.
    """

    def __init__(self, store: FeatureStore, device: torch.device | str, in_memory: str = "auto", *,
                 prefetch: Optional[bool] = None, depth: int = 3):
        self.store = store
        self.device = torch.device(device)
        self.in_memory, self.reason = hold_in_memory(int(store.features.nbytes), self.device, in_memory)
        # any other store-like object (``features`` array + ``batch(rows)``) is read through batch()
        self._sharded = isinstance(store.features, ShardedFeatures)
        self.pinned = self.device.type == "cuda" and not self.in_memory and self._sharded
        self.prefetch_enabled = ((self.pinned if prefetch is None else bool(prefetch))
                                 and not self.in_memory and self._sharded)
        self._row_shape = tuple(store.features.shape[1:])
        self._slots = [_Slot() for _ in range(max(2, depth))]
        self._next = 0
        self._thread: Optional[threading.Thread] = None
        self._ready: Optional[queue.Queue] = None
        self._free: Optional[queue.Queue] = None
        self._stop = threading.Event()
        self.n_prefetched = 0  # batches served from the prefetch thread (for tests and benches)
        self.tensor = self._load_all() if self.in_memory else None

    # -- in memory ----------------------------------------------------------------------------
    def _load_all(self) -> torch.Tensor:
        """The whole store as a float16 tensor on the device, read in chunks of ~64 MiB (no
        second host copy; on CUDA through one pinned chunk buffer)."""
        feats = self.store.features
        if not self._sharded:
            return torch.from_numpy(np.array(feats)).to(self.device)
        chunk = max(1, (64 * 1024**2) // feats.clip_bytes)
        if self.device.type != "cuda":
            out = torch.empty(feats.shape, dtype=torch.float16)
            arr = out.numpy()
            for a in range(0, len(feats), chunk):
                feats.read(np.arange(a, min(a + chunk, len(feats))), out=arr[a:a + chunk])
            return out
        out = torch.empty(feats.shape, dtype=torch.float16, device=self.device)
        slot = _Slot()
        for a in range(0, len(feats), chunk):
            b = min(a + chunk, len(feats))
            slot.wait()
            host = slot.view(b - a, self._row_shape, True)
            feats.read(np.arange(a, b), out=host.numpy())
            out[a:b].copy_(host, non_blocking=True)
            slot.event = torch.cuda.Event()
            slot.event.record()
        slot.wait()
        return out

    # -- streamed -----------------------------------------------------------------------------
    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(rows, device=self.device)].float()
        rows = np.asarray(rows)
        if not self._sharded:
            return self.store.batch(rows).to(self.device, non_blocking=True)
        if self._ready is not None:
            item = self._ready.get()
            if isinstance(item, BaseException):
                self._stop_prefetch()
                raise item
            if item is not _END and np.array_equal(item[0], rows):
                self.n_prefetched += 1
                return self._deliver(item[1], len(rows), release=self._free)
            self._stop_prefetch()
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        slot.wait()
        self.store.features.read(rows, out=slot.view(len(rows), self._row_shape, self.pinned).numpy())
        return self._deliver(slot, len(rows))

    def _deliver(self, slot: _Slot, n: int, release: Optional[queue.Queue] = None) -> torch.Tensor:
        host = slot.host[:n]
        if self.device.type == "cuda":
            x = host.to(self.device, non_blocking=self.pinned)
            slot.event = torch.cuda.Event()
            slot.event.record()
            x = x.float()
        else:
            x = host.float()  # a new tensor: the slot can be reused at once
        if release is not None:
            release.put(slot)
        return x

    def prefetch(self, batches: Iterable[np.ndarray]) -> None:
        """Announce the row batches the next calls will ask for, in order. Does nothing for a
        store held in memory or when prefetching is off (the CPU by default)."""
        self._stop_prefetch()
        if not self.prefetch_enabled:
            return
        plan = [np.array(b, copy=True) for b in batches]
        self._ready, self._free = queue.Queue(), queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._stop.clear()
        self._thread = threading.Thread(target=self._worker, args=(plan, self._ready, self._free),
                                        name="csu-feature-prefetch", daemon=True)
        self._thread.start()

    def _worker(self, plan: list[np.ndarray], ready: queue.Queue, free: queue.Queue) -> None:
        try:
            for rows in plan:
                slot = free.get()
                if slot is None or self._stop.is_set():
                    return
                slot.wait()
                self.store.features.read(rows, out=slot.view(len(rows), self._row_shape, self.pinned).numpy())
                ready.put((rows, slot))
            ready.put(_END)
        except BaseException as exc:  # handed to the consumer
            ready.put(exc)

    def _stop_prefetch(self) -> None:
        """Stop the thread and hand every staging buffer back to the direct path."""
        if self._thread is None:
            return
        self._stop.set()
        self._free.put(None)  # wakes a worker waiting for a buffer
        self._thread.join()
        self._thread, self._ready, self._free = None, None, None
        self._next = 0

    def close(self) -> None:
        self._stop_prefetch()
        self.tensor = None

    def __del__(self) -> None:
        try:
            self._stop_prefetch()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
