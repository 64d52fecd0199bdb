"""``mobilenetv2``: MobileNetV2 with decision-level mean pooling (the pseudo-strong-label student).

``width`` is the usual width multiplier (channels rounded to multiples of 8, the 1280-channel last
layer is only widened, never narrowed); ``dropout`` is the dropout before the frame-wise
classifier (the PSL code uses 0.3).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


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


@register_model("mobilenetv2", default_width=0.5)
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
