"""CSU (Class-wise Supervision Unreliability, Hou et al. 2026) as adopted in docs/methods.md,
section 1 -- this is OUR RECONSTRUCTION (homoscedastic-uncertainty weighting per class); the paper
does not print the formula::

    s_c = log sigma_c^2          (learned, initialised to 0, so CSU starts as plain BCE)
    L   = mean_n sum_c [ exp(-s_c) * BCE(z_nc, y_nc) + s_c / 2 ]

so dL/dz_nc = exp(-s_c) (sigmoid(z_nc) - y_nc) / B (the multiplier 1/sigma_c^2 = exp(-s_c)) and,
for a fixed network, the optimum is exp(s_c) = 2 * mean_n BCE_nc. Options: ``scale="half"``
uses exp(-s_c)/2 (the 1/(2 sigma^2) form; optimum exp(s_c) = mean BCE), ``class_reduction="mean"``
averages over classes instead of summing (same optimum). The learned s is the parameter of
:class:`~csu_lib.losses.reliability.LearnedReliability`, which these losses extend; sigma, the
multiplier and the optimum are those of :mod:`.reliability` (the one definition).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import LossConfig
from ..core import registry
from .bce import bce_from_scores, clipped_probabilities, elementwise_bce
from .reliability import LearnedReliability, masked_mean, multiplier_of, optimum_log_sigma2


@registry.register("loss", "csu")
class CSULoss(LearnedReliability):
    """Class-wise unreliability weighting with one learned ``s_c = log sigma_c^2`` per class.

    With a loss mask, a masked element drops out of both terms (its weighted BCE and its share
    of s_c / 2), so s_c is fitted to the mean BCE over the class's *unmasked* clips: masking a
    class heavily does not shrink its sigma."""

    has_parameters = True

    def __init__(self, n_classes: int, *, init: float = 0.0, clamp: tuple[float, float] = (-5.0, 5.0),
                 scale: str = "full", class_reduction: str = "sum", fit: str = "gradient"):
        super().__init__(n_classes, init=init, clamp=clamp, scale=0.5 if scale == "half" else 1.0, fit=fit)
        self.class_reduction = class_reduction

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "CSULoss":
        return cls(n_classes, init=config.csu_init, clamp=config.csu_clamp, scale=config.csu_scale,
                   class_reduction=config.csu_class_reduction, fit=config.csu_fit)

    def _reduce(self, per_element: torch.Tensor) -> torch.Tensor:
        reduced = per_element.sum(dim=1) if self.class_reduction == "sum" else per_element.mean(dim=1)
        return reduced.mean()

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bce = elementwise_bce(logits, targets)
        per_class = multiplier_of(self.s, self.scale) * bce + self.s / 2  # (B, C)
        if mask is not None:
            per_class = per_class * mask
        return self._reduce(per_class)

    @torch.no_grad()
    def step_sums(self, logits: torch.Tensor, targets: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum over the batch of mask * BCE_c, sum of the mask), each (C,)."""
        bce = elementwise_bce(logits.detach(), targets)
        weight = torch.ones_like(bce) if mask is None else mask.float()
        return (weight * bce).sum(0), weight.sum(0)

    def stationary_log_sigma2(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                              current: Optional[np.ndarray] = None) -> np.ndarray:
        """log(2 * scale * mean BCE_c) over the (unmasked) training clips (docs/methods.md, section 1)."""
        bce = bce_from_scores(scores, targets)
        weights = np.ones_like(bce) if mask is None else np.asarray(mask, dtype=np.float64)
        mean = masked_mean(bce, weights, self._current(current))
        return optimum_log_sigma2(mean, self.scale)


@registry.register("loss", "csu2")
class TwoSidedCSULoss(CSULoss):
    """Two-sided CSU (ours, for the class-noise audit; docs/methods.md, section 1): ``s`` holds 2C
    values, ``s+`` (the first C) weighting the positive terms ``-y log p`` of each class and
    ``s-`` (the last C) its negative terms ``-(1 - y) log(1 - p)``; each regulariser is weighted
    by the share of the elements that feed it (``y`` and ``1 - y``), so that at the stationary
    point exp(s+_c) = 2 * scale * mean over class-c positives of -log p and exp(s-_c) the same
    over its negatives: per-positive and per-negative loss, free of the base rate. Spurious
    positives raise s+ of the class that received them; lost positives raise s- of the class
    that lost them. Measured as a training loss on the quick benchmark (README): after the first
    fit the well-fitted negatives outweigh the positives ~100x and the runs collapse to chance
    mAP; :func:`csu_lib.analysis.class_noise_audit.two_sided_reading` reads the same s+/s- off a one-sided
    network instead."""

    def __init__(self, n_classes: int, **kwargs):
        super().__init__(n_classes, **kwargs)
        self.n_classes = n_classes
        with torch.no_grad():
            self.s = nn.Parameter(self.s.detach().repeat(2), requires_grad=self.s.requires_grad)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        z, y = logits.float(), targets.float()
        s_pos, s_neg = self.s[:self.n_classes], self.s[self.n_classes:]
        pos = y * F.softplus(-z)  # -y log p
        neg = (1 - y) * F.softplus(z)  # -(1 - y) log(1 - p)
        per_class = (self.scale * (multiplier_of(s_pos) * pos + multiplier_of(s_neg) * neg)
                     + (y * s_pos + (1 - y) * s_neg) / 2)
        if mask is not None:
            per_class = per_class * mask
        return self._reduce(per_class)

    @torch.no_grad()
    def step_sums(self, logits: torch.Tensor, targets: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """([sum of mask * y * -log p, sum of mask * (1 - y) * -log(1 - p)], [sum of mask * y,
        sum of mask * (1 - y)]), each (2C,)."""
        z, y = logits.detach().float(), targets.float()
        m = torch.ones_like(z) if mask is None else mask.float()
        losses = torch.cat([(m * y * F.softplus(-z)).sum(0), (m * (1 - y) * F.softplus(z)).sum(0)])
        return losses, torch.cat([(m * y).sum(0), (m * (1 - y)).sum(0)])

    def stationary_log_sigma2(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                              current: Optional[np.ndarray] = None) -> np.ndarray:
        """[s+, s-]: log(2 * scale * mean -log p over the positives), the same over the negatives."""
        y = np.asarray(targets, dtype=np.float64)
        p = clipped_probabilities(scores)
        m = np.ones_like(y) if mask is None else np.asarray(mask, dtype=np.float64)
        current = self._current(current)
        c = self.n_classes
        mean_pos = masked_mean(-np.log(p), m * y, current[:c])
        mean_neg = masked_mean(-np.log1p(-p), m * (1 - y), current[c:])
        both = np.concatenate([mean_pos, mean_neg])
        return optimum_log_sigma2(both, self.scale)
