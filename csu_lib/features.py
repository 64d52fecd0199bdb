"""Front-end (torchaudio log-mel) and the on-disk feature cache.

Features are computed once per (dataset content, front-end config, clip length) and stored as
a memory-mapped float16 array of shape (n_clips, n_mels, n_frames) under
``<cache_dir>/features/<key>/``; every run reads the same store. The store is built in a
temporary folder and renamed into place when complete, so an interrupted build is redone,
never half-read.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torchaudio.transforms as T
from tqdm.auto import tqdm

from .audio import load_audio
from .config import FrontendConfig
from .io import atomic_write_json, publish_dir, read_json
from .manifest import Manifest


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


def default_cache_dir() -> Path:
    """``$CSU_CACHE_DIR`` or ``~/.cache/csu-lab``."""
    return Path(os.environ.get("CSU_CACHE_DIR", Path.home() / ".cache" / "csu-lab"))


@dataclass
class FeatureStore:
    """Read-only view of a built store: ``features[i]`` is clip ``i`` of the manifest."""

    path: Path
    features: np.ndarray  # memmap (N, n_mels, frames), float16
    frontend: FrontendConfig
    clip_ids: list[str]

    def __len__(self) -> int:
        return self.features.shape[0]

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """float32 tensor (len(rows), n_mels, frames) for the given manifest rows."""
        return torch.from_numpy(np.asarray(self.features[rows], dtype=np.float32))


def feature_key(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float) -> str:
    import hashlib

    blob = f"{manifest.content_key()}|{frontend.hash(16)}|{clip_seconds:.6f}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_features(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, *,
                   cache_dir: Optional[str | os.PathLike] = None, batch_size: int = 64,
                   progress: bool = True) -> FeatureStore:
    """Compute (or reuse) the log-mel features of every clip of ``manifest``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = feature_key(manifest, frontend, clip_seconds)
    final = cache_dir / "features" / key
    if not (final / "meta.json").is_file():
        _build(manifest, frontend, clip_seconds, final, batch_size, progress)
    return open_store(final)


def open_store(path: str | os.PathLike) -> FeatureStore:
    path = Path(path)
    meta = read_json(path / "meta.json")
    feats = np.load(path / "features.npy", mmap_mode="r")
    return FeatureStore(path=path, features=feats, frontend=FrontendConfig.from_dict(meta["frontend"]),
                        clip_ids=list(meta["clip_ids"]))


def _build(manifest: Manifest, frontend: FrontendConfig, clip_seconds: float, final: Path,
           batch_size: int, progress: bool) -> None:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logmel = LogMel(frontend)
    n_samples = int(round(clip_seconds * frontend.sample_rate))
    n_frames = logmel.n_frames(n_samples)
    out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16,
                                    shape=(len(manifest), frontend.n_mels, n_frames))
    has_offset = "offset" in manifest.clips.columns
    with torch.inference_mode(), tqdm(total=len(manifest), disable=not progress, unit="clip",
                                      desc=f"log-mel features ({frontend.name})") as bar:
        for start in range(0, len(manifest), batch_size):
            rows = range(start, min(start + batch_size, len(manifest)))
            wav = np.stack([
                load_audio(manifest.audio_path(i), frontend.sample_rate, n_samples,
                           offset_seconds=float(manifest.clips.at[i, "offset"]) if has_offset else 0.0,
                           clip_id=str(manifest.clips.at[i, "clip_id"]))
                for i in rows])
            out[rows.start:rows.stop] = logmel(torch.from_numpy(wav)).numpy().astype(np.float16)
            bar.update(len(rows))
    out.flush()
    del out
    atomic_write_json(tmp / "meta.json", {"frontend": frontend.to_dict(), "clip_seconds": clip_seconds,
                                          "n_frames": n_frames, "clip_ids": manifest.clips["clip_id"].tolist(),
                                          "manifest": manifest.name})
    publish_dir(tmp, final, "meta.json")
