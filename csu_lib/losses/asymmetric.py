"""The asymmetric losses in multi-label form (docs/methods.md, section 1b): ASL (:class:`ASLLoss`)
and APL (:class:`APLLoss`), which share the asymmetric focusing and the probability margin.

With p = sigmoid(z), the margin m and the shifted probability p_m = max(p - m, 0), per element::

    L = y * (1 - p)^g+ * L+  +  (1 - y) * p_m^g- * L-

(a soft y weights the two sides). Easy negatives (p <= m) leave the loss altogether, and the
focusing weights p_m^g- and (1 - p)^g+ turn down the well-fitted elements. Reduced like BCE
(:func:`~csu_lib.losses.bce.reduce_elements`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LossConfig
from ..core import registry
from .bce import ElementwiseLoss


def shifted_probability(logits: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(p_m, log(1 - p_m)) with p_m = max(sigmoid(z) - margin, 0). The log is finite for every
    logit: 1 - p_m = min(sigmoid(-z) + m, 1) >= m when m > 0, and logsigmoid(-z) when m = 0
    (where the reference code clamps the probability at 1e-8 instead)."""
    if margin == 0:
        return torch.sigmoid(logits), F.logsigmoid(-logits)
    q = (torch.sigmoid(-logits) + margin).clamp(max=1.0)
    return 1 - q, torch.log(q)


def focusing_weight(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` for ``base >= 0`` (1 everywhere for gamma = 0), with a finite gradient
    (0) where base is 0 also for 0 < gamma < 1."""
    if gamma == 0:
        return torch.ones_like(base)
    positive = base > 0
    return torch.where(positive, torch.where(positive, base, 1.0) ** gamma, 0.0)


@registry.register("loss", "asl")
class ASLLoss(ElementwiseLoss):
    """Asymmetric loss (Ridnik et al., ICCV 2021): L+ = -log p, L- = -log(1 - p_m), focused by
    (1 - p)^g+ and p_m^g- (``asl_gamma_pos`` 0, ``asl_gamma_neg`` 4, ``asl_margin`` 0.05: the
    paper's defaults). With g+ = g- = 0 and m = 0 it is BCE.

    The focusing weights carry gradient (:attr:`focus_gradient`), as in the paper's equations and
    its gradient analysis (and in the reference code as published, where switching the gradient
    off is commented out). A soft y weights the two focused terms, y L+ + (1 - y) L-; the
    reference code instead mixes them into one weight (1 - p_t)^(g+ y + g- (1 - y)) with
    p_t = y p + (1 - y)(1 - p_m), the same for a hard y."""

    #: whether the focusing weights carry gradient
    focus_gradient = True

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, margin: float = 0.05):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.margin = float(gamma_pos), float(gamma_neg), float(margin)

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "ASLLoss":
        return cls(gamma_pos=config.asl_gamma_pos, gamma_neg=config.asl_gamma_neg, margin=config.asl_margin)

    def terms(self, logits: torch.Tensor, p_m: torch.Tensor,
              log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unfocused (L+, L-) of each element, given p_m and log q = log(1 - p_m)."""
        return F.softplus(-logits), -log_q

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p_m, log_q = shifted_probability(logits, self.margin)
        pos, neg = self.terms(logits, p_m, log_q)
        one_minus_p, shifted = torch.sigmoid(-logits), p_m
        if not self.focus_gradient:
            one_minus_p, shifted = one_minus_p.detach(), shifted.detach()
        return (targets * focusing_weight(one_minus_p, self.gamma_pos) * pos
                + (1 - targets) * focusing_weight(shifted, self.gamma_neg) * neg)


@registry.register("loss", "apl")
class APLLoss(ASLLoss):
    """Asymmetric polynomial loss (Huang, Qi, Wang & Lin, ICASSP 2023): ASL's focusing and margin
    (the ``asl_*`` fields) applied to BCE with Taylor terms added, with q = 1 - p_m::

        L+ = -[log p + eps1 (1 - p) + eps2 / 2 (1 - p)^2],      L- = -[log q + eps1_neg q]

    (``apl_eps1`` 1, ``apl_eps2`` -2.5, ``apl_eps1_neg`` 0: the defaults of the authors' public
    code, whose signs we keep: the terms are added to log p inside the bracket). The focusing
    weights carry no gradient, as in that code; with every eps, gamma and the margin at 0 it is
    BCE."""

    focus_gradient = False

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, margin: float = 0.05,
                 eps1: float = 1.0, eps2: float = -2.5, eps1_neg: float = 0.0):
        super().__init__(gamma_pos, gamma_neg, margin)
        self.eps1, self.eps2, self.eps1_neg = float(eps1), float(eps2), float(eps1_neg)

    @classmethod
    def from_config(cls, config: LossConfig, n_classes: int) -> "APLLoss":
        return cls(gamma_pos=config.asl_gamma_pos, gamma_neg=config.asl_gamma_neg, margin=config.asl_margin,
                   eps1=config.apl_eps1, eps2=config.apl_eps2, eps1_neg=config.apl_eps1_neg)

    def terms(self, logits: torch.Tensor, p_m: torch.Tensor,
              log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        one_minus_p = torch.sigmoid(-logits)
        pos = F.softplus(-logits) - self.eps1 * one_minus_p - self.eps2 / 2 * one_minus_p ** 2
        return pos, -log_q - self.eps1_neg * (1 - p_m)
