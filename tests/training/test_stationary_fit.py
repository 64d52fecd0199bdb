"""CSU's sigma read at its stationary point: the closed-form optimum of s for a fixed
network zeroes the loss's gradient in s (checked with autograd, an independent computation), the
stationary fit (the variant ``csu_stationary``; plain ``csu`` is the paper's form, s learned by
gradient) puts every run's s there after each epoch, the record stores the gap, and ``model.pt``
pairs the selected weights with the s of the same epoch."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from csu_lib.analysis.sigma import final_log_sigma2, sigma_table, stationarity_table
from csu_lib.config import LossConfig
from csu_lib.losses import CSULoss, TwoSidedCSULoss, build_loss, multiplier_of, reliability, sigma_of
from csu_lib.pipeline import load_trained
from csu_lib.records import load_run
from csu_lib.training import train_run

C, N = 6, 400


@pytest.fixture(scope="module")
def stationary_config(smoke_config):
    """The smoke CSU run with the stationary fit (the same data as smoke_config)."""
    return smoke_config.replace(loss=smoke_config.loss.replace(csu_fit="stationary"))


def _problem(seed: int, soft: bool = False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, C, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(N, C, generator=g, dtype=torch.float64) < 0.2).double()
    if soft:
        y = y * torch.rand(N, C, generator=g, dtype=torch.float64)
    mask = (torch.rand(N, C, generator=g, dtype=torch.float64) < 0.7).double()
    return z, y, mask


def _grad_in_s(loss, s_values, z, y, mask):
    loss = loss.double()
    with torch.no_grad():
        loss.s.copy_(torch.as_tensor(s_values))
    loss.s.requires_grad_(True)
    value = loss(z, y, mask)
    (grad,) = torch.autograd.grad(value, loss.s)
    return grad.numpy()


@pytest.mark.parametrize("scale", ["full", "half"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("two_sided", [False, True])
def test_stationary_log_sigma2_zeroes_the_gradient_in_s(scale, reduction, masked, two_sided):
    z, y, mask = _problem(3, soft=True)
    m = mask if masked else None
    cls = TwoSidedCSULoss if two_sided else CSULoss
    loss = cls(C, scale=scale, class_reduction=reduction, clamp=(-20.0, 20.0))
    scores = torch.sigmoid(z).numpy()
    star = loss.stationary_log_sigma2(scores, y.numpy(), None if m is None else m.numpy())
    assert star.shape == ((2 * C,) if two_sided else (C,))
    grad = _grad_in_s(loss, star, z, y, m)
    assert np.abs(grad).max() < 1e-6
    # and it is a minimum: moving any s away raises the loss
    for delta in (-0.3, 0.3):
        loss_d = cls(C, scale=scale, class_reduction=reduction, clamp=(-20.0, 20.0)).double()
        loss_d.load_log_sigma2_(star + delta)
        loss.load_log_sigma2_(star)
        assert float(loss_d(z, y, m).detach()) > float(loss(z, y, m).detach())


def test_closed_forms_against_hand_computed_means():
    z, y, mask = _problem(5)
    p = torch.sigmoid(z).numpy()
    yy, mm = y.numpy(), mask.numpy()
    bce = -(yy * np.log(p) + (1 - yy) * np.log(1 - p))
    one = CSULoss(C, clamp=(-20.0, 20.0)).stationary_log_sigma2(p, yy, mm)
    np.testing.assert_allclose(np.exp(one), 2 * (mm * bce).sum(0) / mm.sum(0), rtol=1e-5)
    two = TwoSidedCSULoss(C, clamp=(-20.0, 20.0)).stationary_log_sigma2(p, yy)
    pos = np.array([-np.log(p[yy[:, c] == 1, c]).mean() for c in range(C)])
    neg = np.array([-np.log(1 - p[yy[:, c] == 0, c]).mean() for c in range(C)])
    np.testing.assert_allclose(np.exp(two), 2 * np.concatenate([pos, neg]), rtol=1e-5)


def test_masking_a_class_does_not_shrink_its_sigma():
    # the old loss kept s_c/2 for masked elements, so the optimum of a heavily masked class was
    # 2 * (masked BCE sum) / N: smaller by the masked share. Now its gradient is zero at the mean
    # over the unmasked clips.
    z, y, mask = _problem(7)
    mask[:, 0] = 0.0
    mask[:40, 0] = 1.0  # class 0 keeps 10% of its elements
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").numpy()
    mm = mask.numpy()
    s = np.log(2 * (mm * bce).sum(0) / mm.sum(0))
    grad = _grad_in_s(CSULoss(C, clamp=(-20.0, 20.0)), s, z, y, mask)
    assert np.abs(grad).max() < 1e-6


def test_stationary_fit_needs_no_optimizer_group():
    loss = build_loss(LossConfig(name="csu", csu_fit="stationary"), 4)
    assert loss.fit == "stationary" and not loss.s.requires_grad and not loss.fits_by_gradient
    # CSU by default is the paper's form: s learned by the optimiser
    default = build_loss(LossConfig(name="csu"), 4)
    assert default.fit == "gradient" and default.s.requires_grad and default.fits_by_gradient


def _independent_gap(rec) -> np.ndarray:
    """|s - s*| from the record's own files: model.pt's s, scores_train.npy and the labels trained on."""
    _, loss = load_trained(rec)
    s = loss.log_sigma2().double().numpy()
    p = np.clip(rec.scores("train").astype(np.float64), 1e-7, 1 - 1e-7)
    y = rec.corruption().labels.astype(np.float64)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return np.abs(s - np.clip(np.log(2 * bce.mean(0)), *rec.config.loss.csu_clamp))


def test_stationary_run_records_its_gap_and_sits_at_the_optimum(tmp_path, stationary_config, smoke_data):
    cfg = stationary_config.replace(corruption=stationary_config.corruption.replace(kind="san", ratio=0.3))
    assert cfg.loss.csu_fit == "stationary"
    rec = train_run(cfg, tmp_path / "run", progress=False)
    rel = rec.final_metrics["reliability"]
    assert rel["fit"] == "stationary"
    gap = _independent_gap(rec)
    np.testing.assert_allclose(rel["abs_gap"], gap, atol=1e-4)
    assert rel["median_abs_gap"] < 1e-3
    # during epoch e the loss uses the fit made at the end of epoch e - 1 (the log's last step of
    # each epoch holds that epoch's fit): constant within an epoch, moving between epochs
    log = rec.log_sigma2
    steps = len(log) // len(rec.history)
    assert np.all(log[:steps - 1] == 0.0)  # the first epoch trains at the initial s
    for e in range(len(rec.history)):
        block = log[e * steps:(e + 1) * steps]
        assert np.all(block[:-1] == block[0])
        if e + 1 < len(rec.history):
            assert np.all(log[(e + 1) * steps] == block[-1])
    assert not np.allclose(log[steps - 1], 0.0)
    # the last fit is the s that goes with the selected weights when the best epoch is the last
    if rec.final_metrics["best_epoch"] == len(rec.history) - 1:
        np.testing.assert_allclose(log[-1], rel["log_sigma2"], rtol=1e-6)


def test_gradient_fit_reproduces_the_paper_form_and_is_off_its_optimum(tmp_path, smoke_config, smoke_data):
    cfg = smoke_config.replace(loss=smoke_config.loss.replace(csu_fit="gradient"))
    rec = train_run(cfg, tmp_path / "run", data=smoke_data, progress=False)
    rel = rec.final_metrics["reliability"]
    assert rel["fit"] == "gradient"
    # a 3-epoch run cannot have reached it: s moved by about lr per step from 0
    assert rel["median_abs_gap"] > 0.3
    assert np.all(np.diff(rec.log_sigma2[:, 0]) != 0)


def test_model_pt_pairs_the_best_weights_with_the_s_of_the_same_epoch(tmp_path, smoke_config, smoke_data):
    # a learning rate far too high makes validation mAP bounce: the best epoch is not the last
    cfg = smoke_config.replace(loss=smoke_config.loss.replace(csu_fit="gradient"),
                               train=smoke_config.train.replace(epochs=8, early_stopping_patience=2, lr=0.5))
    rec = train_run(cfg, tmp_path / "run", data=smoke_data, progress=False)
    best, epochs = rec.final_metrics["best_epoch"], len(rec.history)
    assert best < epochs - 1
    steps = len(rec.log_sigma2) // epochs
    _, loss = load_trained(rec)
    s_model = loss.log_sigma2().numpy()
    np.testing.assert_array_equal(s_model, rec.log_sigma2[(best + 1) * steps - 1])
    assert not np.allclose(s_model, rec.log_sigma2[-1])
    np.testing.assert_allclose(rec.final_metrics["reliability"]["log_sigma2"], s_model, rtol=1e-6)
    # the sigma tables read the same s (older records read the log's last step)
    np.testing.assert_allclose(final_log_sigma2(rec), s_model, rtol=1e-6)
    table = sigma_table([rec])
    np.testing.assert_allclose(table["log_sigma2"].to_numpy(), s_model, rtol=1e-6)
    # a record written before the reliability block existed: read at the best epoch's last step
    legacy = replace(rec, final_metrics={k: v for k, v in rec.final_metrics.items() if k != "reliability"})
    np.testing.assert_array_equal(final_log_sigma2(legacy), s_model)


def test_the_record_stores_the_selected_s_once_and_reads_records_of_the_old_form(tmp_path, stationary_config):
    """New records keep the selected model's s only in final_metrics.json's reliability block
    (model.pt's loss state and record.json's copy of the metrics leave it out), and the record
    exposes it, s* and the derived sigma one way; records of the old form (s also in model.pt)
    and of the oldest (no reliability block) still read, with the same numbers."""
    cfg = stationary_config.replace(corruption=stationary_config.corruption.replace(kind="san", ratio=0.3))
    rec = train_run(cfg, tmp_path / "new", progress=False)
    saved = torch.load(rec.path / "model.pt", map_location="cpu", weights_only=False)
    assert saved["loss"] == {} and rec.loss_state == {}
    assert "reliability" not in json.loads((rec.path / "record.json").read_text())["final_metrics"]
    s = rec.final_log_sigma2
    assert s.dtype == np.float64 and s.shape == (rec.scores("train").shape[1],)
    np.testing.assert_array_equal(s, rec.final_metrics["reliability"]["log_sigma2"])
    np.testing.assert_array_equal(s, final_log_sigma2(rec))
    np.testing.assert_array_equal(rec.final_sigma, sigma_of(s))
    np.testing.assert_array_equal(rec.final_multiplier, multiplier_of(s, 1.0))
    _, loss = load_trained(rec)  # the loss gets the record's s back
    np.testing.assert_array_equal(loss.log_sigma2().double().numpy(), s)
    # s*: the unconstrained optimum of the selected network, as the loss computes it from the files
    star = loss.stationary_log_sigma2(rec.scores("train"), rec.corruption().labels)
    np.testing.assert_allclose(rec.optimum_log_sigma2, star, rtol=1e-6)
    assert np.median(np.abs(s - np.clip(star, *cfg.loss.csu_clamp))) < 1e-3  # the stationary fit sits there
    table = stationarity_table([rec])
    assert table["recomputed"].iloc[0] == pytest.approx(table["stored"].iloc[0], abs=1e-5)

    # the old form: the same record with the s also in model.pt's loss state
    old = tmp_path / "old"
    shutil.copytree(rec.path, old)
    torch.save({**saved, "loss": {"s": torch.tensor(s, dtype=torch.float32)}}, old / "model.pt")
    old_rec = load_run(old)
    np.testing.assert_array_equal(old_rec.final_log_sigma2, s)
    np.testing.assert_array_equal(load_trained(old_rec)[1].log_sigma2().double().numpy(), s)
    pd.testing.assert_frame_equal(stationarity_table([old_rec]).drop(columns="path"), table.drop(columns="path"))
    # the oldest form: no reliability block; s from the log (best epoch) and from model.pt
    metrics = {k: v for k, v in rec.final_metrics.items() if k != "reliability"}
    (old / "final_metrics.json").write_text(json.dumps(metrics))
    oldest = load_run(old)
    assert oldest.stationarity == {} and oldest.optimum_log_sigma2 is None
    steps = len(oldest.log_sigma2) // len(oldest.history)
    np.testing.assert_array_equal(oldest.final_log_sigma2,
                                  oldest.log_sigma2[(metrics["best_epoch"] + 1) * steps - 1].astype(np.float64))
    np.testing.assert_allclose(oldest.final_log_sigma2, s, rtol=1e-6)
    shifted = torch.tensor(s + 0.25, dtype=torch.float32)  # model.pt's own s is what the loss gets
    torch.save({**saved, "loss": {"s": shifted}}, old / "model.pt")
    np.testing.assert_array_equal(load_trained(load_run(old))[1].log_sigma2(), shifted)
    # a BCE run: no learned s anywhere
    bce = train_run(cfg.replace(loss=cfg.loss.replace(name="bce"), train=cfg.train.replace(epochs=1)),
                    tmp_path / "bce", progress=False)
    assert bce.final_log_sigma2 is None and bce.optimum_log_sigma2 is None and bce.final_sigma is None
    assert reliability(load_trained(bce)[1]) is None


def test_two_sided_run_trains_and_sits_at_its_optimum(tmp_path, stationary_config, smoke_data):
    cfg = stationary_config.replace(loss=stationary_config.loss.replace(name="csu2"),
                                    train=stationary_config.train.replace(epochs=2))
    rec = train_run(cfg, tmp_path / "run", data=smoke_data, progress=False)
    n_classes = rec.scores("train").shape[1]
    assert rec.log_sigma2.shape[1] == 2 * n_classes
    rel = rec.final_metrics["reliability"]
    assert len(rel["log_sigma2"]) == 2 * n_classes and rel["median_abs_gap"] < 1e-3
    # s+ and s- by hand from the record's files (the clean labels: smoke_config is uncorrupted)
    p = np.clip(rec.scores("train").astype(np.float64), 1e-7, 1 - 1e-7)
    y = smoke_data.train_labels.astype(np.float64)
    s = np.asarray(rel["log_sigma2"])
    has_pos = y.sum(0) > 0
    pos = np.array([-np.log(p[y[:, c] == 1, c]).mean() if has_pos[c] else np.nan for c in range(n_classes)])
    lo, hi = np.exp(cfg.loss.csu_clamp[0]), np.exp(cfg.loss.csu_clamp[1])
    np.testing.assert_allclose(np.exp(s[:n_classes])[has_pos], np.clip(2 * pos[has_pos], lo, hi), rtol=1e-4)
    neg = np.array([-np.log(1 - p[y[:, c] == 0, c]).mean() for c in range(n_classes)])
    np.testing.assert_allclose(np.exp(s[n_classes:]), np.clip(2 * neg, lo, hi), rtol=1e-4)
    with pytest.raises(Exception, match="two-sided"):
        final_log_sigma2(rec)


def test_the_fit_is_the_optimum_over_the_clamp_range():
    # a class the network fits almost perfectly: its unconstrained optimum lies far below -5;
    # unclamped, its multiplier would be in the thousands (clean quick runs collapsed to mAP 0.4)
    z = torch.full((N, C), -12.0, dtype=torch.float64)
    y = torch.zeros(N, C, dtype=torch.float64)
    scores = torch.sigmoid(z).numpy()
    loss = CSULoss(C)
    star = loss.stationary_log_sigma2(scores, y.numpy())
    assert np.all(star < -10)  # log(2 * 6e-6)
    np.testing.assert_array_equal(loss.constrained_optimum(scores, y.numpy()), np.full(C, -5.0))
    # over [-5, 5] the loss (convex in s) is smallest at the bound: a small step inside raises it
    loss.load_log_sigma2_(np.full(C, -5.0))
    inside = CSULoss(C)
    inside.load_log_sigma2_(np.full(C, -4.9))
    z32, y32 = z.float(), y.float()
    assert float(inside(z32, y32).detach()) > float(loss(z32, y32).detach())
    report = loss.stationarity(scores, y.numpy())
    assert report["median_abs_gap"] == 0 and report["n_at_clamp"] == C
    assert report["median_abs_gap_unconstrained"] > 5
