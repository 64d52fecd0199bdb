"""Losses. Every loss takes logits ``z`` (B, C), targets ``y`` (B, C) in [0, 1] and an optional
mask (B, C) of non-negative weights (0 = the element is left out of the loss), and returns a scalar.

- :mod:`.reliability`: the one home of CSU's reliability: the learned ``s = log sigma^2`` (the
  parameter of :class:`LearnedReliability`, its one interface) and THE one definition of sigma,
  sigma^2 and the gradient multiplier from a stored s (:func:`sigma_of`, :func:`sigma2_of`,
  :func:`multiplier_of`, the ``csu_scale`` factor :func:`scale_of`) and of the stationary optimum s*
  from a mean loss (:func:`optimum_log_sigma2`), used by the losses, the run record and every analysis;
- :mod:`.bce`: binary cross-entropy on logits and on stored scores, plain BCE, and the one
  reduction of a per-element loss (masked, summed over classes, averaged over clips:
  :func:`reduce_elements`, the base :class:`ElementwiseLoss`);
- :mod:`.csu`: CSU (docs/methods.md, section 1) and its two-sided form, built on
  :class:`LearnedReliability`;
- :mod:`.robust`: the sample-wise robust losses GCE, SCE and bootstrapping (``gce``, ``sce``,
  ``bootstrap``; docs/methods.md, section 1b);
- :mod:`.asymmetric`: the asymmetric losses ASL and APL (``asl``, ``apl``; section 1b).

Here: the registry :data:`LOSSES` and :func:`build_loss`, :func:`reliability` (how any other module
finds the learned reliability of a loss; None for BCE), :func:`sides_of` /
:func:`learns_reliability` (of a configuration), and what of a trained loss's state the run
record keeps: :func:`stored_loss_state` leaves the learned s out (the record stores it once, with
its stationary point), :func:`restore_loss_state` puts it back.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch.nn as nn

from ..config import LossConfig
from ..core import registry
from .asymmetric import APLLoss, ASLLoss
from .bce import BCELoss, ElementwiseLoss, bce_from_scores, clipped_probabilities, elementwise_bce, reduce_elements
from .csu import CSULoss, TwoSidedCSULoss
from .reliability import (FITS, ArrayLike, LearnedReliability, multiplier_of, optimum_log_sigma2, scale_of,
                          sigma2_of, sigma_of, stationary_mean_loss)
from .robust import BootstrapLoss, GCELoss, SCELoss

#: The loss registry: name -> loss class (with a ``from_config(config, n_classes)`` constructor).
LOSSES: dict[str, type] = registry.registry("loss")

#: The key of the learned s in the state dict of a :class:`LearnedReliability`.
_S_KEY = "s"


def build_loss(config: LossConfig, n_classes: int) -> nn.Module:
    """The loss ``config.name`` for ``n_classes`` classes."""
    return registry.get("loss", config.name).from_config(config, n_classes)


def sides_of(config: LossConfig) -> int:
    """How many s values a loss learns per class: 2 for two-sided CSU (``csu2``), else 1."""
    return 2 if config.name == "csu2" else 1


def learns_reliability(config: LossConfig) -> bool:
    """Whether a loss configuration learns a per-class reliability (logs ``log sigma^2``)."""
    return issubclass(registry.get("loss", config.name), LearnedReliability)


def reliability(loss: nn.Module) -> Optional[LearnedReliability]:
    """The learned per-class reliability of a loss module, or None (BCE and the robust losses
    learn none)."""
    return loss if isinstance(loss, LearnedReliability) else None


def stored_loss_state(loss: nn.Module) -> dict:
    """The state of a trained loss that ``model.pt`` keeps: its state dict without the learned s
    (the run record stores that once, in ``final_metrics.json``'s reliability block)."""
    state = loss.state_dict()
    if reliability(loss) is not None:
        state.pop(_S_KEY, None)
    return state


def restore_loss_state(loss: nn.Module, state: dict, log_sigma2: Optional[np.ndarray]) -> None:
    """Load a state kept by :func:`stored_loss_state` into ``loss``, with the learned s
    ``log_sigma2`` (the run record's). A state written before the s was left out holds its own
    s, which is loaded as it is."""
    rel = reliability(loss)
    if rel is None or _S_KEY in state:
        loss.load_state_dict(state)
        return
    if log_sigma2 is None:
        raise ValueError("a loss that learns a reliability needs its learned s (log_sigma2) to be restored")
    loss.load_state_dict(state, strict=False)
    rel.load_log_sigma2_(log_sigma2)


__all__ = ["APLLoss", "ASLLoss", "BCELoss", "BootstrapLoss", "CSULoss", "ElementwiseLoss", "FITS", "GCELoss",
           "LOSSES", "ArrayLike", "LearnedReliability", "SCELoss", "TwoSidedCSULoss", "bce_from_scores",
           "build_loss", "clipped_probabilities", "elementwise_bce", "learns_reliability", "multiplier_of",
           "optimum_log_sigma2", "reduce_elements", "reliability", "restore_loss_state", "scale_of", "sides_of",
           "sigma2_of", "sigma_of", "stationary_mean_loss", "stored_loss_state"]
