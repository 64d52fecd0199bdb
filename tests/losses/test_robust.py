"""The sample-wise robust losses of csu_lib/losses/robust.py (GCE, SCE, bootstrapping), and what
all five robust losses (with ASL and APL, tests/losses/test_asymmetric.py) share: the reduction
(masked, summed over classes, averaged over clips), the registry, vmap (the stacked training
backend) and a 1-epoch training run each.

Every expected value is computed here from the paper's equation, element by element with
``math``, independently of the implementation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csu_lib.config import LossConfig
from csu_lib.losses import (APLLoss, ASLLoss, BCELoss, BootstrapLoss, GCELoss, SCELoss, build_loss, learns_reliability,
                            reliability)
from csu_lib.pipeline import prepare_data
from csu_lib.study import run_config
from csu_lib.training import train_group, train_run

#: The small fixed example: 2 clips x 3 classes, hard and soft targets.
Z = [[2.0, -1.0, 0.3], [-0.5, 0.8, -2.0]]
Y = [[1.0, 0.0, 0.7], [0.0, 1.0, 1.0]]
ROBUST = {"gce": GCELoss, "sce": SCELoss, "bootstrap": BootstrapLoss, "asl": ASLLoss, "apl": APLLoss}


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def bce(z: float, y: float) -> float:
    p = sigmoid(z)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def batch_loss(per_element, z=Z, y=Y, mask=None) -> float:
    """Mean over clips of the sum over classes of ``per_element(z, y)`` (times the mask)."""
    rows = [sum(per_element(zi, yi) * (1 if mask is None else mask[n][c])
                for c, (zi, yi) in enumerate(zip(zr, yr))) for n, (zr, yr) in enumerate(zip(z, y))]
    return sum(rows) / len(rows)


def value(loss, z=Z, y=Y, mask=None) -> float:
    m = None if mask is None else torch.tensor(mask)
    return loss(torch.tensor(z), torch.tensor(y), m).item()


def gradient(loss, z=Z, y=Y) -> np.ndarray:
    logits = torch.tensor(z, requires_grad=True)
    loss(logits, torch.tensor(y)).backward()
    return logits.grad.numpy()


# ---------------------------------------------------------------------------------------------
# GCE


def gce_element(q):
    def f(z, y):
        p = sigmoid(z)
        return y * (1 - p ** q) / q + (1 - y) * (1 - (1 - p) ** q) / q
    return f


@pytest.mark.parametrize("q", [0.7, 0.3, 1.0])
def test_gce_matches_the_paper(q):
    assert value(GCELoss(q)) == pytest.approx(batch_loss(gce_element(q)), rel=1e-6)


def test_gce_at_q_1_is_the_absolute_error_and_near_q_0_is_bce():
    hard = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert value(GCELoss(1.0), y=hard) == pytest.approx(batch_loss(lambda z, y: abs(y - sigmoid(z)), y=hard), rel=1e-6)
    assert value(GCELoss(1e-4)) == pytest.approx(batch_loss(bce), abs=2e-4)
    # computed as -expm1(q log p) / q: finite and BCE-like far out, where p^q would round to 1
    far = GCELoss(1e-4)(torch.tensor([[-60.0]]), torch.tensor([[1.0]])).item()
    assert far == pytest.approx(60.0, rel=1e-2)


# ---------------------------------------------------------------------------------------------
# SCE


def sce_element(alpha, beta, a=-4.0):
    def f(z, y):
        p = sigmoid(z)
        # reverse CE, -[p log y + (1 - p) log(1 - y)] with log 0 = A; a soft y interpolates
        rce = y * (-a * (1 - p)) + (1 - y) * (-a * p)
        return alpha * bce(z, y) + beta * rce
    return f


@pytest.mark.parametrize("alpha, beta, a", [(0.1, 1.0, -4.0), (6.0, 0.1, -4.0), (1.0, 0.5, -2.0)])
def test_sce_matches_the_paper(alpha, beta, a):
    assert value(SCELoss(alpha, beta, a)) == pytest.approx(batch_loss(sce_element(alpha, beta, a)), rel=1e-6)


def test_sce_reverse_term_on_hard_labels_and_beta_0_is_alpha_bce():
    # y = 1: -A (1 - p); y = 0: -A p (the log of the label's 0 clipped to A = -4)
    assert value(SCELoss(0.0, 1.0), z=[[0.0, 0.0]], y=[[1.0, 0.0]]) == pytest.approx(4 * 0.5 + 4 * 0.5)
    assert value(SCELoss(0.3, 0.0)) == pytest.approx(0.3 * batch_loss(bce), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Bootstrapping


def bootstrap_element(kind, b):
    def f(z, y):
        p = sigmoid(z)
        guess = p if kind == "soft" else float(p > 0.5)
        t = b * y + (1 - b) * guess
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))
    return f


@pytest.mark.parametrize("kind, b", [("soft", 0.95), ("hard", 0.8), ("soft", 0.6)])
def test_bootstrap_matches_the_paper(kind, b):
    assert value(BootstrapLoss(kind, b)) == pytest.approx(batch_loss(bootstrap_element(kind, b)), rel=1e-6)


def test_bootstrap_defaults_and_b_1_is_bce():
    assert BootstrapLoss("soft").beta == 0.95 and BootstrapLoss("hard").beta == 0.8
    for kind in ("soft", "hard"):
        assert value(BootstrapLoss(kind, 1.0)) == pytest.approx(batch_loss(bce), rel=1e-6)


def test_bootstrap_detach_decides_whether_the_gradient_flows_through_the_prediction():
    b = 0.8

    def hand(detach: bool) -> np.ndarray:
        out = np.zeros((2, 3))
        for n in range(2):
            for c in range(3):
                z, y = Z[n][c], Y[n][c]
                p = sigmoid(z)
                g = p - (b * y + (1 - b) * p)  # dBCE/dz at a fixed target
                if not detach:  # + dBCE/dt * dt/dz = -(log p - log(1 - p)) * (1 - b) p (1 - p)
                    g += -z * (1 - b) * p * (1 - p)
                out[n, c] = g / 2  # mean over the 2 clips
        return out

    detached = gradient(BootstrapLoss("soft", b, detach=True))
    flowing = gradient(BootstrapLoss("soft", b, detach=False))
    np.testing.assert_allclose(detached, hand(True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(flowing, hand(False), rtol=1e-5, atol=1e-7)
    assert not np.allclose(detached, flowing)
    # the same value either way; the hard prediction has no gradient, so detach changes nothing there
    assert value(BootstrapLoss("soft", b, detach=True)) == pytest.approx(value(BootstrapLoss("soft", b, detach=False)))
    np.testing.assert_array_equal(gradient(BootstrapLoss("hard", b, detach=True)),
                                  gradient(BootstrapLoss("hard", b, detach=False)))


# ---------------------------------------------------------------------------------------------
# What the robust losses share


def test_bce_keeps_its_value_through_the_shared_reduction():
    expected = F.binary_cross_entropy_with_logits(torch.tensor(Z), torch.tensor(Y), reduction="none").sum(1).mean()
    assert value(BCELoss()) == pytest.approx(expected.item()) == pytest.approx(batch_loss(bce), rel=1e-6)


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_build_loss_builds_every_robust_loss_with_its_defaults(name):
    loss = build_loss(LossConfig(name=name), 3)
    assert type(loss) is ROBUST[name] and list(loss.parameters()) == []
    assert reliability(loss) is None and not learns_reliability(LossConfig(name=name))
    assert math.isfinite(value(loss))


def test_build_loss_reads_each_loss_s_fields():
    assert build_loss(LossConfig(name="gce", gce_q=0.3), 3).q == 0.3
    sce = build_loss(LossConfig(name="sce", sce_alpha=6.0, sce_beta=0.1, sce_log_zero=-2.0), 3)
    assert (sce.alpha, sce.beta, sce.log_zero) == (6.0, 0.1, -2.0)
    boot = build_loss(LossConfig(name="bootstrap", bootstrap_kind="hard", bootstrap_detach=False), 3)
    assert (boot.kind, boot.beta, boot.detach) == ("hard", 0.8, False)
    assert build_loss(LossConfig(name="bootstrap", bootstrap_beta=0.5), 3).beta == 0.5
    asl = build_loss(LossConfig(name="asl", asl_gamma_pos=1.0, asl_gamma_neg=2.0, asl_margin=0.1), 3)
    assert (asl.gamma_pos, asl.gamma_neg, asl.margin) == (1.0, 2.0, 0.1)
    apl = build_loss(LossConfig(name="apl", asl_margin=0.0, apl_eps1=2.0, apl_eps2=0.5, apl_eps1_neg=1.0), 3)
    assert (apl.margin, apl.eps1, apl.eps2, apl.eps1_neg) == (0.0, 2.0, 0.5, 1.0)


@pytest.mark.parametrize("name", ["bce"] + sorted(ROBUST))
def test_a_mask_drops_its_elements(name):
    loss = build_loss(LossConfig(name=name), 3)
    mask = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    kept = value(loss, mask=mask)
    # what the masked elements hold does not matter
    z2 = [[2.0, 9.0, 0.3], [-7.0, 0.8, -2.0]]
    y2 = [[1.0, 1.0, 0.7], [1.0, 1.0, 1.0]]
    assert value(loss, z=z2, y=y2, mask=mask) == pytest.approx(kept, rel=1e-6)
    # the sum of the kept elements, averaged over all clips: the two one-element batches' sum / 2
    parts = [value(loss, z=[[Z[n][c]]], y=[[Y[n][c]]]) for n in range(2) for c in range(3) if mask[n][c]]
    assert kept == pytest.approx(sum(parts) / 2, rel=1e-6)
    assert value(loss, mask=[[1.0] * 3] * 2) == pytest.approx(value(loss), rel=1e-6)


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_every_robust_loss_runs_under_vmap_as_the_stacked_backend_calls_it(name):
    loss = build_loss(LossConfig(name=name, bootstrap_detach=False), 3)
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(4, 5, 3, generator=gen) * 3, torch.rand(4, 5, 3, generator=gen).round()
    mask = (torch.rand(4, 5, 3, generator=gen) > 0.2).float()
    stacked = torch.func.vmap(loss)(z, y, mask)
    looped = torch.stack([loss(z[k], y[k], mask[k]) for k in range(4)])
    torch.testing.assert_close(stacked, looped)


# ---------------------------------------------------------------------------------------------
# Each robust loss trains: one epoch on a cut smoke benchmark, alone and in a vectorised group


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # the smoke profile, cut to 2 class families (10 classes, 80 training clips), one epoch
    config = run_config("smoke", epochs=1, device="cpu", corruption={"kind": "san", "ratio": 0.5},
                        benchmark={"n_families": 2})
    return {"config": config, "data": prepare_data(config, progress=False), "runs": tmp_path_factory.mktemp("robust")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROBUST))
def test_each_robust_loss_trains_a_smoke_run(tiny, name):
    config = tiny["config"].replace(loss=LossConfig(name=name))
    assert config.run_id.startswith(f"{name}-")
    record = train_run(config, tiny["runs"] / config.run_id, data=tiny["data"], progress=False)
    assert record.complete and record.config.loss.name == name
    assert len(record.history) == 1 and np.isfinite(record.history["train_loss"]).all()
    assert 0.0 < record.final_metrics["test"]["mAP"] <= 1.0


@pytest.mark.slow
def test_a_robust_loss_trains_in_a_vectorised_group(tiny):
    configs = [tiny["config"].replace(loss=LossConfig(name="apl"), train=tiny["config"].train.replace(seed=seed))
               for seed in (0, 1)]
    records = train_group(configs, [tiny["runs"] / "group" / c.run_id for c in configs],
                          data=[tiny["data"]] * 2, progress=False)
    assert [r.config.run_id for r in records] == [c.run_id for c in configs]
    assert all(r.complete and np.isfinite(r.history["train_loss"]).all() for r in records)
