"""Long clips cut into non-overlapping chunks (:func:`chunk_manifest`; reads headers only), e.g.
for pseudo-strong-label training on clips longer than the model's input.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import soundfile as sf

from ..core.errors import AudioError, ConfigError, ManifestError
from .manifest import Manifest


def chunk_manifest(manifest: Manifest, chunk_seconds: float, *,
                   durations: Optional[Mapping[str, float] | Sequence[float]] = None) -> Manifest:
    """Cut every clip into non-overlapping ``chunk_seconds`` chunks (docs/methods.md, section 5).

    Chunk ids ``"<clip_id>#<k>"``; ``parent`` = the clip id; ``offset``/``duration`` in seconds
    (relative to the file, after any existing ``offset``); labels repeated. The last chunk may
    be shorter (to be padded). A clip's length is ``durations[clip_id]`` (a mapping, or a
    sequence in row order) when given, else the file's length from ``soundfile.info`` minus the
    clip's offset, capped by an existing ``duration`` column. Audio data is never read.
    """
    if not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0 or not math.isfinite(chunk_seconds):
        raise ConfigError(f"chunk_seconds must be a positive number, got {chunk_seconds!r}")
    if "parent" in manifest.clips.columns:
        raise ManifestError(f"manifest {manifest.name!r} is already chunked (it has a 'parent' column)")
    clips = manifest.clips
    ids = clips["clip_id"].astype(str).tolist()
    base = (clips["offset"].astype(float).fillna(0.0).to_numpy() if "offset" in clips.columns
            else np.zeros(len(clips)))
    if durations is not None and not isinstance(durations, Mapping):
        durations = list(durations)
        if len(durations) != len(clips):
            raise ConfigError(f"durations has {len(durations)} values for {len(clips)} clips")
    rows, reps = [], []
    for i, clip in enumerate(ids):
        if durations is not None:
            if isinstance(durations, Mapping):
                if clip not in durations:
                    raise ManifestError(f"durations has no entry for clip {clip!r}")
                total = float(durations[clip])
            else:
                total = float(durations[i])
        else:
            path = manifest.audio_path(i)
            try:
                info = sf.info(str(path))
            except Exception as exc:
                raise AudioError(f"{path} (clip {clip!r}): cannot read the audio header ({exc})") from exc
            total = info.frames / info.samplerate - base[i]
            if "duration" in clips.columns and pd.notna(clips.at[i, "duration"]):
                total = min(total, float(clips.at[i, "duration"]))
        if not total > 1e-9:
            raise AudioError(f"{manifest.audio_path(i)} (clip {clip!r}): nothing to chunk "
                             f"({total:.6g} s after offset {base[i]:.6g} s)")
        n = max(1, math.ceil(total / chunk_seconds - 1e-6))
        for k in range(n):
            row = clips.iloc[i].to_dict()
            row.update(clip_id=f"{clip}#{k}", parent=clip, offset=round(base[i] + k * chunk_seconds, 6),
                       duration=round(min(chunk_seconds, total - k * chunk_seconds), 6))
            rows.append(row)
        reps.append(n)
    out = pd.DataFrame(rows, columns=list(dict.fromkeys(list(clips.columns) + ["offset", "duration", "parent"])))
    return Manifest(clips=out, labels=np.repeat(manifest.labels, reps, axis=0), class_names=list(manifest.class_names),
                    root=manifest.root, name=manifest.name, similarity=manifest.similarity,
                    class_families=manifest.class_families,
                    extra={**manifest.extra, "chunk_seconds": float(chunk_seconds)})
