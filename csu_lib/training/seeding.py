"""Every seed formula of training, defined once (every backend uses these):

- the model of a run is built right after ``torch.manual_seed(seed)`` (:func:`init_model`);
- the batch order of epoch e is ``randperm`` of a generator seeded by ``seed * 1_000_003 + e``
  (:func:`epoch_order`), and batch transforms (mixup, PSL chunks) draw from one seeded by
  ``seed * 1_000_003 + e + 500_000`` (:func:`batch_generator`);
- torchrun ranks > 0 and vectorised groups draw dropout from streams of their own
  (:func:`seed_rank`, :func:`group_seed`);
- the fixed subsets of training clips (the fit loss, batch-norm recalibration) are the first k of
  one permutation drawn with seed 0 (:func:`fixed_subset`), the same for every run of a dataset.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..config import RunConfig
from ..models import build_model

#: Per-epoch seeds: ``seed * SEED_STRIDE + epoch`` (batch order) and ``+ TRANSFORM_OFFSET`` (transforms).
SEED_STRIDE = 1_000_003
TRANSFORM_OFFSET = 500_000


def init_model(config: RunConfig, n_classes: int) -> nn.Module:
    """The run's initial model: ``torch.manual_seed(train.seed)``, then the backbone."""
    torch.manual_seed(config.train.seed)
    return build_model(config.model, n_classes, config.frontend.n_mels)


def epoch_order(seed: int, epoch: int, n_train: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n_train`` training clips."""
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)).numpy()


def fixed_subset(n_train: int, k: int) -> np.ndarray:
    """Positions in the training split of a fixed subset of ``k`` clips: the first ``k`` of a
    permutation drawn with seed 0, sorted (all clips when ``n_train <= k``). The subsets of two
    sizes are nested."""
    if n_train <= k:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(0).permutation(n_train)[:k])


def batch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s batch transforms (mixup partners, PSL chunks)."""
    return torch.Generator().manual_seed(seed * SEED_STRIDE + epoch + TRANSFORM_OFFSET)


def seed_rank(seed: int, rank: int, epoch: int) -> None:
    """Seed the global RNG (dropout) of torchrun rank > 0: its own stream, a function of (seed,
    rank, epoch); rank 0 keeps the one-process stream."""
    torch.manual_seed((seed * SEED_STRIDE + 7_919 * rank + 104_729 * epoch) % (2**63))


def group_seed(run_ids: Sequence[str]) -> int:
    """The seed of a vectorised group's global RNG (its dropout draws): a function of its run ids."""
    return int(hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:15], 16)


def seed_group(run_ids: Sequence[str], device: torch.device) -> None:
    """Seed the global RNG (and CUDA's on a GPU) of a vectorised group with :func:`group_seed`."""
    torch.manual_seed(group_seed(run_ids))
    if device.type == "cuda":
        torch.cuda.manual_seed(group_seed(run_ids))
