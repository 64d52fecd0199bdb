"""Multi-process training through ``torchrun`` (DistributedDataParallel).

:func:`csu_lib.training.train_run` calls :func:`from_env`: with ``WORLD_SIZE`` unset or 1 it returns
``None`` and the run is the ordinary one-process run; under ``torchrun`` (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` set) it joins -- or starts -- the
default process group and returns a :class:`DistContext`:

- backend ``nccl`` with device ``cuda:LOCAL_RANK`` on CUDA, ``gloo`` on the CPU
  (``CSU_DIST_BACKEND`` overrides the choice);
- ``train.batch_size`` stays the GLOBAL batch: every rank draws the same seeded order and takes
  its contiguous share of each global batch (:func:`shard`); the loss of a share is weighted by
  ``share * world_size / global`` (:func:`share_weight`) so that the gradient averaged over ranks
  is the gradient of the global batch's mean loss, uneven last batches included;
- rank 0 is the only rank that writes files; the others wait for it where it matters
  (:meth:`DistContext.main_first`, :meth:`DistContext.barrier`).

The helpers here wrap ``torch.distributed`` with the few collectives the loop needs; they take
care of putting tensors on the backend's device (CPU for gloo, the rank's GPU for nccl).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import ConfigError, CsuError

T = TypeVar("T")

#: Environment variables torchrun sets for every worker.
ENV_VARS: tuple[str, ...] = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


class RankDivergenceError(CsuError):
    """Ranks that must hold identical state (parameters, ``s``) do not."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    #: True when :func:`from_env` started the process group (and :func:`shutdown` ends it).
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sync_batchnorm(self) -> bool:
        """SyncBatchNorm needs GPU tensors (torch raises on CPU), so it is used on CUDA only."""
        return self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        """What the run record keeps about the distribution."""
        return {"world_size": self.world_size, "backend": self.backend,
                "sync_batchnorm": self.sync_batchnorm, "batch_split": "contiguous share of each global batch",
                "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))}

    # -- collectives -------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def broadcast_object(self, obj: Any = None, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (picklable objects)."""
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self._comm_device)
        return box[0]

    def all_gather_object(self, obj: Any) -> list:
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over ranks (a new tensor on ``tensor``'s device)."""
        t = tensor.detach().to(self._comm_device, copy=True)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.to(tensor.device)

    def main_first(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` on rank 0, then (if it succeeded) on the other ranks.

        For work with a shared on-disk result (dataset generation, the feature cache): rank 0
        builds it, the others then find it built. An error on rank 0 is raised on every rank
        (as a :class:`CsuError` naming ``what``) instead of leaving the others waiting.
        """
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:
                self.broadcast_object(f"{type(exc).__name__}: {exc}")
                raise
            self.broadcast_object(None)
            return result
        error = self.broadcast_object()
        if error is not None:
            raise CsuError(f"{what} failed on rank 0: {error}")
        return fn()

    def main_only(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` on rank 0 only and return its (picklable) result on every rank; an error
        on rank 0 is raised on every rank (as a :class:`CsuError` naming ``what``)."""
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:
                self.broadcast_object(("error", f"{type(exc).__name__}: {exc}"))
                raise
            self.broadcast_object(("ok", result))
            return result
        status, value = self.broadcast_object()
        if status == "error":
            raise CsuError(f"{what} failed on rank 0: {value}")
        return value

    def check_identical(self, name: str, tensor: torch.Tensor) -> None:
        """Raise :class:`RankDivergenceError` on every rank unless ``tensor`` is bit-identical
        on all ranks (compared with rank 0's copy)."""
        local = tensor.detach().to(self._comm_device, copy=True)
        ref = local.clone()
        dist.broadcast(ref, src=0)
        differs = torch.tensor([float(not torch.equal(ref, local))], device=self._comm_device)
        dist.all_reduce(differs, op=dist.ReduceOp.MAX)
        if differs.item() > 0:
            raise RankDivergenceError(f"{name} differs between ranks (world size {self.world_size}); "
                                      "the ranks' training states have diverged")

    @property
    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def world_size_from_env() -> int:
    raw = os.environ.get("WORLD_SIZE", "1") or "1"
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable WORLD_SIZE={raw!r} is not an integer") from None


def from_env(device_name: str = "auto") -> Optional[DistContext]:
    """The :class:`DistContext` of a torchrun worker, or ``None`` for a one-process run.

    ``device_name`` is ``train.device``: ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK`` when CUDA
    is available (``auto``: else the CPU); ``cpu`` trains on the CPU with gloo; an explicit
    ``cuda:N`` is refused (every rank needs its own GPU).
    """
    world_size = world_size_from_env()
    if world_size <= 1:
        return None
    missing = [k for k in ("RANK", "LOCAL_RANK") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start distributed "
                          "runs with torchrun (python -m torch.distributed.run)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device_name.startswith("cuda:"):
        raise ConfigError(f"train.device={device_name!r} in a distributed run: use 'cuda' or 'auto' "
                          "(rank r trains on cuda:LOCAL_RANK)")
    if device_name in ("auto", "cuda") and torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                              "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device_name == "cuda":
        raise ConfigError("train.device='cuda' but no CUDA device is available; use 'cpu' or 'auto'")
    elif device_name in ("auto", "cpu"):
        device = torch.device("cpu")
    else:
        raise ConfigError(f"train.device={device_name!r} is not supported in a distributed run "
                          "(use 'auto', 'cuda' or 'cpu')")
    backend = os.environ.get("CSU_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                **({"device_id": device} if device.type == "cuda" else {}))
    elif dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise CsuError(f"an initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                       f"does not match the environment (RANK={rank}, WORLD_SIZE={world_size})")
    else:
        backend = dist.get_backend()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend,
                       device=device, owns_group=owns)


def shutdown(ctx: Optional[DistContext]) -> None:
    """Destroy the process group if :func:`from_env` created it."""
    if ctx is not None and ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous share of one global batch (sizes differ by at most one; the
    first ``len(batch) % world_size`` ranks take one more; a share may be empty)."""
    return np.array_split(np.asarray(batch), world_size)[rank]


def share_weight(share: int, global_batch: int, world_size: int) -> float:
    """The factor on a share's mean loss that makes the rank average of gradients equal the
    gradient of the global batch's mean loss: ``share * world_size / global_batch``."""
    return share * world_size / global_batch
