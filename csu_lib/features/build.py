"""Computing a feature store: decode, resample and log-mel every clip of a manifest, in blocks,
by parallel worker processes, resumable (:func:`build_features`).

Blocks of ``batch_size`` clips are computed in order (by ``workers`` processes, or in this
process) and written by :class:`~csu_lib.features.store.StoreWriter` in a ``.partial`` folder
that records its progress: an interrupted build (a crash, Ctrl-C, a killed job) resumes at the
first block not yet written. A file lock makes concurrent builders of the same store wait for
the first one. The features are the same whatever the number of workers (each block is computed
alone, single-threaded). A PANNs HDF5 pack (``manifest.extra["hdf5"]``) feeds the store directly
from its waveform rows.
"""
from __future__ import annotations

import fcntl
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import FrontendConfig
from ..core.paths import default_cache_dir
from ..data.audio import load_audio, resample
from ..data.audioset import read_hdf5_rows
from ..data.manifest import Manifest
from .frontend import LogMel
from .shards import FeatureStore, open_store
from .store import StoreWriter, feature_key

#: Environment variable: worker processes of a feature-store build (default: the CPU count, at
#: most :data:`MAX_WORKERS`, when the audio to read is at least :data:`PARALLEL_MIN_BYTES`; else
#: one: starting a worker (a fresh Python importing PyTorch) costs seconds, measured in
#: ``bench/feature_workers.py``: 2 workers 0.75x as fast as 1 on 2,000 clips of 2 s at 32 kHz,
#: 256 MB, and 1.30x on 2,000 clips of 5 s at 44.1 kHz, 882 MB, on 2 cores).
WORKERS_ENV = "CSU_FEATURE_WORKERS"
MAX_WORKERS = 8
PARALLEL_MIN_BYTES = 512 * 1024**2
PARALLEL_MIN_BLOCKS = 8


def build_features(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, *,
                   cache_dir: Optional[str | os.PathLike] = None, batch_size: int = 64,
                   progress: bool = True, shard_clips: Optional[int] = None,
                   workers: Optional[int] = None) -> FeatureStore:
    """Compute (or reuse, or finish) the log-mel features of every clip of ``manifest``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / "features" / feature_key(manifest, frontend, clip_seconds)
    if not (final / "meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(final):
            if not (final / "meta.json").is_file():  # another process may have built it meanwhile
                _build(manifest, frontend, clip_seconds, final, batch_size, progress, shard_clips,
                       resolve_workers(workers, len(manifest), batch_size, _audio_bytes(manifest)))
    return open_store(final)


def resolve_workers(workers: Optional[int], n_clips: int, batch_size: int, audio_bytes: Optional[int] = None) -> int:
    """The worker processes of a build: ``workers``, else ``$CSU_FEATURE_WORKERS``, else the CPU
    count (at most :data:`MAX_WORKERS`) when the audio is at least :data:`PARALLEL_MIN_BYTES`
    (``audio_bytes`` None: not checked); always 1 for a store of fewer than
    :data:`PARALLEL_MIN_BLOCKS` blocks."""
    if workers is None:
        env = os.environ.get(WORKERS_ENV)
        small = audio_bytes is not None and audio_bytes < PARALLEL_MIN_BYTES
        workers = int(env) if env else 1 if small else min(MAX_WORKERS, os.cpu_count() or 1)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"feature workers must be a positive integer, got {workers!r}")
    return 1 if -(-n_clips // batch_size) < PARALLEL_MIN_BLOCKS else workers


def _audio_bytes(manifest: Manifest) -> int:
    """The size of the audio files a build reads (each file once; an HDF5 pack's file)."""
    files = {str(manifest.audio_path(i)).rpartition("#")[0] if "hdf5" in manifest.extra else str(manifest.audio_path(i))
             for i in range(len(manifest))}
    return sum(os.stat(f).st_size for f in files)


@contextmanager
def _build_lock(final: Path) -> Iterator[None]:
    fd = os.open(final.parent / f".{final.name}.build-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a builder of the same store
        yield
    finally:
        os.close(fd)


def _build(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, final: Path, batch_size: int,
           progress: bool, shard_clips: Optional[int], workers: int) -> None:
    n_samples = int(round(clip_seconds * frontend.sample_rate))
    n_frames = LogMel(frontend).n_frames(n_samples)
    writer = StoreWriter(final, n_mels=frontend.n_mels, n_frames=n_frames, frontend=frontend,
                         clip_ids=manifest.clips["clip_id"].tolist(), shard_clips=shard_clips, resumable=True,
                         meta={"clip_seconds": clip_seconds, "manifest": manifest.name})
    starts = [s for s in range(0, len(manifest), batch_size) if s >= writer.written]
    if writer.written % batch_size:  # a partial store of another block size: redo its last block
        starts.insert(0, writer.written)
    jobs = [(_block_inputs(manifest, range(s, min(s + batch_size, len(manifest)))), frontend, n_samples)
            for s in starts]
    desc = f"log-mel features ({frontend.name}, {workers} worker{'s' if workers > 1 else ''})"
    with writer, tqdm(total=len(manifest), initial=writer.written, disable=not progress, unit="clip",
                      desc=desc) as bar:
        for block in _computed(jobs, workers):
            writer.write(block)
            writer.checkpoint()
            bar.update(len(block))


def _computed(jobs: list, workers: int) -> Iterator[np.ndarray]:
    """The blocks of ``jobs`` in order: in this process, or by ``workers`` spawned processes
    (at most two blocks per worker in flight, so memory stays bounded)."""
    if workers == 1:
        for job in jobs:
            yield compute_block(*job)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending, it = [], iter(jobs)
        for job in it:
            pending.append(pool.submit(compute_block, *job))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _block_inputs(manifest: Manifest, rows: range) -> dict:
    """What a worker needs to compute the rows ``rows`` (picklable, small)."""
    clips = manifest.clips
    offsets = clips["offset"].to_numpy(float)[list(rows)] if "offset" in clips.columns else np.zeros(len(rows))
    if "hdf5" in manifest.extra:
        return {"hdf5": manifest.extra["hdf5"], "rows": clips["hdf5_row"].to_numpy()[list(rows)].tolist(),
                "native_rate": int(manifest.extra["sample_rate"])}
    return {"paths": [str(manifest.audio_path(i)) for i in rows], "offsets": offsets.tolist(),
            "clip_ids": [str(clips.at[i, "clip_id"]) for i in rows]}


def compute_block(inputs: dict, frontend: FrontendConfig, n_samples: int) -> np.ndarray:
    """The (k, n_mels, n_frames) log-mel features of one block, computed single-threaded (the
    same numbers in a worker process and in the builder's own)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if "hdf5" in inputs:
            wav = np.stack([_fit(resample(w, inputs["native_rate"], frontend.sample_rate), n_samples)
                            for w in read_hdf5_rows(inputs["hdf5"], inputs["rows"])])
        else:
            wav = np.stack([load_audio(p, frontend.sample_rate, n_samples, offset_seconds=o, clip_id=c)
                            for p, o, c in zip(inputs["paths"], inputs["offsets"], inputs["clip_ids"])])
        with torch.inference_mode():
            return LogMel(frontend)(torch.from_numpy(wav)).numpy()
    finally:
        torch.set_num_threads(threads)


def _fit(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Cropped or zero-padded to ``n_samples``."""
    return wave[:n_samples] if len(wave) >= n_samples else np.pad(wave, (0, n_samples - len(wave)))
