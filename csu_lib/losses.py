"""Losses. Every loss takes logits ``z`` (B, C), targets ``y`` (B, C) in [0, 1] and an optional
mask (B, C) of 0/1 weights (0 = the element is left out of the loss), and returns a scalar.

CSU (Class-wise Supervision Unreliability, Hou et al. 2026) as adopted in methods.md §1 — this
is OUR RECONSTRUCTION (homoscedastic-uncertainty weighting per class); the paper does not print
the formula::

    s_c = log sigma_c^2          (learned, initialised to 0, so CSU starts as plain BCE)
    L   = mean_n sum_c [ exp(-s_c) * BCE(z_nc, y_nc) + s_c / 2 ]

so dL/dz_nc = exp(-s_c) (sigmoid(z_nc) - y_nc) / B (the multiplier 1/sigma_c^2 = exp(-s_c)) and,
for a fixed network, the optimum is exp(s_c) = 2 * mean_n BCE_nc. Options: ``scale="half"``
uses exp(-s_c)/2 (the 1/(2 sigma^2) form; optimum exp(s_c) = mean BCE), ``class_reduction="mean"``
averages over classes instead of summing (same optimum). ``s`` is kept in [lo, hi] by
:meth:`CSULoss.project_` after every optimiser step, is excluded from weight decay and may have
its own learning rate (set by the training loop).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LossConfig


def elementwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, C) binary cross-entropy on logits, computed in float32 for stability."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")


class BCELoss(nn.Module):
    """Plain BCE: mean over clips of the sum over classes (the scale CSU reduces to at s = 0)."""

    has_parameters = False

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bce = elementwise_bce(logits, targets)
        if mask is not None:
            bce = bce * mask
        return bce.sum(dim=1).mean()


class CSULoss(nn.Module):
    """Class-wise unreliability weighting with one learned ``s_c = log sigma_c^2`` per class."""

    has_parameters = True

    def __init__(self, n_classes: int, *, init: float = 0.0, clamp: tuple[float, float] = (-5.0, 5.0),
                 scale: str = "full", class_reduction: str = "sum"):
        super().__init__()
        self.s = nn.Parameter(torch.full((n_classes,), float(init)))
        self.clamp = (float(clamp[0]), float(clamp[1]))
        self.scale = 0.5 if scale == "half" else 1.0
        self.class_reduction = class_reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bce = elementwise_bce(logits, targets)
        if mask is not None:
            bce = bce * mask
        per_class = self.scale * torch.exp(-self.s) * bce + self.s / 2  # (B, C)
        reduced = per_class.sum(dim=1) if self.class_reduction == "sum" else per_class.mean(dim=1)
        return reduced.mean()

    @torch.no_grad()
    def project_(self) -> None:
        """Keep s in its configured range (call after each optimiser step)."""
        self.s.clamp_(*self.clamp)

    def multiplier(self) -> torch.Tensor:
        """The effective gradient multiplier 1/sigma_c^2 = exp(-s_c) (times the scale)."""
        return self.scale * torch.exp(-self.s.detach())


LOSSES: tuple[str, ...] = ("bce", "csu")


def build_loss(config: LossConfig, n_classes: int) -> nn.Module:
    if config.name == "csu":
        return CSULoss(n_classes, init=config.csu_init, clamp=config.csu_clamp, scale=config.csu_scale,
                       class_reduction=config.csu_class_reduction)
    return BCELoss()
