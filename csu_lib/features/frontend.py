"""The front-end: waveform -> log-mel dB with torchaudio (``FrontendConfig`` presets,
methods.md §6)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio.transforms as T

from ..config import FrontendConfig


class LogMel(nn.Module):
    """waveform (B, samples) -> log-mel in dB (B, n_mels, frames)."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.mel = T.MelSpectrogram(sample_rate=config.sample_rate, n_fft=config.n_fft,
                                    win_length=config.win_length, hop_length=config.hop_length,
                                    f_min=config.f_min, f_max=config.f_max, n_mels=config.n_mels,
                                    power=2.0, center=True, pad_mode="reflect")
        self.to_db = T.AmplitudeToDB(stype="power", top_db=config.top_db)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(wav))

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.config.hop_length + 1
