"""Audio loading: soundfile, mixed to mono, resampled, padded or cropped to a clip length."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

from ..core.errors import AudioError


def load_audio(path: str | os.PathLike, sample_rate: int, n_samples: Optional[int] = None, *,
               offset_seconds: float = 0.0, clip_id: Optional[str] = None) -> np.ndarray:
    """Read ``path`` as float32 mono at ``sample_rate``.

    With ``n_samples`` the signal is cropped (from ``offset_seconds``) or zero-padded to that
    length. Missing, unreadable and empty files raise :class:`AudioError` naming the file
    (and the clip id when given).
    """
    path = Path(path)
    who = f"{path}" + (f" (clip {clip_id!r})" if clip_id is not None else "")
    if not path.is_file():
        raise AudioError(f"{who}: audio file not found")
    try:
        info = sf.info(str(path))
        native = int(info.samplerate)
        start = int(round(offset_seconds * native))
        frames = -1
        if n_samples is not None:
            frames = int(np.ceil(n_samples * native / sample_rate)) + 1
        data, native = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, ValueError...
        raise AudioError(f"{who}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{who}: audio file is empty (0 samples at offset {offset_seconds} s)")
    if not np.isfinite(data).all():
        raise AudioError(f"{who}: audio contains NaN or infinite samples")
    mono = resample(data.mean(axis=1), native, sample_rate)
    if n_samples is not None:
        if mono.shape[0] >= n_samples:
            mono = mono[:n_samples]
        else:
            mono = np.pad(mono, (0, n_samples - mono.shape[0]))
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(wave: np.ndarray, native: int, sample_rate: int) -> np.ndarray:
    """A mono float32 signal at ``native`` Hz resampled to ``sample_rate`` Hz (unchanged when equal)."""
    if native == sample_rate:
        return wave
    with torch.no_grad():
        return _resampler(native, sample_rate)(torch.from_numpy(np.ascontiguousarray(wave, np.float32))).numpy()


@lru_cache(maxsize=16)
def _resampler(native: int, sample_rate: int) -> T.Resample:
    """One windowed-sinc resampler per rate pair: its kernel is computed once, not per clip (the
    same kernel and output as ``torchaudio.functional.resample``, which rebuilds it every call)."""
    return T.Resample(native, sample_rate)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV (values clipped to [-1, 1])."""
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
