"""Tests of csu_lib.analysis.landscape, .geometry and .landscape_probe: parameter-space geometry
(docs/methods.md, section 8, our definitions).

Known answers: a quadratic 0.5 (x - c)^T H (x - c) with H built from chosen eigenvalues gives
the top eigenvalue, the trace and the epsilon-sharpness 0.5 * lambda_max * r^2 exactly; a small
network's Hessian is also formed explicitly (torch.autograd.functional.hessian) and compared. Filter
normalisation is checked filter by filter; the batched surfaces against the pointwise
reference; the model, its mode and the CSU s must be untouched afterwards.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from csu_lib.analysis import geometry as G
from csu_lib.analysis import landscape as L
from csu_lib.analysis import landscape_probe as P
from csu_lib.losses import BCELoss, CSULoss
from csu_lib.pipeline import load_trained

EIGS = np.array([12.0, 7.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02, 0.01])


def _quadratic(seed: int = 0):
    """(closure, x, H, c): f(x) = 0.5 (x - c)^T H (x - c), H = Q diag(EIGS) Q^T, x at c."""
    g = torch.Generator().manual_seed(seed)
    n = len(EIGS)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    h = q @ torch.diag(torch.as_tensor(EIGS)) @ q.T
    h = (h + h.T) / 2
    c = torch.randn(n, generator=g, dtype=torch.float64)
    x = nn.Parameter(c.clone())

    def closure():
        d = x - c
        return 0.5 * d @ h @ d

    return closure, x, h, c


def test_quadratic_top_eigenvalue_and_trace():
    closure, x, h, _ = _quadratic()
    before = x.detach().clone()
    eig, info = G.top_hessian_eigenvalue(closure, [x], iters=200, tol=1e-8,
                                         generator=torch.Generator().manual_seed(1), return_info=True)
    assert eig == pytest.approx(EIGS.max(), rel=0.02)
    assert info["converged"]
    trace, tinfo = G.hessian_trace(closure, [x], n_samples=1500, generator=torch.Generator().manual_seed(2),
                                   return_info=True)
    assert trace == pytest.approx(EIGS.sum(), rel=0.02)
    # Rademacher v: each sample is v^T H v = tr(H) + off-diagonal terms, so the samples vary
    assert tinfo["std_error"] > 0
    assert torch.equal(x.detach(), before)
    # the same seed gives the same estimate
    again = G.hessian_trace(closure, [x], n_samples=1500, generator=torch.Generator().manual_seed(2))
    assert again == trace


def test_quadratic_epsilon_sharpness_reaches_the_known_maximum():
    closure, x, h, c = _quadratic(3)
    eps = 0.05
    r = eps * float(c.norm())
    exact = 0.5 * EIGS.max() * r ** 2
    rise, info = G.epsilon_sharpness(closure, [x], eps, steps=40, generator=torch.Generator().manual_seed(0),
                                     return_info=True)
    assert info["radius"] == pytest.approx(r, rel=1e-12)
    assert rise <= exact * (1 + 1e-9)  # no point of the ball rises more
    assert rise == pytest.approx(exact, rel=0.02)
    assert torch.equal(x.detach(), c)  # restored exactly
    # a single step from the minimum (random direction) rises much less than the maximum
    one = G.epsilon_sharpness(closure, [x], eps, steps=1, generator=torch.Generator().manual_seed(0))
    assert 0 <= one < 0.9 * exact


class Tiny(nn.Module):
    """Conv2d + BatchNorm + Linear (the layers the direction rules distinguish)."""

    def __init__(self, n_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5, n_classes)

    def forward(self, x):  # x (B, M, T)
        h = torch.relu(self.bn(self.conv(x.unsqueeze(1))))
        return self.fc(h.mean(dim=(2, 3)))


def _tiny_setup(seed: int = 0, n_classes: int = 4):
    torch.manual_seed(seed)
    model = Tiny(n_classes)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        model.bn.running_mean.uniform_(-0.3, 0.3)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    loss = CSULoss(n_classes)
    with torch.no_grad():
        loss.s.uniform_(-1.0, 1.0)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(11, 6, 7, generator=g)
    y = (torch.rand(11, n_classes, generator=g) < 0.4).float()
    batches = [(x[:6], y[:6]), (x[6:], y[6:])]  # unequal batch sizes
    return model, loss, batches


def test_filter_normalised_direction_matches_filter_norms():
    model, _, _ = _tiny_setup()
    assert L.perturbed_parameter_names(model) == ["conv.weight", "fc.weight"]
    d = L.filter_normalised_direction(model, torch.Generator().manual_seed(0))
    assert set(d) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert d[name].shape == p.shape and d[name].dtype == p.dtype
    for name in ("conv.weight", "fc.weight"):
        w = dict(model.named_parameters())[name].detach()
        w_norms = w.reshape(w.shape[0], -1).norm(dim=1)
        d_norms = d[name].reshape(w.shape[0], -1).norm(dim=1)
        torch.testing.assert_close(d_norms, w_norms, rtol=1e-5, atol=0)
        assert not torch.allclose(d[name], w)  # a random direction, not the weights
    for name in ("conv.bias", "bn.weight", "bn.bias", "fc.bias"):
        assert torch.count_nonzero(d[name]) == 0
    # the whole direction has the norm of the perturbed weights
    w_total = math.sqrt(sum(float(dict(model.named_parameters())[n].detach().pow(2).sum())
                            for n in ("conv.weight", "fc.weight")))
    assert L.direction_norm(d) == pytest.approx(w_total, rel=1e-5)
    # seeded: reproducible, and another seed differs
    d2 = L.filter_normalised_direction(model, torch.Generator().manual_seed(0))
    d3 = L.filter_normalised_direction(model, torch.Generator().manual_seed(1))
    assert torch.equal(d["conv.weight"], d2["conv.weight"])
    assert not torch.equal(d["conv.weight"], d3["conv.weight"])


def test_transposed_conv_and_attention_filters():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose1d(3, 4, 2)  # weight (in, out, k): filters along dim 1
            self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
            self.norm = nn.LayerNorm(4)

    m = M()
    names = L.perturbed_parameter_names(m)
    assert names == ["up.weight", "attn.in_proj_weight", "attn.out_proj.weight"]
    d = L.filter_normalised_direction(m, torch.Generator().manual_seed(0))
    w = m.up.weight.detach()
    torch.testing.assert_close(d["up.weight"].transpose(0, 1).reshape(4, -1).norm(dim=1),
                               w.transpose(0, 1).reshape(4, -1).norm(dim=1), rtol=1e-5, atol=0)
    for name in ("norm.weight", "norm.bias", "attn.in_proj_bias", "up.bias"):
        assert torch.count_nonzero(d[name]) == 0


def test_batched_surfaces_equal_pointwise_and_leave_everything_untouched():
    model, loss, batches = _tiny_setup(1)
    model.train()  # the evaluation must switch to eval and back
    state = {k: v.clone() for k, v in model.state_dict().items()}
    s_before = loss.s.detach().clone()
    g = torch.Generator().manual_seed(5)
    d1, d2 = L.filter_normalised_direction(model, g), L.filter_normalised_direction(model, g)
    alphas = np.linspace(-1.0, 1.0, 7)
    betas = np.linspace(-0.5, 0.75, 6)

    c1 = L.loss_surface_1d(model, loss, batches, d1, alphas, batch_points=3)  # 3 does not divide 7
    c1_ref = L.loss_surface_1d_pointwise(model, loss, batches, d1, alphas)
    np.testing.assert_allclose(c1, c1_ref, rtol=1e-5)
    s2 = L.loss_surface_2d(model, loss, batches, [d1, d2], alphas, betas, batch_points=16)
    s2_ref = L.loss_surface_2d_pointwise(model, loss, batches, [d1, d2], alphas, betas)
    assert s2.shape == (7, 6)
    np.testing.assert_allclose(s2, s2_ref, rtol=1e-5)
    assert np.ptp(s2) > 1e-3  # the directions do change the loss
    # beta = 0 column of the 2-D surface is the 1-D curve along d1
    np.testing.assert_allclose(L.loss_surface_2d(model, loss, batches, [d1, d2], alphas, [0.0])[:, 0], c1,
                               rtol=1e-6)
    # alpha = 0: the eval-mode loss over all clips at the trained weights
    model.eval()
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        direct = float(loss(model(x), y))
    model.train()
    assert c1[3] == pytest.approx(direct, rel=1e-5)

    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(loss.s.detach(), s_before)
    assert loss.s.grad is None


def test_model_hessian_against_explicit_hessian():
    """Tiny linear classifier + BCE: the full Hessian is small enough to form."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 4, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(20, 3, generator=g) < 0.5).double()
    loss = BCELoss()
    closure = G.make_loss_closure(model, loss, [(x, y)])
    w = model.weight

    def f(flat):
        return loss(nn.functional.linear(x, flat.reshape(3, 4), model.bias.detach()), y)

    hess = torch.autograd.functional.hessian(f, w.detach().reshape(-1))
    evals = torch.linalg.eigvalsh(hess)
    eig = G.top_hessian_eigenvalue(closure, [w], iters=300, tol=1e-10, generator=torch.Generator().manual_seed(0))
    assert eig == pytest.approx(float(evals.abs().max()), rel=0.01)
    est, info = G.hessian_trace(closure, [w], n_samples=300, generator=torch.Generator().manual_seed(0),
                                return_info=True)
    assert abs(est - float(torch.trace(hess))) < 4 * info["std_error"] + 1e-9


def test_geometry_summary_and_mean_loss_rise():
    model, loss, batches = _tiny_setup(2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    s_before = loss.s.detach().clone()
    out = G.geometry_summary(model, loss, batches, power_iters=30, trace_samples=20, epsilon=0.01,
                             ascent_steps=3, radius=0.2, n_directions=4, seed=3)
    for key in ("loss", "top_eigenvalue", "hessian_trace", "epsilon_sharpness", "mean_loss_rise"):
        assert np.isfinite(out[key]), key
    assert out["epsilon_sharpness"] >= 0
    assert out["settings"]["param_names"] == ["conv.weight", "fc.weight"]
    assert out["settings"]["sigma"] == "fixed" and out["settings"]["n_clips"] == 11
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(loss.s.detach(), s_before)
    assert model.training  # a fresh module is in training mode and stays so
    # mean loss rise = the mean of the pointwise rises along the same seeded directions
    rise = G.mean_loss_rise(model, loss, batches, radius=0.2, n_directions=4,
                            generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    dirs = [L.filter_normalised_direction(model, g) for _ in range(4)]
    base = L.loss_surface_1d_pointwise(model, loss, batches, dirs[0], [0.0])[0]
    manual = np.mean([L.loss_surface_1d_pointwise(model, loss, batches, d, [0.2])[0] - base for d in dirs])
    assert rise == pytest.approx(manual, rel=1e-5, abs=1e-7)


def test_save_and_load_landscape(tmp_path):
    arrays = {"alphas": np.linspace(-1, 1, 5), "surface": np.arange(20.0).reshape(5, 4),
              "curve": torch.arange(3, dtype=torch.float32)}
    settings = {"seed": 3, "directions": "filter-normalised", "param_names": ["a.weight"], "radius": 0.1}
    npz, js = P.save_landscape(tmp_path / "sub" / "land.npz", arrays, settings)
    assert npz.name == "land.npz" and js.name == "land.json" and npz.is_file() and js.is_file()
    loaded, got = P.load_landscape(tmp_path / "sub" / "land")
    assert got == settings
    assert sorted(loaded) == ["alphas", "curve", "surface"]
    np.testing.assert_array_equal(loaded["surface"], arrays["surface"])
    np.testing.assert_array_equal(loaded["curve"], np.arange(3, dtype=np.float32))
    assert not list((tmp_path / "sub").glob("*.tmp"))  # no temporary files left
    js.unlink()
    with pytest.raises(FileNotFoundError):
        P.load_landscape(tmp_path / "sub" / "land")


def test_probe_run_loss_choice_and_cache(tmp_path, smoke_config, smoke_data):
    """probe_run evaluates the run's own loss or plain BCE, and caches its arrays."""
    import torch

    from csu_lib.analysis.landscape import fixed_batches
    from csu_lib.analysis.landscape_probe import probe_run, probe_settings
    from csu_lib.losses import BCELoss
    from csu_lib.training import train_run

    cfg = smoke_config.replace(train=smoke_config.train.replace(epochs=1))
    rec = train_run(cfg, tmp_path / "run", data=smoke_data, progress=False)
    model, csu = load_trained(rec)
    batches = fixed_batches(smoke_data, n_clips=16, seed=0)
    with torch.no_grad():
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        direct = {"own": float(csu(model(x), y)), "bce": float(BCELoss()(model(x), y))}
    for eval_loss in ("own", "bce"):
        settings = probe_settings("smoke", eval_loss=eval_loss, n_clips=16, n_points_1d=3, n_points_2d=3,
                                  power_iters=2, trace_samples=2, n_directions=1)
        arrays = probe_run(rec, settings, tmp_path / "landscapes")
        assert float(arrays["loss"]) == pytest.approx(direct[eval_loss], rel=1e-5)
        # the centre of the 1-D curve (alpha = 0) is the unperturbed loss
        assert arrays["curve_1d"][1] == pytest.approx(direct[eval_loss], rel=1e-5)
    assert direct["own"] != pytest.approx(direct["bce"])
    n_files = len(list((tmp_path / "landscapes").iterdir()))
    probe_run(rec, settings, tmp_path / "landscapes")  # cached: nothing new written
    assert len(list((tmp_path / "landscapes").iterdir())) == n_files == 4
    with pytest.raises(Exception, match="eval_loss"):
        probe_settings("smoke", eval_loss="mse")
