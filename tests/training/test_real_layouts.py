"""Training runs on real-dataset layouts (tiny folders built by the loader tests' fixtures)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tests.data.test_layouts import esc_root, fg_root  # noqa: F401  (fixtures)

from csu_lib.config import CorruptionConfig, DataConfig, LossConfig, RunConfig, TrainConfig
from csu_lib.core.errors import ConfigError
from csu_lib.records import load_run
from csu_lib.pipeline import prepare_data
from csu_lib.training import train_run


def _config(data: DataConfig, corruption: CorruptionConfig | None = None) -> RunConfig:
    return RunConfig(data=data, corruption=corruption or CorruptionConfig(), loss=LossConfig(name="csu"),
                     train=TrainConfig(epochs=1, batch_size=4, device="cpu", early_stopping_patience=None))


@pytest.mark.parametrize("kind", ["san", "man", "sln", "missing"])
def test_freegen50_published_noise_is_the_run_corruption(fg_root, tmp_path, kind):  # noqa: F811
    root, truth = fg_root
    cfg = _config(DataConfig(dataset="freegen50", root=str(root), clip_seconds=0.2),
                  CorruptionConfig(kind=kind, ratio=0.2, published=True))
    rec = train_run(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    corruption = rec.corruption()
    folder = {"san": "additive_error_0.2", "man": "flip_error_0.20", "sln": "soft_error_0.20",
              "missing": "remove_error_0.20"}[kind]
    published = json.loads((root / "labels" / folder / "train.json").read_text())["data"]
    np.testing.assert_array_equal(corruption.labels, np.array([r["label"] for r in published], dtype=np.float32))
    assert corruption.n_corrupted > 0
    assert rec.final_metrics["test"]["mAP"] > 0


def test_published_noise_needs_freegen50(esc_root, tmp_path):  # noqa: F811
    cfg = _config(DataConfig(dataset="esc50", root=str(esc_root), clip_seconds=0.2),
                  CorruptionConfig(kind="man", ratio=0.2, published=True))
    with pytest.raises(ConfigError, match="freegen50 dataset only"):
        prepare_data(cfg, cache_dir=tmp_path / "cache", progress=False)


def test_esc50_injected_corruption_leaves_val_and_test_clean(esc_root, tmp_path):  # noqa: F811
    cfg = _config(DataConfig(dataset="esc50", root=str(esc_root), clip_seconds=0.2,
                             loader_options={"val_fold": 4, "test_fold": 5}),
                  CorruptionConfig(kind="man", ratio=0.5, seed=1))
    data = prepare_data(cfg, cache_dir=tmp_path / "cache", progress=False)
    before = data.manifest.labels.copy()
    rec = train_run(cfg, tmp_path / "run", data=data, progress=False)
    np.testing.assert_array_equal(data.manifest.labels, before)  # the manifest (val/test) is untouched
    corruption = rec.corruption()
    assert corruption.n_corrupted == round(0.5 * len(data.train_idx))
    np.testing.assert_array_equal(corruption.clean_labels, before[data.train_idx])


def test_bad_loader_option_is_named(esc_root, tmp_path):  # noqa: F811
    cfg = _config(DataConfig(dataset="esc50", root=str(esc_root), clip_seconds=0.2,
                             loader_options={"validation_fold": 2}))
    with pytest.raises(ConfigError, match="validation_fold"):
        prepare_data(cfg, cache_dir=tmp_path / "cache", progress=False)


def test_skip_unreadable_drops_and_reports_the_clip(esc_root, tmp_path):  # noqa: F811
    victim = sorted((esc_root / "audio").glob("1-*.wav"))[0]
    victim.write_bytes(b"this is not audio")
    cfg = _config(DataConfig(dataset="esc50", root=str(esc_root), clip_seconds=0.2, skip_unreadable=True))
    rec = train_run(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    skipped = json.loads((rec.path / "skipped_clips.json").read_text())
    assert [s["clip_id"] for s in skipped] == [victim.stem]
    assert skipped[0]["path"].endswith(victim.name) and "corrupt" in skipped[0]["problem"]
    assert load_run(rec.path).complete
    # without the flag the same folder stops with an error naming the file
    strict = _config(DataConfig(dataset="esc50", root=str(esc_root), clip_seconds=0.2))
    with pytest.raises(Exception) as info:
        prepare_data(strict, cache_dir=tmp_path / "cache2", progress=False)
    assert victim.name in str(info.value)
