"""CSU (Class-wise Supervision Unreliability, Hou et al. 2026) as adopted in docs/methods.md,
section 1 -- this is OUR RECONSTRUCTION (homoscedastic-uncertainty weighting per class); the paper
does not print the formula::

    s_c = log sigma_c^2          (learned, initialised to 0, so CSU starts as plain BCE)
    L   = mean_n sum_c [ exp(-s_c) * BCE(z_nc, y_nc) + s_c / 2 ]

so dL/dz_nc = exp(-s_c) (sigmoid(z_nc) - y_nc) / B (the multiplier 1/sigma_c^2 = exp(-s_c)) and,
for a fixed network, the optimum is exp(s_c) = 2 * mean_n BCE_nc. Options: ``scale="half"``
uses exp(-s_c)/2 (the 1/(2 sigma^2) form; optimum exp(s_c) = mean BCE), ``class_reduction="mean"``
averages over classes instead of summing (same optimum). sigma, the multiplier and the optimum
are those of :mod:`.reliability` (the one definition).

The learned reliability has ONE interface, :class:`LearnedReliability`: the log-variance
``s = log sigma^2`` (:meth:`~LearnedReliability.log_sigma2`), ``sigma`` and the gradient
multiplier (the ``scale`` option included), its optimiser group (no weight decay, optionally its
own learning rate), its projection into the clamp range after every step, and its stationary
point for a fixed network.
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
from .reliability import multiplier_of, optimum_log_sigma2, sigma_of, stationary_mean_loss


def _masked_mean(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Per-class sum(weights * values) / sum(weights); ``fallback`` where a class has no weight."""
    total = weights.sum(axis=0)
    mean = np.divide((weights * values).sum(axis=0), total, out=np.zeros(values.shape[1]), where=total > 0)
    return np.where(total > 0, mean, fallback)


FITS = ("stationary", "gradient")


class LearnedReliability(nn.Module):
    """A learned per-class reliability: ``s = log sigma^2`` (parameter ``s``: C values, or 2C for
    the two-sided form), kept in ``clamp``, scaled by ``scale`` in the loss.

    ``fit``: ``"gradient"`` -- s is trained by the optimiser (:meth:`optimizer_group`), the
    paper's form; ``"stationary"`` -- s is no optimiser parameter: the training loop sets it to
    :meth:`stationary_log_sigma2` of the current network after every epoch, so that s is at its
    stationary point whenever it is read.

    Methods that take ``params`` also work on a functional copy of the loss's parameters (a
    dict as :func:`torch.func.stack_module_state` makes for several stacked runs: ``s`` is then
    (N, C)); without it they act on this module's own ``s``.
    """

    s: nn.Parameter

    def __init__(self, n_params: int, *, init: float = 0.0, clamp: tuple[float, float] = (-5.0, 5.0),
                 scale: float = 1.0, fit: str = "gradient"):
        super().__init__()
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.fit = fit
        self.s = nn.Parameter(torch.full((n_params,), float(init)), requires_grad=fit == "gradient")
        self.clamp = (float(clamp[0]), float(clamp[1]))
        self.scale = float(scale)

    @property
    def fits_by_gradient(self) -> bool:
        """Whether the optimiser learns s (otherwise the loop sets it: :meth:`stationary_log_sigma2`)."""
        return self.fit == "gradient"

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
    def load_log_sigma2_(self, values: Union[Sequence[float], np.ndarray, torch.Tensor],
                         params: Optional[dict] = None, index: Optional[int] = None) -> None:
        """Set s (e.g. a run's learned values, to evaluate its loss elsewhere); ``params`` and
        ``index``: run ``index`` of stacked copies."""
        s = self._s(params) if index is None else self._s(params)[index]
        s.copy_(torch.as_tensor(np.asarray(values, dtype=np.float64)).to(s))

    def stationary_log_sigma2(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                              current: Optional[np.ndarray] = None) -> np.ndarray:
        """The s that minimises this loss for a fixed network whose training scores are
        ``scores`` (N, C) against ``targets`` (and 0/1 ``mask``), float64, unconstrained. The loss is
        convex in each s_c, so the optimum over the allowed range ``clamp`` (what the stationary fit
        sets: :meth:`constrained_optimum`) is this value clipped to it. A class (side) without any
        weight keeps ``current`` (default: this module's s)."""
        raise NotImplementedError

    def constrained_optimum(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                            current: Optional[np.ndarray] = None) -> np.ndarray:
        """:meth:`stationary_log_sigma2` clipped to ``clamp``: the minimiser of the loss over the
        range s is allowed (unclamped, a class the network fits almost perfectly gets a multiplier
        of thousands, and training collapses: clean quick runs fell to mAP 0.37-0.50)."""
        return np.clip(self.stationary_log_sigma2(scores, targets, mask, current), *self.clamp)

    def _current(self, current: Optional[np.ndarray]) -> np.ndarray:
        s = self.s.detach().cpu().double().numpy() if current is None else np.asarray(current, np.float64)
        return stationary_mean_loss(s, self.scale)

    def stationarity(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None) -> dict:
        """How far this loss's s lies from its stationary point for the network that produced
        ``scores`` (what every run record stores): ``fit``, ``log_sigma2``, ``stationary_log_sigma2``
        (the unconstrained optimum s*), ``abs_gap`` = |s - clip(s*, clamp)| per value (the distance
        to the optimum over the allowed range), its median ``median_abs_gap``,
        ``median_abs_gap_unconstrained`` (|s - s*|) and ``n_at_clamp`` (values of s on a bound)."""
        s = self.s.detach().cpu().double().numpy()
        star = self.stationary_log_sigma2(scores, targets, mask, current=s)
        gap = np.abs(s - np.clip(star, *self.clamp))
        on_bound = np.isclose(s, self.clamp[0]) | np.isclose(s, self.clamp[1])
        return {"fit": self.fit, "log_sigma2": s.tolist(), "stationary_log_sigma2": star.tolist(),
                "abs_gap": gap.tolist(), "median_abs_gap": float(np.median(gap)),
                "median_abs_gap_unconstrained": float(np.median(np.abs(s - star))),
                "n_at_clamp": int(on_bound.sum()), "clamp": list(self.clamp)}


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

    def stationary_log_sigma2(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                              current: Optional[np.ndarray] = None) -> np.ndarray:
        """log(2 * scale * mean BCE_c) over the (unmasked) training clips (docs/methods.md, section 1)."""
        bce = bce_from_scores(scores, targets)
        weights = np.ones_like(bce) if mask is None else np.asarray(mask, dtype=np.float64)
        mean = _masked_mean(bce, weights, self._current(current))
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

    def stationary_log_sigma2(self, scores: np.ndarray, targets: np.ndarray, mask: Optional[np.ndarray] = None,
                              current: Optional[np.ndarray] = None) -> np.ndarray:
        """[s+, s-]: log(2 * scale * mean -log p over the positives), the same over the negatives."""
        y = np.asarray(targets, dtype=np.float64)
        p = clipped_probabilities(scores)
        m = np.ones_like(y) if mask is None else np.asarray(mask, dtype=np.float64)
        current = self._current(current)
        c = self.n_classes
        mean_pos = _masked_mean(-np.log(p), m * y, current[:c])
        mean_neg = _masked_mean(-np.log1p(-p), m * (1 - y), current[c:])
        both = np.concatenate([mean_pos, mean_neg])
        return optimum_log_sigma2(both, self.scale)
