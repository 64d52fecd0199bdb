"""The local engine: the runs of a sweep trained on this machine -- in ``workers`` worker
processes (:mod:`.pool`, the default: one per core), one after another in this process (one
worker), or up to ``vectorise`` at once as one stacked model. Complete runs are skipped,
incomplete ones resumed, so a study interrupted at any point finishes when the same call is made
again.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

from ..config import RunConfig
from ..records import RunRecord, is_complete, load_run
from ..pipeline import DataCache
from ..training import plan, plan_groups, train_group, train_run
from .grid import run_dir_for
from .pool import resolve_workers, run_parallel


def run_all(configs: Iterable[RunConfig], runs_dir: str | os.PathLike, *,
            data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
            progress: bool = True, vectorise: int = 1, workers: Optional[int] = None,
            threads: Optional[int] = None) -> list[RunRecord]:
    """Train every config not yet complete and return all records in order.

    The runs they depend on (teachers) are trained first (:func:`csu_lib.training.plan`). Runs
    that share the same data and corruption reuse one prepared dataset (features are read once,
    :class:`~csu_lib.training.DataCache`). ``workers`` worker processes with ``threads`` torch
    threads each train independent runs at once (None: ``$CSU_WORKERS`` /
    ``$CSU_THREADS_PER_WORKER``, else one single-threaded worker per core,
    :func:`~csu_lib.study.pool.resolve_workers`); with one worker the runs are trained in this
    process, with ``threads`` threads. The numbers depend on ``threads``, not on ``workers``.
    ``vectorise`` > 1 trains up to that many compatible runs at once in this process instead
    (seeds and corruption settings of one backbone; :func:`csu_lib.training.train_group`, for a
    GPU).
    """
    configs = list(configs)
    todo = [c for c in plan(configs, runs_dir) if not is_complete(run_dir_for(c, runs_dir))]
    if progress:
        study_ids = {c.run_id for c in configs}
        extra = sum(c.run_id not in study_ids for c in todo)
        n_complete = sum(is_complete(run_dir_for(c, runs_dir)) for c in configs)
        note = f" (+{extra} teacher run(s) they need)" if extra else ""
        print(f"{len(configs)} runs: {n_complete} complete, {len(todo) - extra} to train{note}", flush=True)

    if vectorise == 1:
        n_workers, n_threads = resolve_workers(workers, threads)
        if n_workers > 1 and len(todo) > 1:
            run_parallel(todo, runs_dir, workers=n_workers, threads=n_threads, data_dir=data_dir, cache_dir=cache_dir,
                         progress=progress)
            return [load_run(run_dir_for(c, runs_dir)) for c in configs]
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            _train_in_process(todo, runs_dir, data_dir, cache_dir, progress, 1)
        finally:
            torch.set_num_threads(before)
    else:
        _train_in_process(todo, runs_dir, data_dir, cache_dir, progress, vectorise)
    return [load_run(run_dir_for(c, runs_dir)) for c in configs]


def _train_in_process(todo: list[RunConfig], runs_dir, data_dir, cache_dir, progress: bool, vectorise: int) -> None:
    """The runs of ``todo`` (in planned order) one after another, or in vectorised groups."""
    data_for = DataCache(data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    done = 0
    for group in plan_groups(todo, vectorise):
        t0 = time.perf_counter()
        dirs = [run_dir_for(c, runs_dir) for c in group]
        if len(group) == 1:
            group_records = [train_run(group[0], dirs[0], data=data_for(group[0]), progress=progress)]
        else:
            group_records = train_group(group, dirs, data=[data_for(c) for c in group], progress=progress)
        seconds = time.perf_counter() - t0
        for config, rd, record in zip(group, dirs, group_records):
            done += 1
            if progress:
                together = f" ({len(group)} vectorised)" if len(group) > 1 else ""
                print(f"[{done}/{len(todo)}] {rd.name} ({config.corruption.label}): test mAP "
                      f"{record.final_metrics['test']['mAP']:.4f} in {seconds:.0f} s{together}", flush=True)


@dataclass
class SweepResult:
    """What a sweep did: the records of every complete run (in study order), the run ids
    trained now, the ids skipped as already complete, and ``(run_id, error)`` per failed run."""

    records: list[RunRecord]
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_local(configs: Iterable[RunConfig], runs_dir: str | os.PathLike, *,
              data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
              progress: bool = True, vectorise: int = 1, workers: Optional[int] = None,
              threads: Optional[int] = None) -> SweepResult:
    """The local engine as a sweep: :func:`run_all` (``workers`` worker processes, or in this
    process; up to ``vectorise`` compatible runs at once). A failing run stops the sweep with its
    exception, as ``run_all`` does."""
    configs = list(configs)
    skipped = [c.run_id for c in configs if is_complete(run_dir_for(c, runs_dir))]
    records = run_all(configs, runs_dir, data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                      vectorise=vectorise, workers=workers, threads=threads)
    trained = [c.run_id for c in configs if c.run_id not in set(skipped)]
    return SweepResult(records=records, trained=trained, skipped=skipped)
