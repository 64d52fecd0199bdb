"""Bad input in a real folder (the ``csv`` loader with default settings): each problem stops before
any feature is built or any step is trained, with an error naming the file, the CSV row and the
problem; a blank label cell trains as a clip with no positive and is listed in the run record."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from csu_lib.config import DataConfig, LossConfig, RunConfig, TrainConfig
from csu_lib.core.errors import AudioError, ManifestError
from csu_lib.data import write_wav
from csu_lib.pipeline import prepare_data
from csu_lib.training import train_run

SR = 8000


def _folder(root: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A dataset folder: a clean 0.2 s tone per row's file (made once) and ``meta.csv``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, _, _ in rows:
        path = root / name
        if ".." in name or path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, (0.1 * rng.standard_normal(int(0.2 * SR))).astype(np.float32), SR)
    lines = ["filename,labels,split"] + [f"{f},{lab},{s}" for f, lab, s in rows]
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return root


def _good_rows() -> list[tuple[str, str, str]]:
    rows = []
    for i in range(12):
        split = ("train", "train", "val", "test")[i % 4]
        rows.append((f"audio/c{i}.wav", ("dog", "cat", "bird")[i % 3], split))
    return rows


def _config(root: Path) -> RunConfig:
    return RunConfig(data=DataConfig(dataset="csv", root=str(root / "meta.csv"), clip_seconds=0.2),
                     loss=LossConfig(name="bce"),
                     train=TrainConfig(epochs=1, batch_size=4, device="cpu", early_stopping_patience=None))


def _stops_before_features(root: Path, tmp_path: Path, error, *patterns: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(error) as info:
        prepare_data(_config(root), cache_dir=cache, progress=False)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))
    assert not (cache / "features").exists() or not any((cache / "features").iterdir())


def test_a_truncated_wav_stops_naming_file_row_and_problem(tmp_path):
    rows = _good_rows()
    root = _folder(tmp_path / "ds", rows)
    wav = root / "audio" / "c4.wav"
    wav.write_bytes(_long_wav_head(root, wav))
    _stops_before_features(root, tmp_path, AudioError, "c4.wav", "meta.csv:6", "truncated")


def _long_wav_head(root: Path, wav: Path) -> bytes:
    """A 2 s WAV cut to its first 2,000 bytes (its header still declares 2 s)."""
    full = root / "long.wav"
    write_wav(full, np.full(2 * SR, 0.1, np.float32), SR)
    data = full.read_bytes()[:2000]
    full.unlink()
    return data


def test_a_quoted_label_with_a_comma_stops_naming_the_row(tmp_path):
    rows = _good_rows()
    root = _folder(tmp_path / "ds", rows)
    text = (root / "meta.csv").read_text().replace("audio/c5.wav,bird,", 'audio/c5.wav,"dog,cat",')
    (root / "meta.csv").write_text(text)
    _stops_before_features(root, tmp_path, ManifestError, "row 7", "c5.wav", "'dog,cat'", "delimiter")


def test_commas_may_be_allowed_for_one_class_name(tmp_path):
    root = _folder(tmp_path / "ds", _good_rows())
    text = (root / "meta.csv").read_text().replace("audio/c5.wav,bird,", 'audio/c5.wav,"Child speech, kid",')
    (root / "meta.csv").write_text(text)
    cfg = _config(root)
    cfg = cfg.replace(data=cfg.data.replace(loader_options={**cfg.data.loader_options, "allow_commas": True}))
    data = prepare_data(cfg, cache_dir=tmp_path / "cache", progress=False)
    assert "Child speech, kid" in data.manifest.class_names


def test_a_missing_file_stops_naming_file_and_row(tmp_path):
    root = _folder(tmp_path / "ds", _good_rows())
    (root / "audio" / "c7.wav").unlink()
    _stops_before_features(root, tmp_path, AudioError, "c7.wav", "meta.csv:9", "not found")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "audio/../../outside.wav"])
def test_a_path_leaving_the_root_stops_naming_the_row(tmp_path, name):
    rows = _good_rows()
    rows[3] = (name, "dog", "train")
    root = _folder(tmp_path / "ds", rows)
    _stops_before_features(root, tmp_path, ManifestError, "row 5", repr(name), "outside the dataset root")


def test_a_blank_label_trains_and_is_listed_in_the_run_record(tmp_path):
    rows = _good_rows()
    rows[1] = ("audio/c1.wav", "", "train")
    root = _folder(tmp_path / "ds", rows)
    with pytest.warns(UserWarning, match="blank label"):
        rec = train_run(_config(root), tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    listed = json.loads((tmp_path / "run" / "unlabelled_clips.json").read_text())
    assert listed == [{"clip_id": "audio/c1", "path": "audio/c1.wav", "row": "meta.csv:3"}]
    assert rec.final_metrics["test"]["mAP"] >= 0


def test_skip_unreadable_lists_every_dropped_clip(tmp_path):
    root = _folder(tmp_path / "ds", _good_rows())
    (root / "audio" / "c0.wav").unlink()
    (root / "audio" / "c4.wav").write_bytes(_long_wav_head(root, root / "audio" / "c4.wav"))
    cfg = _config(root)
    cfg = cfg.replace(data=cfg.data.replace(skip_unreadable=True))
    rec = train_run(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    skipped = json.loads((tmp_path / "run" / "skipped_clips.json").read_text())
    assert [(s["clip_id"], s["row"]) for s in skipped] == [("audio/c0", "meta.csv:2"), ("audio/c4", "meta.csv:6")]
    assert "not found" in skipped[0]["problem"] and "truncated" in skipped[1]["problem"]
    assert rec.summary["n_train"] == 4  # 6 training clips, c0 and c4 dropped
