"""Batches for training and evaluation: ``FeatureLoader(store, device)(rows)``.

What training holds in memory (:func:`hold_in_memory`, ``train.features_in_memory``):

- ``"auto"`` (default): a store of at most :data:`IN_MEMORY_BYTES` (2 GiB) that also fits in a
  quarter of the free memory of the training device is copied once into a float16 tensor on that
  device (GPU memory when training on CUDA); larger stores are streamed.
- ``"always"``: held in memory; refused (ConfigError) if larger than 80% of the free memory.
- ``"never"``: always streamed.

Streamed batches on CUDA go through pinned (page-locked) host buffers and are copied with
``non_blocking=True``; :meth:`FeatureLoader.prefetch` starts a background thread that reads the
announced next batches into those buffers while the GPU works. On the CPU there is no prefetch
thread (it would compete with the model for the same cores). Neither changes the numbers or the
order of the batches: a batch is always exactly the rows asked for, converted float16 -> float32
(exact).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Optional

import numpy as np
import torch

from ..core.errors import ConfigError
from .shards import FeatureStore, ShardedFeatures

#: Stores up to this size may be held in memory by ``train.features_in_memory="auto"``.
IN_MEMORY_BYTES = 2 * 1024**3


IN_MEMORY_MODES = ("auto", "always", "never")


def available_memory(device: torch.device) -> Optional[int]:
    """Free memory of ``device`` in bytes: CUDA free memory, or MemAvailable of /proc/meminfo on
    the CPU (None where unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def hold_in_memory(nbytes: int, device: torch.device, mode: str = "auto",
                   available: Optional[int] = None) -> tuple[bool, str]:
    """Whether a store of ``nbytes`` (float16) is held in memory on ``device``, and why.

    ``"never"``: no. ``"always"``: yes, unless it exceeds 80% of the free memory (ConfigError).
    ``"auto"``: yes iff ``nbytes <= min(IN_MEMORY_BYTES, free memory / 4)``; the free memory
    is the GPU's when training on CUDA (the copy lives there), the host's otherwise.
    """
    if mode not in IN_MEMORY_MODES:
        raise ConfigError(f"train.features_in_memory must be one of {IN_MEMORY_MODES}, got {mode!r}")
    free = available_memory(device) if available is None else available
    where = "GPU" if device.type == "cuda" else "host"
    size = f"{nbytes / 1024**2:.0f} MiB"
    if mode == "never":
        return False, f"streamed ({size}; train.features_in_memory='never')"
    if mode == "always":
        if free is not None and nbytes > 0.8 * free:
            raise ConfigError(f"train.features_in_memory='always' but the feature store ({size}) exceeds 80% "
                              f"of the free {where} memory ({free / 1024**2:.0f} MiB); use 'auto' or 'never'")
        return True, f"held in {where} memory ({size}; train.features_in_memory='always')"
    limit = IN_MEMORY_BYTES if free is None else min(IN_MEMORY_BYTES, free // 4)
    if nbytes <= limit:
        return True, f"held in {where} memory ({size} <= {limit / 1024**2:.0f} MiB)"
    return False, f"streamed ({size} > {limit / 1024**2:.0f} MiB in-memory limit)"


class _Slot:
    """One staging buffer (pinned on CUDA) and the event of the last copy out of it."""

    def __init__(self) -> None:
        self.host: Optional[torch.Tensor] = None
        self.event = None

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()
            self.event = None

    def view(self, n: int, shape: tuple, pin: bool) -> torch.Tensor:
        """A float16 host tensor (n, *shape) in this slot (grown if needed; call wait() first)."""
        if self.host is None or self.host.shape[0] < n:
            self.host = torch.empty((n,) + shape, dtype=torch.float16, pin_memory=pin)
        return self.host[:n]


_END = object()


class FeatureLoader:
    """``loader(rows)`` -> float32 tensor (len(rows), n_mels, frames) on ``device``.

    Small stores are copied once into a float16 tensor on ``device`` (see
    :func:`hold_in_memory`); larger ones are streamed from the shards with positional reads.
    Streamed batches on CUDA are staged in pinned host buffers and copied with
    ``non_blocking=True``. :meth:`prefetch` announces the row batches of the next calls; a
    background thread then reads them ahead (by default only for streamed stores on CUDA). A
    call for other rows than announced drops the announcement and is read directly, so the
    result never depends on prefetching.
    """

    def __init__(self, store: FeatureStore, device: torch.device | str, in_memory: str = "auto", *,
                 prefetch: Optional[bool] = None, depth: int = 3):
        self.store = store
        self.device = torch.device(device)
        self.in_memory, self.reason = hold_in_memory(int(store.features.nbytes), self.device, in_memory)
        # any other store-like object (``features`` array + ``batch(rows)``) is read through batch()
        self._sharded = isinstance(store.features, ShardedFeatures)
        self.pinned = self.device.type == "cuda" and not self.in_memory and self._sharded
        self.prefetch_enabled = ((self.pinned if prefetch is None else bool(prefetch))
                                 and not self.in_memory and self._sharded)
        self._row_shape = tuple(store.features.shape[1:])
        self._slots = [_Slot() for _ in range(max(2, depth))]
        self._next = 0
        self._thread: Optional[threading.Thread] = None
        self._ready: Optional[queue.Queue] = None
        self._free: Optional[queue.Queue] = None
        self._stop = threading.Event()
        self.n_prefetched = 0  # batches served from the prefetch thread (for tests and benches)
        self.tensor = self._load_all() if self.in_memory else None

    # -- in memory ----------------------------------------------------------------------------
    def _load_all(self) -> torch.Tensor:
        """The whole store as a float16 tensor on the device, read in chunks of ~64 MiB (no
        second host copy; on CUDA through one pinned chunk buffer)."""
        feats = self.store.features
        if not self._sharded:
            return torch.from_numpy(np.array(feats)).to(self.device)
        chunk = max(1, (64 * 1024**2) // feats.clip_bytes)
        if self.device.type != "cuda":
            out = torch.empty(feats.shape, dtype=torch.float16)
            arr = out.numpy()
            for a in range(0, len(feats), chunk):
                feats.read(np.arange(a, min(a + chunk, len(feats))), out=arr[a:a + chunk])
            return out
        out = torch.empty(feats.shape, dtype=torch.float16, device=self.device)
        slot = _Slot()
        for a in range(0, len(feats), chunk):
            b = min(a + chunk, len(feats))
            slot.wait()
            host = slot.view(b - a, self._row_shape, True)
            feats.read(np.arange(a, b), out=host.numpy())
            out[a:b].copy_(host, non_blocking=True)
            slot.event = torch.cuda.Event()
            slot.event.record()
        slot.wait()
        return out

    # -- streamed -----------------------------------------------------------------------------
    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[torch.as_tensor(rows, device=self.device)].float()
        rows = np.asarray(rows)
        if not self._sharded:
            return self.store.batch(rows).to(self.device, non_blocking=True)
        if self._ready is not None:
            item = self._ready.get()
            if isinstance(item, BaseException):
                self._stop_prefetch()
                raise item
            if item is not _END and np.array_equal(item[0], rows):
                self.n_prefetched += 1
                return self._deliver(item[1], len(rows), release=self._free)
            self._stop_prefetch()
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        slot.wait()
        self.store.features.read(rows, out=slot.view(len(rows), self._row_shape, self.pinned).numpy())
        return self._deliver(slot, len(rows))

    def _deliver(self, slot: _Slot, n: int, release: Optional[queue.Queue] = None) -> torch.Tensor:
        host = slot.host[:n]
        if self.device.type == "cuda":
            x = host.to(self.device, non_blocking=self.pinned)
            slot.event = torch.cuda.Event()
            slot.event.record()
            x = x.float()
        else:
            x = host.float()  # a new tensor: the slot can be reused at once
        if release is not None:
            release.put(slot)
        return x

    def prefetch(self, batches: Iterable[np.ndarray]) -> None:
        """Announce the row batches the next calls will ask for, in order. Does nothing for a
        store held in memory or when prefetching is off (the CPU by default)."""
        self._stop_prefetch()
        if not self.prefetch_enabled:
            return
        plan = [np.array(b, copy=True) for b in batches]
        self._ready, self._free = queue.Queue(), queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._stop.clear()
        self._thread = threading.Thread(target=self._worker, args=(plan, self._ready, self._free),
                                        name="csu-feature-prefetch", daemon=True)
        self._thread.start()

    def _worker(self, plan: list[np.ndarray], ready: queue.Queue, free: queue.Queue) -> None:
        try:
            for rows in plan:
                slot = free.get()
                if slot is None or self._stop.is_set():
                    return
                slot.wait()
                self.store.features.read(rows, out=slot.view(len(rows), self._row_shape, self.pinned).numpy())
                ready.put((rows, slot))
            ready.put(_END)
        except BaseException as exc:  # handed to the consumer
            ready.put(exc)

    def _stop_prefetch(self) -> None:
        """Stop the thread and hand every staging buffer back to the direct path."""
        if self._thread is None:
            return
        self._stop.set()
        self._free.put(None)  # wakes a worker waiting for a buffer
        self._thread.join()
        self._thread, self._ready, self._free = None, None, None
        self._next = 0

    def close(self) -> None:
        self._stop_prefetch()
        self.tensor = None

    def __del__(self) -> None:
        try:
            self._stop_prefetch()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
