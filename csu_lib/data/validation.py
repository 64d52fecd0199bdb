"""Checking every audio file of a manifest once: missing, corrupt, truncated, empty, silent,
wrong sample rate or channel count (:func:`validate_audio`).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf

from ..core.errors import AudioError
from .manifest import Manifest

#: Problems :func:`validate_audio` can skip (the clip's data cannot be used at all).
UNREADABLE = ("missing", "corrupt", "empty", "truncated")


def _wav_declared_frames(path: Path) -> Optional[int]:
    """Frames a RIFF/WAVE header declares for its data chunk (None when not WAV or unknown).

    libsndfile clamps a truncated data chunk to what the file holds, so its frame count
    alone cannot reveal truncation.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    body = fh.read(size)
                    if len(body) < 14:
                        return None
                    block_align = struct.unpack("<H", body[12:14])[0]
                    if size % 2:
                        fh.seek(1, os.SEEK_CUR)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    fh.seek(size + size % 2, os.SEEK_CUR)
    except OSError:
        return None


def inspect_file(path: Path, sample_rate: Optional[int] = None, channels: Optional[int] = None,
                 deep: bool = True) -> tuple[list[tuple[str, str]], float]:
    """[(category, message)] problems of one file, and its duration in seconds (0 if unknown).
    Without ``deep`` only the header is read (missing, corrupt header, empty, truncated WAV)."""
    if not path.is_file():
        return [("missing", "audio file not found")], 0.0
    try:
        info = sf.info(str(path))
    except Exception as exc:  # LibsndfileError, RuntimeError, ...
        return [("corrupt", f"unreadable or corrupt audio ({exc})")], 0.0
    frames, sr, nch = int(info.frames), int(info.samplerate), int(info.channels)
    if frames <= 0:
        return [("empty", "audio file is empty (0 frames)")], 0.0
    declared = _wav_declared_frames(path)
    if declared is not None and declared > frames:
        return [("truncated", f"truncated: the header declares {declared} frames but only {frames} are in "
                              f"the file")], frames / sr
    if not deep:
        return [], frames / sr
    n_read, nonzero, finite = 0, False, True
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                block = f.read(65536, dtype="float32", always_2d=True)
                if not len(block):
                    break
                n_read += len(block)
                nonzero = nonzero or bool(np.any(block))
                finite = finite and bool(np.isfinite(block).all())
    except Exception as exc:
        return [("corrupt", f"corrupt audio data after {n_read} frames ({exc})")], frames / sr
    if n_read < frames:
        return [("truncated", f"truncated: the header says {frames} frames but only {n_read} are readable")], \
            n_read / sr
    if not finite:
        return [("corrupt", "audio contains NaN or infinite samples")], frames / sr
    problems = []
    if not nonzero:
        problems.append(("silent", "silent (all samples are zero)"))
    if sample_rate is not None and sr != sample_rate:
        problems.append(("sample_rate", f"wrong sample rate {sr} Hz (expected {sample_rate} Hz)"))
    if channels is not None and nch != channels:
        problems.append(("channels", f"wrong channel count {nch} (expected {channels})"))
    return problems, frames / sr


def validate_audio(manifest: Manifest, *, sample_rate: Optional[int] = None, channels: Optional[int] = None,
                   skip_unreadable: bool = False, deep: bool = True) -> dict:
    """Read every audio file of ``manifest`` once and check it (``deep=False``: headers only, the
    check every run on a real dataset makes before training: missing, corrupt header, empty and
    truncated files).

    Problems: missing, corrupt (unreadable header or data, NaN/inf), truncated (the WAV
    header declares more frames than the file holds, or fewer frames readable than the
    header says), empty (0 frames), silent (all zeros), wrong sample rate (``sample_rate``),
    wrong channel count (``channels``). Any problem raises :class:`AudioError` listing each
    clip id, file and problem. With ``skip_unreadable`` the clips whose file is missing,
    corrupt, truncated or empty are instead removed and reported; silent files and wrong
    rate/channels still raise. A file shared by several rows (chunks) is read once.

    Returns ``{"manifest": kept manifest, "skipped": [{clip_id, path, problem}],
    "seconds": {clip_id: file duration}}``.
    """
    results: dict[Path, tuple[list[tuple[str, str]], float]] = {}
    skipped: list[dict] = []
    fatal: list[str] = []
    keep: list[int] = []
    seconds: dict[str, float] = {}
    for i in range(len(manifest)):
        path = manifest.audio_path(i)
        if path not in results:
            results[path] = inspect_file(path, sample_rate, channels, deep)
        problems, dur = results[path]
        clip = str(manifest.clips.at[i, "clip_id"])
        where = f"{path}, {manifest.clips.at[i, 'label_row']}" if "label_row" in manifest.clips.columns else str(path)
        seconds[clip] = dur
        if not problems:
            keep.append(i)
            continue
        message = "; ".join(m for _, m in problems)
        if skip_unreadable and all(cat in UNREADABLE for cat, _ in problems):
            skipped.append({"clip_id": clip, "path": str(path), "problem": message,
                            **({"row": manifest.clips.at[i, "label_row"]} if "label_row" in manifest.clips.columns
                               else {})})
        else:
            fatal.append(f"clip {clip!r} ({where}): {message}")
    if fatal:
        hint = "" if skip_unreadable else " (data.skip_unreadable=True drops missing, corrupt, empty and truncated files)"
        raise AudioError(f"manifest {manifest.name!r}: {len(fatal)} clip(s) with unusable audio: "
                         + " | ".join(fatal[:10]) + (" | ..." if len(fatal) > 10 else "") + hint)
    kept = manifest if not skipped else manifest.subset(keep)
    if skipped:
        kept.extra = {**kept.extra, "skipped": list(kept.extra.get("skipped", [])) + skipped}
    return {"manifest": kept, "skipped": skipped, "seconds": seconds}
