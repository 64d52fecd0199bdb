"""What ``csu data check DATA.yaml`` reports about a dataset, without training: clip counts per
split and class, unreadable, short and silent clips, and label problems (:func:`check_dataset`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import DataConfig
from .manifest import Manifest
from .validation import UNREADABLE, inspect_file


def check_dataset(manifest: Manifest, data: DataConfig, *, progress: bool = True) -> dict:
    """Every check a run would make before training, and more, as a report (nothing raises):

    - ``splits``: clips per split; ``classes``: a table of positives per class and split;
    - ``single_label``: whether every clip has exactly one positive (top-1 accuracy applies);
    - ``unlabelled``: clips whose label cell was blank (``manifest.extra``) or with no positive;
    - ``audio``: one row per clip with a problem (missing, corrupt, empty, truncated: a run stops
      or, with ``skip_unreadable``, drops them; silent; short: shorter than ``clip_seconds``,
      padded with zeros), with the label-file row when the loader knows it;
    - ``classes_without_training_clips``; ``stops_a_run``: whether a run on it would stop.
    """
    labels = manifest.labels >= 0.5
    splits = {s: int((manifest.clips["split"] == s).sum()) for s in ("train", "val", "test")}
    per_class = pd.DataFrame({s: labels[manifest.clips["split"].to_numpy() == s].sum(axis=0).astype(int)
                              for s in splits}, index=manifest.class_names)
    has_row = "label_row" in manifest.clips.columns
    no_positive = [str(c) for c in manifest.clips["clip_id"][labels.sum(axis=1) == 0]]
    problems, seen = [], {}
    rows = range(len(manifest))
    for i in tqdm(rows, disable=not progress, desc="checking audio", unit="clip"):
        path = manifest.audio_path(i)
        if "hdf5" in manifest.extra:  # the waveforms of a PANNs pack live in the HDF5 file
            break
        if path not in seen:
            seen[path] = inspect_file(path)
        found, seconds = seen[path]
        if data.clip_seconds is not None and not found and seconds < data.clip_seconds - 1e-6:
            found = [("short", f"{seconds:.2f} s, shorter than clip_seconds={data.clip_seconds} (zero-padded)")]
        for category, message in found:
            problems.append({"clip_id": str(manifest.clips.at[i, "clip_id"]), "path": str(path),
                             "row": manifest.clips.at[i, "label_row"] if has_row else None,
                             "problem": category, "detail": message})
    audio = pd.DataFrame(problems, columns=["clip_id", "path", "row", "problem", "detail"])
    unusable = audio["problem"].isin(UNREADABLE) if len(audio) else pd.Series([], dtype=bool)
    return {
        "dataset": manifest.name, "n_clips": len(manifest), "n_classes": manifest.n_classes, "splits": splits,
        "classes": per_class, "single_label": bool(np.all(labels.sum(axis=1) == 1)),
        "unlabelled": list(manifest.extra.get("unlabelled", [])), "clips_without_positive": no_positive,
        "audio": audio, "classes_without_training_clips": [c for c, n in per_class["train"].items() if n == 0],
        "stops_a_run": bool(unusable.any() and not data.skip_unreadable) or min(splits.values()) == 0,
        "audio_checked": "hdf5" not in manifest.extra,
    }


def format_report(report: dict, *, max_rows: Optional[int] = 30) -> str:
    """The report of :func:`check_dataset` as text for a terminal."""
    lines = [f"dataset {report['dataset']}: {report['n_clips']} clips, {report['n_classes']} classes, "
             + ", ".join(f"{s} {n}" for s, n in report["splits"].items())
             + (" (single-label: top-1 accuracy is reported)" if report["single_label"] else " (multi-label)")]
    classes = report["classes"]
    lines.append("positives per class (min / median / max over classes): "
                 + ", ".join(f"{s} {classes[s].min()} / {int(classes[s].median())} / {classes[s].max()}"
                             for s in classes.columns))
    if report["classes_without_training_clips"]:
        lines.append(f"classes without a training clip: {report['classes_without_training_clips']}")
    if report["unlabelled"]:
        lines.append(f"{len(report['unlabelled'])} clip(s) with a blank label cell (trained with no positive; "
                     f"listed in each run record): " + ", ".join(str(u.get("row", u["clip_id"]))
                                                               for u in report["unlabelled"][:10]))
    audio = report["audio"]
    if not report["audio_checked"]:
        lines.append("audio: inside an HDF5 pack (not checked file by file)")
    elif len(audio):
        counts = audio["problem"].value_counts().to_dict()
        lines.append("audio problems: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        shown = audio if max_rows is None else audio.head(max_rows)
        lines.append(shown.to_string(index=False))
    else:
        lines.append("audio: every file readable, complete, not silent and at least clip_seconds long")
    lines.append("a run on this dataset would STOP before training (see above)" if report["stops_a_run"]
                 else "a run on this dataset would start")
    return "\n".join(lines)
