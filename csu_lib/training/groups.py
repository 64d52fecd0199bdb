"""Vectorised groups: which runs may be trained at once as one stacked model
(:mod:`csu_lib.training.stacked`), and :func:`train_group`, which trains them.

- Runs are compatible when their configurations differ only in the seed and the corruption
  settings (:data:`VARYING`): they share the audio, the features, the backbone, the loss, the
  method and every training setting (:func:`check_group` names the field that differs). Runs
  that train on a part of their split (``data.holdout_fold``, out-of-fold teachers) group only
  with runs of the same seed, which cuts the split alike.
- Methods that transform batches (:data:`csu_lib.training.methods.BATCH_METHODS`: mixup, PSL)
  are trained one run at a time (:func:`groupable`); teacher methods group fine (each run gets
  its own teacher, trained first).
- Each run writes its own run folder in the usual layout with the sequential run's
  configuration, and so run id: a sweep treats both as the same run. Early stopping is per run:
  a stopped run's history and best weights freeze (its stacked copy is still computed, to no
  effect) and the group ends when every run has stopped.
- Resume: run the same group again; a group resumed after an interruption is bit-identical on the
  CPU to the same group uninterrupted. When the incomplete runs' checkpoints are at different
  epochs (a crash between two runs' checkpoint writes), each is resumed alone by
  :func:`~csu_lib.training.run.train_run`, which reads the same checkpoint format (its record
  then says from which epoch: ``alone_from_epoch``).

Limits: one process (not under torchrun).
"""
from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import RunConfig
from ..core.errors import ConfigError
from ..features import FeatureLoader
from ..records import RunRecord, flatten_into, is_complete, load_checkpoint, load_run, prepare_run_dir, run_lock
from .distributed import world_size_from_env
from .engine import StepHook, finish_run, make_state, restore, start_runs, train_epochs
from .methods import BATCH_METHODS
from ..pipeline.data_pipeline import DataCache, PreparedData, resolve_device, restrict_training
from .run import train_dependencies, train_run
from .stacked import Stacked


#: The configuration fields that may differ inside a group (everything else must be equal).
VARYING = ("train.seed", "corruption")


def _shared_settings(config: RunConfig) -> dict:
    """The configuration without the fields a group may vary (:data:`VARYING`)."""
    d = config.to_dict()
    d.pop("corruption")
    if config.data.holdout_fold is None:  # a fold teacher's training clips depend on its seed
        d["train"].pop("seed")
    return d


def group_key(config: RunConfig) -> str:
    """Runs with the same key can be trained as one group: their configurations are equal except
    for the seed and the corruption settings (so they share the audio, the features, the model
    and every training setting)."""
    return json.dumps(_shared_settings(config), sort_keys=True)


def groupable(config: RunConfig) -> bool:
    """Whether a run can be trained in a group at all: its method does not transform batches and
    it does not recalibrate batch norm (``train.bn_recalibration``: one-run backends only)."""
    return config.method.name not in BATCH_METHODS and not config.train.bn_recalibration


def check_group(configs: Sequence[RunConfig]) -> None:
    """A :class:`ConfigError` naming what makes ``configs`` unfit to be one group."""
    if not configs:
        raise ConfigError("a vectorised group needs at least one run")
    ids = [c.run_id for c in configs]
    if len(set(ids)) < len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"a vectorised group lists the same run twice: {', '.join(dup)}")
    for c in configs:
        if c.train.bn_recalibration:
            raise ConfigError(f"run {c.run_id}: train.bn_recalibration={c.train.bn_recalibration} is not supported in a "
                              "vectorised group; train it on its own (train_run) or set train.bn_recalibration=0")
        if not groupable(c):
            raise ConfigError(f"run {c.run_id}: method {c.method.name!r} transforms batches "
                              f"({', '.join(sorted(BATCH_METHODS))} do); train it on its own (train_run), "
                              "not in a vectorised group")
    ref: dict[str, Any] = {}
    flatten_into("", _shared_settings(configs[0]), ref)
    for c in configs[1:]:
        other: dict[str, Any] = {}
        flatten_into("", _shared_settings(c), other)
        diff = sorted(k for k in ref.keys() | other.keys() if ref.get(k) != other.get(k))
        if diff:
            shown = ", ".join(f"{k} ({ref.get(k)!r} vs {other.get(k)!r})" for k in diff[:3])
            raise ConfigError(f"runs {configs[0].run_id} and {c.run_id} cannot share a vectorised group: they "
                              f"differ in {shown}{' ...' if len(diff) > 3 else ''}; only {' and '.join(VARYING)} may differ")


def plan_groups(configs: Sequence[RunConfig], max_size: int) -> list[list[RunConfig]]:
    """``configs`` cut into groups of at most ``max_size`` compatible runs, in order of first
    appearance; runs that cannot be grouped come as groups of one."""
    if not isinstance(max_size, int) or max_size < 1:
        raise ConfigError(f"the vectorised group size must be a positive integer, got {max_size!r}")
    groups: dict[str, list[list[RunConfig]]] = {}
    order: list[list[RunConfig]] = []
    for c in configs:
        if not groupable(c) or max_size == 1:
            order.append([c])
            continue
        chunks = groups.setdefault(group_key(c), [])
        if not chunks or len(chunks[-1]) >= max_size:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(c)
    return order



def train_group(configs: Sequence[RunConfig], run_dirs: Sequence[str | os.PathLike], *,
                data: Optional[Sequence[Optional[PreparedData]]] = None,
                data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                progress: bool = True, on_step: Optional[StepHook] = None) -> list[RunRecord]:
    """Train the runs ``configs`` (one group, see :func:`check_group`) into ``run_dirs`` at once
    and return their records in order. Complete runs are skipped; interrupted ones resume.

    ``data`` optionally gives each run's :class:`PreparedData` (same order; None entries are
    prepared here). ``on_step(epoch, step)`` is called before every optimiser step.
    """
    configs = list(configs)
    if len(run_dirs) != len(configs):
        raise ConfigError(f"train_group: {len(configs)} configs but {len(run_dirs)} run folders")
    check_group(configs)
    if world_size_from_env() > 1:
        raise ConfigError("vectorised groups run in one process; under torchrun train the runs with train_run")
    dirs = [prepare_run_dir(d, c) for d, c in zip(run_dirs, configs)]
    given = list(data) if data is not None else [None] * len(configs)
    pending = [i for i in range(len(configs)) if not is_complete(dirs[i])]
    ckpts = {i: load_checkpoint(dirs[i]) for i in pending}
    epochs = {-1 if ck is None else ck["epoch"] for ck in ckpts.values()}
    if len(pending) == 1 or len(epochs) > 1:  # nothing to stack, or checkpoints out of step: one by one
        for i in pending:
            train_run(configs[i], dirs[i], data=given[i], data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                      on_step=on_step)
    elif pending:
        with ExitStack() as locks:  # one process trains a run at a time
            for i in pending:
                locks.enter_context(run_lock(dirs[i]))
            _train_stacked([configs[i] for i in pending], [dirs[i] for i in pending], [given[i] for i in pending],
                           [ckpts[i] for i in pending], data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                           on_step=on_step)
    return [load_run(d) for d in dirs]


def _train_stacked(configs: list[RunConfig], dirs: list[Path], given: list[Optional[PreparedData]],
                   ckpts: list[Optional[dict]], *, data_dir, cache_dir, progress: bool,
                   on_step: Optional[StepHook]) -> None:
    """Train the pending runs of a group (checkpoints in step) as one stacked model."""
    prepared = DataCache(data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    datas = [restrict_training(g, c) if g is not None else prepared(c) for c, g in zip(configs, given)]
    if any(d.store.path != datas[0].store.path or not np.array_equal(d.train_idx, datas[0].train_idx)
           for d in datas[1:]):
        raise ConfigError("the runs of a vectorised group must share one feature store and training split")
    for c, d, rd in zip(configs, datas, dirs):
        train_dependencies(c, rd, data=d, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    device = resolve_device(configs[0].train.device)
    states = [make_state(c, rd, d, device) for c, rd, d in zip(configs, dirs, datas)]
    feats = FeatureLoader(datas[0].store, device, configs[0].train.features_in_memory)
    backend = Stacked(states, device, feats)
    start_epoch = restore(backend, states, ckpts)
    start_runs(backend, states)
    train_epochs(backend, states, start_epoch, progress=progress, on_step=on_step)
    for k, state in enumerate(states):
        finish_run(backend, k, state)
