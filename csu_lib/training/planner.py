"""Which runs a run needs first, and the order in which a set of runs is trained.

A run whose method learns from a teacher (teacher masking, label correction, pseudo strong
labels) without an explicit ``method.teacher`` needs its teacher run -- the plain-BCE run of the
same data, corruption, model and seed, in the same runs folder
(:func:`csu_lib.training.teacher.teacher_config`), or with ``method.teacher_folds`` = K >= 2 the K
out-of-fold BCE teachers (:func:`csu_lib.training.teacher.fold_teacher_configs`) -- to be
complete before it starts (:func:`csu_lib.training.teacher.teacher_runs` names them). This
module is the one place that orders runs by it: :func:`dependencies` for one run (``train_run``
and vectorised groups train them first), :func:`plan` for a sweep (the local engine trains in
that order, the Ray engine submits a student after its teachers' tasks).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..config import RunConfig
from .teacher import teacher_runs


def dependencies(config: RunConfig, run_dir: str | os.PathLike) -> list[tuple[RunConfig, Path]]:
    """The runs (config, run folder) that must be complete before ``config`` trains in ``run_dir``."""
    return teacher_runs(config, run_dir)


def plan(configs: Iterable[RunConfig], runs_dir: str | os.PathLike) -> list[RunConfig]:
    """``configs`` in training order with their dependencies added: every run after the runs it
    depends on, each run id once, otherwise in the given order."""
    ordered: dict[str, RunConfig] = {}

    def add(config: RunConfig) -> None:
        if config.run_id in ordered:
            return
        for dep, _ in dependencies(config, Path(runs_dir) / config.run_id):
            add(dep)
        ordered[config.run_id] = config

    for config in configs:
        add(config)
    return list(ordered.values())
