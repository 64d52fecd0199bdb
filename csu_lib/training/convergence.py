"""How a run ended, and whether it converged, for its final metrics (:func:`convergence`).

The convergence rule (one definition, read by every table and figure that compares runs): over
the last :data:`WINDOW_SHARE` of the epochs a run trained (at least :data:`MIN_WINDOW` epochs),

- its training loss changed by less than :data:`LOSS_TOLERANCE` of its value at the start of that
  window: ``|L_last - L_start| / |L_start|``, where ``L_start`` is the mean training loss of the
  epoch before the window;
- its validation mAP moved by less than :data:`MAP_TOLERANCE`: the largest minus the smallest
  validation mAP from the epoch before the window to the last one.

A run that does not satisfy both is recorded as not converged (``converged`` False), whatever
stopped it; the figures mark it. The changes themselves are recorded (``loss_change``,
``val_map_change``), so a reader can apply another threshold.
"""
from __future__ import annotations

import math
from typing import Sequence

#: The share of a run's epochs the convergence rule looks at (its last ones).
WINDOW_SHARE = 0.1
#: The fewest epochs in that window.
MIN_WINDOW = 2
#: The largest relative change of the training loss over the window of a converged run.
LOSS_TOLERANCE = 0.02
#: The largest spread of validation mAP over the window of a converged run.
MAP_TOLERANCE = 0.01
#: A run reached a validation plateau when early stopping fired or its best epoch lies at least
#: this many epochs before its last one.
PLATEAU_EPOCHS = 3


def converged(history: Sequence[dict]) -> dict:
    """The convergence rule on a run's history (rows with ``train_loss`` and ``val.mAP`` per epoch):
    ``converged``, ``convergence_window`` (epochs), ``loss_change`` (relative) and
    ``val_map_change`` (spread); NaN changes and not converged when the run is shorter than its
    window plus one epoch."""
    n = len(history)
    window = max(MIN_WINDOW, math.ceil(WINDOW_SHARE * n))
    if n < window + 1:
        return {"converged": False, "convergence_window": window, "loss_change": float("nan"),
                "val_map_change": float("nan")}
    start, last = float(history[n - window - 1]["train_loss"]), float(history[-1]["train_loss"])
    loss_change = abs(last - start) / abs(start) if start != 0 else float("inf")
    maps = [float(row["val.mAP"]) for row in history[n - window - 1:]]
    map_change = max(maps) - min(maps)
    return {"converged": bool(loss_change < LOSS_TOLERANCE and map_change < MAP_TOLERANCE),
            "convergence_window": window, "loss_change": loss_change, "val_map_change": map_change}


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
