"""The Ray engine of ``csu sweep --engine ray``: one Ray task per run, in parallel on a Ray
cluster (``pip install 'csu-lab[ray]'``). It shares the run layout of the local engine: a run
lives in ``<runs_dir>/<run_id>``, a complete run is skipped, an incomplete one resumes from its
last epoch checkpoint, so a sweep interrupted anywhere (Ctrl-C, a lost node, a crashed task)
finishes when the same command is run again, on either engine.

The engine:

- connects with ``ray.init(address)``: ``None`` reads ``$RAY_ADDRESS`` and, when that is unset,
  starts a private local Ray instance for the duration of the sweep (``auto`` joins a cluster
  already running on this machine instead); an already open Ray connection in this process is
  used as it is (and left open);
- prepares every dataset and feature cache the runs need **once, on the driver**, before any
  task starts, so concurrent tasks only read them (no two builders race on one folder);
- submits one task per incomplete run with ``num_cpus=cpus_per_run`` and ``num_gpus=gpus_per_run``
  (default: 1 GPU for runs whose device is ``cuda``, or ``auto`` when the cluster has GPUs, else 0);
  the task sets ``torch.set_num_threads`` to its CPU share and trains into the runs folder;
- a run whose method needs a teacher (teacher_mask, label_correction, psl without
  ``method.teacher``) starts only after its teacher run's task finished (the dependencies of
  :mod:`csu_lib.training.planner`), so a teacher shared by several students is trained once,
  not concurrently;
- streams one line per finished task and a final summary; a failed task is reported with its run
  id and error while the others go on, and the sweep reports the failures at the end.

The runs folder, the data folder and the cache folder must be on a filesystem that every node
sees at the same path (NFS, a cluster filesystem; a single machine trivially qualifies): tasks
write their run there and the driver reads the records back. csu-lab (this version) must be
importable on every node.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from ..config import RunConfig
from ..core.errors import ConfigError, CsuError
from ..core.paths import default_cache_dir, default_data_dir
from ..records import has_checkpoint, is_complete, layout, load_run
from ..pipeline import DataCache
from ..training import dependencies, plan, train_run
from .grid import run_dir_for
from .local import SweepResult

RAY_EXTRA_HINT = "pip install 'csu-lab[ray]'"


def import_ray():
    """``ray``, or a :class:`CsuError` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise CsuError(f"--engine ray needs Ray, which is not installed ({exc}); install it with "
                       f"{RAY_EXTRA_HINT}, or use --engine local") from None
    return ray


def check_resources(cpus_per_run: Optional[float], gpus_per_run: Optional[float]) -> None:
    """Validate ``--cpus-per-run`` / ``--gpus-per-run`` (None: the default)."""
    if cpus_per_run is not None and not (cpus_per_run > 0):
        raise ConfigError(f"--cpus-per-run must be > 0, got {cpus_per_run!r}")
    if gpus_per_run is not None:
        if not gpus_per_run >= 0:
            raise ConfigError(f"--gpus-per-run must be >= 0, got {gpus_per_run!r}")
        if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
            raise ConfigError(f"--gpus-per-run above 1 must be a whole number (Ray shares a GPU only in "
                              f"fractions below 1), got {gpus_per_run!r}")


def gpus_for(config: RunConfig, gpus_per_run: Optional[float], cluster_gpus: float) -> float:
    """The GPUs one run asks for: ``gpus_per_run`` when given, else 1 for a ``cuda`` device,
    1 for ``auto`` on a cluster with GPUs, 0 otherwise."""
    if gpus_per_run is not None:
        return float(gpus_per_run)
    device = config.train.device
    if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0):
        return 1.0
    return 0.0


def torch_threads(cpus: float) -> int:
    """The torch intra-op threads of a task holding ``cpus`` CPUs (at least 1)."""
    return max(1, int(cpus))


def _train_task(config_dict: dict, run_dir: str, data_dir: str, cache_dir: str, threads: int,
                *teacher_done: Any) -> dict:
    """Body of one Ray task: train (or resume) one run, return a small summary.

    ``teacher_done`` are the results of the teacher tasks this run waits for (Ray passes them
    only once they finished; their values are not used)."""
    torch.set_num_threads(threads)
    config = RunConfig.from_dict(config_dict)
    resumed = has_checkpoint(run_dir)
    t0 = time.perf_counter()
    record = train_run(config, run_dir, data_dir=data_dir, cache_dir=cache_dir, progress=False)
    return {"run_id": config.run_id, "test_mAP": float(record.final_metrics["test"]["mAP"]),
            "seconds": time.perf_counter() - t0, "host": socket.gethostname(), "threads": threads,
            "resumed": resumed, "complete": bool(record.complete)}


def _error_text(exc: BaseException) -> str:
    """The root error of a failed Ray task in one line (``ErrorType: message``)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def _prepare_on_driver(configs: Sequence[RunConfig], data_dir: Path, cache_dir: Path, progress: bool) -> None:
    """Build every dataset and feature cache the runs need, once, before any task starts."""
    prepared = DataCache(data_dir=data_dir, cache_dir=cache_dir, progress=progress)
    for config in configs:
        prepared(config)


def _connect(ray, address: Optional[str]) -> tuple[bool, str]:
    """Connect to Ray; returns (whether this call opened the connection, a description)."""
    if ray.is_initialized():
        return False, "the Ray connection already open in this process"
    existing = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"address": address}
    if existing:
        where = f"the Ray cluster at {existing}"
    else:  # a private instance for this sweep, even when a local cluster runs (--address auto joins it)
        kwargs.update(address="local", include_dashboard=False)
        where = "a local Ray instance"
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        hint = ("; a cluster with token authentication (the default of `ray start` since Ray 2.59) also needs "
                "RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token) in this environment"
                if existing else "")
        raise CsuError(f"cannot connect to {where} (--address / RAY_ADDRESS): {exc}{hint}") from None
    return True, where


def _largest_node(ray) -> dict[str, float]:
    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
    out = {"CPU": 0.0, "GPU": 0.0}
    for node in nodes:
        res = node.get("Resources", {})
        for k in out:
            out[k] = max(out[k], float(res.get(k, 0.0)))
    return out


def run_ray(configs: Iterable[RunConfig], runs_dir: str | os.PathLike, *, address: Optional[str] = None,
            cpus_per_run: Optional[float] = None, gpus_per_run: Optional[float] = None,
            data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
            progress: bool = True) -> SweepResult:
    """Train every incomplete run as a Ray task (see the module notes) and return what happened.

    ``cpus_per_run``: CPUs each task reserves and the torch threads it uses (default 1);
    ``gpus_per_run``: GPUs each task reserves (default: see :func:`gpus_for`). A failed run does
    not stop the others; it is listed in ``SweepResult.failures``.
    """
    check_resources(cpus_per_run, gpus_per_run)
    ray = import_ray()
    configs = list(configs)
    runs_dir = Path(runs_dir).expanduser().absolute()
    data_dir = Path(data_dir or default_data_dir()).expanduser().absolute()
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()
    cpus = float(cpus_per_run) if cpus_per_run is not None else 1.0

    skipped = [c.run_id for c in configs if is_complete(run_dir_for(c, runs_dir))]
    # teachers come before their students (the planner), each trained as its own task
    todo = {c.run_id: c for c in plan(configs, runs_dir) if not is_complete(run_dir_for(c, runs_dir))}
    if progress:
        study_ids = {c.run_id for c in configs}
        extra = sum(rid not in study_ids for rid in todo)
        note = f" (+{extra} teacher run(s) they need)" if extra else ""
        print(f"{len(configs)} runs: {len(skipped)} complete, {len(todo) - extra} to train on Ray{note}", flush=True)
    if not todo:
        return SweepResult(records=[load_run(run_dir_for(c, runs_dir)) for c in configs], skipped=skipped)

    _prepare_on_driver(list(todo.values()), data_dir, cache_dir, progress)
    opened, where = _connect(ray, address)
    try:
        largest = _largest_node(ray)
        gpus = {rid: gpus_for(c, gpus_per_run, largest["GPU"]) for rid, c in todo.items()}
        for rid, config in todo.items():
            if config.train.device.startswith("cuda") and gpus[rid] == 0:
                raise ConfigError(f"run {rid} has device {config.train.device!r} but --gpus-per-run is 0")
            if gpus[rid] > largest["GPU"]:
                raise CsuError(f"run {rid} needs {gpus[rid]:g} GPU(s) per task but no node of {where} has more "
                               f"than {largest['GPU']:g}; lower --gpus-per-run or use device cpu")
        if cpus > largest["CPU"]:
            raise CsuError(f"--cpus-per-run {cpus:g} is more than any node of {where} has "
                           f"({largest['CPU']:g} CPUs)")
        if progress:
            res = ray.cluster_resources()
            print(f"Ray: {where}, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs; per run {cpus:g} CPU(s) "
                  f"({torch_threads(cpus)} torch thread(s)), {max(gpus.values()):g} GPU(s); runs folder {runs_dir}",
                  flush=True)

        remote = ray.remote(_train_task)
        refs: dict[str, Any] = {}
        for rid, config in todo.items():  # teachers come before their students in ``todo``
            deps = [refs[dep.run_id] for dep, _ in dependencies(config, run_dir_for(config, runs_dir))
                    if dep.run_id in refs]
            refs[rid] = remote.options(num_cpus=cpus, num_gpus=gpus[rid], name=f"csu-run-{rid}").remote(
                config.to_dict(), str(run_dir_for(config, runs_dir)), str(data_dir), str(cache_dir),
                torch_threads(cpus), *deps)

        by_ref = {ref: rid for rid, ref in refs.items()}
        pending = list(refs.values())
        trained: list[str] = []
        failures: list[tuple[str, str]] = []
        t_start = time.perf_counter()
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                rid = by_ref[ready[0]]
                label = todo[rid].corruption.label
                k = len(trained) + len(failures) + 1
                try:
                    out = ray.get(ready[0])
                except Exception as exc:  # a failed task: report it, keep the others going
                    failures.append((rid, _error_text(exc)))
                    if progress:
                        print(f"[{k}/{len(todo)}] {rid} ({label}): FAILED: {failures[-1][1]}", flush=True)
                    continue
                trained.append(rid)
                if progress:
                    note = ", resumed" if out["resumed"] else ""
                    print(f"[{k}/{len(todo)}] {rid} ({label}): test mAP {out['test_mAP']:.4f} in "
                          f"{out['seconds']:.0f} s (on {out['host']}{note})", flush=True)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            print(f"interrupted: {len(pending)} runs cancelled; run the same command again to resume them",
                  flush=True)
            raise
    finally:
        if opened:
            ray.shutdown()

    records = []
    for config in configs:
        rd = run_dir_for(config, runs_dir)
        if is_complete(rd):
            records.append(load_run(rd))
        elif config.run_id in trained:
            failures.append((config.run_id, f"the task finished but {rd / layout.RECORD} is not visible here: the "
                                            "runs folder must be on a filesystem every node shares"))
    if progress:
        print(f"Ray sweep: {len(trained)} trained, {len(failures)} failed, {len(skipped)} already complete, "
              f"in {time.perf_counter() - t_start:.0f} s", flush=True)
    return SweepResult(records=records, trained=trained, skipped=skipped, failures=failures)
