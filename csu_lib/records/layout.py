"""The run directory: one self-describing folder per training run, and the names of its files.

::

    config.json          the RunConfig (written first; a rerun with another config is refused)
    versions.json        python / torch / torchaudio / numpy / csu_lib / platform / device
    history.json         per-epoch metrics (rewritten atomically after every epoch): train_loss,
                         val.*, seconds, lr_scale and, where the convergence rule reads it,
                         train_fit_loss (csu_lib.training.convergence)
    log_sigma2.npy       (steps, C) float32: s_c = log sigma_c^2 after every optimiser step (the last
                         step of an epoch: after the epoch's stationary fit, loss.csu_fit), for a
                         loss that learns a reliability (CSU; 2C for csu2); records written before this name
                         hold the same array as ``sigma.npy`` and still read
    epoch_optimum_log_sigma2.npy  (epochs, C) float64: per epoch, the s* of that epoch's own training
                         steps (csu_lib.training.epoch_optimum: log(2 * scale * the mean of the loss
                         elements each s weights, as the loss saw them in train mode); never fed
                         back); absent in records written before it was kept and for BCE
    checkpoint.pt        latest resumable state (model, loss, optimiser, RNG, history, s log, epoch s*)
    corruption_*.npy     what the injector did to the training labels (when corrupted), and
    corruption.json      its description (written after the arrays)
    skipped_clips.json   clips dropped by ``data.skip_unreadable`` (when any), with why
    unlabelled_clips.json  clips whose label cell was blank (when any): trained with no positive
    model.pt             the selected (best validation mAP) weights, the loss state (without the
                         learned s: records written before it was stored once hold it here too),
                         the config and the class names
    scores_<split>.npy   sigmoid scores of the selected weights on train / val / test
    final_metrics.json   metrics of the selected weights (see csu_lib.evaluation) and, for a loss
                         that learns a reliability, its block "reliability": the selected model's
                         learned s (stored here ONLY), its stationary optimum s*, the gaps and
                         n_at_clamp (RunRecord.final_log_sigma2, .optimum_log_sigma2, .stationarity)
    teacher_scores_*     this run's scores as a teacher of other runs (cache, with its key)
    record.json          written LAST: {"state": "complete", ...} marks the run as complete (with
                         a copy of the final metrics less the reliability block)
    .lock                held (flock) by the process that trains the run

Every file is written atomically, and ``record.json`` exists only when everything else does,
so an interrupted run never looks complete; rerunning the same command resumes it.
:mod:`csu_lib.records.writer` writes these files and :mod:`csu_lib.records.reader` reads them;
nothing else in csu_lib opens a file of a run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

CONFIG = "config.json"
VERSIONS = "versions.json"
HISTORY = "history.json"
LOG_SIGMA2 = "log_sigma2.npy"
#: The name ``log_sigma2.npy`` had in records written before it was renamed (same content).
LEGACY_LOG_SIGMA2 = "sigma.npy"
EPOCH_OPTIMUM = "epoch_optimum_log_sigma2.npy"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
FINAL_METRICS = "final_metrics.json"
RECORD = "record.json"
CORRUPTION = "corruption.json"
SKIPPED = "skipped_clips.json"
UNLABELLED = "unlabelled_clips.json"
TEACHER_SCORES = "teacher_scores_train"
LOCK = ".lock"


def scores_file(split: str) -> str:
    """``scores_<split>.npy``."""
    return f"scores_{split}.npy"


def corruption_array_file(name: str) -> str:
    """``corruption_<array>.npy``."""
    return f"corruption_{name}.npy"


def teacher_scores_file(run_dir: str | Path, chunk_seconds: Optional[float] = None) -> Path:
    """Where a teacher run caches its training-split scores: ``teacher_scores_train.npy``, or
    ``teacher_scores_train_chunks_<sec>.npy`` for PSL chunk scores (a JSON of the same stem
    holds the key they were computed for)."""
    name = TEACHER_SCORES if chunk_seconds is None else f"{TEACHER_SCORES}_chunks_{float(chunk_seconds):g}"
    return Path(run_dir) / f"{name}.npy"
