"""Sample-wise noise-robust losses in multi-label form (docs/methods.md, section 1b): generalised
cross-entropy (:class:`GCELoss`), symmetric cross-entropy (:class:`SCELoss`) and bootstrapping
(:class:`BootstrapLoss`). Each is a per-element loss of the logit z and the target y in [0, 1]
(p = sigmoid(z)), reduced like BCE (:func:`~csu_lib.losses.bce.reduce_elements`: masked, summed
over classes, averaged over clips). The asymmetric losses ASL and APL are in :mod:`.asymmetric`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..config import BOOTSTRAP_BETA, LossConfig
from ..core import registry
from .bce import ElementwiseLoss, elementwise_bce


@registry.register("loss", "gce")
class GCELoss(ElementwiseLoss):
    """Generalised cross-entropy, the Lq loss (Zhang & Sabuncu, NeurIPS 2018), per element::

        y (1 - p^q) / q + (1 - y) (1 - (1 - p)^q) / q,      q in (0, 1] (``gce_q``, 0.7)

    BCE in the limit q -> 0, the absolute error |y - p| at q = 1 (for a hard y). Computed as
    -expm1(q log p) / q with log p = logsigmoid(z) (and log(1 - p) = logsigmoid(-z)): finite for
    every logit and exact for a small q."""

    def __init__(self, q: float = 0.7):
        super().__init__()
        self.q = float(q)

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "GCELoss":
        return cls(q=config.gce_q)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = -torch.expm1(self.q * F.logsigmoid(logits)) / self.q
        neg = -torch.expm1(self.q * F.logsigmoid(-logits)) / self.q
        return targets * pos + (1 - targets) * neg


@registry.register("loss", "sce")
class SCELoss(ElementwiseLoss):
    """Symmetric cross-entropy (Wang et al., ICCV 2019): ``alpha * BCE + beta * RCE``.

    The reverse cross-entropy swaps prediction and label, -[p log y + (1 - p) log(1 - y)], with
    log 0 taken as A (``sce_log_zero``, -4): -A (1 - p) for y = 1 and -A p for y = 0. A soft y
    interpolates these two values linearly, y (-A)(1 - p) + (1 - y)(-A) p (the reverse term of a
    soft label taken literally would need log y of a soft y; we do not use that form). Defaults:
    alpha = 0.1, beta = 1.0, the paper's CIFAR-10 setting."""

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0):
        super().__init__()
        self.alpha, self.beta, self.log_zero = float(alpha), float(beta), float(log_zero)

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "SCELoss":
        return cls(alpha=config.sce_alpha, beta=config.sce_beta, log_zero=config.sce_log_zero)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        rce = -self.log_zero * (targets * torch.sigmoid(-logits) + (1 - targets) * torch.sigmoid(logits))
        return self.alpha * elementwise_bce(logits, targets) + self.beta * rce


@registry.register("loss", "bootstrap")
class BootstrapLoss(ElementwiseLoss):
    """Bootstrapping (Reed et al., ICLR 2015 workshop): BCE against the target
    ``b * y + (1 - b) * prediction``, the prediction being p (``kind="soft"``, b = 0.95 by default)
    or p thresholded at 0.5 (``kind="hard"``, b = 0.8): the model partly trusts itself over the label.

    ``detach`` (``bootstrap_detach``): whether the prediction inside the target is a constant of
    each step. Our default is True, as in most implementations: the gradient is then BCE's,
    p - target. The original objective lets the gradient flow through it (``detach=False``),
    which adds -(1 - b) z p (1 - p) to dL/dz: a push towards confident predictions whatever the
    label. The hard prediction has no gradient anyway, so ``detach`` changes nothing for
    ``kind="hard"``."""

    def __init__(self, kind: str = "soft", beta: Optional[float] = None, detach: bool = True):
        super().__init__()
        self.kind = kind
        self.beta = float(BOOTSTRAP_BETA[kind] if beta is None else beta)
        self.detach = bool(detach)

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "BootstrapLoss":
        return cls(kind=config.bootstrap_kind, beta=config.bootstrap_beta, detach=config.bootstrap_detach)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        prediction = torch.sigmoid(logits) if self.kind == "soft" else (logits > 0).to(logits.dtype)
        if self.detach:
            prediction = prediction.detach()
        return elementwise_bce(logits, self.beta * targets + (1 - self.beta) * prediction)
