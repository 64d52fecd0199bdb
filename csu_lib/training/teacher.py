"""The teacher of the teacher-based methods (teacher masking, label correction, pseudo strong
labels): where its scores on the training split come from, computed once and cached.

``config.method.teacher`` selects the teacher:

- ``None``: a plain-BCE run of the same data, corruption, front-end, model, seed and training
  settings (:func:`teacher_config`) in ``<run_dir.parent>/<teacher run id>``, i.e. in the
  study's own runs folder: the teacher IS the study's plain BCE run of that seed (same config,
  same hash), so it is trained once and shared by every student (BCE or CSU, any teacher
  method) and by every figure that needs a plain BCE run. It is trained before its students, as
  a dependency (:mod:`csu_lib.training.planner`); here it must already be complete.
  With ``method.teacher_folds`` = K >= 2 the teacher is out-of-fold instead: the training split
  is dealt into K folds (:func:`csu_lib.pipeline.data_pipeline.training_folds`, seeded by
  ``train.seed``) and K such BCE runs are trained (:func:`fold_teacher_configs`), teacher k on
  every fold but k (``data.holdout_fold = (k, K)``), each in ``<run_dir.parent>/<its run id>``,
  shared by every student of that data, corruption, model and seed. A clip's score comes from
  the teacher of its fold, the one that never trained on it; each fold teacher's scores on the
  whole training split are cached in its own directory as below, and the K are combined here.
- a directory: a complete run directory of this suite, e.g. a stronger or cleaner teacher. Its
  class count and front-end must match the student's. When it was trained on other labels
  than the student's (another corruption config; e.g. clean labels: an oracle teacher) a
  :class:`TeacherLabelsWarning` says so; the student's record names the teacher's corruption.
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
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..config import CorruptionConfig, LossConfig, MethodConfig, RunConfig
from ..core.errors import ConfigError, RunRecordError
from ..core.paths import resolve_path
from ..features import FeatureLoader
from ..records import (cached_teacher_scores, has_model, is_complete, load_run, model_file_stamp, read_config,
                       write_teacher_scores)
from .method_rules import psl_chunk_layout, select_chunks
from .predict import predict
from ..pipeline.data_pipeline import resolve_device, training_folds
from ..pipeline.trained import load_trained


class TeacherLabelsWarning(UserWarning):
    """A teacher run was trained on other labels (another corruption) than its student."""


def teacher_config(config: RunConfig) -> RunConfig:
    """The teacher trained for ``config`` when ``config.method.teacher`` is None: the same data,
    corruption, front-end, model, seed and training settings, loss ``bce``, method ``none``."""
    return config.replace(loss=LossConfig(name="bce"), method=MethodConfig(name="none"))


def teacher_run_dir(config: RunConfig, run_dir: str | os.PathLike) -> Path:
    """``<run_dir.parent>/<teacher run id>`` for a student run in ``run_dir`` (the study's plain
    BCE run of the same data, corruption, model and seed)."""
    return Path(run_dir).parent / teacher_config(config).run_id


def fold_teacher_configs(config: RunConfig) -> list[RunConfig]:
    """The K = ``method.teacher_folds`` out-of-fold teachers of ``config``: :func:`teacher_config`
    trained on every fold of the training split but fold k (``data.holdout_fold = (k, K)``)."""
    base, n_folds = teacher_config(config), config.method.teacher_folds
    if config.data.holdout_fold is not None:
        raise ConfigError(f"run {config.run_id}: method.teacher_folds={n_folds} cannot be combined with "
                          f"data.holdout_fold={config.data.holdout_fold}")
    return [base.replace(data=base.data.replace(holdout_fold=(k, n_folds))) for k in range(n_folds)]


def teacher_runs(config: RunConfig, run_dir: str | os.PathLike) -> list[tuple[RunConfig, Path]]:
    """The teacher runs (config, run folder) trained for a student ``config`` in ``run_dir``:
    none when it needs no teacher or is given one (``method.teacher``), else its plain BCE
    teacher or, with ``method.teacher_folds`` >= 2, its fold teachers (in fold order), each in
    ``<run_dir.parent>/<run id>``."""
    if not config.method.needs_teacher or config.method.teacher is not None:
        return []
    return _trained_teachers(config, run_dir)


def _trained_teachers(config: RunConfig, run_dir: str | os.PathLike) -> list[tuple[RunConfig, Path]]:
    if config.method.teacher_folds == 1:
        return [(teacher_config(config), teacher_run_dir(config, run_dir))]
    return [(c, Path(run_dir).parent / c.run_id) for c in fold_teacher_configs(config)]


def _run_metrics(path: str | os.PathLike) -> dict[str, Any]:
    fm = load_run(path).final_metrics
    return {"test_mAP": fm.get("test", {}).get("mAP"), "val_mAP": fm.get("val", {}).get("mAP")}


def same_labels(a: CorruptionConfig, b: CorruptionConfig) -> bool:
    """Whether two corruption configs give the same training labels (any two clean ones do)."""
    def clean(c: CorruptionConfig) -> bool:
        return (c.kind == "none" or c.ratio == 0) and not c.published
    return a == b or (clean(a) and clean(b))


def teacher_info(config: RunConfig, run_dir: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """Where the teacher of ``config`` comes from (for the run record): ``source`` (trained, run
    or file), ``path`` and, for a run, its test/val mAP; for a given run also the corruption it
    was trained on (``corruption``, ``corruption_label``, ``same_labels``: whether they are the
    student's labels). An out-of-fold teacher (``teacher_folds`` >= 2) is ``source`` trained with
    ``out_of_fold`` true, ``folds`` (K), ``fold_seed``, ``paths`` (the K fold teachers, in fold
    order) and their ``test_mAP`` / ``val_mAP`` as lists."""
    spec = config.method.teacher
    if spec is None and config.method.teacher_folds > 1:
        paths = [str(d) for _, d in _trained_teachers(config, run_dir)] if run_dir is not None else None
        info: dict[str, Any] = {"source": "trained", "out_of_fold": True, "folds": config.method.teacher_folds,
                                "fold_seed": config.train.seed, "paths": paths}
        if paths and all(is_complete(p) for p in paths):
            metrics = [_run_metrics(p) for p in paths]
            info.update({k: [m[k] for m in metrics] for k in ("test_mAP", "val_mAP")})
        return info
    if spec is None:
        info = {"source": "trained", "path": str(teacher_run_dir(config, run_dir)) if run_dir is not None else None}
    else:
        path = resolve_path(spec)
        info = {"source": "file" if path.suffix == ".npy" else "run", "path": str(path)}
    if info["source"] != "file" and info["path"] and is_complete(info["path"]):
        info.update(_run_metrics(info["path"]))
    if info["source"] == "run":
        try:
            tconf = read_config(info["path"])
        except RunRecordError:
            return info
        info.update(corruption=tconf.corruption.to_dict(), corruption_label=tconf.corruption.label,
                    same_labels=same_labels(tconf.corruption, config.corruption))
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
    if not same_labels(tconf.corruption, config.corruption):
        warnings.warn(f"teacher {teacher_dir} was trained on other labels than its student {config.run_id}: "
                      f"teacher corruption {tconf.corruption.label} ({tconf.corruption.to_dict()}), student "
                      f"corruption {config.corruption.label} ({config.corruption.to_dict()}); a teacher trained "
                      "on cleaner labels than the student's is an oracle, not the compared method",
                      TeacherLabelsWarning, stacklevel=2)
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
        runs = _trained_teachers(config, run_dir)
        for _, teacher_dir in runs:
            if not is_complete(teacher_dir):
                raise RunRecordError(f"the teacher run {teacher_dir} of {config.run_id} is not complete: train it "
                                     "first (train_run and the sweep engines train it as a dependency)")
        if len(runs) > 1:
            return _out_of_fold_scores(config, data, runs, chunk_seconds, n_chunks)
        teacher_dir = runs[0][1]
    else:
        teacher_dir = resolve_path(spec)
        if not teacher_dir.exists():
            raise ConfigError(f"teacher {teacher_dir} does not exist (give a run directory or a .npy score file)")
    return _run_scores(teacher_dir, config, data, chunk_seconds, n_chunks)


def _run_scores(teacher_dir: Path, config: RunConfig, data, chunk_seconds: Optional[float],
                n_chunks: Optional[int]) -> np.ndarray:
    """The scores of the teacher run in ``teacher_dir`` on the whole training split of the
    student's ``data``, cached in the teacher's directory (see the module notes)."""
    n_train, n_classes = len(data.train_idx), data.manifest.n_classes
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
    model, _ = load_trained(record, device)
    scores = compute_scores(model, data, config, device, chunk_seconds)
    write_teacher_scores(teacher_dir, chunk_seconds, scores, key)
    return scores


def _out_of_fold_scores(config: RunConfig, data, runs: list[tuple[RunConfig, Path]], chunk_seconds: Optional[float],
                        n_chunks: Optional[int]) -> np.ndarray:
    """The out-of-fold teacher scores of ``config``: every training clip scored by the fold
    teacher ``runs[k]`` of its fold k, the one that never trained on it. Each fold teacher's
    scores on the whole split are cached in its own directory (:func:`_run_scores`)."""
    if getattr(data, "holdout", None) is not None:
        raise ConfigError(f"the out-of-fold teacher scores of {config.run_id} need the whole training split")
    n_folds = config.method.teacher_folds
    folds = training_folds(config.train.seed, len(data.train_idx), n_folds)
    out: Optional[np.ndarray] = None
    for k, (tconf, teacher_dir) in enumerate(runs):
        held_out = folds == k
        trained_on = load_run(teacher_dir).summary.get("n_train")
        if tconf.data.holdout_fold != (k, n_folds) or trained_on != int((~held_out).sum()):
            raise RunRecordError(f"fold teacher {teacher_dir} should have trained on the {int((~held_out).sum())} "
                                 f"training clips outside fold {k} of {n_folds}, its record says {trained_on}")
        scores = _run_scores(teacher_dir, config, data, chunk_seconds, n_chunks)
        if out is None:
            out = np.empty_like(scores)
        out[held_out] = scores[held_out]
    assert out is not None
    return out
