"""AudioSet: segment CSVs + ``class_labels_indices.csv`` + a local folder of clips (accepted file
names: :func:`audioset_file_candidates`); :func:`load_audioset_hdf5` and
:func:`read_hdf5_waveform` read the PANNs-style HDF5 packing (needs ``h5py``).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..core.errors import ConfigError, ManifestError
from .manifest import SPLITS, Manifest, labels_from_names
from .registry import register_folder_loader
from .tables import read_table, relative_to_root, require_columns, require_file, split_names, strip_ext

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
            mids = split_names(",".join(fields[3:]), ",")
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


@register_folder_loader("audioset")
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
    require_file(idx_path, "AudioSet class index file")
    idx = read_table(idx_path, skipinitialspace=True)
    require_columns(idx, ("index", "mid", "display_name"), idx_path)
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
        require_file(csv_path, f"AudioSet segment file for split {split!r}")
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
            rows.append({"clip_id": ytid, "path": relative_to_root(found, root), "split": split,
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
    the file's folder, the manifest root); the feature store reads them from the file
    (:func:`read_hdf5_rows`, resampled from ``sample_rate``); read a clip with
    :func:`read_hdf5_waveform`. Class names from ``class_labels_csv`` (AudioSet's
    ``class_labels_indices.csv``), ``class_names``, or ``class_000``... ``duration`` assumes
    ``sample_rate`` (PANNs packs 32 kHz).
    """
    h5py = _import_h5py()
    path = Path(path)
    require_file(path, "HDF5 file")
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
        table = read_table(Path(class_labels_csv), skipinitialspace=True)
        require_columns(table, ("index", "display_name"), Path(class_labels_csv))
        class_names = table.assign(index=table["index"].astype(int)).sort_values("index")["display_name"].tolist()
    elif class_names is None:
        class_names = [f"class_{j:03d}" for j in range(target.shape[1])]
    if len(class_names) != target.shape[1]:
        raise ManifestError(f"{path}: target has {target.shape[1]} classes but {len(class_names)} class names "
                            f"were given")
    clips = pd.DataFrame({"clip_id": [strip_ext(n) for n in names],
                          "path": [f"{path.name}#{i}" for i in range(len(names))], "split": split,
                          "source": "recorded", "origin": "youtube", "offset": 0.0,
                          "duration": n_samples / sample_rate, "hdf5_row": np.arange(len(names))})
    return Manifest(clips=clips, labels=target, class_names=list(class_names), root=path.parent,
                    name="audioset_hdf5", extra={"hdf5": str(path), "sample_rate": sample_rate})


def read_hdf5_rows(path: str | os.PathLike, rows: Sequence[int]) -> list[np.ndarray]:
    """The waveform rows ``rows`` of a PANNs HDF5 pack as float32 in [-1, 1), the file opened once."""
    h5py = _import_h5py()
    p = Path(path)
    require_file(p, "HDF5 file")
    with h5py.File(p, "r") as f:
        n = f["waveform"].shape[0]
        bad = [r for r in rows if not 0 <= r < n]
        if bad:
            raise ManifestError(f"{p}: row(s) {bad[:5]} out of range (the file has {n} rows)")
        out = [f["waveform"][int(r)] for r in rows]
    return [(d.astype(np.float32) / 32768.0).astype(np.float32) if np.issubdtype(d.dtype, np.integer)
            else np.asarray(d, dtype=np.float32) for d in out]


def read_hdf5_waveform(path: str | os.PathLike, row: Optional[int] = None) -> np.ndarray:
    """Row ``row`` of a PANNs HDF5 ``waveform`` as float32 in [-1, 1); ``path`` may be ``"file.h5#row"``."""
    text = str(path)
    if row is None:
        if "#" not in text:
            raise ConfigError(f"read_hdf5_waveform: give a row or a path '<file>#<row>', got {text!r}")
        text, _, r = text.rpartition("#")
        row = int(r)
    return read_hdf5_rows(text, [row])[0]
