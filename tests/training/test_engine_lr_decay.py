"""Learning-rate decay on a validation plateau (``train.lr_decays``): when it decays and when it
stops, that the stacked backend gives each run its own rate, that a resumed run keeps its rate,
and that the records say what happened."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from csu_lib.config import LossConfig, TrainConfig
from csu_lib.core.errors import ConfigError
from csu_lib.losses import build_loss
from csu_lib.records import load_checkpoint
from csu_lib.training import StackedRuns, train_run
from csu_lib.training.engine import RunState


def _state(config, **train) -> RunState:
    config = config.replace(train=config.train.replace(**train))
    return RunState(config, run_dir=None, data=None, method=None, targets=None, mask=None)


def _feed(state: RunState, maps: list[float]) -> list[tuple[float, bool]]:
    out = []
    for epoch, v in enumerate(maps):
        state.end_epoch({"epoch": epoch, "val.mAP": v}, {"w": epoch}, {"s": epoch})
        out.append((state.lr_scale, state.stopped))
    return out


def test_plateau_decays_the_rate_then_stops(smoke_config):
    state = _state(smoke_config, early_stopping_patience=2, lr_decays=2, lr_decay_factor=0.5)
    # gains at epochs 0-1, plateau (2 epochs without a gain) -> x0.5, a gain at 4, plateau -> x0.25,
    # plateau after the last decay -> stop
    trace = _feed(state, [0.1, 0.2, 0.2, 0.1, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert [s for s, _ in trace] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert [stop for _, stop in trace] == [False] * 8 + [True]
    assert state.lr_decays == 2 and state.best["epoch"] == 4


def test_without_decays_the_first_plateau_stops(smoke_config):
    state = _state(smoke_config, early_stopping_patience=2)
    trace = _feed(state, [0.1, 0.2, 0.2, 0.1])
    assert trace[-1] == (1.0, True) and state.lr_decays == 0


def test_decays_need_a_patience_and_a_factor_below_one():
    with pytest.raises(ConfigError, match="train.lr_decays"):
        TrainConfig(early_stopping_patience=None, lr_decays=1)
    with pytest.raises(ConfigError, match="train.lr_decay_factor"):
        TrainConfig(lr_decays=1, lr_decay_factor=1.0)
    with pytest.raises(ConfigError, match="train.lr_decays"):
        TrainConfig(lr_decays=-1)


def test_decay_fields_leave_old_run_ids_alone(smoke_config):
    assert smoke_config.replace(train=smoke_config.train.replace(lr_decays=0)).run_id == smoke_config.run_id
    assert smoke_config.replace(train=smoke_config.train.replace(
        early_stopping_patience=3, lr_decays=1)).run_id != smoke_config.replace(
        train=smoke_config.train.replace(early_stopping_patience=3)).run_id


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_stacked_runs_step_each_at_its_own_rate(optimizer):
    # one optimiser over the stacked tensors is N independent ones (SGD: the momentum buffer is
    # per element and sums gradients, so shrinking a step to a run's rate is exact)
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 4)
    models = [copy.deepcopy(base), copy.deepcopy(base)]
    train = TrainConfig(lr=0.05, optimizer=optimizer, weight_decay=0.01)
    loss = build_loss(LossConfig(name="bce"), 4)
    stack = StackedRuns(models, [loss, copy.deepcopy(loss)], train)
    alone = [copy.deepcopy(base), copy.deepcopy(base)]
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optimizer]
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    opts = [cls(m.parameters(), lr=lr, weight_decay=0.01, **extra) for m, lr in zip(alone, (0.05, 0.005))]
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(2, 8, 6, generator=gen)
        y = (torch.rand(2, 8, 4, generator=gen) > 0.5).float()
        stack.step(x, y, None, lr_scales=[1.0, 0.1])
        for k, (m, opt) in enumerate(zip(alone, opts)):
            opt.zero_grad()
            loss(m(x[k]), y[k], None).backward()
            opt.step()
    for k, m in enumerate(alone):
        np.testing.assert_allclose(stack.params["weight"][k].detach().numpy(), m.weight.detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
    # the two rates really differ: the slow run moved about a tenth as far from the start
    moved = [float((stack.params["weight"][k] - base.weight).detach().abs().sum()) for k in range(2)]
    assert moved[1] < 0.2 * moved[0]


def test_a_run_decays_resumes_at_its_rate_and_records_it(smoke_config, smoke_data, tmp_path):
    # patience 1 on the smoke data: 8 epochs bring plateaus; the checkpoint of every epoch holds
    # the rate, and the history has the rate each epoch was trained at
    config = smoke_config.replace(train=smoke_config.train.replace(epochs=8, early_stopping_patience=1,
                                                                   lr_decays=3))
    rec = train_run(config, tmp_path / "run", data=smoke_data, progress=False)
    scales = rec.history["lr_scale"].to_numpy()
    decays = rec.final_metrics["lr_decays"]
    assert decays >= 1
    # the rates epochs trained at: every decayed rate, except the last one when the last decay came
    # after the last epoch
    trained_at = sorted(set(scales.tolist()), reverse=True)
    assert len(trained_at) in (decays, decays + 1)
    np.testing.assert_allclose(trained_at, [0.1 ** i for i in range(len(trained_at))])
    assert np.all(np.diff(scales) <= 0)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["lr_decays"] == decays
    resumed = _state(config)
    resumed.resume(ckpt)
    assert resumed.lr_scale == pytest.approx(0.1 ** decays) and resumed.lr_decays == decays
