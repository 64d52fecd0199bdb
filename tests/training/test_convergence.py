"""The convergence rule of a run (csu_lib.training.convergence) on hand-made histories: the
window is the last 10% of the epochs (at least 2), the training loss must change by less than 2%
of its value at the window's start and validation mAP by less than 0.01 over it."""
from __future__ import annotations

import math

import pytest

from csu_lib.training.convergence import convergence, converged


def _history(losses, maps):
    return [{"epoch": i, "train_loss": loss, "val.mAP": m} for i, (loss, m) in enumerate(zip(losses, maps))]


def test_a_flat_end_converges_with_the_changes_computed_by_hand():
    # 30 epochs: window ceil(3.0) = 3; the loss goes 1.00 -> 0.99 over the last 3 epochs (1%), mAP
    # spreads 0.800..0.805 from the epoch before the window to the last
    losses = [2.0 - 0.03 * i for i in range(26)] + [1.0, 0.995, 0.992, 0.99]
    maps = [0.5] * 26 + [0.80, 0.805, 0.801, 0.803]
    out = converged(_history(losses, maps))
    assert out["convergence_window"] == 3
    assert out["loss_change"] == pytest.approx(0.01)
    assert out["val_map_change"] == pytest.approx(0.005)
    assert out["converged"] is True


@pytest.mark.parametrize("last_loss, last_map, ok", [
    (0.975, 0.805, False),  # loss 1.0 -> 0.975: 2.5% >= 2%
    (0.985, 0.812, False),  # mAP spread 0.80..0.812: 0.012 >= 0.01
    (0.985, 0.809, True),
])
def test_either_tolerance_decides(last_loss, last_map, ok):
    losses = [1.5] * 17 + [1.0, 1.0, last_loss]
    maps = [0.7] * 17 + [0.80, 0.80, last_map]
    out = converged(_history(losses, maps))
    assert out["convergence_window"] == 2  # ceil(0.1 * 20) = 2
    assert out["converged"] is ok


def test_a_run_shorter_than_its_window_is_not_converged():
    out = converged(_history([1.0, 0.9], [0.5, 0.6]))
    assert out["converged"] is False and math.isnan(out["loss_change"])


def test_convergence_keeps_how_the_run_ended():
    hist = _history([1.0] * 10, [0.5] * 10)
    out = convergence(hist, best_epoch=2, stopped_early=True, epoch_cap=100)
    assert out["epochs_run"] == 10 and out["stopped_early"] and not out["hit_epoch_cap"] and out["plateau"]
    assert out["converged"] is True and out["loss_change"] == 0.0
    capped = convergence(hist, best_epoch=9, stopped_early=False, epoch_cap=10)
    assert capped["hit_epoch_cap"] and not capped["plateau"]
