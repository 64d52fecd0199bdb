"""Run records: one self-describing directory per training run.

Layout of a run directory::

    config.json          the RunConfig (written first; a rerun with another config is refused)
    versions.json        python / torch / torchaudio / numpy / csu_lib / platform / device
    history.json         per-epoch metrics (rewritten atomically after every epoch)
    sigma.npy            (steps, C) float32: s_c = log sigma_c^2 after every optimiser step (CSU)
    checkpoint.pt        latest resumable state (model, loss, optimiser, RNG, history, sigma log)
    corruption*.npy/json what the injector did to the training labels (when corrupted)
    model.pt             the selected (best validation mAP) weights, with the config inside
    scores_<split>.npy   sigmoid scores of the selected weights on train / val / test
    final_metrics.json   metrics of the selected weights (see csu_lib.evaluation)
    record.json          written LAST: {"state": "complete", ...} marks the run as complete

Every file is written atomically, and ``record.json`` exists only when everything else does,
so an interrupted run never looks complete; rerunning the same command resumes it.
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import pandas as pd
import torch

from .config import RunConfig
from .errors import RunRecordError
from .io import atomic_path, atomic_write_json, read_json

RECORD = "record.json"


def versions(device: Optional[torch.device] = None) -> dict[str, Any]:
    import torchaudio

    from . import __version__

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "numpy": np.__version__, "csu_lib": __version__, "platform": platform.platform(),
            "device": str(device) if device is not None else "cpu"}
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def is_complete(run_dir: str | os.PathLike) -> bool:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return False
    try:
        return read_json(path).get("state") == "complete"
    except ValueError:
        return False


def prepare_run_dir(run_dir: str | os.PathLike, config: RunConfig) -> Path:
    """Create the directory and write ``config.json``; refuse a directory of another config."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    if cfg_path.is_file():
        existing = read_json(cfg_path)
        if existing != config.to_dict():
            raise RunRecordError(
                f"{run_dir} holds a run of another configuration (config.json differs); "
                "use another run directory or delete this one")
    else:
        atomic_write_json(cfg_path, config.to_dict())
    return run_dir


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(run_dir: str | os.PathLike) -> Optional[dict]:
    path = Path(run_dir) / "checkpoint.pt"
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def finalize(run_dir: str | os.PathLike, config: RunConfig, *, final_metrics: dict, summary: dict) -> None:
    """Write ``final_metrics.json`` and then ``record.json`` (the completeness marker)."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "final_metrics.json", final_metrics)
    atomic_write_json(run_dir / RECORD, {"state": "complete", "run_id": config.run_id, "seed": config.train.seed,
                                         "config": config.to_dict(), "final_metrics": final_metrics,
                                         **summary})


@dataclass
class RunRecord:
    """A completed (or, with ``allow_incomplete``, partial) run read back from disk."""

    path: Path
    config: RunConfig
    history: pd.DataFrame
    sigma: Optional[np.ndarray]  # (steps, C) s = log sigma^2, None for runs without CSU
    steps_per_epoch: int
    final_metrics: dict
    versions: dict
    complete: bool
    summary: dict = field(default_factory=dict)

    @property
    def multiplier(self) -> Optional[np.ndarray]:
        """1/sigma^2 = exp(-s) per step and class."""
        return None if self.sigma is None else np.exp(-self.sigma)

    def scores(self, split: str) -> np.ndarray:
        """Sigmoid scores (n_clips_of_split, C) of the selected weights, in manifest row order."""
        path = self.path / f"scores_{split}.npy"
        if not path.is_file():
            raise RunRecordError(f"{path} is missing")
        return np.load(path)

    def corruption(self):
        from .corruption import CorruptionResult

        if not (self.path / "corruption.json").is_file():
            return None
        return CorruptionResult.load(self.path)


def load_run(run_dir: str | os.PathLike, *, allow_incomplete: bool = False) -> RunRecord:
    run_dir = Path(run_dir)
    complete = is_complete(run_dir)
    if not complete and not allow_incomplete:
        raise RunRecordError(f"{run_dir} is not a complete run (no complete {RECORD}); rerun it to resume")
    if not (run_dir / "config.json").is_file():
        raise RunRecordError(f"{run_dir} is not a run directory (no config.json)")
    config = RunConfig.from_dict(read_json(run_dir / "config.json"))
    history_path = run_dir / "history.json"
    hist = read_json(history_path) if history_path.is_file() else {"epochs": [], "steps_per_epoch": 0}
    sigma_path = run_dir / "sigma.npy"
    sigma = np.load(sigma_path) if sigma_path.is_file() else None
    summary = read_json(run_dir / RECORD) if complete else {}
    return RunRecord(path=run_dir, config=config, history=pd.DataFrame(hist["epochs"]), sigma=sigma,
                     steps_per_epoch=int(hist["steps_per_epoch"]),
                     final_metrics=read_json(run_dir / "final_metrics.json") if complete else {},
                     versions=read_json(run_dir / "versions.json") if (run_dir / "versions.json").is_file() else {},
                     complete=complete, summary=summary)


def flatten_into(prefix: str, obj: Any, out: dict) -> None:
    """Nested dicts into ``out`` as dotted keys (``"train.lr"``); lists become tuples."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten_into(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = tuple(obj) if isinstance(obj, list) else obj


def find_runs(study_dir: str | os.PathLike) -> Iterable[Path]:
    """Every directory below ``study_dir`` that holds a ``config.json``."""
    for cfg in sorted(Path(study_dir).rglob("config.json")):
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
        rows.append(_run_row(run_dir, complete, read_json(run_dir / "config.json"),
                             read_json(run_dir / "final_metrics.json") if complete else None))
    return pd.DataFrame(rows)


def records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """The :func:`load_runs` table of records already in hand (same columns, same order as given)."""
    return pd.DataFrame([_run_row(r.path, r.complete, r.config.to_dict(), r.final_metrics) for r in records])
