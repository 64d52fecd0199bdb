"""Any folder of audio described by a CSV ``filename,labels[,split]`` (the ``csv`` dataset).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..core.errors import ConfigError, ManifestError
from .manifest import SPLITS, Manifest, labels_from_names
from .registry import register_folder_loader
from .tables import outside_root, posix, read_table, require_columns, require_file, split_names, strip_ext


@register_folder_loader("csv")
def load_csv_manifest(csv_path: str | os.PathLike, *, root: Optional[str | os.PathLike] = None,
                      delimiter: str = ";", class_names: Optional[Sequence[str]] = None,
                      default_split: Optional[str] = None, name: Optional[str] = None,
                      allow_commas: bool = False) -> Manifest:
    """A ``filename,labels[,split]`` CSV (comma-separated columns; labels joined by ``delimiter``).

    ``filename`` is relative to ``root`` (default: the CSV's folder) and must stay inside it (an
    absolute path or ``..`` leading out is an error naming the row); clip id = ``clip_id``
    column if present, else ``filename`` without its extension. Vocabulary = sorted union of
    the labels unless ``class_names`` is given (then an unknown label is an error naming the
    clip and label). A label holding a comma while ``delimiter`` is not one (a quoted
    ``"dog,cat"``) is an error naming the row, unless ``allow_commas`` (class names such as
    AudioSet's "Child speech, kid speaking"). A blank labels cell is a clip with no positive:
    kept, and listed in ``manifest.extra["unlabelled"]`` (a run records it). Without a
    ``split`` column, ``default_split`` is required; blank split cells take ``default_split``
    too. An optional ``source`` column is kept; ``label_row`` says where each clip came from
    (``<csv>:<line>``, what errors about the clip name).
    """
    csv_path = Path(csv_path)
    require_file(csv_path, "manifest CSV")
    root = Path(root) if root is not None else csv_path.parent
    table = read_table(csv_path)
    table.columns = [c.strip() for c in table.columns]
    require_columns(table, ("filename", "labels"), csv_path)
    if default_split is not None and default_split not in SPLITS:
        raise ConfigError(f"default_split must be one of {SPLITS}, got {default_split!r}")
    if "split" in table.columns:
        split = table["split"].str.strip()
        blank = split == ""
        if blank.any():
            if default_split is None:
                row = table[blank].iloc[0]
                raise ManifestError(f"{csv_path}: clip {row['filename']!r} has no split and no default_split "
                                    f"was given")
            split = split.where(~blank, default_split)
        bad = table[~split.isin(SPLITS)]
        if len(bad):
            raise ManifestError(f"{csv_path}: clip {bad.iloc[0]['filename']!r} has unknown split "
                                f"{split[bad.index[0]]!r}; use {SPLITS}")
    elif default_split is None:
        raise ManifestError(f"{csv_path} has no 'split' column; pass default_split='train'|'val'|'test'")
    else:
        split = pd.Series(default_split, index=table.index)
    filenames = [posix(f.strip()) for f in table["filename"]]
    lines = [i + 2 for i in range(len(table))]  # the header is line 1
    empty = [i for i, f in enumerate(filenames) if not f]
    if empty:
        raise ManifestError(f"{csv_path}: row {lines[empty[0]]} has an empty filename")
    outside = [i for i, f in enumerate(filenames) if outside_root(f, root)]
    if outside:
        i = outside[0]
        raise ManifestError(f"{csv_path}: row {lines[i]}: filename {filenames[i]!r} points outside the dataset "
                            f"root {root} ({len(outside)} such row(s)); give paths relative to the root")
    clip_ids = (table["clip_id"].str.strip().tolist() if "clip_id" in table.columns
                else [strip_ext(f) for f in filenames])
    names = [split_names(t, delimiter) for t in table["labels"]]
    if "," != delimiter and not allow_commas:
        commas = [(i, n) for i, ns in enumerate(names) for n in ns if "," in n]
        if commas:
            i, label = commas[0]
            raise ManifestError(f"{csv_path}: row {lines[i]} (file {filenames[i]!r}): label {label!r} holds a comma "
                                f"but labels are separated by {delimiter!r}; set the loader option delimiter=',' "
                                f"if it lists several labels, or allow_commas=True if it is one class name")
    unlabelled = [{"clip_id": clip_ids[i], "path": filenames[i], "row": f"{csv_path.name}:{lines[i]}"}
                  for i, ns in enumerate(names) if not ns]
    if class_names is None:
        class_names = sorted({n for ns in names for n in ns})
    labels = labels_from_names(names, list(class_names), where=str(csv_path), clip_ids=clip_ids)
    clips = pd.DataFrame({"clip_id": clip_ids, "path": filenames, "split": split.to_numpy()})
    clips["source"] = table["source"].str.strip().to_numpy() if "source" in table.columns else "unknown"
    clips["label_row"] = [f"{csv_path.name}:{n}" for n in lines]
    return Manifest(clips=clips, labels=labels, class_names=list(class_names), root=root,
                    name=name or csv_path.stem, extra={"unlabelled": unlabelled} if unlabelled else {})
