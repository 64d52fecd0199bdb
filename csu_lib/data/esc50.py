"""ESC-50: ``meta/esc50.csv`` + ``audio/``. Class order = ``target``; ``test_fold`` -> test,
``val_fold`` -> val, other folds -> train. Snapshots laid out otherwise (e.g. ``esc50.csv`` next
to ``audio/audio/16000/``, the Kaggle-style layout) are read with ``meta_file`` and ``audio_dir``
(docs/data.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..core.errors import ConfigError, ManifestError
from .manifest import Manifest, labels_from_names
from .registry import register_folder_loader
from .tables import read_table, require_columns, require_file, strip_ext


@register_folder_loader("esc50")
def load_esc50(root: str | os.PathLike, *, val_fold: Optional[int] = 4, test_fold: int = 5,
               audio_dir: str = "audio", meta_file: str = "meta/esc50.csv") -> Manifest:
    """ESC-50 (``meta/esc50.csv`` + ``audio/``): fold ``test_fold`` -> test, ``val_fold`` -> val
    (``None``: no validation split), every other fold -> train. Classes ordered by ``target``.
    ``meta_file`` and ``audio_dir`` (relative to ``root``) name the metadata table and the folder
    of the wav files where a copy lays them out differently.

    Extra columns: ``fold``, ``esc10`` (bool, when present), ``source``/``origin``.
    """
    root = Path(root)
    meta = root / meta_file
    require_file(meta, "ESC-50 metadata file")
    table = read_table(meta)
    require_columns(table, ("filename", "fold", "target", "category"), meta)
    if table.empty:
        raise ManifestError(f"{meta} has no rows")
    for col in ("fold", "target"):
        bad = table[~table[col].str.strip().str.fullmatch(r"-?\d+")]
        if len(bad):
            row = bad.iloc[0]
            raise ManifestError(f"{meta}: clip {row['filename']!r} has non-integer {col} {row[col]!r}")
    folds = table["fold"].astype(int).to_numpy()
    targets = table["target"].astype(int).to_numpy()
    present = sorted(set(folds.tolist()))
    if test_fold not in present:
        raise ConfigError(f"esc50 test_fold={test_fold!r} is not a fold of {meta} (folds present: {present})")
    if val_fold is not None:
        if val_fold not in present:
            raise ConfigError(f"esc50 val_fold={val_fold!r} is not a fold of {meta} (folds present: {present})")
        if val_fold == test_fold:
            raise ConfigError(f"esc50 val_fold and test_fold must differ, both are {test_fold!r}")
    # one category per target and one target per category
    names_by_target: dict[int, str] = {}
    target_by_name: dict[str, int] = {}
    for fname, t, cat in zip(table["filename"], targets.tolist(), table["category"]):
        if names_by_target.setdefault(t, cat) != cat:
            raise ManifestError(f"{meta}: target {t} is both {names_by_target[t]!r} and {cat!r} "
                                f"(clip {fname!r})")
        if target_by_name.setdefault(cat, t) != t:
            raise ManifestError(f"{meta}: category {cat!r} has targets {target_by_name[cat]} and {t} "
                                f"(clip {fname!r})")
    class_names = [names_by_target[t] for t in sorted(names_by_target)]
    is_val = folds == val_fold if val_fold is not None else np.zeros(len(folds), dtype=bool)
    split = np.where(folds == test_fold, "test", np.where(is_val, "val", "train"))
    clip_ids = [strip_ext(f) for f in table["filename"]]
    clips = pd.DataFrame({
        "clip_id": clip_ids,
        "path": [f"{audio_dir}/{f}" for f in table["filename"]],
        "split": split,
        "source": "recorded",
        "origin": "esc50",
        "fold": folds,
    })
    if "esc10" in table.columns:
        clips["esc10"] = table["esc10"].str.strip().str.lower().isin(("true", "1")).to_numpy()
    labels = labels_from_names([[c] for c in table["category"]], class_names, where=str(meta),
                               clip_ids=clip_ids)
    return Manifest(clips=clips, labels=labels, class_names=class_names, root=root, name="esc50",
                    extra={"val_fold": val_fold, "test_fold": test_fold})
