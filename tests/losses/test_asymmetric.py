"""The asymmetric losses of csu_lib/losses/asymmetric.py (ASL, APL) against their papers'
equations, computed here element by element with ``math``; their limiting cases; and whether the
focusing weights carry gradient (ASL: yes, APL: no), against hand-derived gradients."""
from __future__ import annotations

import math

import pytest
import torch

from csu_lib.losses import APLLoss, ASLLoss

from .test_robust import batch_loss, bce, sigmoid, value


def asl_element(g_pos, g_neg, m):
    def f(z, y):
        p = sigmoid(z)
        p_m = max(p - m, 0.0)
        pos = -((1 - p) ** g_pos) * math.log(p)
        neg = -(p_m ** g_neg) * math.log(1 - p_m)
        return y * pos + (1 - y) * neg
    return f


def apl_element(g_pos, g_neg, m, e1, e2, e1n):
    def f(z, y):
        p = sigmoid(z)
        p_m = max(p - m, 0.0)
        q = 1 - p_m
        pos = -(math.log(p) + e1 * (1 - p) + e2 / 2 * (1 - p) ** 2)
        neg = -(math.log(q) + e1n * q)
        return y * (1 - p) ** g_pos * pos + (1 - y) * p_m ** g_neg * neg
    return f


def grad_of_one(loss, z: float, y: float) -> float:
    logit = torch.tensor([[z]], requires_grad=True)
    loss(logit, torch.tensor([[y]])).backward()
    return logit.grad.item()


@pytest.mark.parametrize("g_pos, g_neg, m", [(0.0, 4.0, 0.05), (1.0, 2.0, 0.2), (0.5, 0.0, 0.0)])
def test_asl_matches_the_paper(g_pos, g_neg, m):
    assert value(ASLLoss(g_pos, g_neg, m)) == pytest.approx(batch_loss(asl_element(g_pos, g_neg, m)), rel=1e-6)


@pytest.mark.parametrize("args", [(0.0, 4.0, 0.05, 1.0, -2.5, 0.0), (1.0, 2.0, 0.1, 2.0, 1.0, 0.5),
                                  (0.0, 0.0, 0.0, -1.0, 3.0, -0.5)])
def test_apl_matches_the_paper(args):
    assert value(APLLoss(*args)) == pytest.approx(batch_loss(apl_element(*args)), rel=1e-6)


def test_defaults_are_the_papers():
    asl, apl = ASLLoss(), APLLoss()
    assert (asl.gamma_pos, asl.gamma_neg, asl.margin) == (0.0, 4.0, 0.05)
    assert (apl.gamma_pos, apl.gamma_neg, apl.margin) == (0.0, 4.0, 0.05)
    assert (apl.eps1, apl.eps2, apl.eps1_neg) == (1.0, -2.5, 0.0)
    assert value(ASLLoss()) == pytest.approx(batch_loss(asl_element(0.0, 4.0, 0.05)), rel=1e-6)
    assert value(APLLoss()) == pytest.approx(batch_loss(apl_element(0.0, 4.0, 0.05, 1.0, -2.5, 0.0)), rel=1e-6)


def test_without_focusing_margin_and_taylor_terms_both_are_bce():
    assert value(ASLLoss(0.0, 0.0, 0.0)) == pytest.approx(batch_loss(bce), rel=1e-6)
    assert value(APLLoss(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)) == pytest.approx(batch_loss(bce), rel=1e-6)


def test_easy_negatives_below_the_margin_leave_the_loss():
    z = math.log(0.04 / 0.96)  # p = 0.04 < m = 0.05
    for loss in (ASLLoss(0.0, 4.0, 0.05), ASLLoss(0.0, 0.5, 0.05), APLLoss(0.0, 0.5, 0.05)):
        assert value(loss, z=[[z]], y=[[0.0]]) == 0.0
        assert grad_of_one(loss, z, 0.0) == 0.0  # finite (no 0 * inf) also for a focusing exponent below 1


def test_log_terms_stay_finite_far_out():
    far = torch.tensor([[-200.0, 200.0]])
    for loss in (ASLLoss(0.0, 4.0, 0.0), ASLLoss(1.0, 4.0, 0.05), APLLoss(0.0, 4.0, 0.0)):
        logits = far.clone().requires_grad_(True)
        out = loss(logits, torch.tensor([[1.0, 0.0]]))
        out.backward()
        assert math.isfinite(out.item()) and torch.isfinite(logits.grad).all()


def test_asl_focusing_weights_carry_gradient():
    # one negative: L = p_m^g * -log(1 - p_m), p_m = p - m; dp/dz = p (1 - p)
    z, g, m = 0.8, 2.0, 0.05
    p = sigmoid(z)
    p_m = p - m
    with_weight_gradient = p * (1 - p) * (g * p_m ** (g - 1) * -math.log(1 - p_m) + p_m ** g / (1 - p_m))
    assert grad_of_one(ASLLoss(0.0, g, m), z, 0.0) == pytest.approx(with_weight_gradient, rel=1e-5)
    # one positive: L = (1 - p)^g * -log p
    z, g = 0.3, 2.0
    p = sigmoid(z)
    expected = p * (1 - p) * (g * (1 - p) ** (g - 1) * math.log(p) - (1 - p) ** g / p)
    assert grad_of_one(ASLLoss(g, 4.0, 0.05), z, 1.0) == pytest.approx(expected, rel=1e-5)


def test_apl_focusing_weights_carry_no_gradient():
    # one negative: the weight p_m^g is a constant; d/dz -[log q + e1n q] = p (1 - p) (1 / q + e1n)
    z, g, m, e1n = 0.8, 4.0, 0.05, 0.5
    p = sigmoid(z)
    p_m, q = p - m, 1 - (p - m)
    detached = p_m ** g * p * (1 - p) * (1 / q + e1n)
    flowing = detached + g * p_m ** (g - 1) * p * (1 - p) * -(math.log(q) + e1n * q)
    got = grad_of_one(APLLoss(0.0, g, m, 1.0, -2.5, e1n), z, 0.0)
    assert got == pytest.approx(detached, rel=1e-5) and got != pytest.approx(flowing, rel=1e-3)
    # one positive: the weight (1 - p)^g is a constant;
    # d/dz -[log p + e1 (1 - p) + e2 / 2 (1 - p)^2] = -(1 - p) + e1 p (1 - p) + e2 (1 - p) p (1 - p)
    z, g, e1, e2 = 0.3, 1.0, 1.0, -2.5
    p = sigmoid(z)
    detached = (1 - p) ** g * (-(1 - p) + e1 * p * (1 - p) + e2 * (1 - p) * p * (1 - p))
    assert grad_of_one(APLLoss(g, 4.0, 0.05, e1, e2, 0.0), z, 1.0) == pytest.approx(detached, rel=1e-5)


def test_a_soft_target_weights_the_two_focused_sides():
    z, y = 0.3, 0.7
    for loss, element in ((ASLLoss(1.0, 4.0, 0.05), asl_element(1.0, 4.0, 0.05)),
                          (APLLoss(1.0, 4.0, 0.05, 1.0, -2.5, 0.5), apl_element(1.0, 4.0, 0.05, 1.0, -2.5, 0.5))):
        assert value(loss, z=[[z]], y=[[y]]) == pytest.approx(
            y * element(z, 1.0) + (1 - y) * element(z, 0.0), rel=1e-6)
