"""Reading run directories: the only way anything in csu_lib loads a run, its arrays or its model.

- :func:`load_run` -> :class:`RunRecord` (config, history, the logged ``log sigma^2`` with
  sigma and the multiplier derived by :mod:`csu_lib.losses`; the learned s of the selected model
  and its stationary optimum s*, stored once: :attr:`RunRecord.final_log_sigma2`,
  :attr:`RunRecord.optimum_log_sigma2`; per epoch, the learned s at the epoch's end and the s* of
  the epoch's training steps: :attr:`RunRecord.epoch_log_sigma2`,
  :attr:`RunRecord.epoch_optimum_log_sigma2`; scores, corruption, the stored weights -- the network
  and loss are built from them by :func:`csu_lib.pipeline.load_trained`);
- :func:`load_runs` / :func:`records_frame`: many runs as one table (config flattened into
  dotted columns, final metrics alongside);
- :func:`is_complete`, :func:`load_checkpoint`, :func:`cached_teacher_scores` for the trainer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig
from ..core.errors import RunRecordError
from ..core.io import read_json
from ..corruption.result import CorruptionResult
from ..losses import multiplier_of, scale_of, sigma_of
from . import layout as L
from .writer import scores_digest


def is_complete(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a complete run (``record.json`` with state complete)."""
    path = Path(run_dir) / L.RECORD
    if not path.is_file():
        return False
    try:
        return read_json(path).get("state") == "complete"
    except ValueError:
        return False


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether an interrupted run left an epoch checkpoint to resume from."""
    return (Path(run_dir) / L.CHECKPOINT).is_file()


def load_checkpoint(run_dir: str | os.PathLike) -> Optional[dict]:
    """The latest epoch checkpoint (see :func:`csu_lib.records.writer.save_checkpoint`), or None."""
    path = Path(run_dir) / L.CHECKPOINT
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "sigma_log" in ckpt and "log_sigma2" not in ckpt:  # written before the rename
        ckpt["log_sigma2"] = ckpt.pop("sigma_log")
    return ckpt


def read_config(run_dir: str | os.PathLike) -> RunConfig:
    """The :class:`RunConfig` of a run directory (``config.json``; fields added since it was
    written take the value it was trained with: :meth:`RunConfig.from_stored`)."""
    path = Path(run_dir) / L.CONFIG
    if not path.is_file():
        raise RunRecordError(f"{run_dir} is not a run directory (no config.json)")
    return RunConfig.from_stored(read_json(path))


@dataclass
class RunRecord:
    """A completed (or, with ``allow_incomplete``, partial) run read back from disk."""

    path: Path
    config: RunConfig
    history: pd.DataFrame
    #: (steps, C) s = log sigma^2 after every optimiser step; None for a loss that learns none (BCE)
    log_sigma2: Optional[np.ndarray]
    steps_per_epoch: int
    final_metrics: dict
    versions: dict
    complete: bool
    summary: dict = field(default_factory=dict)
    #: (epochs, C) float64: per epoch, the s* of that epoch's own training steps (train mode,
    #: as the loss saw them; unconstrained, never fed back: :mod:`csu_lib.training.epoch_optimum`);
    #: None for BCE and for records written before it was kept
    epoch_optimum_log_sigma2: Optional[np.ndarray] = None

    @property
    def learns_sigma(self) -> bool:
        """Whether the run logged a learned reliability (a CSU run with at least one step)."""
        return self.log_sigma2 is not None and len(self.log_sigma2) > 0

    @property
    def epoch_log_sigma2(self) -> Optional[np.ndarray]:
        """(epochs, C) float64: the learned s at the end of every epoch (the log's last step of each
        epoch; for the stationary variant, the epoch's fit), None without a log."""
        if not self.learns_sigma:
            return None
        steps = len(self.log_sigma2) // max(1, len(self.history))
        return self.log_sigma2[steps - 1::steps].astype(np.float64)

    @property
    def sigma(self) -> Optional[np.ndarray]:
        """sigma_c = exp(s_c / 2) per step and class (float64), None without a log."""
        return None if self.log_sigma2 is None else sigma_of(self.log_sigma2)

    @property
    def multiplier(self) -> Optional[np.ndarray]:
        """The gradient multiplier ``scale / sigma^2`` per step and class (float64; ``scale`` is
        0.5 for ``loss.csu_scale="half"``), None without a log."""
        return None if self.log_sigma2 is None else multiplier_of(self.log_sigma2, scale_of(self.config.loss))

    def scores(self, split: str) -> np.ndarray:
        """Sigmoid scores (n_clips_of_split, C) of the selected weights, in manifest row order."""
        path = self.path / L.scores_file(split)
        if not path.is_file():
            raise RunRecordError(f"{path} is missing")
        return np.load(path)

    def corruption(self) -> Optional[CorruptionResult]:
        """What the corruption did to the training labels (None for a clean run)."""
        return read_corruption(self.path)

    @cached_property
    def _saved_model(self) -> dict:
        path = self.path / L.MODEL
        if not path.is_file():
            raise RunRecordError(f"{self.path} has no model.pt (run not complete?)")
        return torch.load(path, map_location="cpu", weights_only=False)

    @property
    def class_names(self) -> list[str]:
        """The class names of the run's dataset (stored with the model)."""
        return list(self._saved_model["class_names"])

    @property
    def weights(self) -> dict:
        """The state dict of the selected network (``model.pt``); build the network with
        :func:`csu_lib.pipeline.load_trained`."""
        return self._saved_model["model"]

    @property
    def loss_state(self) -> dict:
        """The loss state stored with the selected weights: without the learned s for records
        written since it is stored once (:attr:`final_log_sigma2`), with it before
        (:func:`csu_lib.losses.restore_loss_state` loads either)."""
        return self._saved_model["loss"]

    # -- the learned reliability of the selected model: read here, nowhere else ---------------

    @property
    def stationarity(self) -> dict:
        """How far the selected model's s lies from its stationary point, as training stored it
        (:meth:`csu_lib.losses.LearnedReliability.stationarity`: ``fit``, ``log_sigma2``,
        ``stationary_log_sigma2``, ``abs_gap``, ``median_abs_gap``, ``n_at_clamp``, ...); empty
        for a loss that learns none and for records written before it was stored."""
        return dict((self.final_metrics or {}).get("reliability") or {})

    @property
    def final_log_sigma2(self) -> Optional[np.ndarray]:
        """The learned ``s = log sigma^2`` that goes with the selected weights (the best validation
        epoch), float64: C values, 2C (s+ then s-) for two-sided CSU; None without a learned
        reliability. Stored once, in the :attr:`stationarity` block; for a record written before
        that block existed, the log's last step of the best epoch -- not the last logged step,
        which belongs to later weights when early stopping kept an earlier epoch."""
        if not self.learns_sigma:
            return None
        stored = self.stationarity
        if stored:
            return np.asarray(stored["log_sigma2"], np.float64)
        steps = len(self.log_sigma2) // max(1, len(self.history))
        best = int((self.final_metrics or {}).get("best_epoch", len(self.history) - 1))
        return self.log_sigma2[(best + 1) * steps - 1].astype(np.float64)

    @property
    def optimum_log_sigma2(self) -> Optional[np.ndarray]:
        """The stationary optimum s* of the selected network stored at the end of training
        (unconstrained; :func:`csu_lib.losses.optimum_log_sigma2` of its mean training loss),
        float64; None when the record stores none."""
        stored = self.stationarity.get("stationary_log_sigma2")
        return None if stored is None else np.asarray(stored, np.float64)

    @property
    def final_sigma(self) -> Optional[np.ndarray]:
        """sigma of the selected model (:func:`csu_lib.losses.sigma_of` of :attr:`final_log_sigma2`)."""
        s = self.final_log_sigma2
        return None if s is None else sigma_of(s)

    @property
    def final_multiplier(self) -> Optional[np.ndarray]:
        """The gradient multiplier of the selected model (``scale * exp(-s)``)."""
        s = self.final_log_sigma2
        return None if s is None else multiplier_of(s, scale_of(self.config.loss))


def read_corruption(run_dir: str | os.PathLike) -> Optional[CorruptionResult]:
    """The :class:`CorruptionResult` stored in a run directory, or None when it has none."""
    run_dir = Path(run_dir)
    meta_path = run_dir / L.CORRUPTION
    if not meta_path.is_file():
        return None
    arrays = {name: np.load(run_dir / L.corruption_array_file(name)) for name in CorruptionResult.ARRAYS}
    return CorruptionResult.from_stored(read_json(meta_path), arrays)


def load_run(run_dir: str | os.PathLike, *, allow_incomplete: bool = False) -> RunRecord:
    """The run in ``run_dir`` (a :class:`RunRecordError` unless complete or ``allow_incomplete``)."""
    run_dir = Path(run_dir)
    complete = is_complete(run_dir)
    if not complete and not allow_incomplete:
        raise RunRecordError(f"{run_dir} is not a complete run (no complete {L.RECORD}); rerun it to resume")
    config = read_config(run_dir)
    history_path = run_dir / L.HISTORY
    hist = read_json(history_path) if history_path.is_file() else {"epochs": [], "steps_per_epoch": 0}
    log_sigma2 = None
    for name in (L.LOG_SIGMA2, L.LEGACY_LOG_SIGMA2):
        if (run_dir / name).is_file():
            log_sigma2 = np.load(run_dir / name)
            break
    versions_path = run_dir / L.VERSIONS
    optimum_path = run_dir / L.EPOCH_OPTIMUM
    return RunRecord(path=run_dir, config=config, history=pd.DataFrame(hist["epochs"]), log_sigma2=log_sigma2,
                     steps_per_epoch=int(hist["steps_per_epoch"]),
                     final_metrics=read_json(run_dir / L.FINAL_METRICS) if complete else {},
                     versions=read_json(versions_path) if versions_path.is_file() else {},
                     complete=complete, summary=read_json(run_dir / L.RECORD) if complete else {},
                     epoch_optimum_log_sigma2=np.load(optimum_path) if optimum_path.is_file() else None)


def cached_teacher_scores(teacher_dir: str | os.PathLike, chunk_seconds: Optional[float], key: dict,
                          shape: tuple) -> Optional[np.ndarray]:
    """A teacher's cached training-split scores when they were computed for ``key`` and are
    intact (shape and checksum), else None (see :func:`csu_lib.records.writer.write_teacher_scores`)."""
    path = L.teacher_scores_file(teacher_dir, chunk_seconds)
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = read_json(meta_path)
    except ValueError:
        return None
    if meta.get("key") != key:
        return None
    scores = np.load(path, allow_pickle=False)
    if scores.shape == tuple(shape) and meta.get("sha256") == scores_digest(scores):
        return scores
    return None


def model_file_stamp(run_dir: str | os.PathLike) -> dict:
    """Size and mtime of a run's ``model.pt`` (what its cached teacher scores depend on)."""
    st = (Path(run_dir) / L.MODEL).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def has_model(run_dir: str | os.PathLike) -> bool:
    """Whether a run directory holds its selected weights (``model.pt``)."""
    return (Path(run_dir) / L.MODEL).is_file()


def flatten_into(prefix: str, obj: Any, out: dict) -> None:
    """Nested dicts into ``out`` as dotted keys (``"train.lr"``); lists become tuples."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten_into(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = tuple(obj) if isinstance(obj, list) else obj


def find_runs(study_dir: str | os.PathLike) -> Iterable[Path]:
    """Every directory below ``study_dir`` that holds a ``config.json``."""
    for cfg in sorted(Path(study_dir).rglob(L.CONFIG)):
        yield cfg.parent


def _run_row(path: Path, complete: bool, config: dict, final_metrics: Optional[dict]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "run_id": Path(path).name, "complete": complete}
    flatten_into("", config, row)
    if final_metrics:
        flatten_into("", final_metrics, row)
    return row


def load_runs(study_dir: str | os.PathLike, *, include_incomplete: bool = False) -> pd.DataFrame:
    """All runs of a study as a DataFrame: one row per run, config flattened into dotted
    columns (``loss.name``, ``train.seed``, ...), final metrics as ``test.mAP`` etc., plus
    ``path``, ``run_id`` and ``complete``."""
    rows = []
    for run_dir in find_runs(study_dir):
        complete = is_complete(run_dir)
        if not complete and not include_incomplete:
            continue
        rows.append(_run_row(run_dir, complete, read_json(run_dir / L.CONFIG),
                             read_json(run_dir / L.FINAL_METRICS) if complete else None))
    return pd.DataFrame(rows)


def records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The :func:`load_runs` table of records already in hand (same columns, same order as given)."""
    return pd.DataFrame([_run_row(r.path, r.complete, r.config.to_dict(), r.final_metrics) for r in records])
