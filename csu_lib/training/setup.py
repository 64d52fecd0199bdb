"""The pieces of a run's set-up that every training backend shares, defined once:

- seeds (every seed formula of training is here): the model of a run is built right after
  ``torch.manual_seed(seed)`` (:func:`init_model`); the batch order of epoch e is ``randperm`` of a generator seeded by
  ``seed * 1_000_003 + e`` (:func:`epoch_order`), and batch transforms (mixup, PSL chunks) draw
  from one seeded by ``seed * 1_000_003 + e + 500_000`` (:func:`batch_generator`); torchrun
  ranks > 0 and vectorised groups draw dropout from streams of their own (:func:`seed_rank`,
  :func:`group_seed`);
- the optimiser: Adam or AdamW, with the learned reliability (CSU's ``s``) in its own group
  (no weight decay, optionally its own learning rate; :func:`make_optimizer`);
- the learning-rate schedule (:func:`lr_factor`), a function of the global step, so resuming
  needs no scheduler state.
"""
from __future__ import annotations

import hashlib
import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..config import RunConfig, TrainConfig
from ..losses import LearnedReliability
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


def make_optimizer(train: TrainConfig, model_params: Sequence[torch.Tensor],
                   reliability: Optional[LearnedReliability] = None, *, reliability_lr: Optional[float] = None,
                   reliability_params: Optional[dict] = None) -> torch.optim.Optimizer:
    """Adam or AdamW over the model's parameters (weight decay ``train.weight_decay``) and, for a
    loss whose reliability is learned by gradient, its own group
    (:meth:`LearnedReliability.optimizer_group`: no weight decay, learning rate ``reliability_lr``
    or ``train.lr``; a stationary fit is set by the loop instead). ``reliability_params``:
    stacked copies of the loss's parameters (vectorised groups)."""
    groups = [{"params": list(model_params), "weight_decay": train.weight_decay}]
    if reliability is not None and reliability.fits_by_gradient:
        groups.append(reliability.optimizer_group(reliability_lr or train.lr, reliability_params))
    cls = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=train.lr)


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """The learning-rate multiplier of a global step (see ``TrainConfig.lr_schedule``)."""
    if schedule == "constant":
        return 1.0
    warmup = max(1, int(0.05 * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
