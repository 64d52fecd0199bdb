"""ESC-FreeGen50 (docs/methods.md, section 2): the clean ``labels/original/{train,val,test}.json``
and the readers of its label-file format that the published noisy files share
(:mod:`csu_lib.corruption.published` reads those).

``source`` rule (see :func:`freegen_source`): a clip is ``generated`` when its
``audio_path`` -- or the ``file_path`` of its ``all_files.json`` entry -- contains
``audioldm`` (any case) or has a directory component ``generated``/``gen``/``synthetic``, or
when that entry has a ``source``/``origin``/``type``/``generator``/``dataset`` field mentioning
``audioldm``, ``generat`` or ``synth``. It is ``recorded`` when such a field or path component
says ``esc50``/``esc-50``/``freesound``/``fsd``, or when the file name follows the ESC-50 scheme
``<fold>-<id>-<take>-<target>``. Otherwise ``unknown``: the published ``audios/<class>/<hash>.wav``
paths alone do not say where a clip came from.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional

import numpy as np
import pandas as pd

from ..core.errors import ManifestError
from .manifest import SPLITS, Manifest, labels_from_names
from .registry import register_folder_loader
from .tables import posix, read_json_file, require_file, strip_ext

#: Published noisy-label folder prefix -> corruption kind of :mod:`csu_lib.corruption`.
FREEGEN_NOISY_KINDS = {"additive": "san", "flip": "man", "soft": "sln", "remove": "missing"}


#: Per-record flags saying a record was corrupted (any that is present is used).
FREEGEN_FLAGS = ("error_injected", "additive_noise_injected", "remove_noise_injected",
                 "soft_noise_injected", "noise_injected")


_GENERATED_COMPONENTS = {"generated", "gen", "synthetic", "synthesized", "synthesised"}


_RECORDED_ORIGINS = {"esc50": "esc50", "esc-50": "esc50", "esc_50": "esc50",
                     "freesound": "freesound", "fsd": "freesound"}


_ESC50_NAME = re.compile(r"^\d+-\d+-[A-Za-z]+-\d+$")


_SOURCE_FIELDS = ("source", "origin", "type", "generator", "dataset")


def _path_origin(path: str) -> Optional[str]:
    """``audioldm`` / ``esc50`` / ``freesound`` from a path, or None (see module docstring)."""
    p = posix(path)
    low = p.lower()
    if "audioldm" in low:
        return "audioldm"
    parts = [c for c in low.split("/") if c]
    if any(c in _GENERATED_COMPONENTS for c in parts[:-1]):
        return "generated"
    for c in parts[:-1]:
        if c in _RECORDED_ORIGINS:
            return _RECORDED_ORIGINS[c]
    if parts and _ESC50_NAME.match(strip_ext(parts[-1])):
        return "esc50"
    return None


def _field_origin(entry: Mapping[str, Any]) -> Optional[str]:
    for key in _SOURCE_FIELDS:
        value = entry.get(key)
        if not isinstance(value, str):
            continue
        v = value.lower()
        if "audioldm" in v:
            return "audioldm"
        if "generat" in v or "synth" in v:
            return "generated"
        if "esc" in v:
            return "esc50"
        if "freesound" in v or v == "fsd":
            return "freesound"
    return None


def freegen_source(audio_path: str, meta: Optional[Mapping[str, Any]] = None) -> tuple[str, str]:
    """``(source, origin)`` of an ESC-FreeGen50 clip by the rule of the module docstring.

    ``meta`` is the clip's ``all_files.json`` entry, if any. ``source`` is ``generated``,
    ``recorded`` or ``unknown``; ``origin`` is ``audioldm``/``generated``/``esc50``/
    ``freesound``/``unknown``.
    """
    origin = None
    if meta is not None:
        origin = _field_origin(meta)
        if origin is None and isinstance(meta.get("file_path"), str):
            origin = _path_origin(meta["file_path"])
    if origin is None:
        origin = _path_origin(audio_path)
    if origin is None:
        return "unknown", "unknown"
    return ("generated" if origin in ("audioldm", "generated") else "recorded"), origin


def freegen_records(path: Path) -> tuple[list[dict], Optional[list[str]]]:
    data = read_json_file(path)
    if isinstance(data, list):
        records, names = data, None
    elif isinstance(data, dict):
        records, names = data.get("data"), data.get("class_names")
    else:
        records, names = None, None
    if not isinstance(records, list):
        raise ManifestError(f"{path}: expected {{'data': [...], 'class_names': [...]}}, found no 'data' list")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("audio_path"), str):
            raise ManifestError(f"{path}: record {i} has no 'audio_path' string")
        if "label" not in rec:
            raise ManifestError(f"{path}: record {i} ({rec['audio_path']!r}) has no 'label'")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise ManifestError(f"{path}: 'class_names' must be a list of strings")
    return records, names


def label_vector(rec: dict, key: str, n: int, path: Path, i: int) -> np.ndarray:
    value = rec.get(key)
    who = f"{path}: record {i} (clip {posix(rec['audio_path'])!r})"
    if not isinstance(value, list) or len(value) != n:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise ManifestError(f"{who}: {key!r} must be a list of {n} numbers, got {got}")
    try:
        v = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{who}: {key!r} holds non-numbers ({exc})") from exc
    if not np.isfinite(v).all() or v.min(initial=0) < 0 or v.max(initial=0) > 1:
        raise ManifestError(f"{who}: {key!r} values must lie in [0, 1]")
    return v


def names_vector(value: Any, class_names: list[str], key: str, path: Path, rec: dict, i: int) -> np.ndarray:
    """A clean target from ``original_label(s)``: one name, a list of names or a numeric vector."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        return label_vector({**rec, key: value}, key, len(class_names), path, i)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{path}: record {i} (clip {posix(rec['audio_path'])!r}): {key!r} must be a "
                            f"class name, a list of names or a label vector")
    return labels_from_names([value], class_names, where=f"{path} ({key})",
                             clip_ids=[strip_ext(posix(rec["audio_path"]))])[0]


def _parse_label_mapping(path: Path) -> list[str]:
    """Class names in index order from ``label_mapping.json`` ({idx: name}, {name: idx} or a list)."""
    m = read_json_file(path)
    if isinstance(m, dict):
        for key in ("class_names", "idx_to_label", "index_to_label", "id2label", "label_to_idx",
                    "label_to_index", "label2id"):
            if key in m:
                m = m[key]
                break
    if isinstance(m, list) and all(isinstance(n, str) for n in m):
        return list(m)
    if isinstance(m, dict) and m:
        def is_int(x):
            return isinstance(x, int) and not isinstance(x, bool) or (isinstance(x, str) and x.strip().isdigit())
        if all(is_int(v) for v in m.values()):
            pairs = {int(v): str(k) for k, v in m.items()}
        elif all(is_int(k) for k in m):
            pairs = {int(k): str(v) for k, v in m.items()}
        else:
            pairs = {}
        if pairs and sorted(pairs) == list(range(len(pairs))) and len(pairs) == len(m):
            return [pairs[j] for j in range(len(pairs))]
    raise ManifestError(f"{path}: cannot read a class index -> name mapping (expected {{index: name}}, "
                        f"{{name: index}} or a list of names, indices 0..C-1)")


def _all_files_index(path: Path) -> dict[str, dict]:
    data = read_json_file(path)
    if isinstance(data, dict):
        data = data.get("data", data.get("files", list(data.values())))
    if not isinstance(data, list):
        raise ManifestError(f"{path}: expected a list of clip entries")
    index: dict[str, dict] = {}
    for entry in data:
        if not isinstance(entry, dict):
            continue
        keys = []
        fp = entry.get("file_path")
        if isinstance(fp, str):
            fp = posix(fp)
            keys += [fp, PurePosixPath(fp).name, strip_ext(PurePosixPath(fp).name)]
        for k in ("file_id", "id"):
            if entry.get(k) is not None:
                keys.append(str(entry[k]))
        for k in keys:
            index.setdefault(k, entry)
    return index


def _lookup_meta(index: dict[str, dict], audio_path: str) -> Optional[dict]:
    name = PurePosixPath(audio_path).name
    for key in (audio_path, name, strip_ext(name)):
        if key in index:
            return index[key]
    return None


@register_folder_loader("freegen50")
def load_freegen50(root: str | os.PathLike, *, check_original_labels: bool = True) -> Manifest:
    """ESC-FreeGen50: ``labels/original/{train,val,test}.json`` (docs/methods.md, section 2).

    Clip id = ``audio_path`` without its extension; the path is ``audio_path`` relative to
    ``root``. Class names come from the files' ``class_names`` (identical in all three) or,
    failing that, ``labels/label_mapping.json``; when both exist they must agree.
    ``all_files.json`` (optional) feeds the ``source``/``origin`` rule (:func:`freegen_source`).
    With ``check_original_labels`` a record's ``original_labels`` names must be in the
    vocabulary and equal its positive classes.
    """
    root = Path(root)
    folder = root / "labels" / "original"
    per_split: dict[str, tuple[Path, list[dict]]] = {}
    class_names: Optional[list[str]] = None
    names_from: Optional[Path] = None
    for split in SPLITS:
        path = folder / f"{split}.json"
        require_file(path, f"ESC-FreeGen50 {split} label file")
        records, names = freegen_records(path)
        if not records:
            raise ManifestError(f"{path} has no records: split {split!r} would be empty")
        if names is not None:
            if class_names is None:
                class_names, names_from = list(names), path
            elif list(names) != class_names:
                raise ManifestError(f"{path}: class_names differ from those of {names_from}")
        per_split[split] = (path, records)
    mapping_path = root / "labels" / "label_mapping.json"
    if mapping_path.is_file():
        mapped = _parse_label_mapping(mapping_path)
        if class_names is None:
            class_names, names_from = mapped, mapping_path
        elif mapped != class_names:
            j = next((k for k in range(min(len(mapped), len(class_names))) if mapped[k] != class_names[k]),
                     min(len(mapped), len(class_names)))
            raise ManifestError(f"{mapping_path} disagrees with the class_names of {names_from} at index {j}")
    if class_names is None:
        raise ManifestError(f"no class names: neither the files in {folder} nor {mapping_path} give them")
    meta_index = _all_files_index(root / "all_files.json") if (root / "all_files.json").is_file() else {}

    rows, labels = [], []
    n = len(class_names)
    for split, (path, records) in per_split.items():
        for i, rec in enumerate(records):
            ap = posix(rec["audio_path"])
            vec = label_vector(rec, "label", n, path, i)
            if check_original_labels and isinstance(rec.get("original_labels"), list):
                names = rec["original_labels"]
                onehot = labels_from_names([names], class_names, where=str(path),
                                           clip_ids=[strip_ext(ap)])[0]
                if not np.array_equal(onehot > 0.5, vec > 0.5):
                    raise ManifestError(
                        f"{path}: clip {strip_ext(ap)!r} has original_labels {names} but label positives "
                        f"{[class_names[j] for j in np.flatnonzero(vec > 0.5)]}")
            source, origin = freegen_source(ap, _lookup_meta(meta_index, ap))
            rows.append({"clip_id": strip_ext(ap), "path": ap, "split": split, "source": source,
                         "origin": origin})
            labels.append(vec)
    clips = pd.DataFrame(rows, columns=["clip_id", "path", "split", "source", "origin"])
    return Manifest(clips=clips, labels=np.stack(labels), class_names=class_names, root=root,
                    name="freegen50")
