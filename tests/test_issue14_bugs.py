"""Regression tests of three reported bugs (issue 14):

1. the relative epsilon-sharpness was 100 * rise / (1 + L) with L including CSU's constant
   sum_c s_c / 2, so 1 + L < 0 flipped its sign; it is now relative to the data term;
2. the ``top_db`` floor of the front-end (preset ``psl16k``) was taken against the maximum of
   the whole feature-building block, so a clip's features depended on the other clips;
3. with ``csu_scale="half"`` the multiplier the trajectory figure shows must be the loss's own
   0.5 * exp(-s) (end to end from a real run).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from csu_lib.analysis import geometry as G
from csu_lib.analysis import sigma as S
from csu_lib.config import frontend_preset
from csu_lib.features import LogMel
from csu_lib.losses import CSULoss
from csu_lib.pipeline import load_trained
from csu_lib.study import run_config
from csu_lib.training import train_run

# --------------------------------------------------------------------------------------------
# 1. relative epsilon-sharpness


def _linear_setup(bias: float, n_classes: int = 4):
    """A linear model with all-zero targets; a bias of -8 makes the data term small."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, n_classes))
    with torch.no_grad():
        model[1].bias.fill_(bias)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, 4, generator=g)
    y = torch.zeros(10, n_classes)
    return model, [(x[:6], y[:6]), (x[6:], y[6:])]


def _data_term(model, batches, s: float, scale: float, reduction: str) -> float:
    """mean_n reduce_c scale * exp(-s_c) * BCE(z_nc, y_nc), computed here independently."""
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        bce = F.binary_cross_entropy_with_logits(model(x).double(), y.double(), reduction="none")
        per = scale * np.exp(-s) * bce
        return float((per.sum(dim=1) if reduction == "sum" else per.mean(dim=1)).mean())


@pytest.mark.parametrize("s, scale, reduction, bias", [(4.0, "full", "sum", 0.0), (-5.0, "full", "sum", -8.0),
                                                        (-5.0, "half", "mean", -8.0)])
def test_relative_epsilon_sharpness_is_relative_to_the_data_term(s, scale, reduction, bias):
    """s = 4: 1 + L is inflated by sum_c s_c / 2 = 8; s = -5 with a confident model: 1 + L < 0."""
    n_classes = 4
    model, batches = _linear_setup(bias, n_classes)
    loss = CSULoss(n_classes, scale=scale, class_reduction=reduction)
    loss.load_log_sigma2_(np.full(n_classes, s))
    out = G.geometry_summary(model, loss, batches, power_iters=2, trace_samples=2, epsilon=0.05,
                             ascent_steps=3, n_directions=2, seed=0)
    rise = out["epsilon_sharpness"]
    relative = out["details"]["epsilon_sharpness"]["relative"]
    data = _data_term(model, batches, s, 0.5 if scale == "half" else 1.0, reduction)
    constant = s / 2 * (n_classes if reduction == "sum" else 1)
    assert out["loss"] == pytest.approx(data + constant, rel=1e-5, abs=1e-6)
    assert rise > 0
    assert relative >= 0, f"relative sharpness {relative} < 0 for rise {rise} (loss {out['loss']})"
    assert relative == pytest.approx(100.0 * rise / (1.0 + data), rel=1e-4), \
        f"relative {relative} != 100 * rise / (1 + data term) = {100.0 * rise / (1.0 + data)}"


# --------------------------------------------------------------------------------------------
# 2. the top_db floor per clip


def test_top_db_floor_is_per_clip():
    fe = frontend_preset("psl16k")
    assert fe.top_db is not None
    logmel = LogMel(fe)
    g = torch.Generator().manual_seed(0)
    n = fe.sample_rate
    quiet = torch.randn(n, generator=g)
    quiet[n // 2:] = 0.0  # a silent half: the clip's own top_db floor bites
    loud = torch.randn(n, generator=g) * 1e4  # ~80 dB louder
    with torch.no_grad():
        alone = logmel(quiet[None])[0]
        block = logmel(torch.stack([quiet, loud]))
        loud_alone = logmel(loud[None])[0]
    assert float(alone.min()) == pytest.approx(float(alone.max()) - fe.top_db, abs=1e-3)
    diff = float((block[0] - alone).abs().max())
    assert torch.allclose(block[0], alone, atol=1e-5), \
        f"the quiet clip's features change by up to {diff:.3f} dB when built with a louder clip"
    assert torch.allclose(block[1], loud_alone, atol=1e-5)


# --------------------------------------------------------------------------------------------
# 3. the half-scale multiplier in the trajectory figure's numbers, from a real run


def test_half_scale_multiplier_trajectory_end_to_end(tmp_path, smoke_data):
    config = run_config("smoke", loss="csu", loss_options={"csu_scale": "half"}, epochs=1, device="cpu")
    assert config.loss.csu_scale == "half"
    rec = train_run(config, tmp_path / "half", data=smoke_data, progress=False)
    assert rec.learns_sigma
    _, loss = load_trained(rec)
    assert loss.scale == 0.5
    s = rec.log_sigma2.astype(np.float64)
    # the loss's own multiplier at the last logged s is half exp(-s) ...
    loss.load_log_sigma2_(s[-1])
    own = loss.multiplier().double().numpy()
    np.testing.assert_allclose(own, 0.5 * np.exp(-s[-1]), rtol=1e-6)
    # ... and is what the trajectory functions (and so the figure) report
    progress, mult = S.multiplier_trajectory(rec)
    assert progress[-1] == 1.0
    np.testing.assert_allclose(mult, 0.5 * np.exp(-s), rtol=1e-6)
    np.testing.assert_allclose(mult[-1], own, rtol=1e-5)
    agg = S.aggregate_trajectories([rec], n_points=11)
    assert agg["progress"].iloc[-1] == 1.0
    assert agg["mean"].iloc[-1] == pytest.approx(float(np.median(own)), rel=1e-5), \
        "the trajectory figure's final multiplier is not the loss's own (0.5 * exp(-s))"
    table = S.sigma_table([rec])
    np.testing.assert_allclose(table["multiplier"].to_numpy(), own, rtol=1e-5)
