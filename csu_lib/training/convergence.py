"""How a run ended, and whether it converged, for its final metrics (:func:`convergence`).

The convergence rule (one definition, read by every table and figure that compares runs): over
the last :data:`WINDOW_SHARE` of the epochs a run trained (at least :data:`MIN_WINDOW` epochs),

- its training loss changed by less than :data:`LOSS_TOLERANCE` of its value at the start of that
  window: ``|L_last - L_start| / |L_start|``, where ``L_start`` is the training loss after the
  epoch before the window. The training loss read here is the network's fit
  (``train_fit_loss``, :func:`fit_losses`): its eval-mode BCE (summed over classes, mean over
  clips, the run's training labels and loss mask) on a fixed subset of :data:`FIT_CLIPS` training
  clips, measured after each epoch that can start or end the window. The mean loss of the
  epoch's training steps (``train_loss``) is not used: it moves by several percent from epoch to
  epoch with dropout and the batch order even when the weights no longer change (measured on the
  quick profile: 2-10% over the last epochs of runs whose validation mAP had settled). Records
  without ``train_fit_loss`` fall back to it (``loss_measure``);
- its validation mAP moved by less than :data:`MAP_TOLERANCE`: the largest minus the smallest
  validation mAP from the epoch before the window to the last one.

A run that does not satisfy both is recorded as not converged (``converged`` False), whatever
stopped it; the figures mark it. The changes themselves are recorded (``loss_change``,
``val_map_change``), so a reader can apply another threshold.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..losses import bce_from_scores
from .seeding import fixed_subset

#: The share of a run's epochs the convergence rule looks at (its last ones).
WINDOW_SHARE = 0.1
#: The fewest epochs in that window.
MIN_WINDOW = 2
#: The largest relative change of the training loss over the window of a converged run.
LOSS_TOLERANCE = 0.02
#: The largest spread of validation mAP over the window of a converged run.
MAP_TOLERANCE = 0.01
#: How many training clips the fit loss is measured on (a fixed subset, the same for every run of
#: a dataset): enough to make its noise far smaller than the tolerance, about a tenth of the cost
#: of an epoch on the quick profile, and paid only where the window can lie.
FIT_CLIPS = 256
#: A run reached a validation plateau when early stopping fired or its best epoch lies at least
#: this many epochs before its last one.
PLATEAU_EPOCHS = 3


def window_epochs(epochs_run: int) -> int:
    """The epochs of the convergence window of a run that trained ``epochs_run`` epochs."""
    return max(MIN_WINDOW, math.ceil(WINDOW_SHARE * epochs_run))


def wants_fit_loss(epochs: int, epoch: int, may_stop_early: bool) -> bool:
    """Whether the fit loss is measured after ``epoch``: every epoch when the run may stop early
    (its window is not known in advance), else only from the epoch before the window of a run of
    ``epochs`` epochs."""
    return may_stop_early or epoch >= epochs - window_epochs(epochs) - 1


def fit_positions(n_train: int) -> np.ndarray:
    """The positions in the training split of the clips the fit loss is measured on: the first
    :data:`FIT_CLIPS` of :func:`~csu_lib.training.seeding.fixed_subset`."""
    return fixed_subset(n_train, FIT_CLIPS)


def fit_losses(backend, states: Sequence) -> list[Optional[float]]:
    """Each run's fit loss now (:func:`fit_positions`; None where this process does not compute it
    or the run has stopped)."""
    positions = fit_positions(len(states[0].data.train_idx))
    scores = backend.train_scores(states, positions)
    out: list[Optional[float]] = []
    for state, s in zip(states, scores):
        if s is None or state.stopped:
            out.append(None)
            continue
        bce = bce_from_scores(s, state.targets[positions].cpu().numpy())
        if state.mask is not None:
            bce = bce * state.mask[positions].cpu().numpy()
        out.append(float(bce.sum(axis=1).mean()))
    return out


def converged(history: Sequence[dict]) -> dict:
    """The convergence rule on a run's history (rows with ``train_loss`` and ``val.mAP`` per epoch):
    ``converged``, ``convergence_window`` (epochs), ``loss_change`` (relative), ``val_map_change``
    (spread) and ``loss_measure`` (``train_fit_loss``, or ``train_loss`` where the history has no
    fit loss at both ends); NaN changes and not converged when the run is shorter than its window
    plus one epoch."""
    n = len(history)
    window = window_epochs(n)
    if n < window + 1:
        return {"converged": False, "convergence_window": window, "loss_change": float("nan"),
                "val_map_change": float("nan"), "loss_measure": None}
    measure = "train_fit_loss" if all("train_fit_loss" in history[i] for i in (n - window - 1, n - 1)) else "train_loss"
    start, last = float(history[n - window - 1][measure]), float(history[-1][measure])
    loss_change = abs(last - start) / abs(start) if start != 0 else float("inf")
    maps = [float(row["val.mAP"]) for row in history[n - window - 1:]]
    map_change = max(maps) - min(maps)
    return {"converged": bool(loss_change < LOSS_TOLERANCE and map_change < MAP_TOLERANCE),
            "convergence_window": window, "loss_change": loss_change, "val_map_change": map_change,
            "loss_measure": measure}


def convergence(history: Sequence[dict], best_epoch: int, stopped_early: bool, epoch_cap: int) -> dict:
    """How a run ended, for its final metrics: ``best_epoch`` (0-based), ``epochs_run``,
    ``stopped_early`` (early stopping fired), ``hit_epoch_cap`` (it ran ``train.epochs`` without
    stopping), ``plateau`` (early stopping fired, or the best validation mAP came at least
    :data:`PLATEAU_EPOCHS` epochs before the last epoch) and the convergence rule
    (:func:`converged`)."""
    epochs_run = len(history)
    return {"best_epoch": int(best_epoch), "epochs_run": int(epochs_run), "stopped_early": bool(stopped_early),
            "hit_epoch_cap": bool(not stopped_early and epochs_run >= epoch_cap), "epoch_cap": int(epoch_cap),
            "plateau": bool(stopped_early or best_epoch <= epochs_run - 1 - PLATEAU_EPOCHS), **converged(history)}
