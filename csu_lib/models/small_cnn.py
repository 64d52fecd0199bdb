"""``small_cnn``: the ~100k-parameter PANNs-like CNN for the 2-core CPU, and ``pooled_cnn``: the
same network on a 3x3 average-pooled log-mel (a tenth of the multiply-adds), the quick profile's
default (chosen by ``bench/time_to_converge.py``)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


@register_model("small_cnn", default_width=1.0)
class SmallCNN(nn.Module):
    """A ~100k-parameter CNN for the 2-core CPU (PANNs-like in miniature).

    BatchNorm over mel bins on the input (as PANNs), four conv3x3-BN-ReLU blocks with 2x2
    average pooling (16-32-64-128 channels at width 1), mean over frequency, then max + mean
    over time, dropout and a linear layer to logits.
    """

    #: Average-pool the (normalised) log-mel input first: a factor for both axes or a (mel, frame)
    #: pair (1: no pooling).
    input_pool: int | tuple[int, int] = 1

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
        if self.input_pool != 1:
            x = F.avg_pool2d(x, self.input_pool, ceil_mode=True)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1 or min(x.shape[-2:]) >= 2:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        x = x.mean(dim=2)  # over frequency -> (B, C, T')
        x = x.amax(dim=2) + x.mean(dim=2)
        return self.fc(self.dropout(x))


@register_model("pooled_cnn", default_width=1.0)
class PooledCNN(SmallCNN):
    """:class:`SmallCNN` on a 3x3 average-pooled log-mel input (64 x 101 -> 22 x 34 for a 1 s
    clip): the same ~100k parameters at about a tenth of the multiply-adds. The quick profile's
    backbone: on the 2-core CPU it reaches a validation plateau in ~35 s per run with two
    single-threaded workers, at clean test mAP ~0.86 (``bench/time_to_converge.py``)."""

    input_pool = 3
