"""Multi-process training through torchrun (DistributedDataParallel), on the CPU with gloo.

Two launches of ``python -m torch.distributed.run --nproc_per_node 2 --standalone``:

- a BatchNorm-free probe model (a tiny script): with no per-rank statistics left, two ranks
  sharing each global batch must reproduce the one-process run up to float summation order
  (uneven shares, an empty share in the last batch, mixup on the global batch, CSU's s, and the
  s* of every epoch's training steps, whose sums the ranks add: the empty share adds nothing); the
  same launch checks that a rank whose s drifts stops the run on every rank and that the
  interrupted run resumes from rank 0's checkpoint;
- the ``csu train`` command on the smoke profile (small_cnn, with BatchNorm): only rank 0 writes
  the run directory, the record says it was distributed, and the result matches a one-process run
  within the tolerance that per-rank BatchNorm statistics leave (measured in the README).
"""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from csu_lib.config import RunConfig
from csu_lib.core.errors import ConfigError
from csu_lib.records import is_complete, load_run
from csu_lib.pipeline import prepare_data
from csu_lib.training import distributed, train_run

REPO = Path(__file__).resolve().parents[2]
#: One-process vs two-process tolerances of the smoke CLI run (per-rank BatchNorm; see the test).
TOL_MAP = 0.08
TOL_SIGMA = 0.03

WORKER = '''
"""torchrun worker: a BatchNorm-free probe model on the smoke benchmark."""
import sys

import torch
import torch.nn as nn


class Probe(nn.Module):
    """conv3x3 -> ReLU -> max over (mel, time) -> linear: no BatchNorm, no dropout."""

    def __init__(self, n_classes, n_mels=64, width=1.0, dropout=0.0):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x.unsqueeze(1))).amax(dim=(2, 3)))


def probe_config():
    from csu_lib.study import run_config

    # global batch 57 on 2 ranks: shares of 29 and 28, and a last batch of 400 - 7 * 57 = 1 clip
    cfg = run_config("smoke", loss="csu", model="_probe", epochs=3, device="cpu", train={"batch_size": 57})
    return cfg.replace(model=cfg.model.replace(dropout=0.0), method=cfg.method.replace(name="mixup"))


if __name__ == "__main__":
    from csu_lib.models import MODELS
    from csu_lib.training import train_run

    MODELS["_probe"] = Probe
    run_dir, drift = sys.argv[1], len(sys.argv) > 2
    if drift:  # rank 1 moves its own s after step 3 of epoch 1 (8 steps an epoch): the ranks diverge
        from csu_lib.losses import CSULoss

        project, calls = CSULoss.project_, [0]

        def drifting_project(self):
            project(self)
            calls[0] += 1
            if calls[0] == 8 + 4 and torch.distributed.get_rank() == 1:
                with torch.no_grad():
                    self.s.add_(0.01)

        CSULoss.project_ = drifting_project
    train_run(probe_config(), run_dir, progress=False)
'''


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}


# ---------------------------------------------------------------------------------------------
# in-process: the helpers


@pytest.mark.parametrize("n", [1, 2, 3, 17, 57])
def test_shares_cover_the_batch_and_weights_restore_its_mean(n):
    batch = np.arange(100, 100 + n)
    world = 2
    shares = [distributed.shard(batch, r, world) for r in range(world)]
    np.testing.assert_array_equal(np.concatenate(shares), batch)  # contiguous, in order, nothing lost
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    # DDP averages the ranks' gradients: (1/W) sum_r w_r mean(share_r) must be the global mean
    values = np.random.default_rng(n).normal(size=n)
    parts = np.array_split(values, world)
    averaged = sum(distributed.share_weight(len(p), n, world) * (p.mean() if len(p) else 0.0)
                   for p in parts) / world
    assert averaged == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)


def test_no_torchrun_environment_means_one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.from_env("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.from_env("auto") is None


def test_bad_distributed_settings_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(ConfigError, match="RANK, LOCAL_RANK not set"):
        distributed.from_env("cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ConfigError, match=r"train.device='cuda:1'"):
        distributed.from_env("cuda:1")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        distributed.from_env("cpu")
    assert not torch.distributed.is_initialized()


# ---------------------------------------------------------------------------------------------
# torchrun: two gloo processes


@pytest.mark.slow
def test_torchrun_probe_equals_one_process_and_resumes(tmp_path, smoke_data, monkeypatch):
    from csu_lib.models import MODELS

    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    probe = runpy.run_path(str(worker))  # not __main__: defines Probe and probe_config only
    monkeypatch.setitem(MODELS, "_probe", probe["Probe"])
    config = probe["probe_config"]()

    # 1) rank 1's s drifts in epoch 1: every rank stops at the end of that epoch
    ddp = tmp_path / "ddp"
    crashed = _torchrun(str(worker), str(ddp), "drift", cwd=tmp_path)
    assert crashed.returncode != 0
    assert "differs between ranks" in crashed.stdout + crashed.stderr
    assert (ddp / "checkpoint.pt").is_file() and not is_complete(ddp)
    assert len(json.loads((ddp / "history.json").read_text())["epochs"]) == 1
    # 2) the same command resumes from rank 0's checkpoint (epoch 0) and completes
    done = _torchrun(str(worker), str(ddp), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    two = load_run(ddp)

    one = train_run(config, tmp_path / "one", data=smoke_data, progress=False)
    assert "distributed" not in one.summary and "distributed" not in one.versions
    assert two.summary["distributed"]["world_size"] == 2 and two.summary["distributed"]["backend"] == "gloo"
    assert two.steps_per_epoch == one.steps_per_epoch == 8
    # same global batches, gradients averaged with share weights: equal up to float summation order
    # (measured: max |sigma difference| 1.5e-8 over 24 steps x 50 classes, metrics identical)
    assert np.abs(two.log_sigma2 - one.log_sigma2).max() < 1e-6
    assert np.abs(one.log_sigma2).max() > 1e-2  # s did move
    # each epoch's s*: the ranks' sums added, the weight-0 share of the last batch left out
    assert two.epoch_optimum_log_sigma2.shape == one.epoch_optimum_log_sigma2.shape == (3, 50)
    assert np.abs(two.epoch_optimum_log_sigma2 - one.epoch_optimum_log_sigma2).max() < 1e-5
    np.testing.assert_allclose(two.history["train_loss"], one.history["train_loss"], rtol=1e-5)
    for split in ("val", "test"):
        for metric in ("mAP", "mAUC", "lwlrap"):
            assert two.final_metrics[split][metric] == pytest.approx(one.final_metrics[split][metric], abs=1e-4)
    np.testing.assert_allclose(two.scores("test"), one.scores("test"), atol=1e-5)


@pytest.mark.slow
def test_torchrun_cli_smoke_run(tmp_path, smoke_config, smoke_data):
    run_dir = tmp_path / "ddp"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = _torchrun("-m", "csu_lib.cli", "train", "--profile", "smoke", "--loss", "csu", "--epochs", "3",
                    "--device", "cpu", "--run-dir", str(run_dir), "--quiet", cwd=cwd)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "test mAP" in res.stdout
    two = load_run(run_dir)
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    data = smoke_data if (config.data, config.corruption) == (smoke_config.data, smoke_config.corruption) \
        else prepare_data(config, progress=False)
    one = train_run(config, tmp_path / "one", data=data, progress=False)

    # rank 0 alone wrote: the same files as a one-process run, no temporary leftovers, nothing in cwd
    assert _files(run_dir) == _files(tmp_path / "one")
    assert not any(cwd.iterdir())
    assert two.complete and is_complete(run_dir)
    dist_info = two.summary["distributed"]
    assert dist_info["world_size"] == 2 and dist_info["backend"] == "gloo"
    assert dist_info["sync_batchnorm"] is False  # torch's SyncBatchNorm needs GPU tensors
    # the sigma trajectory and the weights were compared bit for bit across ranks after every epoch
    assert dist_info["rank_checks"] == config.train.epochs
    assert two.versions["distributed"]["world_size"] == 2

    assert two.log_sigma2.shape == one.log_sigma2.shape
    # per-rank BatchNorm statistics (16 clips a rank instead of 32) are the only difference left.
    # Measured (smoke, 3 epochs, seeds 0-4): |delta test mAP| <= 0.034 (seed 0: 0.032), |delta val
    # mAP| <= 0.065 (seed 0: 0.003), max |delta final s| <= 0.015 (seed 0: 0.008); for scale, the
    # one-process runs of seeds 0-4 spread by 0.054 in test mAP and 0.089 in final s.
    assert abs(two.final_metrics["test"]["mAP"] - one.final_metrics["test"]["mAP"]) <= TOL_MAP
    assert abs(two.final_metrics["val"]["mAP"] - one.final_metrics["val"]["mAP"]) <= TOL_MAP
    # the final s is learned by Adam (CSU, the paper's form) from the all-reduced gradients; per-rank
    # BatchNorm statistics move the gradients a little, so the median over classes is compared
    assert np.median(np.abs(two.log_sigma2[-1] - one.log_sigma2[-1])) <= TOL_SIGMA
    assert np.abs(two.log_sigma2[0] - one.log_sigma2[0]).max() <= 2.5 * config.train.lr  # Adam's first step: +-lr
    # each epoch's s* is recorded under torchrun too (train-mode losses under per-rank BatchNorm)
    assert two.epoch_optimum_log_sigma2.shape == one.epoch_optimum_log_sigma2.shape == (3, 50)
    assert np.isfinite(two.epoch_optimum_log_sigma2).all()

