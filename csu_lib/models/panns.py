"""PANNs backbones (Kong et al. 2020): ``cnn6``, ``cnn10``, ``cnn14``, ``resnet22``, ``resnet38``.

``width`` multiplies every channel count (embedding size included); ``dropout`` is the dropout
between conv blocks (PANNs: 0.2). The head dropout before ``fc1`` is fixed at 0.5
(``head_dropout``), and the ResNet basic blocks' inner dropout at 0.1, as in PANNs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


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


@register_model("cnn6", default_width=0.25)
class Cnn6(_PannsCNN):
    """PANNs CNN6: four blocks of one 5x5 conv (64-128-256-512 x width), 4.8M at width 1 / 527
    classes."""

    channels = (64, 128, 256, 512)
    kernel, n_convs = 5, 1


@register_model("cnn10", default_width=0.25)
class Cnn10(_PannsCNN):
    """PANNs CNN10: four blocks of two 3x3 convs (64-128-256-512 x width)."""

    channels = (64, 128, 256, 512)
    kernel, n_convs = 3, 2


@register_model("cnn14", default_width=0.25)
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


@register_model("resnet22", default_width=0.25)
class ResNet22(_PannsResNet):
    """PANNs ResNet22: basic-block stages [2, 2, 2, 2]."""

    layers = (2, 2, 2, 2)


@register_model("resnet38", default_width=0.25)
class ResNet38(_PannsResNet):
    """PANNs ResNet38: basic-block stages [3, 4, 6, 3]."""

    layers = (3, 4, 6, 3)
