"""Backbones. Every model takes log-mel features (B, n_mels, T) in dB and returns logits
(B, n_classes) -- never probabilities.

Models are registered by name in :data:`MODELS`; :func:`build_model` builds one from a
:class:`~csu_lib.config.ModelConfig`. Every constructor has the signature
``Model(n_classes, n_mels=64, width=1.0, dropout=0.2, **extra_keyword_defaults)`` and every
model accepts any number of frames T >= 32 and n_mels in {64, 128}.

=============== ==================================================================================
name            architecture
=============== ==================================================================================
``small_cnn``   ~100k-parameter PANNs-like CNN for the 2-core CPU
``cnn6``        PANNs CNN6: 4 blocks of one 5x5 conv (64-128-256-512 x width)
``cnn10``       PANNs CNN10: 4 blocks of two 3x3 convs (64-128-256-512 x width)
``cnn14``       PANNs CNN14: 6 blocks of two 3x3 convs (64-...-2048 x width); 80.75M at width 1
``resnet22``    PANNs ResNet22: conv stem, basic-block stages [2, 2, 2, 2], 2048-channel conv block
``resnet38``    PANNs ResNet38: the same with stages [3, 4, 6, 3]
``mobilenetv2`` MobileNetV2 with decision-level mean pooling (pseudo-strong-label student)
``transformer`` small AST-like spectrogram transformer (patch embedding, CLS token, 4 layers)
=============== ==================================================================================

What ``width`` and ``dropout`` mean per family:

* PANNs CNNs / ResNets: ``width`` multiplies every channel count (embedding size included);
  ``dropout`` is the dropout between conv blocks (PANNs: 0.2). The head dropout before ``fc1`` is
  fixed at 0.5 (``head_dropout``), and the ResNet basic blocks' inner dropout at 0.1, as in PANNs.
* MobileNetV2: ``width`` is the usual width multiplier (channels rounded to multiples of 8, the
  1280-channel last layer is only widened, never narrowed); ``dropout`` is the dropout before the
  frame-wise classifier (the PSL code uses 0.3).
* Transformer: ``width`` scales ``embed_dim = 192 * width`` (rounded to a multiple of ``heads``);
  ``dropout`` is used inside the encoder layers and after the positional embedding.

:data:`DEFAULT_WIDTH` gives a CPU-friendly width per model; :func:`model_summary` tabulates the
parameter counts at that width and at full width.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A ~100k-parameter CNN for the 2-core CPU (PANNs-like in miniature).

    BatchNorm over mel bins on the input (as PANNs), four conv3x3-BN-ReLU blocks with 2x2
    average pooling (16-32-64-128 channels at width 1), mean over frequency, then max + mean
    over time, dropout and a linear layer to logits.
    """

    def __init__(self, n_classes: int, n_mels: int = 64, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        chans = [max(4, int(round(c * width))) for c in (16, 32, 64, 128)]
        self.bn0 = nn.BatchNorm1d(n_mels)
        blocks, c_in = [], 1
        for c in chans:
            blocks.append(_conv_bn_relu(c_in, c))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, M, T)
        x = self.bn0(x).unsqueeze(1)  # (B, 1, M, T)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1 or min(x.shape[-2:]) >= 2:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        x = x.mean(dim=2)  # over frequency -> (B, C, T')
        x = x.amax(dim=2) + x.mean(dim=2)
        return self.fc(self.dropout(x))


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _scaled(channels: int, width: float, minimum: int = 4) -> int:
    """``channels * width`` rounded, at least ``minimum``."""
    return max(minimum, int(round(channels * width)))


def _avg_pool(x: torch.Tensor, size: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Average pooling over the last two axes (frequency, time) that never fails on a short map.

    The kernel on an axis shrinks to the axis length when that is smaller (a 1-bin axis is left
    alone), and ``ceil_mode`` keeps a trailing odd bin (averaged over the bins that exist)
    instead of dropping it. For even sizes this is exactly PANNs' ``avg_pool2d(x, 2)``.
    """
    kh, kw = min(size[0], x.shape[-2]), min(size[1], x.shape[-1])
    if kh == 1 and kw == 1:
        return x
    return F.avg_pool2d(x, (kh, kw), ceil_mode=True)


def _panns_init(module: nn.Module) -> None:
    """PANNs initialisation: Xavier-uniform conv / linear weights, zero biases, BN (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _ConvBlock(nn.Module):
    """``n_convs`` x (conv k x k, no bias -> BatchNorm -> ReLU), then average pooling."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, n_convs: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel, padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, pool: tuple[int, int] = (2, 2)) -> torch.Tensor:
        return _avg_pool(self.layers(x), pool)


class _PannsBase(nn.Module):
    """bn0 over mel bins on the input and the PANNs head.

    Head: mean over frequency, then max + mean over time, dropout (0.5), ``fc1`` (embedding size
    = last channel count) + ReLU, ``fc`` to logits. As in the PANNs code the classifier ``fc``
    sees the un-dropped embedding: PANNs applies its second 0.5 dropout only to the *returned*
    embedding, never on the way to the clip-wise output.
    """

    def _setup_io(self, n_mels: int, embed: int, n_classes: int, dropout: float, head_dropout: float) -> None:
        self.bn0 = nn.BatchNorm1d(n_mels)
        self.block_dropout = nn.Dropout(dropout)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc1 = nn.Linear(embed, embed)
        self.fc = nn.Linear(embed, n_classes)

    def _input(self, x: torch.Tensor) -> torch.Tensor:  # (B, M, T) -> (B, 1, M, T)
        return self.bn0(x).unsqueeze(1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding (B, E): the ReLU output of ``fc1``."""
        x = self.feature_map(x).mean(dim=2)  # over frequency -> (B, C, T')
        x = x.amax(dim=2) + x.mean(dim=2)
        return F.relu(self.fc1(self.head_dropout(x)))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(x))


class _PannsCNN(_PannsBase):
    """PANNs plain CNN: conv blocks with 2x2 average pooling and dropout between blocks."""

    channels: Sequence[int] = ()
    kernel: int = 3
    n_convs: int = 2
    last_pool: tuple[int, int] = (2, 2)

    def __init__(self, n_classes: int, n_mels: int = 64, width: float = 1.0, dropout: float = 0.2,
                 head_dropout: float = 0.5):
        super().__init__()
        chans = [_scaled(c, width) for c in self.channels]
        blocks, c_in = [], 1
        for c in chans:
            blocks.append(_ConvBlock(c_in, c, self.kernel, self.n_convs))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self._setup_io(n_mels, c_in, n_classes, dropout, head_dropout)
        _panns_init(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        for i, block in enumerate(self.blocks):
            x = block(x, self.last_pool if i == len(self.blocks) - 1 else (2, 2))
            x = self.block_dropout(x)
        return x


class Cnn6(_PannsCNN):
    """PANNs CNN6: four blocks of one 5x5 conv (64-128-256-512 x width), 4.8M at width 1 / 527
    classes."""

    channels = (64, 128, 256, 512)
    kernel, n_convs = 5, 1


class Cnn10(_PannsCNN):
    """PANNs CNN10: four blocks of two 3x3 convs (64-128-256-512 x width)."""

    channels = (64, 128, 256, 512)
    kernel, n_convs = 3, 2


class Cnn14(_PannsCNN):
    """PANNs CNN14: six blocks of two 3x3 convs (64-...-2048 x width), no pooling after the last
    block; 80,753,615 parameters at width 1, 64 mels, 527 classes (as PANNs)."""

    channels = (64, 128, 256, 512, 1024, 2048)
    kernel, n_convs = 3, 2
    last_pool = (1, 1)


class _BasicBlock(nn.Module):
    """PANNs' ResNet basic block: downsampling by 2x2 average pooling (of both branches) instead
    of a strided conv, dropout 0.1 between the two 3x3 convs, the last BN's scale initialised to
    zero (each residual block starts as the identity)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, inner_dropout: float = 0.1):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.dropout = nn.Dropout(inner_dropout)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            x = _avg_pool(x)
        out = self.dropout(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class _PannsResNet(_PannsBase):
    """PANNs ResNet: stem conv block (two 3x3 convs, 64 x width) + 2x2 pooling, four basic-block
    stages (64-128-256-512 x width, the last three downsampling by 2), 2x2 pooling, a conv block
    to 2048 x width channels (no pooling), then the PANNs head."""

    layers: Sequence[int] = ()

    def __init__(self, n_classes: int, n_mels: int = 64, width: float = 1.0, dropout: float = 0.2,
                 head_dropout: float = 0.5, inner_dropout: float = 0.1):
        super().__init__()
        stem = _scaled(64, width)
        self.stem = _ConvBlock(1, stem)
        stages, c_in = [], stem
        for i, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), self.layers)):
            c = _scaled(planes, width)
            blocks = [_BasicBlock(c_in, c, 1 if i == 0 else 2, inner_dropout)]
            blocks += [_BasicBlock(c, c, 1, inner_dropout) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.stages = nn.Sequential(*stages)
        embed = _scaled(2048, width)
        self.conv_after = _ConvBlock(c_in, embed)
        self._setup_io(n_mels, embed, n_classes, dropout, head_dropout)
        _panns_init(self)
        for m in self.modules():
            if isinstance(m, _BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block_dropout(self.stem(self._input(x)))
        x = self.block_dropout(_avg_pool(self.stages(x)))
        return self.block_dropout(self.conv_after(x, (1, 1)))


class ResNet22(_PannsResNet):
    """PANNs ResNet22: basic-block stages [2, 2, 2, 2]."""

    layers = (2, 2, 2, 2)


class ResNet38(_PannsResNet):
    """PANNs ResNet38: basic-block stages [3, 4, 6, 3]."""

    layers = (3, 4, 6, 3)


# ---------------------------------------------------------------------------------------------
# MobileNetV2 with decision-level mean pooling


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10%
    below ``value`` (the usual MobileNet channel rounding)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    """1x1 expansion (skipped at expansion 1) -> 3x3 depthwise (strided) -> linear 1x1 projection;
    residual connection when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = int(round(c_in * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(c_in, hidden, kernel=1))
        layers += [_conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 on a 1-channel log-mel "image" with decision-level mean pooling (the pseudo-
    strong-label student of Dinkel et al. 2022).

    bn0 over mel bins, a stride-2 3x3 stem (32 x width), the standard inverted-residual table
    (t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1),
    a 1x1 conv to 1280 channels (1280 x width when width > 1), mean over frequency, then a
    frame-wise dropout + linear classifier on the (B, T', C) sequence (T' = ceil(T / 32)).

    Clip output: the mean over time of the frame-wise *probabilities*. Since every model here
    returns logits, :meth:`forward` returns ``logit(mean_t sigmoid(frame_logits))`` with the
    probability clamped to [1e-7, 1 - 1e-7] (so ``sigmoid(forward(x))`` is the PSL clip
    probability, and BCE-with-logits on it is BCE on that probability). :meth:`forward_frames`
    returns the frame-wise logits (B, T', C), e.g. for chunk-level teachers.
    """

    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))
    EPS = 1e-7

    def __init__(self, n_classes: int, n_mels: int = 64, width: float = 1.0, dropout: float = 0.2,
                 last_channel: int = 1280):
        super().__init__()
        self.bn0 = nn.BatchNorm1d(n_mels)
        c_in = _make_divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn_relu6(1, c_in, stride=2)]
        for t, c, n, s in self.SETTING:
            c_out = _make_divisible(c * width)
            for i in range(n):
                layers.append(_InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        self.last_channel = _make_divisible(last_channel * max(1.0, width))
        layers.append(_conv_bn_relu6(c_in, self.last_channel, kernel=1))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.last_channel, n_classes)
        for m in self.modules():  # as the PSL code: Xavier convs, N(0, 0.01) linear, BN (1, 0)
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-wise logits (B, T', n_classes), T' = ceil(T / 32)."""
        x = self.features(self.bn0(x).unsqueeze(1))  # (B, C, M', T')
        x = x.mean(dim=2).transpose(1, 2)  # mean over frequency -> (B, T', C)
        return self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.sigmoid(self.forward_frames(x)).mean(dim=1)
        return torch.logit(prob.clamp(self.EPS, 1.0 - self.EPS))


# ---------------------------------------------------------------------------------------------
# Spectrogram transformer


def _pair(v: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


class SpectrogramTransformer(nn.Module):
    """A small AST-like spectrogram transformer.

    * Input normalisation: BatchNorm over mel bins (as the CNNs) instead of AST's fixed
      dataset-statistics ``(x - mean) / (2 std)``: it needs no per-front-end constants.
    * Patches: Conv2d over (mel, time) with ``patch`` (16x16) and ``stride`` (16: no overlap; e.g.
      10 for AST-style overlap), int or (freq, time). The time axis is zero-padded at the end
      (zero = the normalised mean) so that every frame falls in a patch; n_mels must be >= the
      patch height.
    * Positions: learned, factorised into a frequency embedding (one per frequency patch) plus a
      time embedding for up to ``max_frames`` frames (PaSST-style). Shorter inputs use the first
      time positions; longer ones a linear interpolation of the whole table.
    * A CLS token, ``depth`` pre-norm encoder layers (GELU, MLP ratio 4, ``heads`` heads,
      ``embed_dim = 192 * width`` rounded to a multiple of ``heads``), then the mean of the CLS
      token and the mean patch token -> LayerNorm -> linear to logits.
    """

    def __init__(self, n_classes: int, n_mels: int = 64, width: float = 1.0, dropout: float = 0.2,
                 depth: int = 4, heads: int = 3, patch: Union[int, Sequence[int]] = 16,
                 stride: Union[int, Sequence[int]] = 16, mlp_ratio: float = 4.0, max_frames: int = 1024):
        super().__init__()
        self.patch, self.stride = _pair(patch), _pair(stride)
        (ph, pw), (sh, sw) = self.patch, self.stride
        if n_mels < ph:
            raise ValueError(f"n_mels ({n_mels}) must be >= the patch height ({ph})")
        dim = max(heads, int(round(192 * width / heads)) * heads)
        self.embed_dim = dim
        self.bn0 = nn.BatchNorm1d(n_mels)
        self.patch_embed = nn.Conv2d(1, dim, self.patch, self.stride)
        n_freq = (n_mels - ph) // sh + 1
        n_time = (max(max_frames, pw) - pw) // sw + 1
        self.freq_pos = nn.Parameter(torch.zeros(1, dim, n_freq, 1))
        self.time_pos = nn.Parameter(torch.zeros(1, dim, 1, n_time))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(  # separate layers, each with its own initialisation
            nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, n_classes)
        for p in (self.freq_pos, self.time_pos, self.cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def _time_positions(self, n: int) -> torch.Tensor:
        if n <= self.time_pos.shape[-1]:
            return self.time_pos[..., :n]
        return F.interpolate(self.time_pos, size=(1, n), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(x).unsqueeze(1)  # (B, 1, M, T)
        (_, pw), (_, sw) = self.patch, self.stride
        t = x.shape[-1]
        pad = pw - t if t < pw else (-(t - pw)) % sw
        if pad:
            x = F.pad(x, (0, pad))
        x = self.patch_embed(x)  # (B, D, F', T')
        x = x + self.freq_pos + self._time_positions(x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B, F' T', D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_dropout(x)
        for layer in self.layers:
            x = layer(x)
        pooled = (x[:, 0] + x[:, 1:].mean(dim=1)) / 2
        return self.fc(self.norm(pooled))


# ---------------------------------------------------------------------------------------------
# Registry


MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "cnn6": Cnn6,
    "cnn10": Cnn10,
    "cnn14": Cnn14,
    "resnet22": ResNet22,
    "resnet38": ResNet38,
    "mobilenetv2": MobileNetV2,
    "transformer": SpectrogramTransformer,
}

#: CPU-friendly width per model (the README's default size); a model not listed: 1.0.
DEFAULT_WIDTH: dict[str, float] = {
    "small_cnn": 1.0,
    "cnn6": 0.25,
    "cnn10": 0.25,
    "cnn14": 0.25,
    "resnet22": 0.25,
    "resnet38": 0.25,
    "mobilenetv2": 0.5,
    "transformer": 1.0,
}


def build_model(config: ModelConfig, n_classes: int, n_mels: int) -> nn.Module:
    return MODELS[config.name](n_classes=n_classes, n_mels=n_mels, width=config.width, dropout=config.dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_on_meta(name: str, n_classes: int, n_mels: int, width: float) -> int:
    """Parameter count without allocating or initialising weights (built on the meta device)."""
    with torch.device("meta"):
        return count_parameters(MODELS[name](n_classes=n_classes, n_mels=n_mels, width=width))


def model_summary(n_classes: int = 50, n_mels: int = 64) -> "pd.DataFrame":
    """One row per registered model: its CPU default width (:data:`DEFAULT_WIDTH`) and its
    parameter counts at that width and at full width (width 1.0)."""
    import pandas as pd

    rows = []
    for name, cls in MODELS.items():
        width = DEFAULT_WIDTH.get(name, 1.0)
        rows.append({"model": name, "class": getattr(cls, "__name__", str(cls)), "default_width": width,
                     "params_default": _count_on_meta(name, n_classes, n_mels, width),
                     "params_full": _count_on_meta(name, n_classes, n_mels, 1.0)})
    return pd.DataFrame(rows)
