"""The teacher of the teacher-based methods (teacher masking, label correction, pseudo strong
labels): where its scores on the training split come from, computed once and cached.

``config.method.teacher`` selects the teacher:

- ``None``: a plain-BCE run of the same data, corruption, front-end, model, seed and training
  settings (:func:`teacher_config`) in ``<run_dir.parent>/<teacher run id>``, i.e. in the
  study's own runs folder: the teacher IS the study's plain BCE run of that seed (same config,
  same hash), so it is trained once and shared by every student (BCE or CSU, any teacher
  method) and by every figure that needs a plain BCE run. It is trained before its students, as
  a dependency (:mod:`csu_lib.training.planner`); here it must already be complete.
- a directory: a complete run directory of this suite, e.g. a stronger or cleaner teacher. Its
  class count and front-end must match the student's.
- a ``.npy`` file: a score matrix computed elsewhere (e.g. a zero-shot model), probabilities in
  [0, 1] of shape (N_train, C) in the training split's order -- or (N_train, K, C) chunk scores
  for PSL. Nothing is cached for a file (it *is* the scores).
Relative paths are taken from the project root (:func:`csu_lib.core.paths.resolve_path`).

Scores of a teacher run are the sigmoid outputs of its selected weights in eval mode on the
student's training features, cached in the teacher's run directory (by
:func:`csu_lib.records.write_teacher_scores`) with the key they were computed for: the hashes of
the student's data, front-end and corruption configs, a fingerprint of the training split's clip
ids, the chunk layout and the size and mtime of ``model.pt``, plus a checksum of the scores. A
cached file whose key or checksum differs (another training set, another corruption, a retrained
teacher, an interrupted or concurrent write) is recomputed and replaced, never mixed up.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..config import LossConfig, MethodConfig, RunConfig
from ..core.errors import ConfigError, RunRecordError
from ..core.paths import resolve_path
from ..features import FeatureLoader
from ..records import (cached_teacher_scores, has_model, is_complete, load_run, model_file_stamp, read_config,
                       write_teacher_scores)
from .method_rules import psl_chunk_layout, select_chunks
from .predict import predict
from .prepare import resolve_device


def teacher_config(config: RunConfig) -> RunConfig:
    """The teacher trained for ``config`` when ``config.method.teacher`` is None: the same data,
    corruption, front-end, model, seed and training settings, loss ``bce``, method ``none``."""
    return config.replace(loss=LossConfig(name="bce"), method=MethodConfig(name="none"))


def teacher_run_dir(config: RunConfig, run_dir: str | os.PathLike) -> Path:
    """``<run_dir.parent>/<teacher run id>`` for a student run in ``run_dir`` (the study's plain
    BCE run of the same data, corruption, model and seed)."""
    return Path(run_dir).parent / teacher_config(config).run_id


def teacher_info(config: RunConfig, run_dir: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """Where the teacher of ``config`` comes from (for the run record): ``source`` (trained, run
    or file), ``path`` and, for a run, its test/val mAP."""
    spec = config.method.teacher
    if spec is None:
        info: dict[str, Any] = {"source": "trained",
                                "path": str(teacher_run_dir(config, run_dir)) if run_dir is not None else None}
    else:
        path = resolve_path(spec)
        info = {"source": "file" if path.suffix == ".npy" else "run", "path": str(path)}
    if info["source"] != "file" and info["path"] and is_complete(info["path"]):
        fm = load_run(info["path"]).final_metrics
        info["test_mAP"] = fm.get("test", {}).get("mAP")
        info["val_mAP"] = fm.get("val", {}).get("mAP")
    return info


def training_set_key(config: RunConfig, data) -> dict[str, Any]:
    """What the scores of a teacher depend on besides its weights: the student's training clips
    (data, front-end and corruption config hashes, and the clip ids of the training split)."""
    ids = data.manifest.clips["clip_id"].to_numpy()[data.train_idx]
    digest = hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]
    return {"data": config.data.hash(), "frontend": config.frontend.hash(), "corruption": config.corruption.hash(),
            "n_train": int(len(data.train_idx)), "train_clips": digest}


def _check_npy(path: Path, n_train: int, n_classes: int, n_chunks: Optional[int]) -> np.ndarray:
    if not path.is_file():
        raise ConfigError(f"teacher score file {path} does not exist")
    try:
        scores = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ConfigError(f"teacher score file {path} cannot be read as a .npy array ({exc})") from None
    if n_chunks is None:
        expected, what = (n_train, n_classes), "(n_train, C)"
    else:
        expected, what = (n_train, n_chunks, n_classes), "(n_train, n_chunks, C) chunk scores for PSL"
    if scores.shape != expected:
        raise ConfigError(f"teacher score file {path} has shape {scores.shape}; expected {what} = {expected}: "
                          "probabilities for every training clip, in the training split's order")
    if not np.issubdtype(scores.dtype, np.number):
        raise ConfigError(f"teacher score file {path} holds {scores.dtype} values, not numbers")
    scores = scores.astype(np.float32)
    if not np.isfinite(scores).all():
        raise ConfigError(f"teacher score file {path} holds NaN or infinite values")
    if scores.min() < 0 or scores.max() > 1:
        raise ConfigError(f"teacher score file {path} holds values outside [0, 1] (min {scores.min():.4g}, "
                          f"max {scores.max():.4g}); give sigmoid probabilities, not logits")
    return scores


def _check_teacher_dir(teacher_dir: Path, config: RunConfig) -> RunConfig:
    """The config of a complete teacher run whose front-end matches the student's."""
    try:
        tconf = read_config(teacher_dir)
    except RunRecordError:
        raise ConfigError(f"teacher {teacher_dir} is neither a .npy score file nor a run directory "
                          "(no config.json)") from None
    if not is_complete(teacher_dir) or not has_model(teacher_dir):
        raise RunRecordError(f"teacher {teacher_dir} is not a complete run (no complete record.json / "
                             "model.pt); finish training it first")
    if tconf.frontend != config.frontend:
        raise ConfigError(f"teacher {teacher_dir} was trained on front-end {tconf.frontend.name!r} "
                          f"({tconf.frontend.hash()}), the student uses {config.frontend.name!r} "
                          f"({config.frontend.hash()}); it cannot score these features")
    return tconf


def compute_scores(model: torch.nn.Module, data, config: RunConfig, device: torch.device,
                   chunk_seconds: Optional[float] = None) -> np.ndarray:
    """Sigmoid scores of ``model`` on the training split: (N_train, C), or (N_train, K, C) for
    the PSL chunks of ``chunk_seconds`` (:func:`csu_lib.training.method_rules.psl_chunk_layout`)."""
    feats = FeatureLoader(data.store, device)
    rows = np.asarray(data.train_idx)
    bs = config.train.eval_batch_size
    if chunk_seconds is None:
        return predict(model, feats, rows, bs, device).astype(np.float32)
    spans, length = psl_chunk_layout(int(data.store.features.shape[-1]), chunk_seconds, config.frontend)
    out = []
    for k in range(len(spans)):
        def chunk_k(r, k=k):
            x = feats(r)
            return select_chunks(x, spans, length, torch.full((x.shape[0],), k, dtype=torch.long))
        out.append(predict(model, chunk_k, rows, bs, device))
    return np.stack(out, axis=1).astype(np.float32)


def teacher_scores(config: RunConfig, data, *, run_dir: Optional[str | os.PathLike] = None,
                   chunk_seconds: Optional[float] = None) -> np.ndarray:
    """Teacher probabilities on the training split of ``data``: (N_train, C), or (N_train, K, C)
    chunk scores when ``chunk_seconds`` is given (PSL). See the module notes for where the
    teacher comes from and how the scores are cached."""
    n_train, n_classes = len(data.train_idx), data.manifest.n_classes
    n_chunks = None
    if chunk_seconds is not None:
        n_chunks = len(psl_chunk_layout(int(data.store.features.shape[-1]), chunk_seconds, config.frontend)[0])
    spec = config.method.teacher
    if spec is not None and resolve_path(spec).suffix == ".npy":
        return _check_npy(resolve_path(spec), n_train, n_classes, n_chunks)

    if spec is None:
        if run_dir is None:
            raise ConfigError("a teacher is trained next to the student run: build_method needs run_dir "
                              "(or set method.teacher to a run directory or a .npy score file)")
        teacher_dir = teacher_run_dir(config, run_dir)
        if not is_complete(teacher_dir):
            raise RunRecordError(f"the teacher run {teacher_dir} of {config.run_id} is not complete: train it "
                                 "first (train_run and the sweep engines train it as a dependency)")
    else:
        teacher_dir = resolve_path(spec)
        if not teacher_dir.exists():
            raise ConfigError(f"teacher {teacher_dir} does not exist (give a run directory or a .npy score file)")

    _check_teacher_dir(teacher_dir, config)
    key: dict[str, Any] = {**training_set_key(config, data), "chunk_seconds": chunk_seconds}
    if chunk_seconds is not None:
        spans, length = psl_chunk_layout(int(data.store.features.shape[-1]), chunk_seconds, config.frontend)
        key["chunks"] = {"spans": [list(s) for s in spans], "length": length}
    key["model"] = model_file_stamp(teacher_dir)
    expected_shape = (n_train, n_classes) if n_chunks is None else (n_train, n_chunks, n_classes)
    cached = cached_teacher_scores(teacher_dir, chunk_seconds, key, expected_shape)
    if cached is not None:
        return cached

    device = resolve_device(config.train.device)
    record = load_run(teacher_dir)
    if len(record.class_names) != n_classes:
        raise ConfigError(f"teacher {teacher_dir} has {len(record.class_names)} classes, the student's data has "
                          f"{n_classes}")
    model, _ = record.load_model(device)
    scores = compute_scores(model, data, config, device, chunk_seconds)
    write_teacher_scores(teacher_dir, chunk_seconds, scores, key)
    return scores
