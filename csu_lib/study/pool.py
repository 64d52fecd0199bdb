"""The parallel local engine: independent runs trained in worker processes on this machine.

:func:`run_parallel` (what :func:`csu_lib.study.run_all` uses when ``workers`` > 1):

- plans the runs with their dependencies (:func:`csu_lib.training.plan`: a teacher before the
  students that need it) and skips complete ones;
- prepares every dataset and feature cache on the driver first (one
  :class:`~csu_lib.training.DataCache`), so workers only read them;
- keeps up to ``workers`` runs in flight in a pool of worker processes (``spawn``), a run being
  submitted once every run it depends on is complete; each worker sets
  ``torch.set_num_threads(threads)``;
- prints one line per finished run and keeps an overall bar (runs done / total, ETA).

The numbers of a run depend on its configuration and on the torch thread count it trains with,
never on the number of workers or on which worker trains it: 1 worker and 2 workers with the
same ``threads`` give bit-identical records (tested). A worker exits when its parent process
dies (so killing ``csu figures`` leaves no orphan training a run), and a run directory is locked
while a process trains it (:func:`csu_lib.records.run_lock`).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..config import RunConfig
from ..core.errors import ConfigError, CsuError
from ..core.paths import default_cache_dir, default_data_dir
from ..records import is_complete
from ..pipeline import DataCache
from ..training import dependencies, plan, train_run

#: Environment variables that set the defaults of ``workers`` and ``threads`` (``csu figures
#: --workers N --threads-per-worker T`` sets them for its notebooks).
WORKERS_ENV, THREADS_ENV = "CSU_WORKERS", "CSU_THREADS_PER_WORKER"


def usable_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _positive_int(value, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1 or isinstance(value, bool) or (isinstance(value, float) and value != n):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return n


def resolve_workers(workers: Optional[int] = None, threads: Optional[int] = None) -> tuple[int, int]:
    """(workers, torch threads per worker): the arguments, else ``$CSU_WORKERS`` /
    ``$CSU_THREADS_PER_WORKER``, else one worker per usable core with one thread each (on the
    project's 2-core machine two 1-thread workers were never slower than one 2-thread process:
    whole quick runs 1.04x and 0.99x, training steps alone 1.22x; ``bench/time_to_converge.py``)."""
    cores = usable_cpus()
    w = _positive_int(workers if workers is not None else os.environ.get(WORKERS_ENV, cores), "workers")
    t = _positive_int(threads if threads is not None else os.environ.get(THREADS_ENV, max(1, cores // w)),
                      "threads per worker")
    return w, t


def _exit_with_parent(parent: int) -> None:
    """Worker side: exit at once when the process that started the pool is gone."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _init_worker(threads: int, parent: int) -> None:
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="csu-parent-watch").start()


def _train_task(config_dict: dict, run_dir: str, data_dir: str, cache_dir: str) -> dict:
    """One run in a worker; returns what the driver prints."""
    config = RunConfig.from_dict(config_dict)
    t0 = time.perf_counter()
    record = train_run(config, run_dir, data_dir=data_dir, cache_dir=cache_dir, progress=False)
    fm = record.final_metrics
    return {"test_mAP": float(fm["test"]["mAP"]), "seconds": time.perf_counter() - t0, "pid": os.getpid(),
            "epochs": int(fm["epochs_run"]), "best_epoch": int(fm["best_epoch"]),
            "stopped_early": bool(fm.get("stopped_early", False)), "converged": fm.get("converged")}


def run_parallel(configs: Sequence[RunConfig], runs_dir: str | os.PathLike, *, workers: int, threads: int,
                 data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                 progress: bool = True) -> None:
    """Train every incomplete run of ``configs`` (and the runs they depend on) with ``workers``
    worker processes of ``threads`` torch threads each; see the module notes. A failing run
    stops the sweep with its error once the runs in flight have finished."""
    runs_dir = Path(runs_dir).expanduser().absolute()
    data_dir = Path(data_dir or default_data_dir()).expanduser().absolute()
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()
    todo = [c for c in plan(configs, runs_dir) if not is_complete(runs_dir / c.run_id)]
    if not todo:
        return
    prepared = DataCache(data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    for config in todo:  # datasets and feature caches are built here, once; workers only read them
        prepared(config)
    waiting = {c.run_id: {d.run_id for d, _ in dependencies(c, runs_dir / c.run_id)
                          if not is_complete(runs_dir / d.run_id)} for c in todo}
    pending = list(todo)
    running: dict[Future, RunConfig] = {}
    failure: Optional[BaseException] = None
    bar = tqdm(total=len(todo), disable=not progress, desc=f"runs ({workers} workers x {threads} threads)",
               unit="run")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    interrupted = True
    try:
        while pending or running:
            if failure is None:
                for config in [c for c in pending if not waiting[c.run_id]][: workers - len(running)]:
                    pending.remove(config)
                    running[pool.submit(_train_task, config.to_dict(), str(runs_dir / config.run_id),
                                        str(data_dir), str(cache_dir))] = config
            if not running:
                if failure is None and pending:  # cannot happen: plan() orders every dependency first
                    raise CsuError(f"runs {[c.run_id for c in pending]} wait for runs that are not planned")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                config = running.pop(future)
                try:
                    out = future.result()
                except BaseException as exc:  # noqa: BLE001 - reported with the run, raised below
                    failure = failure or exc
                    if progress:
                        bar.write(f"run {config.run_id} ({config.corruption.label}) FAILED: {exc}")
                    continue
                for others in waiting.values():
                    others.discard(config.run_id)
                bar.update(1)
                if progress:
                    how = "early stop" if out["stopped_early"] else "epoch cap"
                    if out["converged"] is not None:
                        how += ", converged" if out["converged"] else ", NOT converged"
                    bar.write(f"[{bar.n}/{len(todo)}] {config.run_id} ({config.corruption.label}): test mAP "
                              f"{out['test_mAP']:.4f}, best epoch {out['best_epoch'] + 1} of {out['epochs']} "
                              f"({how}), {out['seconds']:.0f} s")
        interrupted = False
    finally:
        bar.close()
        if interrupted:  # Ctrl-C or an error of the driver: stop the runs in flight now
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    if failure is not None:
        raise failure
