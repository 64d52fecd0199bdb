"""``csu sweep``: train a study's runs with an engine, the local one (:mod:`.local`, the default)
or Ray (:mod:`.ray_engine`)."""
from __future__ import annotations

import os
from typing import Iterable, Optional

from ..config import RunConfig
from ..core.errors import ConfigError
from .local import SweepResult, run_local
from .ray_engine import run_ray

#: The engines ``csu sweep --engine`` accepts.
ENGINES = ("local", "ray")


def run_sweep(configs: Iterable[RunConfig], runs_dir: str | os.PathLike, *, engine: str = "local",
              address: Optional[str] = None, cpus_per_run: Optional[float] = None,
              gpus_per_run: Optional[float] = None, data_dir: Optional[str | os.PathLike] = None,
              cache_dir: Optional[str | os.PathLike] = None, progress: bool = True,
              vectorise: int = 1, workers: Optional[int] = None, threads: Optional[int] = None) -> SweepResult:
    """Train a sweep with ``engine`` (``local`` or ``ray``); the Ray options are refused with
    the local engine, and ``vectorise`` > 1, ``workers`` and ``threads`` with the Ray engine,
    rather than ignored."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if not isinstance(vectorise, int) or isinstance(vectorise, bool) or vectorise < 1:
        raise ConfigError(f"--vectorise must be a positive integer, got {vectorise!r}")
    if engine == "ray" and vectorise > 1:
        raise ConfigError("--vectorise: only with the local engine (the Ray engine trains one run per task; "
                          "use --gpus-per-run below 1 to share a GPU between runs)")
    if engine == "ray" and (workers is not None or threads is not None):
        raise ConfigError("--workers / --threads-per-worker: only with the local engine (with --engine ray use "
                          "--cpus-per-run)")
    if vectorise > 1 and workers is not None and workers > 1:
        raise ConfigError("--vectorise and --workers > 1 do not combine: a vectorised group trains in one process")
    if engine == "local":
        given = [name for name, value in (("--address", address), ("--cpus-per-run", cpus_per_run),
                                          ("--gpus-per-run", gpus_per_run)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --engine ray (the local engine trains on this "
                              "machine: --workers, --threads-per-worker)")
        return run_local(configs, runs_dir, data_dir=data_dir, cache_dir=cache_dir, progress=progress,
                         vectorise=vectorise, workers=workers, threads=threads)
    return run_ray(configs, runs_dir, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                   data_dir=data_dir, cache_dir=cache_dir, progress=progress)
