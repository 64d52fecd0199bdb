"""Batch-norm recalibration ("precise BN", csu_lib.training.predict.recalibrate_batchnorm and
``train.bn_recalibration``): the running statistics become the mean of the batch statistics of a
fixed subset of training clips, computed here independently; training is not changed by it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from csu_lib.training.predict import recalibrate_batchnorm
from csu_lib.training.seeding import fixed_subset


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4, momentum=0.1), torch.nn.Dropout(0.5))


def test_the_running_statistics_become_the_mean_batch_statistics_of_the_clips():
    net = _net()
    data = torch.randn(10, 3) * 2 + 1
    rows = np.arange(10)
    rng_before = torch.get_rng_state()
    n = recalibrate_batchnorm(net, lambda r: data[torch.as_tensor(r)], rows, batch_size=4, device=torch.device("cpu"))
    # ceil(10 / 4) = 3 near-equal batches: 4, 3, 3 clips (no straggler)
    assert n == 3
    with torch.no_grad():
        h = net[0](data)
    batches = [h[0:4], h[4:7], h[7:10]]
    mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    bn = net[1]
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)
    assert torch.allclose(bn.running_var, var, atol=1e-6)
    # the layer's own settings are back, the model is in eval mode and no random number was drawn
    assert bn.momentum == 0.1 and not net.training
    assert torch.equal(torch.get_rng_state(), rng_before)
    # the result depends on the clips only, not on what the running averages held before
    bn.running_mean.fill_(5.0)
    recalibrate_batchnorm(net, lambda r: data[torch.as_tensor(r)], rows, batch_size=4, device=torch.device("cpu"))
    assert torch.allclose(bn.running_mean, mean, atol=1e-6)


def test_a_model_without_batch_norm_is_left_as_it_is():
    net = torch.nn.Linear(3, 2)
    assert recalibrate_batchnorm(net, lambda r: torch.zeros(len(r), 3), np.arange(4), 2, torch.device("cpu")) == 0


def test_fixed_subsets_are_nested_and_the_same_for_every_run():
    small, large = fixed_subset(1000, 64), fixed_subset(1000, 256)
    assert len(small) == 64 and len(large) == 256 and set(small) <= set(large)
    assert np.array_equal(fixed_subset(1000, 256), large)
    assert np.array_equal(fixed_subset(50, 256), np.arange(50))


def test_recalibration_changes_the_evaluation_but_not_the_training(tmp_path, smoke_data):
    """Two smoke runs, with and without recalibration: the same weights after training (the
    recalibration neither trains nor draws random numbers), different BatchNorm statistics, and the
    recalibrated run's statistics are those of its fixed subset of training clips."""
    from csu_lib.study import run_config
    from csu_lib.training import train_run

    plain = run_config("smoke", epochs=2, device="cpu", train={"early_stopping_patience": None})
    recal = run_config("smoke", epochs=2, device="cpu", train={"early_stopping_patience": None, "bn_recalibration": 64})
    assert plain.run_id != recal.run_id
    a = train_run(plain, tmp_path / "plain", data=smoke_data, progress=False)
    b = train_run(recal, tmp_path / "recal", data=smoke_data, progress=False)
    # the last epoch is compared (a best epoch chosen by validation may differ between the two)
    ckpt_a = torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=False)["model"]
    ckpt_b = torch.load(tmp_path / "recal" / "checkpoint.pt", weights_only=False)["model"]
    stats = ("running_mean", "running_var", "num_batches_tracked")
    weights = [k for k in ckpt_a if not k.endswith(stats)]
    assert weights and all(torch.equal(ckpt_a[k], ckpt_b[k]) for k in weights)
    assert not torch.equal(ckpt_a["bn0.running_mean"], ckpt_b["bn0.running_mean"])
    # bn0 normalises the log-mel input: its recalibrated mean is the mean over the fixed subset's
    # batches of each batch's per-mel-bin mean, computed here from the stored features
    rows = smoke_data.train_idx[fixed_subset(len(smoke_data.train_idx), 64)]
    feats = torch.as_tensor(smoke_data.store.read(rows), dtype=torch.float32)  # (n, M, T)
    batches = np.array_split(np.arange(len(rows)), -(-len(rows) // recal.train.batch_size))
    expected = torch.stack([feats[i].mean(dim=(0, 2)) for i in batches]).mean(0)
    assert torch.allclose(ckpt_b["bn0.running_mean"], expected, atol=1e-4)
