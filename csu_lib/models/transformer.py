"""``transformer``: a small AST-like spectrogram transformer (patch embedding, CLS token, 4 layers).

``width`` scales ``embed_dim = 192 * width`` (rounded to a multiple of ``heads``); ``dropout`` is
used inside the encoder layers and after the positional embedding.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model


def _pair(v: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


@register_model("transformer", default_width=1.0)
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
