"""The front-end: waveform -> log-mel dB with torchaudio (``FrontendConfig`` presets,
docs/methods.md, section 6).

``top_db`` (the ``psl16k`` preset) floors every clip at its OWN maximum minus ``top_db``. (torchaudio's
``AmplitudeToDB(top_db=...)`` takes one maximum over a whole 3-D (B, M, T) input, so a clip's floor
would depend on the other clips of its feature-building block.)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchaudio.transforms as T

from ..config import FrontendConfig


class LogMel(nn.Module):
    """waveform (B, samples) -> log-mel in dB (B, n_mels, frames); also (samples,) -> (n_mels, frames).
    Each clip's features depend on that clip alone (the ``top_db`` floor is per clip)."""

    def __init__(self, config: FrontendConfig):
        super().__init__()
        self.config = config
        self.mel = T.MelSpectrogram(sample_rate=config.sample_rate, n_fft=config.n_fft,
                                    win_length=config.win_length, hop_length=config.hop_length,
                                    f_min=config.f_min, f_max=config.f_max, n_mels=config.n_mels,
                                    power=2.0, center=True, pad_mode="reflect")
        self.to_db = T.AmplitudeToDB(stype="power", top_db=None)  # the floor is applied per clip below
        self.top_db = config.top_db

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        db = self.to_db(self.mel(wav))
        if self.top_db is not None:  # each clip (the last two axes) floored at its own max - top_db
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - float(self.top_db))
        return db

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.config.hop_length + 1
