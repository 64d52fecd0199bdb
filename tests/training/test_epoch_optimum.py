"""The s* of every epoch's own training steps (csu_lib.training.epoch_optimum): the sums a step
adds give the optimum of the loss summed over the steps (checked with autograd), a run records
log(2 * mean BCE) over the loss inputs of each epoch (recomputed here from the inputs the loss
received, captured by wrapping its forward), the recording never changes training, and records
and checkpoints written before it was kept still read and resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csu_lib.losses import CSULoss, TwoSidedCSULoss
from csu_lib.records import load_checkpoint, load_run
from csu_lib.training import train_run
from csu_lib.training.epoch_optimum import EpochOptimum

C = 5


class Crash(RuntimeError):
    pass


def _batches(seed: int, n: int = 4, size: int = 30):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        z = torch.randn(size, C, generator=g, dtype=torch.float64) * 2
        y = (torch.rand(size, C, generator=g, dtype=torch.float64) < 0.3).double()
        y = y * torch.rand(size, C, generator=g, dtype=torch.float64).clamp_min(0.5)  # soft positives
        m = (torch.rand(size, C, generator=g, dtype=torch.float64) < 0.8).double()
        out.append((z, y, m))
    return out


@pytest.mark.parametrize("cls", [CSULoss, TwoSidedCSULoss])
@pytest.mark.parametrize("scale", ["full", "half"])
def test_the_summed_step_sums_give_the_optimum_of_the_summed_loss(cls, scale):
    loss = cls(C, scale=scale, clamp=(-30.0, 30.0)).double()
    batches = _batches(1)
    acc = EpochOptimum(loss, 1, loss.log_sigma2().numel(), torch.device("cpu"))
    for z, y, m in batches:
        acc.observe(z, y, m)
    current = np.zeros(loss.log_sigma2().numel())
    star = acc.take(current)[0]
    # the gradient in s of the loss summed over the batches (equal sizes) is zero there
    with torch.no_grad():
        loss.s.copy_(torch.as_tensor(star))
    loss.s.requires_grad_(True)
    (grad,) = torch.autograd.grad(sum(loss(z, y, m) for z, y, m in batches), loss.s)
    assert np.abs(grad.numpy()).max() < 1e-6  # (the step sums are float32, as the loss computes its BCE)
    # the sums were reset: an epoch without steps keeps the current s
    np.testing.assert_array_equal(acc.take(current + 0.5)[0], current + 0.5)


def test_a_value_without_weight_keeps_the_current_s():
    loss = CSULoss(C)
    z, y, _ = _batches(2, n=1)[0]
    m = torch.ones_like(z)
    m[:, 2] = 0.0
    num, den = loss.step_sums(z, y, m)
    star = loss.optimum_from_sums(num, den, current=np.full(C, 1.25))
    assert star[2] == pytest.approx(1.25)
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    assert star[0] == pytest.approx(float(torch.log(2 * bce[:, 0].mean())))


def _capture(monkeypatch):
    """Record (logits, targets, mask) of every training call of the CSU loss (float64 copies)."""
    seen = []
    forward = CSULoss.forward

    def spy(self, logits, targets, mask=None):
        if torch.is_grad_enabled():
            seen.append((logits.detach().double().clone(), targets.detach().double().clone()))
        return forward(self, logits, targets, mask)

    monkeypatch.setattr(CSULoss, "forward", spy)
    return seen


@pytest.mark.parametrize("fit", ["gradient", "stationary"])
def test_a_run_records_the_s_star_of_each_epochs_own_steps(tmp_path, monkeypatch, smoke_config, smoke_data, fit):
    config = smoke_config.replace(loss=smoke_config.loss.replace(csu_fit=fit), train=smoke_config.train.replace(epochs=2))
    seen = _capture(monkeypatch)
    rec = train_run(config, tmp_path / "run", data=smoke_data, progress=False)
    steps = rec.steps_per_epoch
    assert len(seen) == 2 * steps
    star = rec.epoch_optimum_log_sigma2
    assert star.shape == (2, smoke_data.manifest.n_classes) and star.dtype == np.float64
    for epoch in range(2):
        z = torch.cat([s[0] for s in seen[epoch * steps:(epoch + 1) * steps]])
        y = torch.cat([s[1] for s in seen[epoch * steps:(epoch + 1) * steps]])
        assert len(z) == len(smoke_data.train_idx)  # every training clip once
        bce = F.binary_cross_entropy_with_logits(z, y, reduction="none").numpy()
        np.testing.assert_allclose(star[epoch], np.log(2 * bce.mean(0)), rtol=0, atol=1e-5)
    # the learned s per epoch is the log's last step of each epoch
    np.testing.assert_array_equal(rec.epoch_log_sigma2, rec.log_sigma2[steps - 1::steps].astype(np.float64))

    # recorded, never fed back: the same run without the recording trains bit for bit the same
    monkeypatch.setattr(EpochOptimum, "observe", lambda self, *args: None)
    again = train_run(config, tmp_path / "again", data=smoke_data, progress=False)
    np.testing.assert_array_equal(again.log_sigma2, rec.log_sigma2)
    np.testing.assert_array_equal(again.scores("test"), rec.scores("test"))


def test_old_records_read_none_and_old_checkpoints_resume_with_nan(tmp_path, smoke_config, smoke_data):
    config = smoke_config.replace(train=smoke_config.train.replace(epochs=2))
    run = tmp_path / "run"

    def crash(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 0):
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        train_run(config, run, data=smoke_data, progress=False, on_step=crash)
    ckpt = load_checkpoint(run)
    assert len(ckpt["epoch_optimum"]) == 1
    del ckpt["epoch_optimum"]  # a checkpoint written before the epoch's s* was kept
    torch.save(ckpt, run / "checkpoint.pt")
    rec = train_run(config, run, data=smoke_data, progress=False)
    assert np.isnan(rec.epoch_optimum_log_sigma2[0]).all() and np.isfinite(rec.epoch_optimum_log_sigma2[1]).all()
    (run / "epoch_optimum_log_sigma2.npy").unlink()  # a record written before it was kept
    assert load_run(run).epoch_optimum_log_sigma2 is None
    bce = train_run(config.replace(loss=config.loss.replace(name="bce"), train=config.train.replace(epochs=1)),
                    tmp_path / "bce", data=smoke_data, progress=False)
    assert bce.epoch_optimum_log_sigma2 is None and bce.epoch_log_sigma2 is None
