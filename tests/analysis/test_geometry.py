"""The geometry statistics (csu_lib.analysis.geometry): the relative epsilon-sharpness is relative
to the data term (it was 100 * rise / (1 + L) with L including CSU's constant sum_c s_c / 2, so
1 + L < 0 flipped its sign).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from csu_lib.analysis import geometry as G
from csu_lib.losses import CSULoss


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
