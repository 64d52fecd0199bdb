"""The class-noise audit design (``CorruptionConfig(profile="audit")``): a corruption built so
that a per-class unreliability estimate can be tested fairly against the truth.

- Half the classes (rounded up, drawn by the seed) are *corrupted*; the others are *controls*
  that receive no corruption of any kind: no lost, weakened or moved positive, and no spurious
  label (SAN and MAN targets are confined to the corrupted set).
- Each corrupted class gets a within-class level below or at ``ratio``: the levels
  ``ratio * (0.4, 0.7, 1.0)`` (20 / 35 / 50 % at ratio 0.5) are dealt out in turn, so that no
  level makes the noisy label the majority of its class.
- What the level means per kind: MAN, SLN, missing -- that share of the class's clean positive
  clips is the source (moved to another corrupted class, weakened to ``U(soft_range)``, removed);
  SAN -- spurious positives of class c are added to clips without c until they are that share of
  c's positive labels (the clips' own labels are kept: ``source_class`` is -1, ``target_class``
  is c).
- The truth is the result's ``label_noise_rate`` (> 0 exactly for the corrupted classes) and
  :func:`audit_levels` (the designed level per class, 0 for controls).

The draw follows ``config.seed`` (its own streams), never nested across ratios.
"""
from __future__ import annotations

import numpy as np

from ..config import CorruptionConfig
from ..core.errors import ConfigError
from .result import KIND_CODES, CorruptionResult, rates_from_labels

#: The within-class levels of the corrupted classes, as fractions of ``ratio``.
LEVEL_FRACTIONS = (0.4, 0.7, 1.0)

_STREAM_CLASSES, _STREAM_CLIPS = 11, 12


def _rng(config: CorruptionConfig, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(config.seed), stream, int(round(config.ratio * 1e6))])


def audit_levels(n_classes: int, config: CorruptionConfig) -> np.ndarray:
    """(C,) the designed within-class level of every class (0 for a control class)."""
    order = _rng(config, _STREAM_CLASSES).permutation(n_classes)
    levels = np.zeros(n_classes)
    n_corrupted = (n_classes + 1) // 2
    for i, c in enumerate(order[:n_corrupted]):
        levels[c] = config.ratio * LEVEL_FRACTIONS[i % len(LEVEL_FRACTIONS)]
    return levels


def audit_corruption(clean: np.ndarray, config: CorruptionConfig) -> CorruptionResult:
    """Inject ``config.kind`` under the audit design (module docstring) into ``clean`` (N, C)."""
    n_clips, n_classes = clean.shape
    if n_classes < 3:
        raise ConfigError(f"corruption.profile='audit' needs at least 3 classes, got {n_classes}")
    if config.ratio > 0.5 + 1e-9:
        raise ConfigError(f"corruption.profile='audit' keeps every level at or below 50% (the noisy label must not "
                          f"be the majority of its class); corruption.ratio={config.ratio} is larger")
    labels = clean.copy()
    pos = clean >= 0.5
    changed = np.zeros(n_clips, dtype=bool)
    kind_code = np.zeros(n_clips, dtype=np.int8)
    source_class = np.full(n_clips, -1, dtype=np.int64)
    target_class = np.full(n_clips, -1, dtype=np.int64)
    levels = audit_levels(n_classes, config)
    corrupted = np.flatnonzero(levels > 0)
    rng = _rng(config, _STREAM_CLIPS)
    priority = rng.permutation(n_clips)
    u = rng.random((n_clips, 2))
    lo, hi = config.soft_range
    for c in corrupted:
        n_pos = int(pos[:, c].sum())
        if config.kind == "san":
            # spurious c labels on clips without c: `level` of c's positive labels become spurious
            want = int(round(levels[c] / (1 - levels[c]) * n_pos))
            free = priority[~pos[priority, c] & ~changed[priority] & (labels[priority, c] < 0.5)]
            clips = free[:want]
        else:
            want = int(round(levels[c] * n_pos))
            clips = priority[pos[priority, c] & ~changed[priority]][:want]
        if len(clips) < want:
            raise ConfigError(f"corruption.profile='audit': class {c} needs {want} corrupted clips at level "
                              f"{levels[c]:.2f} but only {len(clips)} are available")
        for clip in clips.tolist():
            if config.kind == "san":
                labels[clip, c] = 1.0
                target_class[clip] = c
            elif config.kind == "man":
                options = np.array([t for t in corrupted if t != c and not pos[clip, t] and labels[clip, t] < 0.5])
                if len(options) == 0:
                    raise ConfigError(f"corruption.profile='audit': no MAN target for clip {clip} of class {c}")
                tgt = int(options[min(int(u[clip, 0] * len(options)), len(options) - 1)])
                labels[clip, c], labels[clip, tgt] = 0.0, 1.0
                source_class[clip], target_class[clip] = c, tgt
            elif config.kind == "sln":
                labels[clip, c] = np.float32(lo + (hi - lo) * u[clip, 1])
                source_class[clip] = c
            else:  # missing
                labels[clip, c] = 0.0
                source_class[clip] = c
            changed[clip] = True
            kind_code[clip] = KIND_CODES[config.kind]
    class_rate, noise_rate = rates_from_labels(clean, labels, changed, source_class)
    return CorruptionResult(config, labels, clean, changed, kind_code, source_class, target_class,
                            class_rate, noise_rate)
