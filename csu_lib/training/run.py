"""Training one run: one :class:`~csu_lib.config.RunConfig` in, one run record out.

:func:`train_run` trains (or resumes, or skips when complete) a run with the epoch engine
(:mod:`.engine`) on the one-process backend (:mod:`.single`), or -- under ``torchrun``
(``WORLD_SIZE`` > 1) -- on the DDP backend (:mod:`.ddp`): ``train.batch_size`` is then the global
batch, rank 0 alone writes the run directory, and every rank returns the record. Runs it depends
on (a teacher) are trained first (:mod:`.planner`).

Reproducibility: the same configuration gives the same numbers; on the CPU a run interrupted at
any moment and resumed is bit-identical to an uninterrupted one (same machine, same thread
count). Mixed precision (bfloat16 autocast) on CUDA only; the loss is always computed in float32.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

from ..config import RunConfig
from ..features import FeatureLoader
from ..records import RunRecord, is_complete, load_checkpoint, load_run, prepare_run_dir, run_lock
from . import distributed
from .ddp import Distributed
from .engine import StepHook, finish_run, make_state, restore, start_runs, train_epochs
from .planner import dependencies
from ..pipeline.data_pipeline import PreparedData, prepare_data, resolve_device, restrict_training
from .single import SingleProcess


def train_run(config: RunConfig, run_dir: str | os.PathLike, *, data: Optional[PreparedData] = None,
              data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
              progress: bool = True, on_step: Optional[StepHook] = None) -> RunRecord:
    """Train (or resume, or skip if complete) one run and return its record.

    ``data``: the run's :class:`PreparedData` when already in hand (else prepared here); for a
    run with ``data.holdout_fold`` it may be the whole split, which is then cut here
    (:func:`~csu_lib.pipeline.data_pipeline.restrict_training`).
    ``on_step(epoch, step)`` is called before every optimiser step (tests use it to simulate a
    crash mid-epoch).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every worker calls this with the same arguments and
    the run is trained with DistributedDataParallel (see :mod:`csu_lib.training.ddp`):
    ``train.batch_size`` is the global batch, rank 0 alone writes the run directory, and every
    rank returns the record.
    """
    ctx = distributed.from_env(config.train.device)
    try:
        return _train_run(config, run_dir, ctx, data=data, data_dir=data_dir, cache_dir=cache_dir,
                          progress=progress, on_step=on_step)
    finally:
        distributed.shutdown(ctx)


def train_dependencies(config: RunConfig, run_dir: str | os.PathLike, *, data: Optional[PreparedData],
                       data_dir: Optional[str | os.PathLike], cache_dir: Optional[str | os.PathLike],
                       progress: bool) -> None:
    """Train (or find complete) the runs ``config`` depends on (its teacher or fold teachers), with
    the same data (a fold teacher cuts it to its folds)."""
    for dep_config, dep_dir in dependencies(config, run_dir):
        train_run(dep_config, dep_dir, data=data, data_dir=data_dir, cache_dir=cache_dir, progress=progress)


def _prepare_and_check(run_dir: str | os.PathLike, config: RunConfig) -> tuple[Path, bool]:
    path = prepare_run_dir(run_dir, config)  # refuses a directory of another configuration
    return path, is_complete(path)


def _train_run(config: RunConfig, run_dir: str | os.PathLike, ctx: Optional[distributed.DistContext], *,
               data: Optional[PreparedData], data_dir: Optional[str | os.PathLike],
               cache_dir: Optional[str | os.PathLike], progress: bool, on_step: Optional[StepHook]) -> RunRecord:
    """The body of :func:`train_run`; ``ctx`` is None for a one-process run."""
    main = ctx is None or ctx.is_main  # the process that writes files
    if ctx is None:
        run_dir, complete = _prepare_and_check(run_dir, config)
    else:
        run_dir, complete = ctx.main_only(lambda: _prepare_and_check(run_dir, config), "preparing the run directory")
    if complete:
        return load_run(run_dir)
    with run_lock(run_dir) if main else nullcontext():  # one process trains a run at a time
        if ctx is None and is_complete(run_dir):  # finished by another process just before the lock
            return load_run(run_dir)
        _train_locked(config, run_dir, ctx, data=data, data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                      on_step=on_step)
    return load_run(run_dir)


def _train_locked(config: RunConfig, run_dir: Path, ctx: Optional[distributed.DistContext], *,
                  data: Optional[PreparedData], data_dir: Optional[str | os.PathLike],
                  cache_dir: Optional[str | os.PathLike], progress: bool, on_step: Optional[StepHook]) -> None:
    """Prepare, train and finish one run (the run directory is locked by the caller)."""
    main = ctx is None or ctx.is_main
    device = resolve_device(config.train.device) if ctx is None else ctx.device
    if data is None:
        if ctx is None:
            data = prepare_data(config, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
        else:  # rank 0 generates the dataset and builds the feature cache; the others then read them
            data = ctx.main_first(lambda: prepare_data(config, data_dir=data_dir, cache_dir=cache_dir,
                                                       progress=progress and main), "preparing the data")
    data = restrict_training(data, config)
    train_dependencies(config, run_dir, data=data, data_dir=data_dir, cache_dir=cache_dir, progress=progress)

    state = make_state(config, run_dir, data, device)
    feats = FeatureLoader(data.store, device, config.train.features_in_memory)
    backend = SingleProcess(state, device, feats) if ctx is None else Distributed(state, ctx, feats)
    start_epoch = restore(backend, [state], [load_checkpoint(run_dir)])
    if ctx is not None:
        backend.wrap()
    start_runs(backend, [state])
    train_epochs(backend, [state], start_epoch, progress=progress, on_step=on_step)
    if main:
        finish_run(backend, 0, state)
    if ctx is not None:
        ctx.barrier()  # the record is complete before any rank reads it
