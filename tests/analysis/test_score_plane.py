"""The score plane (csu_lib.analysis.score_plane) against the loss modules applied to the same two
logits (and against the closed form); which logits it reads; the corruption pairs it marks.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from csu_lib.analysis import score_plane as SP
from csu_lib.config import CorruptionConfig, LossConfig
from csu_lib.corruption import CorruptionResult
from csu_lib.losses import BCELoss, CSULoss


# ---------------------------------------------------------------------------------------------
# Score plane


@pytest.mark.parametrize("targets", [(1.0, 0.0), (0.0, 1.0), (0.7, 1.0)])
@pytest.mark.parametrize("name", ["bce", "csu", "csu-half", "csu-mean"])
def test_score_plane_equals_the_loss_applied_directly(name, targets):
    s_pair = (0.8, -1.3)
    grid_a, grid_b = np.linspace(-6, 6, 13), np.linspace(-4, 5, 10)  # A != B: orientation matters
    if name == "bce":
        loss_arg, module = "bce", BCELoss()
    else:
        scale = "half" if name == "csu-half" else "full"
        red = "mean" if name == "csu-mean" else "sum"
        loss_arg = LossConfig(name="csu", csu_scale=scale, csu_class_reduction=red)
        module = CSULoss(2, scale=scale, class_reduction=red)
        with torch.no_grad():
            module.s.copy_(torch.tensor(s_pair))
    surface = SP.score_plane(loss_arg, s_pair, targets, grid_a, grid_b)
    assert surface.shape == (13, 10)
    assert np.ptp(surface) > 0.1
    y = torch.tensor([targets], dtype=torch.float32)
    for i, j in [(0, 0), (3, 7), (12, 9), (6, 2)]:
        z = torch.tensor([[grid_a[i], grid_b[j]]], dtype=torch.float32)
        assert surface[i, j] == pytest.approx(float(module(z, y).detach()), rel=1e-6, abs=1e-6)
    # closed form of the adopted CSU (docs/methods.md, section 1), independent of the library
    if name == "csu":
        za, zb = grid_a[3], grid_b[7]

        def bce(z, t):
            return max(z, 0) - z * t + math.log1p(math.exp(-abs(z)))

        expected = sum(math.exp(-s) * bce(z, t) + s / 2 for z, t, s in zip((za, zb), targets, s_pair))
        assert surface[3, 7] == pytest.approx(expected, rel=1e-6, abs=1e-6)  # BCE is float32


def test_score_plane_is_the_pair_part_of_the_full_loss():
    """In a 5-class CSU loss with the other logits fixed, moving (z_a, z_b) changes the full
    per-sample loss exactly as the plane says (the other classes' terms cancel)."""
    s = torch.tensor([0.3, -0.7, 1.1, 0.0, -0.2])
    full = CSULoss(5)
    with torch.no_grad():
        full.s.copy_(s)
    a, b = 1, 3
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]])
    grid = np.linspace(-3, 3, 7)
    surface = SP.score_plane("csu", (float(s[a]), float(s[b])), (float(y[0, a]), float(y[0, b])), grid, grid)

    def full_at(za, zb):
        z = torch.tensor([[0.5, 0.0, -1.0, 0.0, 2.0]])
        z[0, a], z[0, b] = za, zb
        return float(full(z, y).detach())

    assert full_at(grid[6], grid[1]) - full_at(grid[0], grid[4]) == pytest.approx(
        surface[6, 1] - surface[0, 4], rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="s_pair"):
        SP.score_plane("csu", None, (1, 0), grid, grid)


def test_clip_logits_and_train_logits():
    torch.manual_seed(0)
    n, c = 8, 4
    clean = np.zeros((n, c), np.float32)
    clean[np.arange(n), [0, 0, 1, 1, 2, 2, 3, 3]] = 1
    labels = clean.copy()
    labels[1, 0], labels[1, 1] = 0, 1  # MAN 0 -> 1 (touches the pair (0, 1))
    labels[4, 3] = 1  # SAN 2 + 3 (not the pair)
    changed = np.zeros(n, bool)
    changed[[1, 4]] = True
    corr = CorruptionResult(CorruptionConfig(kind="man", ratio=0.25), labels, clean, changed,
                            np.zeros(n, np.int8), np.array([-1, 0, -1, -1, 2, -1, -1, -1]),
                            np.array([-1, 1, -1, -1, 3, -1, -1, -1]), np.zeros(c), np.zeros(c))
    feats = np.random.default_rng(0).normal(size=(n + 2, 6, 5)).astype(np.float32)
    store = SimpleNamespace(features=feats, batch=lambda rows: torch.from_numpy(feats[rows]))
    data = SimpleNamespace(store=store, train_idx=np.arange(2, n + 2), train_labels=labels, corruption=corr)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, c), torch.nn.Dropout(0.5))
    model.train()
    logits = SP.train_logits(model, data, batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        direct = model(torch.from_numpy(feats[2:])).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-6, atol=1e-6)

    df = SP.clip_logits(None, data, (0, 1), logits=logits)
    assert list(df["row"]) == [0, 1, 2, 3]  # clips with a positive of class 0 or 1
    assert list(df["corrupted"]) == [False, True, False, False]
    np.testing.assert_allclose(df["z_a"], logits[:4, 0])
    np.testing.assert_allclose(df["z_b"], logits[:4, 1])
    assert list(df["y_b"]) == [0, 1, 1, 1] and list(df["clean_b"]) == [0, 0, 1, 1]
    same = SP.clip_logits(model, data, (0, 1))
    pd.testing.assert_frame_equal(df, same, rtol=1e-6)
    all_clips = SP.clip_logits(None, data, (2, 3), logits=logits, subset="all")
    assert len(all_clips) == n and all_clips["corrupted"].sum() == 1 and all_clips["clip_corrupted"].sum() == 2
    pairs = SP.corruption_pairs(corr)
    assert pairs[["source", "target", "count"]].values.tolist() == [[0, 1, 1], [2, 3, 1]]
