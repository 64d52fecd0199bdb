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


def test_the_fit_loss_is_read_where_both_window_ends_have_it():
    # the step-averaged loss drops 10% at the end (noise), the fit loss 1%: the fit loss decides
    hist = _history([1.0] * 18 + [1.0, 0.9], [0.8] * 20)
    for row, fit in zip(hist[-3:], (2.0, 1.99, 1.98)):
        row["train_fit_loss"] = fit
    out = converged(hist)
    assert out["loss_measure"] == "train_fit_loss" and out["loss_change"] == pytest.approx(0.01) and out["converged"]
    del hist[-3]["train_fit_loss"]  # the window's start lacks it: the step-averaged loss is read
    out = converged(hist)
    assert out["loss_measure"] == "train_loss" and out["loss_change"] == pytest.approx(0.1) and not out["converged"]


def test_the_fit_loss_is_measured_where_the_window_can_lie():
    from csu_lib.training.convergence import FIT_CLIPS, fit_positions, wants_fit_loss

    # 30 epochs without early stopping: window 3, so epochs 26..29 (the one before the window, and it)
    assert [e for e in range(30) if wants_fit_loss(30, e, may_stop_early=False)] == [26, 27, 28, 29]
    assert all(wants_fit_loss(30, e, may_stop_early=True) for e in range(30))
    pos = fit_positions(1600)
    assert len(pos) == FIT_CLIPS and len(set(pos)) == FIT_CLIPS and list(pos) == sorted(pos) and pos[-1] < 1600
    assert (fit_positions(1600) == pos).all() and list(fit_positions(10)) == list(range(10))


def test_a_trained_run_records_its_fit_loss_in_the_window_and_judges_by_it(tmp_path, smoke_data):
    from csu_lib.losses import bce_from_scores
    from csu_lib.study import run_config
    from csu_lib.training import train_run
    from csu_lib.training.convergence import fit_positions

    config = run_config("smoke", epochs=4, device="cpu", train={"lr_schedule": "cosine"})
    rec = train_run(config, tmp_path / "run", data=smoke_data, progress=False)
    hist = rec.history.to_dict(orient="records")
    # 4 epochs, window 2: the fit loss is measured after epochs 1, 2 and 3 only
    assert [e for e, row in enumerate(hist) if row.get("train_fit_loss") == row.get("train_fit_loss")
            and "train_fit_loss" in row] == [1, 2, 3]
    assert rec.final_metrics["loss_measure"] == "train_fit_loss"
    start, last = hist[1]["train_fit_loss"], hist[3]["train_fit_loss"]
    assert rec.final_metrics["loss_change"] == pytest.approx(abs(last - start) / start)
    # the last epoch is the best here (smoke, seed 0), so its fit loss is the stored training scores'
    # BCE on those clips, recomputed from the record
    assert rec.final_metrics["best_epoch"] == 3
    pos = fit_positions(len(smoke_data.train_idx))
    bce = bce_from_scores(rec.scores("train")[pos], smoke_data.train_labels[pos])
    assert float(bce.sum(axis=1).mean()) == pytest.approx(last, rel=1e-5)
