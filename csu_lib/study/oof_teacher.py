"""The out-of-fold teacher of the class-noise audit (:mod:`csu_lib.analysis.class_noise_audit`): for every
audit run, K plain-BCE fold teachers on its own (corrupted) training labels, each clip scored by
the teacher that never trained on it -- the teacher-based estimator's input."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from ..config import MethodConfig
from ..core.errors import ConfigError
from ..records import RunRecord
from ..pipeline import DataCache
from ..training import fold_teacher_configs, teacher_scores
from .grid import run_dir_for
from .local import run_all


def oof_teacher_scores(records: Sequence[RunRecord], runs_dir: str | os.PathLike, folds: int = 2, *,
                       data_dir: Optional[str | os.PathLike] = None,
                       cache_dir: Optional[str | os.PathLike] = None) -> dict[str, np.ndarray]:
    """``{run path: (n_train, C) out-of-fold teacher scores}`` for the audit ``records``: trains
    (or reuses) the ``folds`` fold teachers of each run in ``runs_dir``, the same runs an
    out-of-fold teacher-masking student of that data would use (``MethodConfig.teacher_folds``)."""
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"teacher_folds must be an integer >= 2 for an out-of-fold teacher, got {folds!r}")
    students = [r.config.replace(method=MethodConfig(name="teacher_mask", teacher_folds=folds)) for r in records]
    run_all([t for s in students for t in fold_teacher_configs(s)], runs_dir, data_dir=data_dir, cache_dir=cache_dir)
    cache = DataCache(data_dir=data_dir, cache_dir=cache_dir, progress=False)
    return {str(r.path): teacher_scores(s, cache(s), run_dir=run_dir_for(s, runs_dir))
            for r, s in zip(records, students)}
