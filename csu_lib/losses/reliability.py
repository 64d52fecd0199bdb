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
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

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
