"""Losses. Every loss takes logits ``z`` (B, C), targets ``y`` (B, C) in [0, 1] and an optional
mask (B, C) of 0/1 weights (0 = the element is left out of the loss), and returns a scalar.

CSU (Class-wise Supervision Unreliability, Hou et al. 2026) as adopted in methods.md §1 -- this
is OUR RECONSTRUCTION (homoscedastic-uncertainty weighting per class); the paper does not print
the formula::

    s_c = log sigma_c^2          (learned, initialised to 0, so CSU starts as plain BCE)
    L   = mean_n sum_c [ exp(-s_c) * BCE(z_nc, y_nc) + s_c / 2 ]

so dL/dz_nc = exp(-s_c) (sigmoid(z_nc) - y_nc) / B (the multiplier 1/sigma_c^2 = exp(-s_c)) and,
for a fixed network, the optimum is exp(s_c) = 2 * mean_n BCE_nc. Options: ``scale="half"``
uses exp(-s_c)/2 (the 1/(2 sigma^2) form; optimum exp(s_c) = mean BCE), ``class_reduction="mean"``
averages over classes instead of summing (same optimum).

The learned reliability has ONE interface, :class:`LearnedReliability`: the log-variance
``s = log sigma^2`` (:meth:`~LearnedReliability.log_sigma2`), ``sigma`` and the gradient
multiplier (the ``scale`` option included), its optimiser group (no weight decay, optionally its
own learning rate) and its projection into the clamp range after every step. :func:`reliability`
is how any other module finds it on a loss (None for BCE), and :func:`sigma_of` /
:func:`multiplier_of` are the one definition of sigma and of the multiplier from a stored
``log sigma^2`` (tensors or arrays), used by the run record and every analysis.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LossConfig
from .core import registry

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The loss registry: name -> loss class (with a ``from_config(config, n_classes)`` constructor).
LOSSES: dict[str, type] = registry.registry("loss")


def elementwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, C) binary cross-entropy on logits, computed in float32 for stability."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")


# ---------------------------------------------------------------------------------------------
# The one definition of sigma and of the multiplier from log sigma^2


def _exp(x: ArrayLike) -> ArrayLike:
    return torch.exp(x) if torch.is_tensor(x) else np.exp(np.asarray(x, dtype=np.float64))


def sigma_of(log_sigma2: ArrayLike) -> ArrayLike:
    """sigma = exp(s / 2) from s = log sigma^2 (a tensor, or an array computed in float64)."""
    return _exp(log_sigma2 / 2 if torch.is_tensor(log_sigma2) else np.asarray(log_sigma2, np.float64) / 2)


def multiplier_of(log_sigma2: ArrayLike, scale: float = 1.0) -> ArrayLike:
    """The effective gradient multiplier ``scale / sigma^2 = scale * exp(-s)`` (``scale`` 0.5 for
    ``csu_scale="half"``, 1 otherwise: :func:`scale_of`)."""
    x = -log_sigma2 if torch.is_tensor(log_sigma2) else -np.asarray(log_sigma2, np.float64)
    return scale * _exp(x)


def scale_of(config: LossConfig) -> float:
    """The factor on exp(-s) of a loss configuration (``csu_scale``: full 1, half 0.5)."""
    return 0.5 if config.csu_scale == "half" else 1.0


def learns_reliability(config: LossConfig) -> bool:
    """Whether a loss configuration learns a per-class reliability (logs ``log sigma^2``)."""
    return issubclass(registry.get("loss", config.name), LearnedReliability)


# ---------------------------------------------------------------------------------------------
# Losses


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


class LearnedReliability(nn.Module):
    """A learned per-class reliability: ``s_c = log sigma_c^2`` (parameter ``s``), kept in
    ``clamp`` after every optimiser step, scaled by ``scale`` in the loss.

    Methods that take ``params`` also work on a functional copy of the loss's parameters (a
    dict as :func:`torch.func.stack_module_state` makes for several stacked runs: ``s`` is then
    (N, C)); without it they act on this module's own ``s``.
    """

    s: nn.Parameter

    def __init__(self, n_classes: int, *, init: float = 0.0, clamp: tuple[float, float] = (-5.0, 5.0),
                 scale: float = 1.0):
        super().__init__()
        self.s = nn.Parameter(torch.full((n_classes,), float(init)))
        self.clamp = (float(clamp[0]), float(clamp[1]))
        self.scale = float(scale)

    def _s(self, params: Optional[dict] = None) -> torch.Tensor:
        return self.s if params is None else params["s"]

    def log_sigma2(self, params: Optional[dict] = None) -> torch.Tensor:
        """The current s = log sigma^2, detached: (C,), or (N, C) for stacked ``params``."""
        return self._s(params).detach()

    def sigma(self, params: Optional[dict] = None) -> torch.Tensor:
        """sigma_c = exp(s_c / 2) (detached)."""
        return sigma_of(self.log_sigma2(params))

    def multiplier(self, params: Optional[dict] = None) -> torch.Tensor:
        """The effective gradient multiplier ``scale * exp(-s_c)`` (detached)."""
        return multiplier_of(self.log_sigma2(params), self.scale)

    def optimizer_group(self, lr: float, params: Optional[dict] = None) -> dict:
        """The optimiser parameter group of s: no weight decay, learning rate ``lr``."""
        return {"params": [self._s(params)], "weight_decay": 0.0, "lr": lr}

    @torch.no_grad()
    def project_(self, params: Optional[dict] = None) -> None:
        """Keep s in its configured range (call after each optimiser step)."""
        self._s(params).clamp_(*self.clamp)

    @torch.no_grad()
    def load_log_sigma2_(self, values: Union[Sequence[float], np.ndarray, torch.Tensor]) -> None:
        """Set s (e.g. a run's learned values, to evaluate its loss elsewhere)."""
        self.s.copy_(torch.as_tensor(np.asarray(values, dtype=np.float64)).to(self.s))


@registry.register("loss", "csu")
class CSULoss(LearnedReliability):
    """Class-wise unreliability weighting with one learned ``s_c = log sigma_c^2`` per class."""

    has_parameters = True

    def __init__(self, n_classes: int, *, init: float = 0.0, clamp: tuple[float, float] = (-5.0, 5.0),
                 scale: str = "full", class_reduction: str = "sum"):
        super().__init__(n_classes, init=init, clamp=clamp, scale=0.5 if scale == "half" else 1.0)
        self.class_reduction = class_reduction

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "CSULoss":
        return cls(n_classes, init=config.csu_init, clamp=config.csu_clamp, scale=config.csu_scale,
                   class_reduction=config.csu_class_reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        bce = elementwise_bce(logits, targets)
        if mask is not None:
            bce = bce * mask
        per_class = self.scale * torch.exp(-self.s) * bce + self.s / 2  # (B, C)
        reduced = per_class.sum(dim=1) if self.class_reduction == "sum" else per_class.mean(dim=1)
        return reduced.mean()


def build_loss(config: LossConfig, n_classes: int) -> nn.Module:
    """The loss ``config.name`` for ``n_classes`` classes."""
    return registry.get("loss", config.name).from_config(config, n_classes)


def reliability(loss: nn.Module) -> Optional[LearnedReliability]:
    """The learned per-class reliability of a loss module, or None (BCE learns none)."""
    return loss if isinstance(loss, LearnedReliability) else None
