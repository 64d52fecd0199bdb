"""Backbones: shapes, gradients, train/eval, parameter counts, decision-level pooling, seeding."""
from __future__ import annotations

import math

import pytest
import torch

from csu_lib.config import ModelConfig
from csu_lib.models import (DEFAULT_WIDTH, MODELS, Cnn14, MobileNetV2, SpectrogramTransformer, build_model,
                            count_parameters, model_summary)

N_CLASSES = 7
NAMES = sorted(MODELS)
#: Tiny sizes for the 2-core CPU.
TINY: dict[str, dict] = {"transformer": {"width": 0.125, "depth": 2}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is as fast and does not fight other work for the cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny(name: str, n_classes: int = N_CLASSES, n_mels: int = 64, **kwargs) -> torch.nn.Module:
    params = {"width": 0.125, **TINY.get(name, {}), **kwargs}
    return MODELS[name](n_classes=n_classes, n_mels=n_mels, **params)


def log_mel(batch: int, n_mels: int, frames: int, seed: int = 0) -> torch.Tensor:
    """dB-like features (around -40 dB, spread 20 dB)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_mels, frames, generator=g) * 20.0 - 40.0


def meta_count(name: str, width: float, n_classes: int = 50, n_mels: int = 64) -> int:
    with torch.device("meta"):  # no allocation, no initialisation: cheap even at 80M parameters
        return count_parameters(MODELS[name](n_classes=n_classes, n_mels=n_mels, width=width))


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_train_eval(name):
    torch.manual_seed(0)
    model = tiny(name)
    model.train()
    for frames in (64, 101):
        model.zero_grad()
        out = model(log_mel(2, 64, frames))
        assert out.shape == (2, N_CLASSES)
        assert torch.isfinite(out).all()
        (out.sum() + (out ** 2).mean()).backward()
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert params
        missing = [n for n, p in params if p.grad is None]
        assert not missing, f"{name}: no gradient for {missing}"
        bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
        assert not bad, f"{name}: non-finite gradient for {bad}"
        assert sum(float(p.grad.abs().sum()) for _, p in params) > 0
    model.eval()
    x = log_mel(2, 64, 101, seed=1)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (2, N_CLASSES) and torch.isfinite(a).all()
    assert torch.equal(a, b), "eval mode must be deterministic (no dropout, frozen BN statistics)"


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_updates_batchnorm_and_eval_does_not(name):
    model = tiny(name)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns, f"{name} normalises its input with a BatchNorm over mel bins"
    before = bns[0].running_mean.clone()
    model.eval()
    with torch.no_grad():
        model(log_mel(2, 64, 64))
    assert torch.equal(bns[0].running_mean, before)
    model.train()
    with torch.no_grad():
        model(log_mel(2, 64, 64))
    assert not torch.equal(bns[0].running_mean, before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n_mels,frames", [(128, 32), (64, 33)])
def test_shortest_input_and_128_mels(name, n_mels, frames):
    model = tiny(name, n_mels=n_mels).eval()
    with torch.no_grad():
        out = model(log_mel(2, n_mels, frames))
    assert out.shape == (2, N_CLASSES) and torch.isfinite(out).all()


def test_cnn14_parameter_count_matches_panns():
    model = Cnn14(n_classes=527, n_mels=64, width=1.0)  # built once, never run at full width
    n = count_parameters(model)
    assert abs(n - 80_753_615) <= 0.01 * 80_753_615, n
    assert not any(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("name,millions", [("cnn6", 4.8), ("cnn10", 5.2), ("cnn14", 80.8),
                                           ("resnet22", 63.7), ("resnet38", 73.7)])
def test_panns_parameter_counts_as_in_the_paper(name, millions):
    """PANNs (Kong et al. 2020) table of parameter counts, 527 classes, rounded to 0.1M."""
    n = meta_count(name, 1.0, n_classes=527)
    assert abs(n / 1e6 - millions) <= 0.015 * millions, (name, n)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "small_cnn"] + ["small_cnn"])
def test_width_scaling_reduces_parameters(name):
    counts = [meta_count(name, w) for w in (0.25, 0.5, 1.0)]
    assert counts[0] < counts[1] < counts[2], counts


def test_mobilenetv2_decision_level_mean_pooling():
    torch.manual_seed(0)
    # train mode without dropout: BN uses batch statistics (a fresh model's running statistics
    # would squash the features), and both calls below compute the same deterministic function
    model = MobileNetV2(N_CLASSES, width=0.25, dropout=0.0).train()
    with torch.no_grad():
        model.fc.weight.normal_(0.0, 1.0)  # make frame logits spread so the pooling choice shows
        x = log_mel(2, 64, 101)
        frames = model.forward_frames(x)
        logits = model(x)
    assert frames.shape == (2, math.ceil(101 / 32), N_CLASSES)
    expected = torch.logit(torch.sigmoid(frames).mean(dim=1).clamp(1e-7, 1 - 1e-7))
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, frames.mean(dim=1), atol=1e-3)  # not mean of logits
    assert not torch.allclose(logits, frames.amax(dim=1), atol=1e-3)  # not max pooling
    torch.testing.assert_close(torch.sigmoid(logits), torch.sigmoid(frames).mean(dim=1), rtol=1e-4, atol=1e-6)


def test_mobilenetv2_width_rounds_channels_to_multiples_of_8():
    model = MobileNetV2(N_CLASSES, width=0.35)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert model.last_channel == 1280


def test_transformer_overlap_and_long_inputs():
    model = SpectrogramTransformer(N_CLASSES, width=0.125, depth=1, stride=(16, 10), max_frames=64).eval()
    assert model.embed_dim % 3 == 0
    with torch.no_grad():
        short, long = model(log_mel(2, 64, 40)), model(log_mel(2, 64, 150))  # 150 > max_frames
    assert short.shape == long.shape == (2, N_CLASSES)
    assert torch.isfinite(short).all() and torch.isfinite(long).all()
    assert SpectrogramTransformer(N_CLASSES, width=1.0).embed_dim == 192


def test_transformer_layers_are_initialised_independently():
    model = SpectrogramTransformer(N_CLASSES, width=0.125, depth=2)
    w0, w1 = (layer.linear1.weight for layer in model.layers)
    assert not torch.equal(w0, w1)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_initial_weights(name):
    def state(seed):
        torch.manual_seed(seed)
        return tiny(name).state_dict()

    a, b, c = state(3), state(3), state(4)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", NAMES)
def test_build_model_from_config(name):
    config = ModelConfig(name=name, width=0.125, dropout=0.1)
    model = build_model(config, 5, 64)
    assert isinstance(model, MODELS[name])
    model.eval()
    with torch.no_grad():
        assert model(log_mel(1, 64, 48)).shape == (1, 5)


def test_model_summary_lists_every_model():
    table = model_summary(n_classes=50, n_mels=64)
    assert list(table["model"]) == list(MODELS)
    assert set(DEFAULT_WIDTH) <= set(MODELS)
    assert (table["params_default"] > 0).all()
    assert (table["params_default"] <= table["params_full"]).all()
    row = table.set_index("model").loc["cnn14"]
    assert row["params_full"] == 80_753_615 - (527 - 50) * 2049  # fc: 2048 weights + 1 bias per class
    assert row["default_width"] == DEFAULT_WIDTH["cnn14"]
