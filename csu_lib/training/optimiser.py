"""The optimiser and the learning-rate schedule every training backend shares:

- Adam, AdamW or SGD with momentum, with the learned reliability (CSU's ``s``) in its own group
  (no weight decay, optionally its own learning rate; :func:`make_optimizer`);
- the learning-rate schedule (:func:`lr_factor`), a function of the global step, so resuming
  needs no scheduler state.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ..config import TrainConfig
from ..losses import LearnedReliability


def make_optimizer(train: TrainConfig, model_params: Sequence[torch.Tensor],
                   reliability: Optional[LearnedReliability] = None, *, reliability_lr: Optional[float] = None,
                   reliability_params: Optional[dict] = None) -> torch.optim.Optimizer:
    """``train.optimizer`` (Adam, AdamW, or SGD with ``train.momentum`` and ``train.nesterov``)
    over the model's parameters (weight decay ``train.weight_decay``: L2 added to the gradient for
    Adam and SGD, decoupled for AdamW) and, for a loss whose reliability is learned by gradient,
    its own group in the same optimiser (:meth:`LearnedReliability.optimizer_group`: no weight
    decay, learning rate ``reliability_lr`` or ``train.lr``; a stationary fit is set by the loop
    instead). ``reliability_params``: stacked copies of the loss's parameters (vectorised groups).

    Every update is element-wise (SGD's momentum buffer included) and proportional to the learning
    rate, which the vectorised backend relies on (:mod:`csu_lib.training.stacked`)."""
    groups = [{"params": list(model_params), "weight_decay": train.weight_decay}]
    if reliability is not None and reliability.fits_by_gradient:
        groups.append(reliability.optimizer_group(reliability_lr or train.lr, reliability_params))
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov)
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
