"""FSD50K: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv`` + ``FSD50K.dev_audio/`` and
``FSD50K.eval_audio/``; dev ``split`` train/val, eval -> test.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import ManifestError
from .manifest import Manifest, labels_from_names
from .registry import register_folder_loader
from .tables import read_table, require_columns, require_file, split_names


@register_folder_loader("fsd50k")
def load_fsd50k(root: str | os.PathLike) -> Manifest:
    """FSD50K: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``; dev ``split`` train/val, eval -> test.

    Audio in ``FSD50K.dev_audio/<fname>.wav`` and ``FSD50K.eval_audio/<fname>.wav``; labels are
    comma-separated class names; class order = ``vocabulary.csv`` index. Clip id = ``fname``.
    """
    root = Path(root)
    gt = root / "FSD50K.ground_truth"
    vocab_path, dev_path, eval_path = gt / "vocabulary.csv", gt / "dev.csv", gt / "eval.csv"
    for p in (vocab_path, dev_path, eval_path):
        require_file(p, "FSD50K ground-truth file")
    vocab = read_table(vocab_path, header=None)
    if vocab.shape[1] < 2:
        raise ManifestError(f"{vocab_path}: expected rows 'index,name,mid'")
    vocab = vocab.iloc[:, :3]
    vocab.columns = ["index", "name", "mid"][: vocab.shape[1]]
    if not vocab["index"].str.strip().str.fullmatch(r"\d+").all():
        raise ManifestError(f"{vocab_path}: the first column must be the integer class index (no header)")
    vocab = vocab.assign(index=vocab["index"].astype(int)).sort_values("index")
    class_names = vocab["name"].str.strip().tolist()
    dev = read_table(dev_path)
    require_columns(dev, ("fname", "labels", "split"), dev_path)
    bad = dev[~dev["split"].isin(("train", "val"))]
    if len(bad):
        raise ManifestError(f"{dev_path}: clip {bad.iloc[0]['fname']!r} has split {bad.iloc[0]['split']!r}; "
                            f"expected 'train' or 'val'")
    ev = read_table(eval_path)
    require_columns(ev, ("fname", "labels"), eval_path)
    parts = []
    for table, folder, split, where in ((dev, "FSD50K.dev_audio", dev["split"].to_numpy(), dev_path),
                                        (ev, "FSD50K.eval_audio", "test", eval_path)):
        ids = table["fname"].str.strip().tolist()
        y = labels_from_names([split_names(t, ",") for t in table["labels"]], class_names,
                              where=str(where), clip_ids=ids)
        clips = pd.DataFrame({"clip_id": ids, "path": [f"{folder}/{f}.wav" for f in ids], "split": split,
                              "source": "recorded", "origin": "freesound"})
        parts.append((clips, y))
    clips = pd.concat([p[0] for p in parts], ignore_index=True)
    labels = np.concatenate([p[1] for p in parts])
    return Manifest(clips=clips, labels=labels, class_names=class_names, root=root, name="fsd50k",
                    extra={"mids": vocab["mid"].str.strip().tolist()} if "mid" in vocab else {})
