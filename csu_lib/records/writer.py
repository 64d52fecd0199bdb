"""Writing a run directory (the layout is :mod:`csu_lib.records.layout`). Every write is atomic.

The training engine calls, in this order: :func:`prepare_run_dir` (``config.json``; refuses a
folder of another configuration), :func:`write_start` (versions, the corruption trained under,
skipped clips), then after every epoch :func:`write_progress` and :func:`save_checkpoint`, and at
the end :func:`write_scores`, :func:`write_model` and :func:`finalize` (``record.json`` last).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torchaudio

from ..config import RunConfig
from ..core import __version__
from ..core.errors import ConfigError, RunRecordError
from ..core.io import atomic_path, atomic_save_npy, atomic_write_json, read_json
from ..corruption.result import CorruptionResult
from ..losses import stored_loss_state
from . import layout as L


def versions(device: Optional[torch.device] = None) -> dict[str, Any]:
    """python / torch / torchaudio / numpy / csu_lib versions, the platform and the device."""
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "numpy": np.__version__, "csu_lib": __version__, "platform": platform.platform(),
            "device": str(device) if device is not None else "cpu"}
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def prepare_run_dir(run_dir: str | os.PathLike, config: RunConfig) -> Path:
    """Create the directory and write ``config.json``; refuse a directory of another config."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / L.CONFIG
    if cfg_path.is_file():
        # the same run: the same hash (the run id), fields added since it was written included
        try:
            same = RunConfig.from_stored(read_json(cfg_path)).hash(64) == config.hash(64)
        except ConfigError:  # not a configuration of this suite at all
            same = False
        if not same:
            raise RunRecordError(
                f"{run_dir} holds a run of another configuration (config.json differs); "
                "use another run directory or delete this one")
    else:
        atomic_write_json(cfg_path, config.to_dict())
    return run_dir


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a run directory while training it. A second process that tries
    to train the same run (a second sweep, an orphaned worker) gets a :class:`RunRecordError` at
    once instead of writing into the same files; the lock goes with the process that holds it."""
    path = Path(run_dir) / L.LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunRecordError(f"{run_dir} is being trained by another process (it holds {path}); wait for it "
                                 "or stop it, then run the same command again") from None
        yield
    finally:
        os.close(fd)


def write_corruption(run_dir: str | os.PathLike, result: CorruptionResult) -> None:
    """One ``corruption_<array>.npy`` per array, then ``corruption.json`` (written last)."""
    run_dir = Path(run_dir)
    for name, array in result.arrays().items():
        atomic_save_npy(run_dir / L.corruption_array_file(name), array)
    atomic_write_json(run_dir / L.CORRUPTION, result.meta())


def write_start(run_dir: Path, *, versions_info: dict, corruption: Optional[CorruptionResult],
                skipped: list, unlabelled: Optional[list] = None) -> None:
    """The files a run writes before its first step: ``versions.json``, the corruption it trains
    under (``corruption.json``, kept from an earlier start), the clips it skipped and those whose
    label cell was blank."""
    atomic_write_json(run_dir / L.VERSIONS, versions_info)
    if corruption is not None and not (run_dir / L.CORRUPTION).is_file():
        write_corruption(run_dir, corruption)
    if skipped:
        atomic_write_json(run_dir / L.SKIPPED, skipped)
    if unlabelled:
        atomic_write_json(run_dir / L.UNLABELLED, unlabelled)


def write_progress(run_dir: Path, history: list[dict], log_sigma2: list[np.ndarray], steps_per_epoch: int,
                   epoch_optimum: Optional[list[np.ndarray]] = None) -> None:
    """``history.json`` and (for a loss that learns a reliability) ``log_sigma2.npy`` and the
    s* of every epoch's training steps ``epoch_optimum_log_sigma2.npy`` (one (C,) row per epoch)
    so far."""
    atomic_write_json(run_dir / L.HISTORY, {"epochs": history, "steps_per_epoch": steps_per_epoch})
    if log_sigma2:
        atomic_save_npy(run_dir / L.LOG_SIGMA2, np.concatenate(log_sigma2).astype(np.float32))
    if epoch_optimum:
        atomic_save_npy(run_dir / L.EPOCH_OPTIMUM, np.stack(epoch_optimum).astype(np.float64))


def _save_torch(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(run_dir: Path, config: RunConfig, *, epoch: int, model: dict, loss: dict, optimizer: dict,
                    rng: dict, history: list[dict], log_sigma2: list[np.ndarray], best: dict, bad_epochs: int,
                    stopped: bool, epoch_optimum: Optional[list[np.ndarray]] = None, **extra) -> None:
    """The epoch checkpoint a run resumes from (model, loss and optimiser states, the RNG
    states ``rng`` = {"torch_rng", "cuda_rng"}, the history, s log and epoch s* so far, the best
    weights, the early-stopping state, and ``extra`` entries of a backend), written atomically."""
    _save_torch(run_dir / L.CHECKPOINT, {
        "epoch": epoch, "model": model, "loss": loss, "optimizer": optimizer, **rng, "history": history,
        "log_sigma2": log_sigma2, "epoch_optimum": list(epoch_optimum or []), "best": best,
        "bad_epochs": bad_epochs, "stopped": stopped, "config": config.to_dict(), **extra})


def write_scores(run_dir: Path, split: str, scores: np.ndarray) -> None:
    """``scores_<split>.npy`` (float32 sigmoid scores of the selected weights)."""
    atomic_save_npy(run_dir / L.scores_file(split), scores.astype(np.float32))


def write_model(run_dir: Path, config: RunConfig, *, model_state: dict, loss: torch.nn.Module,
                class_names: list[str]) -> None:
    """``model.pt``: the selected weights with the state of their ``loss`` less its learned s
    (:func:`csu_lib.losses.stored_loss_state`: the selected model's s is stored once, in
    ``final_metrics.json``'s reliability block, see :func:`finalize`), the config and the class
    names."""
    _save_torch(run_dir / L.MODEL, {"model": model_state, "config": config.to_dict(),
                                    "loss": stored_loss_state(loss), "class_names": class_names})


def finalize(run_dir: str | os.PathLike, config: RunConfig, *, final_metrics: dict, summary: dict) -> None:
    """Write ``final_metrics.json`` and then ``record.json`` (the completeness marker). The
    selected model's learned s and its stationary point (``final_metrics["reliability"]``) are
    stored in ``final_metrics.json`` only: ``record.json``'s copy of the metrics leaves them out."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / L.FINAL_METRICS, final_metrics)
    metrics = {k: v for k, v in final_metrics.items() if k != "reliability"}
    atomic_write_json(run_dir / L.RECORD, {"state": "complete", "run_id": config.run_id, "seed": config.train.seed,
                                           "config": config.to_dict(), "final_metrics": metrics,
                                           **summary})


def scores_digest(scores: np.ndarray) -> str:
    """Checksum of a score array: the JSON names the exact file it describes, so a score file
    replaced by another process after the JSON was written is never taken for it."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float32).tobytes()).hexdigest()[:16]


def write_teacher_scores(teacher_dir: str | os.PathLike, chunk_seconds: Optional[float], scores: np.ndarray,
                         key: dict) -> None:
    """Cache a teacher's training-split scores in its run directory with the ``key`` they were
    computed for (read back by :func:`csu_lib.records.reader.cached_teacher_scores`)."""
    path = L.teacher_scores_file(teacher_dir, chunk_seconds)
    atomic_save_npy(path, scores)
    atomic_write_json(path.with_suffix(".json"), {"key": key, "shape": list(scores.shape),
                                                  "sha256": scores_digest(scores), "teacher": str(teacher_dir),
                                                  "what": "sigmoid teacher probabilities on the training split"})
