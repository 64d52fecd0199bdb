"""Binary cross-entropy: the per-element loss every loss of :mod:`csu_lib.losses` is built on,
on logits (:func:`elementwise_bce`, for training) and on stored sigmoid scores
(:func:`bce_from_scores`, for the analyses of a run record), and plain BCE as a loss
(:class:`BCELoss`)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import LossConfig
from ..core import registry


def elementwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, C) binary cross-entropy on logits, computed in float32 for stability."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")


def clipped_probabilities(scores: np.ndarray) -> np.ndarray:
    """Sigmoid ``scores`` as float64, clipped to [1e-7, 1 - 1e-7] (so that their logs are finite)."""
    return np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)


def bce_from_scores(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, C) float64 BCE of sigmoid ``scores`` (probabilities, clipped to [1e-7, 1 - 1e-7])
    against ``targets``: the per-element loss a stored score matrix implies."""
    p = clipped_probabilities(scores)
    y = np.asarray(targets, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


@registry.register("loss", "bce")
class BCELoss(nn.Module):
    """Plain BCE: mean over clips of the sum over classes (the scale CSU reduces to at s = 0)."""

    has_parameters = False

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "BCELoss":
        return cls()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bce = elementwise_bce(logits, targets)
        if mask is not None:
            bce = bce * mask
        return bce.sum(dim=1).mean()
