"""The s* of an epoch's own training steps, recorded for every run that learns a reliability
(``epoch_optimum_log_sigma2.npy``, :attr:`csu_lib.records.RunRecord.epoch_optimum_log_sigma2`).

What is recorded, per epoch e and value c of s (class c; s+ then s- for two-sided CSU)::

    s*_ec = log(2 * scale * sum_{clips n of epoch e} m_nc l_nc / sum_n m_nc)

where l_nc is the loss element s_c weights (the BCE of clip n and class c; -log p over positives
and -log(1 - p) over negatives for two-sided CSU) and m_nc the loss mask (1 without one), both as
the loss saw them at the training step that trained on clip n: the network of that step, in train
mode (dropout on), on the batch after the method's transform (mixup, chunks). It is the s that
minimises the loss summed over the epoch's steps, i.e. the stationary optimum of "the network as
it moved through the epoch". It is unconstrained (not clipped to ``loss.csu_clamp``), computed
after the epoch's last step and before the stationary fit, and never fed back into training.
A value with no weight in the epoch keeps the current s.

Why this quantity: it is free. The loss's forward has the elements already; the sums are two
(P,) tensors added on the training device per step. An eval-mode pass over every training clip
after every epoch would add about 30% to a quick run (measured in docs/methods.md, section 1).
The exact s* of the selected network on all training clips in eval mode is stored once at the
end (``final_metrics.reliability``, :attr:`csu_lib.records.RunRecord.optimum_log_sigma2`).

:class:`EpochOptimum` holds the sums of n runs; each backend feeds it from its training step
(:meth:`csu_lib.training.engine.Backend.epoch_optimum` hands the engine the epoch's values). Under
torchrun the ranks' sums are added before s* is taken, so every rank records the global batch's
value.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..losses import LearnedReliability

#: ``reduce(tensor) -> tensor``: how the sums of the processes of one run are added (DDP).
Reduce = Callable[[torch.Tensor], torch.Tensor]


class EpochOptimum:
    """Per-run sums of a learned reliability's loss elements and weights over one epoch's steps."""

    def __init__(self, reliability: LearnedReliability, n_runs: int, n_values: int, device: torch.device):
        self.reliability = reliability
        self.loss_sums = torch.zeros(n_runs, n_values, dtype=torch.float64, device=device)
        self.weight_sums = torch.zeros_like(self.loss_sums)

    def observe(self, logits: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        """Add one training batch of a single run (logits (B, C) as the loss received them)."""
        loss_sums, weight_sums = self.reliability.step_sums(logits, targets, mask)
        self.add(loss_sums[None], weight_sums[None])

    def add(self, loss_sums: torch.Tensor, weight_sums: torch.Tensor) -> None:
        """Add (n_runs, P) sums of :meth:`LearnedReliability.step_sums` (one training step of every run)."""
        self.loss_sums += loss_sums.detach().double()
        self.weight_sums += weight_sums.detach().double()

    def take(self, current: np.ndarray, reduce: Optional[Reduce] = None) -> np.ndarray:
        """The epoch's (n_runs, P) s* (float64) and a fresh start for the next epoch; ``current``:
        the runs' s now (kept where a value had no weight); ``reduce``: sums over processes."""
        loss_sums, weight_sums = self.loss_sums, self.weight_sums
        if reduce is not None:
            loss_sums, weight_sums = reduce(loss_sums), reduce(weight_sums)
        out = self.reliability.optimum_from_sums(loss_sums, weight_sums, current)
        self.loss_sums.zero_()
        self.weight_sums.zero_()
        return out
