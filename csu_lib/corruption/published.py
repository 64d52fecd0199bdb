"""The published noisy label files of ESC-FreeGen50 as a ready-made corruption.

``labels/{additive,flip,soft,remove}_error_<ratio>/train.json`` (docs/methods.md, section 2) are read
into a :class:`~csu_lib.corruption.result.CorruptionResult`, clean labels recovered from
``true_label`` / ``original_label``, so a run on them is recorded like an injected corruption.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import CorruptionConfig
from ..core.errors import ConfigError, ManifestError
from ..data.freegen50 import (FREEGEN_FLAGS, FREEGEN_NOISY_KINDS, freegen_records, label_vector, load_freegen50,
                              names_vector)
from ..data.manifest import Manifest
from ..data.tables import posix
from .result import KIND_CODES, CorruptionResult, rates_from_labels


def _ratio_spellings(ratio: float) -> list[str]:
    out: list[str] = []
    for s in (f"{ratio:.2f}", f"{ratio:.1f}", f"{ratio:g}", repr(float(ratio)), f"{ratio:.3f}"):
        if abs(float(s) - ratio) < 1e-9 and s not in out:
            out.append(s)
    return out


def _noisy_kind(kind: str) -> tuple[str, str]:
    """(folder prefix, corruption kind) from ``additive``/``flip``/``soft``/``remove`` or san/man/sln/missing."""
    if kind in FREEGEN_NOISY_KINDS:
        return kind, FREEGEN_NOISY_KINDS[kind]
    inverse = {v: k for k, v in FREEGEN_NOISY_KINDS.items()}
    if kind in inverse:
        return inverse[kind], kind
    raise ConfigError(f"unknown ESC-FreeGen50 noise kind {kind!r}; choose one of "
                      f"{', '.join(list(FREEGEN_NOISY_KINDS) + list(inverse))}")


def load_freegen50_noisy(root: str | os.PathLike, kind: str, ratio: float, *,
                         clean_manifest: Optional[Manifest] = None,
                         check_clean: bool = True) -> CorruptionResult:
    """A published noisy TRAIN file ``labels/<kind>_error_<ratio>/train.json`` as a corruption.

    ``kind``: ``additive`` (-> ``san``), ``flip`` (-> ``man``), ``soft`` (-> ``sln``),
    ``remove`` (-> ``missing``), or the corruption kind itself. The folder may spell the ratio
    ``0.10`` or ``0.1`` (``.2f`` spelling tried first).

    Per record, the clean target is ``true_label`` when present, else ``original_label``
    (soft files; a name, names or a vector), else ``original_labels`` (names), else the
    record's own ``label``. ``changed`` is the record's flag (``error_injected``,
    ``additive_noise_injected``, ``remove_noise_injected``, ...) when it has one -- a record
    whose label differs from its clean target while its flag is false is an error -- else
    "label differs from clean". ``source_class``: the clean positive lowered (MAN, SLN,
    missing) or kept (SAN); ``target_class``: the new positive (SAN, MAN), else -1.

    Records must follow the clean train manifest's order (``clean_manifest``, default
    :func:`load_freegen50` of ``root``); with ``check_clean`` the recovered clean labels must
    also equal that manifest's labels.
    """
    root = Path(root)
    prefix, ckind = _noisy_kind(kind)
    if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
        raise ConfigError(f"ESC-FreeGen50 noise ratio must lie in (0, 1], got {ratio!r}")
    ratio = float(ratio)
    labels_dir = root / "labels"
    tried = [labels_dir / f"{prefix}_error_{s}" / "train.json" for s in _ratio_spellings(ratio)]
    path = next((p for p in tried if p.is_file()), None)
    if path is None:
        available = sorted(p.name for p in labels_dir.glob("*_error_*")) if labels_dir.is_dir() else []
        raise ManifestError(f"no noisy train file for {prefix} error at ratio {ratio}: tried "
                            f"{', '.join(str(p) for p in tried)}; available folders: {available}")
    if clean_manifest is None:
        clean_manifest = load_freegen50(root)
    train_rows = clean_manifest.split_indices("train")
    train = clean_manifest.subset(train_rows)
    class_names = list(train.class_names)
    n = len(class_names)
    records, names = freegen_records(path)
    if names is not None and list(names) != class_names:
        raise ManifestError(f"{path}: class_names differ from the clean manifest's")
    if len(records) != len(train):
        raise ManifestError(f"{path} has {len(records)} records but the clean train split has {len(train)} clips")
    paths = train.clips["path"].tolist()
    for i, rec in enumerate(records):
        if posix(rec["audio_path"]) != paths[i]:
            raise ManifestError(f"{path}: record {i} is {posix(rec['audio_path'])!r} but the clean train "
                                f"manifest has {paths[i]!r} there (records must follow the clean order)")

    N = len(records)
    labels = np.zeros((N, n), dtype=np.float32)
    clean = np.zeros((N, n), dtype=np.float32)
    changed = np.zeros(N, dtype=bool)
    source = np.full(N, -1, dtype=np.int64)
    target = np.full(N, -1, dtype=np.int64)
    for i, rec in enumerate(records):
        labels[i] = label_vector(rec, "label", n, path, i)
        if "true_label" in rec:
            clean[i] = label_vector(rec, "true_label", n, path, i)
        elif "original_label" in rec:
            clean[i] = names_vector(rec["original_label"], class_names, "original_label", path, rec, i)
        elif "original_labels" in rec:
            clean[i] = names_vector(rec["original_labels"], class_names, "original_labels", path, rec, i)
        else:
            clean[i] = labels[i]
        differs = bool(np.abs(labels[i] - clean[i]).max(initial=0) > 1e-6)
        flags = [k for k in FREEGEN_FLAGS if k in rec]
        if flags:
            changed[i] = any(bool(rec[k]) for k in flags)
            if differs and not changed[i]:
                raise ManifestError(f"{path}: record {i} (clip {paths[i]!r}) differs from its clean label "
                                    f"but {flags[0]} is false")
        else:
            changed[i] = differs
        if changed[i]:
            pos = np.flatnonzero(clean[i] > 0.5)
            lowered = np.flatnonzero((clean[i] > 0.5) & (labels[i] < clean[i] - 1e-6))
            raised = np.flatnonzero((labels[i] > clean[i] + 1e-6) & (labels[i] > 0.5))
            source[i] = lowered[0] if len(lowered) else (pos[0] if len(pos) else -1)
            if ckind in ("san", "man") and len(raised):
                target[i] = raised[0]
    if check_clean:
        bad = np.flatnonzero(np.abs(clean - train.labels).max(axis=1) > 1e-6)
        if len(bad):
            i = int(bad[0])
            raise ManifestError(f"{path}: the clean label recovered for clip {paths[i]!r} (record {i}) differs "
                                f"from labels/original/train.json ({len(bad)} clip(s) differ)")
    class_rate, noise_rate = rates_from_labels(clean, labels, changed, source)
    kind_code = np.where(changed, KIND_CODES[ckind], KIND_CODES["none"]).astype(np.int8)
    return CorruptionResult(config=CorruptionConfig(kind=ckind, ratio=ratio), labels=labels,
                            clean_labels=clean, changed=changed, kind_code=kind_code,
                            source_class=source, target_class=target, class_rate=class_rate,
                            label_noise_rate=noise_rate)


def check_published(published: bool, dataset: str) -> None:
    """``published=True`` reads the published ESC-FreeGen50 files: it needs ``dataset='freegen50'``."""
    if not isinstance(published, bool):
        raise ConfigError(f"published must be True or False, got {published!r}")
    if published and dataset != "freegen50":
        raise ConfigError(f"published=True reads the published ESC-FreeGen50 noisy files: it needs "
                          f"dataset='freegen50', got dataset={dataset!r}")
