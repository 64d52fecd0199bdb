"""THE one definition of what a learned reliability ``s = log sigma^2`` means (docs/methods.md,
section 1): sigma, sigma^2, the gradient multiplier, the ``csu_scale`` factor and the stationary
optimum s* from a mean loss. The losses, the run record and every analysis derive these from here;
``tests/test_architecture.py`` fails on a second definition anywhere else in csu_lib.

Every function takes a tensor (computed by torch, gradients flow) or an array (computed in
float64)::

    sigma      = exp(s / 2)
    sigma^2    = exp(s)
    multiplier = scale * exp(-s)            (scale 1, or 1/2 for csu_scale="half")
    s*         = log(2 * scale * mean loss) (the minimiser of scale * exp(-s) * loss + s / 2)

The learned s itself has ONE interface, :class:`LearnedReliability` (the parameter ``s`` of CSU and
its two-sided form): the log-variance ``s = log sigma^2`` (:meth:`~LearnedReliability.log_sigma2`),
``sigma`` and the gradient multiplier (the ``scale`` option included), its optimiser group (no
weight decay, optionally its own learning rate), its projection into the clamp range after every
step, its stationary point for a fixed network (from scores) and the s* of a set of training
steps (from the sums each step adds: :meth:`~LearnedReliability.step_sums`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from ..config import LossConfig

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The smallest mean loss s* is taken of (a class fitted exactly would give log 0).
MIN_MEAN_LOSS = 1e-300


def _exp(x: ArrayLike) -> ArrayLike:
    return torch.exp(x) if torch.is_tensor(x) else np.exp(np.asarray(x, dtype=np.float64))


def _float64(x: ArrayLike) -> ArrayLike:
    return x if torch.is_tensor(x) else np.asarray(x, np.float64)


def sigma_of(log_sigma2: ArrayLike) -> ArrayLike:
    """sigma = exp(s / 2) from s = log sigma^2 (a tensor, or an array computed in float64)."""
    return _exp(_float64(log_sigma2) / 2)


def sigma2_of(log_sigma2: ArrayLike) -> ArrayLike:
    """sigma^2 = exp(s) from s = log sigma^2 (a tensor, or an array computed in float64)."""
    return _exp(_float64(log_sigma2))


def multiplier_of(log_sigma2: ArrayLike, scale: float = 1.0) -> ArrayLike:
    """The effective gradient multiplier ``scale / sigma^2 = scale * exp(-s)`` (``scale`` 0.5 for
    ``csu_scale="half"``, 1 otherwise: :func:`scale_of`). Not detached: the CSU losses weight
    their BCE terms with it."""
    return scale * _exp(-_float64(log_sigma2))


def scale_of(config: LossConfig) -> float:
    """The factor on exp(-s) of a loss configuration (``csu_scale``: full 1, half 0.5)."""
    return 0.5 if config.csu_scale == "half" else 1.0


def optimum_log_sigma2(mean_loss: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The stationary optimum ``s* = log(2 * scale * mean_loss)`` (float64): for a fixed network,
    ``scale * exp(-s) * mean_loss + s / 2`` is convex in s with its minimum there. ``mean_loss`` is
    the mean per-element loss the s weights (mean BCE of a class; for two-sided CSU the mean
    -log p over its positives, or -log(1 - p) over its negatives), floored at :data:`MIN_MEAN_LOSS`."""
    return np.log(2 * scale * np.maximum(mean_loss, MIN_MEAN_LOSS))


def stationary_mean_loss(log_sigma2: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The mean loss at which ``s`` is stationary, ``exp(s) / (2 * scale)`` (the inverse of
    :func:`optimum_log_sigma2`), float64."""
    return sigma2_of(log_sigma2) / (2 * scale)


def masked_mean(values: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
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
        ``scores`` (N, C) against ``targets`` (and ``mask``: non-negative weights, 0 = left out),
        float64, unconstrained. The loss is convex in each s_c, so the optimum over the allowed
        range ``clamp`` (what the stationary fit sets: :meth:`constrained_optimum`) is this value
        clipped to it. A class (side) without any weight keeps ``current`` (default: this
        module's s)."""
        raise NotImplementedError

    def step_sums(self, logits: torch.Tensor, targets: torch.Tensor,
                  mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What one training batch adds to the s* of a set of batches (no gradient): per value of
        s, the sum over the batch's clips of the loss elements that value weights and the sum of
        their weights, each (P,). Over any set of clips, :meth:`optimum_from_sums` of the summed
        pair is the s that minimises this loss on them: how the engine records the s* of an
        epoch's own training steps (:class:`csu_lib.training.epoch_optimum.EpochOptimum`)."""
        raise NotImplementedError

    def optimum_from_sums(self, loss_sums: ArrayLike, weight_sums: ArrayLike,
                          current: Optional[np.ndarray] = None) -> np.ndarray:
        """s* = :func:`optimum_log_sigma2` of ``loss_sums / weight_sums`` (of :meth:`step_sums`,
        summed; (P,) or (n, P)), float64, unconstrained; a value without weight keeps ``current``
        (default: this module's s)."""
        total, weight = (np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, np.float64)
                         for x in (loss_sums, weight_sums))
        mean = np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
        return optimum_log_sigma2(np.where(weight > 0, mean, self._current(current)), self.scale)

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
