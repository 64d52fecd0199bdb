"""The optimiser (csu_lib.training.optimiser.make_optimizer): SGD with momentum beside Adam and
AdamW, its update against a hand computation, CSU's reliability in the same optimiser, and SGD's
state in the vectorised backend."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from csu_lib.config import LossConfig, TrainConfig
from csu_lib.losses import build_loss, reliability
from csu_lib.training import StackedRuns
from csu_lib.training.optimiser import make_optimizer


def test_make_optimizer_returns_sgd_with_momentum():
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, weight_decay=1e-3), model.parameters())
    assert type(opt) is torch.optim.SGD
    (group,) = opt.param_groups
    assert group["momentum"] == 0.9 and group["nesterov"] is False
    assert group["lr"] == 0.1 and group["weight_decay"] == 1e-3
    opt = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.5, nesterov=True), model.parameters())
    assert opt.param_groups[0]["momentum"] == 0.5 and opt.param_groups[0]["nesterov"] is True
    assert type(make_optimizer(TrainConfig(), model.parameters())) is torch.optim.Adam
    assert type(make_optimizer(TrainConfig(optimizer="adamw"), model.parameters())) is torch.optim.AdamW


def test_csu_reliability_joins_the_sgd_optimiser():
    model = torch.nn.Linear(3, 2)
    loss = build_loss(LossConfig(name="csu", csu_fit="gradient"), 2)
    opt = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, weight_decay=1e-3), model.parameters(),
                         reliability(loss), reliability_lr=0.01)
    assert type(opt) is torch.optim.SGD and len(opt.param_groups) == 2
    s_group = opt.param_groups[1]
    assert s_group["params"][0] is loss.s and s_group["lr"] == 0.01 and s_group["weight_decay"] == 0.0
    assert s_group["momentum"] == 0.9


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_step_is_the_momentum_update(nesterov):
    lr, m, wd, k = 0.1, 0.9, 0.01, np.array([1.0, 3.0, -0.5])
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = make_optimizer(TrainConfig(optimizer="sgd", lr=lr, weight_decay=wd, nesterov=nesterov), [p])
    ref, buf = np.array([1.0, -2.0, 0.5]), None
    for _ in range(4):
        opt.zero_grad()
        (0.5 * (torch.as_tensor(k) * p ** 2).sum()).backward()  # gradient k * p
        opt.step()
        g = k * ref + wd * ref  # weight decay as L2 on the gradient
        buf = g if buf is None else m * buf + g  # the buffer starts at the first gradient
        ref = ref - lr * (g + m * buf if nesterov else buf)
        np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(), buf, rtol=1e-12)


def test_stacked_sgd_keeps_one_momentum_buffer_per_run():
    # the vectorised backend's per-run optimiser state (train_run's checkpoint format) is that of
    # the run's own SGD, and stacks back unchanged (a group's resume)
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 4)
    train = TrainConfig(lr=0.05, optimizer="sgd", weight_decay=0.01)
    loss = build_loss(LossConfig(name="bce"), 4)
    stack = StackedRuns([copy.deepcopy(base), copy.deepcopy(base)], [loss, copy.deepcopy(loss)], train)
    alone = [copy.deepcopy(base), copy.deepcopy(base)]
    opts = [make_optimizer(train, m.parameters()) for m in alone]
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(2, 8, 6, generator=gen)
        y = (torch.rand(2, 8, 4, generator=gen) > 0.5).float()
        stack.step(x, y, None)
        for k, (m, opt) in enumerate(zip(alone, opts)):
            opt.zero_grad()
            loss(m(x[k]), y[k], None).backward()
            opt.step()
    states = [stack.optimizer_state(k) for k in range(2)]
    for state, opt in zip(states, opts):
        own = opt.state_dict()
        assert state["param_groups"][0]["momentum"] == own["param_groups"][0]["momentum"] == 0.9
        for idx in own["state"]:
            np.testing.assert_allclose(state["state"][idx]["momentum_buffer"].numpy(),
                                       own["state"][idx]["momentum_buffer"].numpy(), rtol=1e-5, atol=1e-7)
    assert not torch.equal(states[0]["state"][0]["momentum_buffer"], states[1]["state"][0]["momentum_buffer"])
    again = StackedRuns([copy.deepcopy(base), copy.deepcopy(base)], [loss, copy.deepcopy(loss)], train)
    again.load_optimizer_states(states)
    for k in range(2):
        for idx, entry in again.optimizer_state(k)["state"].items():
            assert torch.equal(entry["momentum_buffer"], states[k]["state"][idx]["momentum_buffer"])
