"""Binary cross-entropy: the per-element loss every loss of :mod:`csu_lib.losses` is built on,
on logits (:func:`elementwise_bce`, for training) and on stored sigmoid scores
(:func:`bce_from_scores`, for the analyses of a run record), and plain BCE as a loss
(:class:`BCELoss`). Also the one reduction of a per-element loss to the loss of a batch
(:func:`reduce_elements`: masked, summed over classes, averaged over clips) and the base class
of the losses that are nothing but a per-element loss so reduced (:class:`ElementwiseLoss`: BCE
and the robust losses of :mod:`.robust` and :mod:`.asymmetric`)."""
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


def reduce_elements(per_element: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The loss of a batch from its (B, C) per-element losses: each multiplied by its mask weight
    (when a mask is given), summed over classes, averaged over clips."""
    if mask is not None:
        per_element = per_element * mask
    return per_element.sum(dim=1).mean()


class ElementwiseLoss(nn.Module):
    """A loss without parameters that is a per-element function of the logits and targets
    (:meth:`elementwise`, on float32 inputs), reduced by :func:`reduce_elements`."""

    has_parameters = False

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B, C) per-element losses of float32 ``logits`` and ``targets``."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return reduce_elements(self.elementwise(logits.float(), targets.float()), mask)


@registry.register("loss", "bce")
class BCELoss(ElementwiseLoss):
    """Plain BCE: mean over clips of the sum over classes (the scale CSU reduces to at s = 0)."""

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "BCELoss":
        return cls()

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return elementwise_bce(logits, targets)
