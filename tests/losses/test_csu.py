"""Tests of csu_lib.losses: the CSU loss of docs/methods.md, section 1 and plain BCE.

Adopted form (docs/methods.md, section 1)::

    L = mean_n sum_c [ k * exp(-s_c) * BCE(z_nc, y_nc) + s_c / 2 ],   k = 1 ("full") or 1/2 ("half")

Checked here against independent computations: the gradient multiplier, the stationary point of
s for a fixed network, the reduction to BCE at s = 0, masking, the clamp, ``multiplier()`` and
``build_loss``. Note: :func:`csu_lib.losses.elementwise_bce` computes BCE in float32 by design,
so even with float64 inputs the achievable precision is ~1e-7 relative; tolerances reflect that.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from csu_lib.config import LossConfig
from csu_lib.losses import (LOSSES, BCELoss, CSULoss, bce_from_scores, build_loss, elementwise_bce,
                            learns_reliability, multiplier_of, optimum_log_sigma2, reliability, scale_of, sigma2_of,
                            sigma_of, stationary_mean_loss)

B, C = 24, 7
SEEDS = [0, 1, 5]


def _case(seed: int, b: int = B, c: int = C, soft: bool = True):
    """Random float64 logits (B, C), targets in [0, 1] (multi-hot or soft) and an s vector."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * 2.5
    y = (torch.rand(b, c, generator=g, dtype=torch.float64) < 0.3).double()
    if soft:
        soft_mask = torch.rand(b, c, generator=g, dtype=torch.float64) < 0.2
        y = torch.where(soft_mask, torch.rand(b, c, generator=g, dtype=torch.float64), y)
    s = torch.empty(c, dtype=torch.float64).uniform_(-2.0, 2.0, generator=g)
    return z, y, s


def _csu(c: int, s: torch.Tensor | None = None, **kwargs) -> CSULoss:
    loss = CSULoss(c, **kwargs).double()
    if s is not None:
        with torch.no_grad():
            loss.s.copy_(s)
    return loss


def _bce64(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise BCE on logits in float64 (independent of the library's float32 helper)."""
    return F.binary_cross_entropy_with_logits(z.double(), y.double(), reduction="none")


def _manual_csu(z, y, s, k=1.0, reduction="sum", mask=None):
    bce = _bce64(z, y)
    per = k * torch.exp(-s) * bce + s / 2
    if mask is not None:  # a masked element leaves both terms
        per = per * mask
    red = per.sum(1) if reduction == "sum" else per.mean(1)
    return red.mean()


# ---------------------------------------------------------------------------------------------
# Gradient multiplier


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale,k", [("full", 1.0), ("half", 0.5)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_wrt_logits_is_multiplier_times_residual(seed, scale, k, reduction):
    z, y, s = _case(seed)
    z = z.clone().requires_grad_(True)
    loss = _csu(C, s, scale=scale, class_reduction=reduction)
    loss(z, y).backward()
    factor = k * torch.exp(-s)[None, :] / B  # the claimed multiplier, per class
    if reduction == "mean":
        factor = factor / C
    assert z.grad is not None and z.grad.shape == (B, C)
    torch.testing.assert_close(z.grad, factor * (torch.sigmoid(z.detach()) - y), rtol=1e-5, atol=1e-8)
    # tight: the residual implied by the gradient, (dL/dz) / multiplier = sigmoid(z) - y, agrees to
    # float32 rounding (BCE is computed in float32 by design)
    torch.testing.assert_close(z.grad / factor, torch.sigmoid(z.detach()) - y, rtol=0.0, atol=3e-7)
    # the multiplier really differs across classes, so a class-agnostic weight would fail
    assert float(s.max() - s.min()) > 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_value_matches_formula(seed):
    z, y, s = _case(seed)
    for scale, k in (("full", 1.0), ("half", 0.5)):
        for reduction in ("sum", "mean"):
            got = _csu(C, s, scale=scale, class_reduction=reduction)(z, y).detach()
            want = _manual_csu(z, y, s, k, reduction)
            assert got.ndim == 0
            assert math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9), (scale, reduction)


# ---------------------------------------------------------------------------------------------
# Stationary point of s for a fixed network


def _fixed_case(seed: int):
    """Logits/targets where classes are fitted to very different degrees (mean BCE ~0.05 .. 2)."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(64, C, generator=g, dtype=torch.float64) < 0.4).double()
    sign = 2 * y - 1
    # class c has margin m_c: large margin = well fitted (small BCE), negative margin = unfittable
    margins = torch.linspace(3.0, -1.0, C, dtype=torch.float64)
    z = sign * margins[None, :] + torch.randn(64, C, generator=g, dtype=torch.float64)
    return z, y


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("scale,k", [("full", 1.0), ("half", 0.5)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_optimum_of_s_is_twice_mean_bce(seed, scale, k, reduction):
    z, y = _fixed_case(seed)
    mean_bce = _bce64(z, y).mean(0)  # (C,)
    assert float(mean_bce.min()) < 0.2 and float(mean_bce.max()) > 1.0  # classes differ
    target = 2 * k * mean_bce  # exp(s*) : 2 * mean BCE ("full"), mean BCE ("half")

    loss = _csu(C, scale=scale, class_reduction=reduction)
    opt = torch.optim.LBFGS([loss.s], lr=1.0, max_iter=200, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss(z, y)
        value.backward()
        return value

    for _ in range(3):
        opt.step(closure)
    got = torch.exp(loss.s.detach())
    torch.testing.assert_close(got, target, rtol=1e-4, atol=0.0)
    # the class that cannot be fitted gets the larger sigma (smaller multiplier)
    assert int(torch.argmax(loss.s.detach())) == int(torch.argmax(mean_bce))
    assert int(torch.argmax(loss.multiplier())) == int(torch.argmin(mean_bce))


@pytest.mark.parametrize("scale,k", [("full", 1.0), ("half", 0.5)])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradient_wrt_s_vanishes_only_at_analytic_optimum(scale, k, reduction):
    z, y = _fixed_case(1)
    mean_bce = _bce64(z, y).mean(0)
    s_star = torch.log(2 * k * mean_bce)
    loss = _csu(C, s_star, scale=scale, class_reduction=reduction)
    loss(z, y).backward()
    assert float(loss.s.grad.abs().max()) < 1e-6

    # elsewhere: dL/ds_c = (1/2 - k exp(-s_c) mean BCE_c) (/ C for the class mean), nonzero
    for shift in (-0.7, 0.4):
        loss = _csu(C, s_star + shift, scale=scale, class_reduction=reduction)
        loss(z, y).backward()
        expected = 0.5 - k * torch.exp(-(s_star + shift)) * mean_bce
        if reduction == "mean":
            expected = expected / C
        torch.testing.assert_close(loss.s.grad, expected, rtol=1e-5, atol=1e-9)
        assert float(loss.s.grad.abs().min()) > 1e-3 / (C if reduction == "mean" else 1)
        # above the optimum the loss rises with s, below it falls
        assert bool(((loss.s.grad > 0) == (shift > 0)).all())


# ---------------------------------------------------------------------------------------------
# s = 0 reduces to BCE


@pytest.mark.parametrize("seed", SEEDS)
def test_csu_at_zero_equals_bce(seed):
    z, y, _ = _case(seed)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    csu = _csu(C)  # init 0
    assert bool((csu.s == 0).all())
    v_csu = csu(z1, y)
    v_bce = BCELoss()(z2, y)
    manual = F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(dim=1).mean()
    assert math.isclose(float(v_csu.detach()), float(v_bce.detach()), rel_tol=1e-7)
    assert math.isclose(float(v_bce.detach()), float(manual), rel_tol=1e-6)
    v_csu.backward()
    v_bce.backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-7, atol=0.0)
    torch.testing.assert_close(z2.grad * B, torch.sigmoid(z) - y, rtol=0.0, atol=3e-7)


def test_bce_is_sum_over_classes_not_mean():
    z = torch.zeros(3, 4)
    y = torch.zeros(3, 4)
    # BCE(0, 0) = log 2 per element; summed over 4 classes, averaged over 3 clips
    assert math.isclose(float(BCELoss()(z, y)), 4 * math.log(2), rel_tol=1e-6)
    assert math.isclose(float(_csu(4)(z.double(), y.double()).detach()), 4 * math.log(2), rel_tol=1e-6)


def test_elementwise_bce_is_float32_and_matches_torch():
    z, y, _ = _case(2)
    got = elementwise_bce(z.half(), y.half())
    assert got.dtype == torch.float32 and got.shape == (B, C)
    ref32 = F.binary_cross_entropy_with_logits(z.half().float(), y.half().float(), reduction="none")
    torch.testing.assert_close(got, ref32, rtol=0.0, atol=0.0)
    torch.testing.assert_close(got.double(), _bce64(z.half().double(), y.half().double()),
                               rtol=1e-6, atol=5e-7)


# ---------------------------------------------------------------------------------------------
# Mask


@pytest.mark.parametrize("make_loss", [BCELoss, lambda: _csu(C, _case(4)[2])], ids=["bce", "csu"])
def test_mask_removes_elements_from_bce_term(make_loss):
    z, y, _ = _case(4)
    g = torch.Generator().manual_seed(11)
    mask = (torch.rand(B, C, generator=g) > 0.3).double()
    assert 0 < int(mask.sum()) < B * C
    loss = make_loss()
    zz = z.clone().requires_grad_(True)
    value = loss(zz, y, mask)
    value.backward()
    # a masked element's logit gets exactly zero gradient; the others are unchanged
    assert bool((zz.grad[mask == 0] == 0).all())
    k_s = torch.exp(-loss.s.detach()) if isinstance(loss, CSULoss) else torch.ones(C, dtype=torch.float64)
    factor = k_s[None, :] / B
    torch.testing.assert_close(zz.grad / factor, (torch.sigmoid(z) - y) * mask, rtol=0.0, atol=3e-7)
    # masked values do not matter: change the masked logits and targets arbitrarily
    z2 = torch.where(mask == 0, z * -7 + 3, z)
    y2 = torch.where(mask == 0, 1 - y, y)
    assert math.isclose(float(loss(z2, y2, mask).detach()), float(value.detach()), rel_tol=1e-7, abs_tol=1e-12)
    # value: the masked elements are left out of both terms (BCE and CSU's s/2)
    s = loss.s.detach() if isinstance(loss, CSULoss) else torch.zeros(C, dtype=torch.float64)
    want = _manual_csu(z, y, s, mask=mask)
    assert math.isclose(float(value.detach()), float(want), rel_tol=1e-6)
    # a mask of ones is the unmasked loss
    assert math.isclose(float(loss(z, y, torch.ones_like(mask)).detach()), float(loss(z, y).detach()), rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# Clamp, multiplier, negative totals


def test_project_clamps_s_into_configured_range():
    loss = CSULoss(6, clamp=(-2.0, 3.0))
    with torch.no_grad():
        loss.s.copy_(torch.tensor([-10.0, -2.0, -1.5, 0.0, 3.0, 42.0]))
    before = loss.s
    loss.project_()
    assert loss.s is before  # in place: the optimiser keeps the same parameter object
    assert loss.s.tolist() == [-2.0, -2.0, -1.5, 0.0, 3.0, 3.0]
    assert loss.s.requires_grad


def test_project_default_clamp_is_plus_minus_five():
    loss = CSULoss(3)
    with torch.no_grad():
        loss.s.copy_(torch.tensor([-9.0, 0.25, 9.0]))
    loss.project_()
    assert loss.s.tolist() == [-5.0, 0.25, 5.0]


def test_project_after_optimiser_step_keeps_s_in_range():
    z, y = _fixed_case(0)
    loss = CSULoss(C, clamp=(-0.5, 0.5)).double()
    opt = torch.optim.SGD(loss.parameters(), lr=50.0)
    opt.zero_grad()
    loss(z, y).backward()
    opt.step()
    assert float(loss.s.detach().abs().max()) > 0.5  # the step left the range...
    loss.project_()
    assert float(loss.s.detach().abs().max()) <= 0.5  # ...and projection brings it back
    assert bool(((loss.s.detach() == 0.5) | (loss.s.detach() == -0.5)).any())


@pytest.mark.parametrize("scale,k", [("full", 1.0), ("half", 0.5)])
def test_multiplier_is_exp_minus_s_times_scale(scale, k):
    s = torch.tensor([-3.0, -0.5, 0.0, 1.0, 4.0])
    loss = CSULoss(5, scale=scale)
    with torch.no_grad():
        loss.s.copy_(s)
    m = loss.multiplier()
    torch.testing.assert_close(m, k * torch.exp(-s), rtol=1e-6, atol=0.0)
    assert not m.requires_grad  # a logged quantity, detached from the graph
    # it is the per-class factor the logits' gradient actually receives (times 1/B)
    z = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(4, 5, dtype=torch.float64)
    loss.double()(z, y).backward()
    torch.testing.assert_close(z.grad * 4 / m.double()[None, :], torch.sigmoid(z.detach()),
                               rtol=0.0, atol=3e-7)


def test_total_loss_can_be_negative():
    """Negative totals are expected (docs/methods.md): a well-fitted class (tiny BCE) drives s_c, i.e.
    log sigma_c^2, negative, and the s_c/2 term then dominates. (A LARGE positive s gives a
    positive total: k exp(-s) BCE >= 0 and s/2 > 0.)"""
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    z = (2 * y - 1) * 12.0  # confident and correct: BCE ~ 6e-6 per element
    bce = _bce64(z, y)
    assert float(bce.max()) < 1e-5
    loss = _csu(3, torch.full((3,), -5.0))
    value = float(loss(z, y).detach())
    assert value < 0
    # (float32 BCE of a confident logit is only good to ~6e-8 absolute; exp(5) ~ 148 amplifies it)
    assert math.isclose(value, float(_manual_csu(z, y, torch.full((3,), -5.0, dtype=torch.float64))),
                        abs_tol=3e-4)
    # at the per-class optimum s* = log(2 mean BCE) the total is sum_c (1 + s*_c)/2, negative
    # as soon as 2 mean BCE < 1/e (margin 5: BCE ~ 6.7e-3, s* ~ -4.3, inside the default clamp)
    z5 = (2 * y - 1) * 5.0
    s_star = torch.log(2 * _bce64(z5, y).mean(0))
    assert bool((s_star > -5).all())
    at_opt = float(_csu(3, s_star)(z5, y).detach())
    assert math.isclose(at_opt, float(((1 + s_star) / 2).sum()), rel_tol=1e-5)
    assert at_opt < -4
    # large positive s: positive total
    assert float(_csu(3, torch.full((3,), 5.0))(z, y).detach()) > 0


# ---------------------------------------------------------------------------------------------
# build_loss


def test_registry_names():
    assert set(LOSSES) == {"bce", "csu", "csu2", "gce", "sce", "bootstrap", "asl", "apl"}


def test_build_loss_bce():
    loss = build_loss(LossConfig(name="bce"), 10)
    assert type(loss) is BCELoss
    assert list(loss.parameters()) == []
    assert loss.has_parameters is False


@pytest.mark.parametrize("init", [0.0, 0.7, -1.25])
def test_build_loss_csu_parameters(init):
    cfg = LossConfig(name="csu", csu_init=init, csu_clamp=(-2.0, 3.0), csu_scale="half",
                     csu_class_reduction="mean")
    loss = build_loss(cfg, 13)
    assert type(loss) is CSULoss and loss.has_parameters is True
    params = list(loss.parameters())
    assert len(params) == 1 and params[0] is loss.s
    # the default fit sets s from the network (no gradient); the paper's form learns it by gradient
    assert loss.s.shape == (13,) and loss.fit == cfg.csu_fit and loss.s.requires_grad == (cfg.csu_fit == "gradient")
    assert loss.s.tolist() == pytest.approx([init] * 13, rel=1e-7, abs=0.0)
    assert loss.clamp == (-2.0, 3.0)
    # the scale / reduction options reached the module: check through the value
    z, y = torch.randn(5, 13, dtype=torch.float64), torch.zeros(5, 13, dtype=torch.float64)
    want = _manual_csu(z, y, torch.full((13,), init, dtype=torch.float64), 0.5, "mean")
    assert math.isclose(float(loss.double()(z, y).detach()), float(want), rel_tol=1e-6)


def test_build_loss_csu_defaults():
    loss = build_loss(LossConfig(name="csu"), 50)
    assert loss.s.shape == (50,) and bool((loss.s == 0).all())
    assert loss.clamp == (-5.0, 5.0)
    z, y, _ = _case(9, c=50)
    assert math.isclose(float(loss.double()(z, y).detach()), float(BCELoss()(z, y)), rel_tol=1e-7)


# ---------------------------------------------------------------------------------------------
# The learned-reliability interface and the one definition of sigma and the multiplier


def test_reliability_is_found_on_csu_only():
    assert reliability(build_loss(LossConfig(name="bce"), 4)) is None
    csu = build_loss(LossConfig(name="csu"), 4)
    assert reliability(csu) is csu
    assert learns_reliability(LossConfig(name="csu")) and not learns_reliability(LossConfig(name="bce"))


@pytest.mark.parametrize("scale", ["full", "half"])
def test_sigma_and_multiplier_have_one_definition(scale):
    """sigma_of / multiplier_of on a stored log sigma^2 (numpy, what the run record holds) equal
    the live loss's own sigma() and multiplier(), the csu_scale factor included."""
    s = np.array([-2.0, -0.3, 0.0, 1.5])
    loss = build_loss(LossConfig(name="csu", csu_scale=scale), 4).double()
    loss.load_log_sigma2_(s)
    k = 0.5 if scale == "half" else 1.0
    np.testing.assert_allclose(sigma_of(s), np.sqrt(np.exp(s)), rtol=1e-12)
    np.testing.assert_allclose(multiplier_of(s, scale_of(LossConfig(csu_scale=scale))), k / np.exp(s), rtol=1e-12)
    np.testing.assert_allclose(loss.sigma().numpy(), sigma_of(s), rtol=1e-12)
    np.testing.assert_allclose(loss.multiplier().numpy(), multiplier_of(s, k), rtol=1e-12)


def test_interface_acts_on_stacked_copies():
    """A vectorised group holds the s of N runs as one (N, C) tensor; the interface reads,
    groups and projects it without the caller knowing the parameter's name."""
    loss = CSULoss(3, clamp=(-1.0, 1.0))
    stacked = {"s": torch.tensor([[-3.0, 0.5, 2.0], [0.0, -0.25, 9.0]])}
    assert reliability(loss).log_sigma2(stacked).shape == (2, 3)
    group = reliability(loss).optimizer_group(0.01, stacked)
    assert group["params"][0] is stacked["s"] and group["weight_decay"] == 0.0 and group["lr"] == 0.01
    reliability(loss).project_(stacked)
    assert stacked["s"].tolist() == [[-1.0, 0.5, 1.0], [0.0, -0.25, 1.0]]
    assert loss.s.tolist() == [0.0, 0.0, 0.0]  # the module's own s is untouched


# ---------------------------------------------------------------------------------------------
# The one definition of s* (csu_lib/losses/reliability.py), checked by numerical minimisation


def _scores_case(seed: int, n: int = 300, c: int = 5):
    """Sigmoid scores and 0/1 targets of a fixed network, classes fitted to different degrees."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < np.linspace(0.1, 0.5, c)).astype(np.float64)
    z = (2 * y - 1) * np.linspace(2.5, -0.5, c) + rng.standard_normal((n, c))
    return 1 / (1 + np.exp(-z)), y


def _minimise(objective) -> float:
    """argmin over s in [-20, 10] of a convex scalar function, by bounded Brent search (no formula)."""
    res = minimize_scalar(objective, bounds=(-20.0, 10.0), method="bounded", options={"xatol": 1e-10})
    assert res.success
    return float(res.x)


@pytest.mark.parametrize("scale", ["full", "half"])
def test_optimum_log_sigma2_minimises_the_csu_loss_numerically(scale):
    """s* = optimum_log_sigma2(mean BCE, scale) (and CSULoss.stationary_log_sigma2 / TwoSidedCSULoss's,
    which use it) is where a numerical minimiser puts s for fixed scores: the CSU loss per class,
    mean_n k exp(-s) BCE_n + s / 2, written out here in float64 with its own BCE."""
    p, y = _scores_case(1)
    k = 0.5 if scale == "half" else 1.0
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    numeric = np.array([_minimise(lambda s, c=c: np.mean(k * np.exp(-s) * bce[:, c] + s / 2))
                        for c in range(y.shape[1])])
    np.testing.assert_allclose(optimum_log_sigma2(bce_from_scores(p, y).mean(0), k), numeric, atol=1e-6)
    loss = build_loss(LossConfig(name="csu", csu_scale=scale), y.shape[1])
    np.testing.assert_allclose(loss.stationary_log_sigma2(p, y), numeric, atol=1e-6)
    assert np.ptp(numeric) > 2  # the classes' optima differ by more than the tolerance, by far
    # two-sided: s+ weights -y log p, s- weights -(1 - y) log(1 - p), each regulariser by its share
    pos, neg = -y * np.log(p), -(1 - y) * np.log(1 - p)
    s_plus = [_minimise(lambda s, c=c: np.mean(k * np.exp(-s) * pos[:, c] + y[:, c] * s / 2)) for c in range(5)]
    s_minus = [_minimise(lambda s, c=c: np.mean(k * np.exp(-s) * neg[:, c] + (1 - y[:, c]) * s / 2)) for c in range(5)]
    two = build_loss(LossConfig(name="csu2", csu_scale=scale), y.shape[1])
    np.testing.assert_allclose(two.stationary_log_sigma2(p, y), np.concatenate([s_plus, s_minus]), atol=1e-6)


def test_reliability_definitions_in_numbers():
    """sigma, sigma^2, the multiplier and s* at hand-computed points."""
    s = np.array([0.0, 2 * np.log(3.0), -np.log(4.0)])
    np.testing.assert_allclose(sigma_of(s), [1.0, 3.0, 0.5], rtol=1e-12)
    np.testing.assert_allclose(sigma2_of(s), [1.0, 9.0, 0.25], rtol=1e-12)
    np.testing.assert_allclose(multiplier_of(s, 0.5), [0.5, 0.5 / 9, 2.0], rtol=1e-12)
    # s* = log(2 * scale * mean loss): mean BCE 0.5 at full scale is s* = 0 (sigma = 1, plain BCE)
    np.testing.assert_allclose(optimum_log_sigma2(np.array([0.5, 2.0, 0.0]), 1.0),
                               [0.0, np.log(4.0), np.log(2e-300)], rtol=1e-12)
    np.testing.assert_allclose(optimum_log_sigma2(np.array([0.5]), 0.5), [np.log(0.5)], rtol=1e-12)
    np.testing.assert_allclose(stationary_mean_loss(optimum_log_sigma2(np.array([0.3, 1.7]), 0.5), 0.5),
                               [0.3, 1.7], rtol=1e-12)
    # tensors keep their dtype and gradient
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    multiplier_of(t, 1.0).sum().backward()
    torch.testing.assert_close(t.grad, -torch.exp(-t.detach()))
