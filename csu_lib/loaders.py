"""Dataset loaders: one function per on-disk layout, each returning a :class:`Manifest`.

Nothing is downloaded: every loader reads a folder the user points at. All manifests have
paths relative to ``root`` (absolute only when a file lies outside it), splits in
``train``/``val``/``test``, unique clip ids and a ``source`` column (``recorded``,
``generated`` or ``unknown``, the values the embedded benchmark uses) plus, where known, a
finer ``origin`` column (``esc50``, ``freesound``, ``audioldm``, ``youtube``, ``unknown``).
Bad input raises :class:`~csu_lib.errors.ManifestError` (tables, label files) or
:class:`~csu_lib.errors.AudioError` (audio files) naming the file, clip, label or split at
fault; bad parameters raise :class:`~csu_lib.errors.ConfigError`.

Layouts
-------
- :func:`load_esc50`: ``meta/esc50.csv`` + ``audio/``. Class order = ``target``; ``test_fold``
  -> test, ``val_fold`` -> val, other folds -> train.
- :func:`load_freegen50`: ESC-FreeGen50 (methods.md section 2), ``labels/original/{train,val,
  test}.json``; :func:`load_freegen50_noisy`: one published noisy training file as a
  ready-made :class:`~csu_lib.corruption.CorruptionResult`.
- :func:`load_fsd50k`: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv`` + the two audio folders.
- :func:`load_audioset`: AudioSet segment CSVs + ``class_labels_indices.csv`` + a local folder of
  clips (accepted file names: :func:`audioset_file_candidates`); :func:`load_audioset_hdf5` and
  :func:`read_hdf5_waveform` for the PANNs-style HDF5 packing (needs ``h5py``).
- :func:`load_csv_manifest`: a generic ``filename,labels[,split]`` table.

Checks and transforms: :func:`validate_audio` (reads every file once: missing, corrupt,
truncated, empty, silent, wrong rate/channels) and :func:`chunk_manifest` (non-overlapping
chunks of long clips, for pseudo-strong-label training; reads headers only).

ESC-FreeGen50 ``source`` rule (see :func:`freegen_source`): a clip is ``generated`` when its
``audio_path`` -- or the ``file_path`` of its ``all_files.json`` entry -- contains
``audioldm`` (any case) or has a directory component ``generated``/``gen``/``synthetic``, or
when that entry has a ``source``/``origin``/``type``/``generator``/``dataset`` field mentioning
``audioldm``, ``generat`` or ``synth``. It is ``recorded`` when such a field or path component
says ``esc50``/``esc-50``/``freesound``/``fsd``, or when the file name follows the ESC-50 scheme
``<fold>-<id>-<take>-<target>``. Otherwise ``unknown``: the published ``audios/<class>/<hash>.wav``
paths alone do not say where a clip came from.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import struct
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import soundfile as sf

from .config import CorruptionConfig
from .corruption import KIND_CODES, CorruptionResult, rates_from_labels
from .errors import AudioError, ConfigError, ManifestError
from .manifest import SPLITS, Manifest, labels_from_names

__all__ = [
    "load_esc50", "load_freegen50", "load_freegen50_noisy", "freegen_source", "load_fsd50k",
    "load_audioset", "audioset_file_candidates", "load_audioset_hdf5", "read_hdf5_waveform",
    "load_csv_manifest", "validate_audio", "chunk_manifest", "FREEGEN_NOISY_KINDS",
]

# ---------------------------------------------------------------------------------------------
# Small helpers


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path}")


def _read_json_file(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc})") from exc


def _read_table(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot parse {path} ({exc})") from exc


def _require_columns(table: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ManifestError(f"{path} lacks column(s) {missing}; found {list(table.columns)}")


def _posix(p: str) -> str:
    """A path string from a label file, with forward slashes and no leading './'."""
    s = str(p).replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s


def _strip_ext(p: str) -> str:
    pp = PurePosixPath(p)
    return str(pp.with_suffix("")) if pp.suffix else str(pp)


def _relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix) when inside it, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _split_names(text: str, delimiter: str) -> list[str]:
    return [t.strip() for t in str(text).split(delimiter) if t.strip()]


# ---------------------------------------------------------------------------------------------
# ESC-50


def load_esc50(root: str | os.PathLike, *, val_fold: Optional[int] = 4, test_fold: int = 5,
               audio_dir: str = "audio") -> Manifest:
    """ESC-50 (``meta/esc50.csv`` + ``audio/``): fold ``test_fold`` -> test, ``val_fold`` -> val
    (``None``: no validation split), every other fold -> train. Classes ordered by ``target``.

    Extra columns: ``fold``, ``esc10`` (bool, when present), ``source``/``origin``.
    """
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    _require_file(meta, "ESC-50 metadata file")
    table = _read_table(meta)
    _require_columns(table, ("filename", "fold", "target", "category"), meta)
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
    clip_ids = [_strip_ext(f) for f in table["filename"]]
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


# ---------------------------------------------------------------------------------------------
# ESC-FreeGen50

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
    p = _posix(path)
    low = p.lower()
    if "audioldm" in low:
        return "audioldm"
    parts = [c for c in low.split("/") if c]
    if any(c in _GENERATED_COMPONENTS for c in parts[:-1]):
        return "generated"
    for c in parts[:-1]:
        if c in _RECORDED_ORIGINS:
            return _RECORDED_ORIGINS[c]
    if parts and _ESC50_NAME.match(_strip_ext(parts[-1])):
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


def _freegen_records(path: Path) -> tuple[list[dict], Optional[list[str]]]:
    data = _read_json_file(path)
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


def _vector(rec: dict, key: str, n: int, path: Path, i: int) -> np.ndarray:
    value = rec.get(key)
    who = f"{path}: record {i} (clip {_posix(rec['audio_path'])!r})"
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


def _names_vector(value: Any, class_names: list[str], key: str, path: Path, rec: dict, i: int) -> np.ndarray:
    """A clean target from ``original_label(s)``: one name, a list of names or a numeric vector."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  for v in value):
        return _vector({**rec, key: value}, key, len(class_names), path, i)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{path}: record {i} (clip {_posix(rec['audio_path'])!r}): {key!r} must be a "
                            f"class name, a list of names or a label vector")
    return labels_from_names([value], class_names, where=f"{path} ({key})",
                             clip_ids=[_strip_ext(_posix(rec["audio_path"]))])[0]


def _parse_label_mapping(path: Path) -> list[str]:
    """Class names in index order from ``label_mapping.json`` ({idx: name}, {name: idx} or a list)."""
    m = _read_json_file(path)
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
    data = _read_json_file(path)
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
            fp = _posix(fp)
            keys += [fp, PurePosixPath(fp).name, _strip_ext(PurePosixPath(fp).name)]
        for k in ("file_id", "id"):
            if entry.get(k) is not None:
                keys.append(str(entry[k]))
        for k in keys:
            index.setdefault(k, entry)
    return index


def _lookup_meta(index: dict[str, dict], audio_path: str) -> Optional[dict]:
    name = PurePosixPath(audio_path).name
    for key in (audio_path, name, _strip_ext(name)):
        if key in index:
            return index[key]
    return None


def load_freegen50(root: str | os.PathLike, *, check_original_labels: bool = True) -> Manifest:
    """ESC-FreeGen50: ``labels/original/{train,val,test}.json`` (methods.md section 2).

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
        _require_file(path, f"ESC-FreeGen50 {split} label file")
        records, names = _freegen_records(path)
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
            ap = _posix(rec["audio_path"])
            vec = _vector(rec, "label", n, path, i)
            if check_original_labels and isinstance(rec.get("original_labels"), list):
                names = rec["original_labels"]
                onehot = labels_from_names([names], class_names, where=str(path),
                                           clip_ids=[_strip_ext(ap)])[0]
                if not np.array_equal(onehot > 0.5, vec > 0.5):
                    raise ManifestError(
                        f"{path}: clip {_strip_ext(ap)!r} has original_labels {names} but label positives "
                        f"{[class_names[j] for j in np.flatnonzero(vec > 0.5)]}")
            source, origin = freegen_source(ap, _lookup_meta(meta_index, ap))
            rows.append({"clip_id": _strip_ext(ap), "path": ap, "split": split, "source": source,
                         "origin": origin})
            labels.append(vec)
    clips = pd.DataFrame(rows, columns=["clip_id", "path", "split", "source", "origin"])
    return Manifest(clips=clips, labels=np.stack(labels), class_names=class_names, root=root,
                    name="freegen50")


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
    records, names = _freegen_records(path)
    if names is not None and list(names) != class_names:
        raise ManifestError(f"{path}: class_names differ from the clean manifest's")
    if len(records) != len(train):
        raise ManifestError(f"{path} has {len(records)} records but the clean train split has {len(train)} clips")
    paths = train.clips["path"].tolist()
    for i, rec in enumerate(records):
        if _posix(rec["audio_path"]) != paths[i]:
            raise ManifestError(f"{path}: record {i} is {_posix(rec['audio_path'])!r} but the clean train "
                                f"manifest has {paths[i]!r} there (records must follow the clean order)")

    N = len(records)
    labels = np.zeros((N, n), dtype=np.float32)
    clean = np.zeros((N, n), dtype=np.float32)
    changed = np.zeros(N, dtype=bool)
    source = np.full(N, -1, dtype=np.int64)
    target = np.full(N, -1, dtype=np.int64)
    for i, rec in enumerate(records):
        labels[i] = _vector(rec, "label", n, path, i)
        if "true_label" in rec:
            clean[i] = _vector(rec, "true_label", n, path, i)
        elif "original_label" in rec:
            clean[i] = _names_vector(rec["original_label"], class_names, "original_label", path, rec, i)
        elif "original_labels" in rec:
            clean[i] = _names_vector(rec["original_labels"], class_names, "original_labels", path, rec, i)
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


# ---------------------------------------------------------------------------------------------
# FSD50K


def load_fsd50k(root: str | os.PathLike) -> Manifest:
    """FSD50K: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``; dev ``split`` train/val, eval -> test.

    Audio in ``FSD50K.dev_audio/<fname>.wav`` and ``FSD50K.eval_audio/<fname>.wav``; labels are
    comma-separated class names; class order = ``vocabulary.csv`` index. Clip id = ``fname``.
    """
    root = Path(root)
    gt = root / "FSD50K.ground_truth"
    vocab_path, dev_path, eval_path = gt / "vocabulary.csv", gt / "dev.csv", gt / "eval.csv"
    for p in (vocab_path, dev_path, eval_path):
        _require_file(p, "FSD50K ground-truth file")
    vocab = _read_table(vocab_path, header=None)
    if vocab.shape[1] < 2:
        raise ManifestError(f"{vocab_path}: expected rows 'index,name,mid'")
    vocab = vocab.iloc[:, :3]
    vocab.columns = ["index", "name", "mid"][: vocab.shape[1]]
    if not vocab["index"].str.strip().str.fullmatch(r"\d+").all():
        raise ManifestError(f"{vocab_path}: the first column must be the integer class index (no header)")
    vocab = vocab.assign(index=vocab["index"].astype(int)).sort_values("index")
    class_names = vocab["name"].str.strip().tolist()
    dev = _read_table(dev_path)
    _require_columns(dev, ("fname", "labels", "split"), dev_path)
    bad = dev[~dev["split"].isin(("train", "val"))]
    if len(bad):
        raise ManifestError(f"{dev_path}: clip {bad.iloc[0]['fname']!r} has split {bad.iloc[0]['split']!r}; "
                            f"expected 'train' or 'val'")
    ev = _read_table(eval_path)
    _require_columns(ev, ("fname", "labels"), eval_path)
    parts = []
    for table, folder, split, where in ((dev, "FSD50K.dev_audio", dev["split"].to_numpy(), dev_path),
                                        (ev, "FSD50K.eval_audio", "test", eval_path)):
        ids = table["fname"].str.strip().tolist()
        y = labels_from_names([_split_names(t, ",") for t in table["labels"]], class_names,
                              where=str(where), clip_ids=ids)
        clips = pd.DataFrame({"clip_id": ids, "path": [f"{folder}/{f}.wav" for f in ids], "split": split,
                              "source": "recorded", "origin": "freesound"})
        parts.append((clips, y))
    clips = pd.concat([p[0] for p in parts], ignore_index=True)
    labels = np.concatenate([p[1] for p in parts])
    return Manifest(clips=clips, labels=labels, class_names=class_names, root=root, name="fsd50k",
                    extra={"mids": vocab["mid"].str.strip().tolist()} if "mid" in vocab else {})


# ---------------------------------------------------------------------------------------------
# AudioSet

#: Audio file extensions looked for, in order.
AUDIOSET_EXTENSIONS = (".wav", ".flac")
_AUDIOSET_DEFAULT_CSVS = {"balanced_train_segments.csv": "train", "eval_segments.csv": "test"}


def _number_spellings(text: str) -> list[Optional[str]]:
    """One spelling of a time per format (None where a format does not apply), formats aligned
    so that start and end spellings can be paired: as written, whole integer, 3/2/1 decimals,
    shortest (``%g``), milliseconds."""
    raw = text.strip()
    try:
        x = float(raw)
    except ValueError:
        return [raw]
    return [raw, str(int(x)) if x == int(x) else None, f"{x:.3f}", f"{x:.2f}", f"{x:.1f}", f"{x:g}",
            str(int(round(x * 1000)))]


def audioset_file_candidates(ytid: str, start: str, end: str) -> list[str]:
    """File names accepted for one AudioSet segment, in the order they are tried.

    Stems ``<YTID>``, ``Y<YTID>``, ``<YTID>_<start>``, ``Y<YTID>_<start>``,
    ``<YTID>_<start>_<end>`` and ``Y<YTID>_<start>_<end>``, where times are written as in the
    CSV (``30.000``), as an integer when whole (``30``), with 3, 2 or 1 decimals, in ``%g``
    form (``5.5``) or in milliseconds (``30000``) -- start and end in the same form; each with
    an extension of :data:`AUDIOSET_EXTENSIONS`.
    """
    starts, ends = _number_spellings(start), _number_spellings(end)
    stems: list[str] = [ytid, f"Y{ytid}"]
    for p in ("", "Y"):
        stems += [f"{p}{ytid}_{s}" for s in starts if s is not None]
    for p in ("", "Y"):
        stems += [f"{p}{ytid}_{s}_{e}" for s, e in zip(starts, ends) if s is not None and e is not None]
    seen: list[str] = []
    for stem in stems:
        for ext in AUDIOSET_EXTENSIONS:
            name = stem + ext
            if name not in seen:
                seen.append(name)
    return seen


def _read_segments(path: Path) -> list[tuple[str, str, str, list[str], int]]:
    """(ytid, start, end, mids, line number) per segment line; '#' lines are comments."""
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = next(csv.reader([line], skipinitialspace=True))
            if fields and fields[0].strip() == "YTID":
                continue
            if len(fields) < 4:
                raise ManifestError(f"{path}, line {lineno}: expected 'YTID, start_seconds, end_seconds, "
                                    f"\"positive_labels\"', got {line.strip()!r}")
            ytid, start, end = (f.strip() for f in fields[:3])
            try:
                float(start), float(end)
            except ValueError:
                raise ManifestError(f"{path}, line {lineno} (clip {ytid!r}): start/end {start!r}, {end!r} "
                                    f"are not numbers") from None
            mids = _split_names(",".join(fields[3:]), ",")
            rows.append((ytid, start, end, mids, lineno))
    return rows


def _normalise_csv_files(csv_files: Optional[Mapping[str, str]]) -> dict[str, str]:
    """{csv file name: split}; a {split: csv file name} mapping is accepted too."""
    if csv_files is None:
        return dict(_AUDIOSET_DEFAULT_CSVS)
    if not csv_files:
        raise ConfigError("csv_files must name at least one segment CSV")
    if all(k in SPLITS for k in csv_files) and not all(v in SPLITS for v in csv_files.values()):
        csv_files = {v: k for k, v in csv_files.items()}
    bad = {f: s for f, s in csv_files.items() if s not in SPLITS}
    if bad:
        raise ConfigError(f"csv_files maps to unknown split(s) {bad}; use {SPLITS}")
    return dict(csv_files)


def load_audioset(root: str | os.PathLike, *, csv_files: Optional[Mapping[str, str]] = None,
                  audio_dir: str = "audio", skip_missing: bool = False,
                  clips_are_cut: bool = True) -> Manifest:
    """AudioSet from segment CSVs and a local folder of clips.

    ``csv_files``: ``{csv file name: split}`` (``{split: file}`` accepted), default
    ``{"balanced_train_segments.csv": "train", "eval_segments.csv": "test"}``; add
    ``"unbalanced_train_segments.csv": "train"`` to use it. AudioSet has no validation split:
    map a CSV to ``val`` to have one. Classes from ``class_labels_indices.csv`` (index order,
    display names; MIDs in ``manifest.extra["mids"]``). Clip id = YouTube id.

    A segment's file is looked for in ``<audio_dir>/<csv stem>/``, ``<audio_dir>/<split>/``
    and ``<audio_dir>/`` under the names of :func:`audioset_file_candidates`. Missing clips
    are an error listing them; with ``skip_missing`` they are dropped and listed in
    ``manifest.extra["skipped"]``. ``clips_are_cut`` (default): the files are the 10 s
    segments, so ``offset`` is 0; otherwise they are whole videos and ``offset`` =
    ``start_seconds``. ``duration`` = end - start.
    """
    root = Path(root)
    files = _normalise_csv_files(csv_files)
    idx_path = root / "class_labels_indices.csv"
    _require_file(idx_path, "AudioSet class index file")
    idx = _read_table(idx_path, skipinitialspace=True)
    _require_columns(idx, ("index", "mid", "display_name"), idx_path)
    idx = idx.assign(index=idx["index"].astype(int)).sort_values("index")
    mids = idx["mid"].str.strip().tolist()
    class_names = idx["display_name"].str.strip().tolist()
    base = Path(audio_dir) if Path(audio_dir).is_absolute() else root / audio_dir
    listings: dict[Path, set[str]] = {}

    def listing(d: Path) -> set[str]:
        if d not in listings:
            listings[d] = ({e.name for e in os.scandir(d) if e.is_file()} if d.is_dir() else set())
        return listings[d]

    rows, names_per_clip, missing = [], [], []
    for fname, split in files.items():
        csv_path = root / fname
        _require_file(csv_path, f"AudioSet segment file for split {split!r}")
        dirs = [base / Path(fname).stem, base / split, base]
        for ytid, start, end, clip_mids, lineno in _read_segments(csv_path):
            found = None
            for d in dirs:
                names = listing(d)
                found = next((d / c for c in audioset_file_candidates(ytid, start, end) if c in names), None)
                if found is not None:
                    break
            if found is None:
                missing.append({"clip_id": ytid, "split": split, "csv": fname, "line": lineno,
                                "problem": "missing audio file"})
                continue
            s, e = float(start), float(end)
            rows.append({"clip_id": ytid, "path": _relative_to_root(found, root), "split": split,
                         "source": "recorded", "origin": "youtube", "offset": 0.0 if clips_are_cut else s,
                         "duration": e - s, "start_seconds": s, "end_seconds": e, "segments_file": fname})
            names_per_clip.append(clip_mids)
    if missing and not skip_missing:
        head = ", ".join(f"{m['clip_id']!r} ({m['csv']} line {m['line']})" for m in missing[:10])
        raise ManifestError(
            f"{len(missing)} AudioSet clip(s) have no audio file under {base} (looked in <csv stem>/, <split>/ "
            f"and the folder itself, as <YTID>.wav, Y<YTID>.wav, <YTID>_<start>.wav, ...): {head}"
            + (" ..." if len(missing) > 10 else "") + "; pass skip_missing=True to drop them")
    clip_ids = [r["clip_id"] for r in rows]
    y = labels_from_names(names_per_clip, mids, where="AudioSet segments (MID)", clip_ids=clip_ids)
    cols = ["clip_id", "path", "split", "source", "origin", "offset", "duration", "start_seconds",
            "end_seconds", "segments_file"]
    clips = pd.DataFrame(rows, columns=cols)
    return Manifest(clips=clips, labels=y, class_names=class_names, root=root, name="audioset",
                    extra={"mids": mids, "skipped": missing, "clips_are_cut": clips_are_cut})


def _import_h5py():
    try:
        import h5py  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:
        raise ImportError("reading PANNs-style AudioSet HDF5 files needs h5py: pip install h5py") from exc
    return h5py


def load_audioset_hdf5(path: str | os.PathLike, *, split: str = "train",
                       class_labels_csv: Optional[str | os.PathLike] = None,
                       class_names: Optional[Sequence[str]] = None, sample_rate: int = 32000) -> Manifest:
    """Names and targets of a PANNs-style HDF5 pack (``audio_name``, ``waveform`` int16 (N, T),
    ``target`` (N, C) bool) as a Manifest of one ``split``.

    The waveforms stay in the file: the ``path`` column is ``"<file name>#<row>"`` (relative to
    the file's folder, the manifest root), which :func:`csu_lib.audio.load_audio`,
    :meth:`Manifest.check_files` and :func:`validate_audio` do not read; read a clip with
    :func:`read_hdf5_waveform`. Class names from ``class_labels_csv`` (AudioSet's
    ``class_labels_indices.csv``), ``class_names``, or ``class_000``... ``duration`` assumes
    ``sample_rate`` (PANNs packs 32 kHz).
    """
    h5py = _import_h5py()
    path = Path(path)
    _require_file(path, "HDF5 file")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("audio_name", "waveform", "target") if k not in f]
        if missing:
            raise ManifestError(f"{path} lacks dataset(s) {missing}")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["audio_name"][()]]
        target = np.asarray(f["target"][()], dtype=np.float32)
        n_samples = int(f["waveform"].shape[1])
        if f["waveform"].shape[0] != len(names) or target.shape[0] != len(names):
            raise ManifestError(f"{path}: audio_name, waveform and target have different numbers of rows")
    if class_labels_csv is not None:
        table = _read_table(Path(class_labels_csv), skipinitialspace=True)
        _require_columns(table, ("index", "display_name"), Path(class_labels_csv))
        class_names = table.assign(index=table["index"].astype(int)).sort_values("index")["display_name"].tolist()
    elif class_names is None:
        class_names = [f"class_{j:03d}" for j in range(target.shape[1])]
    if len(class_names) != target.shape[1]:
        raise ManifestError(f"{path}: target has {target.shape[1]} classes but {len(class_names)} class names "
                            f"were given")
    clips = pd.DataFrame({"clip_id": [_strip_ext(n) for n in names],
                          "path": [f"{path.name}#{i}" for i in range(len(names))], "split": split,
                          "source": "recorded", "origin": "youtube", "offset": 0.0,
                          "duration": n_samples / sample_rate, "hdf5_row": np.arange(len(names))})
    return Manifest(clips=clips, labels=target, class_names=list(class_names), root=path.parent,
                    name="audioset_hdf5", extra={"hdf5": str(path), "sample_rate": sample_rate})


def read_hdf5_waveform(path: str | os.PathLike, row: Optional[int] = None) -> np.ndarray:
    """Row ``row`` of a PANNs HDF5 ``waveform`` as float32 in [-1, 1); ``path`` may be ``"file.h5#row"``."""
    h5py = _import_h5py()
    text = str(path)
    if row is None:
        if "#" not in text:
            raise ConfigError(f"read_hdf5_waveform: give a row or a path '<file>#<row>', got {text!r}")
        text, _, r = text.rpartition("#")
        row = int(r)
    p = Path(text)
    _require_file(p, "HDF5 file")
    with h5py.File(p, "r") as f:
        n = f["waveform"].shape[0]
        if not 0 <= row < n:
            raise ManifestError(f"{p}: row {row} out of range (the file has {n} rows)")
        data = f["waveform"][row]
    if np.issubdtype(data.dtype, np.integer):
        return (data.astype(np.float32) / 32768.0).astype(np.float32)
    return np.asarray(data, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Generic CSV


def load_csv_manifest(csv_path: str | os.PathLike, *, root: Optional[str | os.PathLike] = None,
                      delimiter: str = ";", class_names: Optional[Sequence[str]] = None,
                      default_split: Optional[str] = None, name: Optional[str] = None) -> Manifest:
    """A ``filename,labels[,split]`` CSV (comma-separated columns; labels joined by ``delimiter``).

    ``filename`` is relative to ``root`` (default: the CSV's folder); clip id = ``clip_id``
    column if present, else ``filename`` without its extension. Vocabulary = sorted union of
    the labels unless ``class_names`` is given (then an unknown label is an error naming the
    clip and label). Without a ``split`` column, ``default_split`` is required; blank split
    cells take ``default_split`` too. An optional ``source`` column is kept.
    """
    csv_path = Path(csv_path)
    _require_file(csv_path, "manifest CSV")
    root = Path(root) if root is not None else csv_path.parent
    table = _read_table(csv_path)
    table.columns = [c.strip() for c in table.columns]
    _require_columns(table, ("filename", "labels"), csv_path)
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
    filenames = [_posix(f.strip()) for f in table["filename"]]
    empty = [i for i, f in enumerate(filenames) if not f]
    if empty:
        raise ManifestError(f"{csv_path}: row {empty[0] + 2} has an empty filename")
    clip_ids = (table["clip_id"].str.strip().tolist() if "clip_id" in table.columns
                else [_strip_ext(f) for f in filenames])
    names = [_split_names(t, delimiter) for t in table["labels"]]
    if class_names is None:
        class_names = sorted({n for ns in names for n in ns})
    labels = labels_from_names(names, list(class_names), where=str(csv_path), clip_ids=clip_ids)
    clips = pd.DataFrame({"clip_id": clip_ids, "path": filenames, "split": split.to_numpy()})
    clips["source"] = table["source"].str.strip().to_numpy() if "source" in table.columns else "unknown"
    return Manifest(clips=clips, labels=labels, class_names=list(class_names), root=root,
                    name=name or csv_path.stem)


# ---------------------------------------------------------------------------------------------
# Audio validation

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


def _inspect(path: Path, sample_rate: Optional[int], channels: Optional[int]) -> tuple[list[tuple[str, str]], float]:
    """[(category, message)] problems of one file, and its duration in seconds (0 if unknown)."""
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
                   skip_unreadable: bool = False) -> dict:
    """Read every audio file of ``manifest`` once and check it.

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
            results[path] = _inspect(path, sample_rate, channels)
        problems, dur = results[path]
        clip = str(manifest.clips.at[i, "clip_id"])
        seconds[clip] = dur
        if not problems:
            keep.append(i)
            continue
        message = "; ".join(m for _, m in problems)
        if skip_unreadable and all(cat in UNREADABLE for cat, _ in problems):
            skipped.append({"clip_id": clip, "path": str(path), "problem": message})
        else:
            fatal.append(f"clip {clip!r} ({path}): {message}")
    if fatal:
        raise AudioError(f"manifest {manifest.name!r}: {len(fatal)} clip(s) with unusable audio: "
                         + " | ".join(fatal[:10]) + (" | ..." if len(fatal) > 10 else ""))
    kept = manifest if not skipped else manifest.subset(keep)
    if skipped:
        kept.extra = {**kept.extra, "skipped": list(kept.extra.get("skipped", [])) + skipped}
    return {"manifest": kept, "skipped": skipped, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# Chunking


def chunk_manifest(manifest: Manifest, chunk_seconds: float, *,
                   durations: Optional[Mapping[str, float] | Sequence[float]] = None) -> Manifest:
    """Cut every clip into non-overlapping ``chunk_seconds`` chunks (methods.md section 5).

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
