"""Tests of the embedded benchmark (csu_lib.data.benchmark) and the feature cache (csu_lib.features).

Audio generation is kept tiny: ``benchmark_config("smoke", clips_per_class=4, clip_seconds=0.5)``
with ``n_families=2`` (10 classes, 40 clips of 0.5 s) renders in well under a second. Layout of a
built benchmark: ``<data_dir>/embedded-<hash>/`` with ``audio/<class>/<clip>.wav``, the saved
manifest, ``benchmark.json`` and a ``COMPLETE`` marker.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from csu_lib.config import BenchmarkConfig, FrontendConfig, frontend_preset
from csu_lib.data import benchmark as bm
from csu_lib.data.audio import load_audio
from csu_lib.data.benchmark import benchmark_config, build_benchmark, dataset_dir, plan_clips, similarity_matrix
from csu_lib.data.synth import FAMILIES, class_table
from csu_lib.features import LogMel, build_features, feature_key
from csu_lib.features import build as feature_build

TINY = dict(clips_per_class=4, clip_seconds=0.5, n_families=2)


def _tiny(**kw) -> BenchmarkConfig:
    return benchmark_config("smoke", **{**TINY, **kw})


def _wav_hash(folder: Path) -> str:
    h = hashlib.sha256()
    files = sorted(folder.rglob("*.wav"), key=lambda p: p.relative_to(folder).as_posix())
    assert files
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny_built(tmp_path_factory):
    """The tiny benchmark, built once for this module: (config, data_dir, manifest)."""
    data_dir = tmp_path_factory.mktemp("bench")
    cfg = _tiny()
    manifest = build_benchmark(cfg, data_dir, progress=False)
    return cfg, data_dir, manifest


# ---------------------------------------------------------------------------------------------
# Determinism and the files written


def test_same_config_gives_identical_wav_bytes(tiny_built, tmp_path):
    cfg, data_dir, m1 = tiny_built
    m2 = build_benchmark(cfg, tmp_path / "other", progress=False)
    d1, d2 = dataset_dir(cfg, data_dir), dataset_dir(cfg, tmp_path / "other")
    assert d1 != d2 and d1.name == d2.name
    assert len(list(d1.rglob("*.wav"))) == len(m1) == 40
    assert _wav_hash(d1) == _wav_hash(d2)
    assert m1.clips.equals(m2.clips)
    np.testing.assert_array_equal(m1.labels, m2.labels)


def test_different_seed_gives_different_audio(tiny_built, tmp_path):
    cfg, data_dir, _ = tiny_built
    other = cfg.replace(seed=cfg.seed + 1)
    build_benchmark(other, tmp_path, progress=False)
    assert dataset_dir(other, tmp_path).name != dataset_dir(cfg, data_dir).name
    assert _wav_hash(dataset_dir(other, tmp_path)) != _wav_hash(dataset_dir(cfg, data_dir))


def test_render_is_order_independent(tiny_built):
    """Each clip has its own random stream: rendering one clip alone gives the stored samples."""
    cfg, _, m = tiny_built
    plan = plan_clips(cfg)
    row = list(plan.itertuples(index=False))[13]
    i = int(np.flatnonzero(m.clips["clip_id"] == row.clip_id)[0])
    stored, _ = sf.read(str(m.audio_path(i)), dtype="int16")
    audio = bm._render(cfg, row)
    expected = np.round(np.clip(audio, -1, 1) * 32767)
    assert np.abs(stored.astype(np.int64) - expected).max() <= 1


def test_wavs_are_pcm16_mono_at_rate_and_length(tiny_built):
    cfg, _, m = tiny_built
    n = int(round(cfg.clip_seconds * cfg.sample_rate))
    for i in range(len(m)):
        info = sf.info(str(m.audio_path(i)))
        assert info.format == "WAV" and info.subtype == "PCM_16"
        assert info.channels == 1
        assert info.samplerate == cfg.sample_rate == 16000
        assert info.frames == n == 8000
    # not silent, not clipped, peak normalised into [0.3, 0.9]
    x, _ = sf.read(str(m.audio_path(0)), dtype="float32")
    assert 0.29 <= np.abs(x).max() <= 0.91


def test_other_sample_rate(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25, sample_rate=8000)
    m = build_benchmark(cfg, tmp_path, progress=False)
    info = sf.info(str(m.audio_path(0)))
    assert info.samplerate == 8000 and info.frames == 2000


def test_second_build_reuses_folder(tiny_built, monkeypatch):
    cfg, data_dir, m1 = tiny_built
    folder = dataset_dir(cfg, data_dir)
    assert (folder / "COMPLETE").is_file()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise AssertionError("re-rendered a clip of a complete benchmark")

    monkeypatch.setattr(bm, "_render", boom)
    m2 = build_benchmark(cfg, data_dir, progress=False)
    after = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert after == before
    assert m2.root == folder
    assert m2.clips.equals(m1.clips)
    assert m2.extra["benchmark"] == cfg.to_dict()
    # no temporary folders left next to it
    assert [p.name for p in data_dir.iterdir()] == [folder.name]


def test_leftover_tmp_folder_is_not_taken_as_complete(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25)
    final = dataset_dir(cfg, tmp_path)
    leftover = tmp_path / f".{final.name}.tmp-99999999"
    (leftover / "audio").mkdir(parents=True)
    (leftover / "audio" / "half.wav").write_bytes(b"RIFF")
    (leftover / "COMPLETE").write_text("a stale marker inside a temporary folder\n")
    m = build_benchmark(cfg, tmp_path, progress=False)
    assert (final / "COMPLETE").is_file()
    assert m.root == final and len(m) == 15
    m.check_files()
    for i in range(len(m)):
        assert sf.info(str(m.audio_path(i))).frames == 4000


def test_folder_without_complete_marker_is_not_taken_as_complete(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25)
    final = dataset_dir(cfg, tmp_path)
    final.mkdir(parents=True)  # an (empty) folder of an interrupted build, no COMPLETE marker
    m = build_benchmark(cfg, tmp_path, progress=False)
    assert (final / "COMPLETE").is_file() and len(m) == 15
    m.check_files()


def test_partial_folder_without_marker_is_never_served(tmp_path):
    """A non-empty folder without COMPLETE (copied half-way, marker deleted, ...) must not be
    loaded as if it were complete."""
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25)
    good = build_benchmark(cfg, tmp_path / "good", progress=False)
    final = dataset_dir(cfg, tmp_path)
    final.mkdir(parents=True)
    (final / "audio").mkdir()
    for name in ("manifest.csv", "labels.npy", "classes.json", "benchmark.json"):
        (final / name).write_bytes((good.root / name).read_bytes())  # manifest present, audio not
    try:
        m = build_benchmark(cfg, tmp_path, progress=False)
    except Exception:
        return  # refusing is acceptable; serving the incomplete folder is not
    m.check_files()
    assert (final / "COMPLETE").is_file()


def test_partial_folder_without_marker_is_rebuilt(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25)
    final = dataset_dir(cfg, tmp_path)
    (final / "audio").mkdir(parents=True)
    (final / "audio" / "stale.wav").write_bytes(b"RIFF")
    m = build_benchmark(cfg, tmp_path, progress=False)
    assert (final / "COMPLETE").is_file()
    m.check_files()


# ---------------------------------------------------------------------------------------------
# Manifest structure (no audio needed)


def test_full_class_table_50_classes_10_families():
    cfg = BenchmarkConfig()
    table = class_table(cfg)
    assert len(table) == cfg.n_classes == 50
    assert table["family"].nunique() == 10
    assert table.groupby("family").size().tolist() == [5] * 10
    assert table["class_name"].is_unique
    assert table["family"].tolist()[:5] == [FAMILIES[0][0]] * 5
    assert table["grade"].tolist() == list(range(5)) * 10
    # grading parameter strictly monotone within every family
    for _, grp in table.groupby("family"):
        v = grp.sort_values("grade")["value"].to_numpy()
        assert np.all(np.diff(v) > 0)


def test_similarity_matrix_structure():
    cfg = BenchmarkConfig()
    sim = similarity_matrix(cfg)
    table = class_table(cfg)
    fam = table["family_index"].to_numpy()
    grade = table["grade"].to_numpy()
    assert sim.shape == (50, 50)
    np.testing.assert_array_equal(np.diag(sim), np.ones(50))
    np.testing.assert_array_equal(sim, sim.T)
    same = fam[:, None] == fam[None, :]
    assert np.all(sim[~same] == 0)
    assert np.all(sim[same] > 0)
    assert np.all(sim <= 1)
    # graded: 1 - |k_i - k_j| / 5 within a family
    np.testing.assert_allclose(sim[same], (1 - np.abs(grade[:, None] - grade[None, :]) / 5)[same], rtol=1e-6)
    assert sim[0, 1] > sim[0, 2] > sim[0, 3] > sim[0, 4] > 0


@pytest.mark.parametrize("n,expected", [(10, (8, 1, 1)), (40, (32, 4, 4)), (100, (80, 10, 10)), (4, (2, 1, 1))])
def test_split_counts_per_class(n, expected):
    plan = plan_clips(BenchmarkConfig(clips_per_class=n))
    assert len(plan) == 50 * n
    counts = plan.groupby(["class_index", "split"]).size().unstack()
    for split, k in zip(("train", "val", "test"), expected):
        assert (counts[split] == k).all(), (split, counts[split].unique())
    assert plan["clip_id"].is_unique


def test_split_counts_other_fractions():
    plan = plan_clips(BenchmarkConfig(n_families=2, clips_per_class=20, split_fractions=(0.5, 0.3, 0.2)))
    counts = plan.groupby(["class_index", "split"]).size().unstack()
    assert counts["train"].unique().tolist() == [10]
    assert counts["val"].unique().tolist() == [6]
    assert counts["test"].unique().tolist() == [4]
    # rounded to the nearest clip, not truncated: 10 * (0.6, 0.27, 0.13) -> 6/3/1
    plan = plan_clips(BenchmarkConfig(n_families=1, clips_per_class=10, split_fractions=(0.6, 0.27, 0.13)))
    counts = plan.groupby(["class_index", "split"]).size().unstack()
    assert counts[["train", "val", "test"]].drop_duplicates().values.tolist() == [[6, 3, 1]]


def test_split_assignment_is_shuffled_and_seeded():
    a = plan_clips(BenchmarkConfig(clips_per_class=10))
    b = plan_clips(BenchmarkConfig(clips_per_class=10, seed=1))
    assert a.equals(plan_clips(BenchmarkConfig(clips_per_class=10)))
    assert not a["split"].equals(b["split"])
    # not simply the first 8 clips of every class
    assert (a["split"] != np.where(a["clip_index"] < 8, "train", np.where(a["clip_index"] < 9, "val", "test"))).any()


def test_source_column_mixes_recorded_and_generated_in_every_split_quick():
    plan = plan_clips(BenchmarkConfig(clips_per_class=40))
    assert set(plan["source"]) == {"recorded", "generated"}
    for split in ("train", "val", "test"):
        sources = plan.loc[plan["split"] == split, "source"]
        assert set(sources) == {"recorded", "generated"}, split
        assert abs((sources == "generated").mean() - 0.5) < 0.05
    # per class too
    per = plan.groupby(["class_index", "split"])["source"].nunique()
    assert (per == 2).all()


def test_source_column_mixes_recorded_and_generated_in_every_split_smoke():
    plan = plan_clips(benchmark_config("smoke"))  # 10 clips per class: 8/1/1
    for split in ("train", "val", "test"):
        sources = set(plan.loc[plan["split"] == split, "source"])
        assert sources == {"recorded", "generated"}, (split, sources)


def test_built_manifest_columns_and_labels(tiny_built):
    cfg, _, m = tiny_built
    assert m.name == "embedded" and m.n_classes == 10
    assert {"clip_id", "path", "split", "source", "family"} <= set(m.clips.columns)
    assert set(m.clips["split"]) == {"train", "val", "test"}
    assert set(m.clips["source"]) == {"recorded", "generated"}
    np.testing.assert_array_equal(m.labels.sum(1), np.ones(len(m)))  # single label
    names = class_table(cfg)["class_name"].tolist()
    assert m.class_names == names
    for i in range(len(m)):
        cls = names[int(np.argmax(m.labels[i]))]
        assert m.clips.at[i, "clip_id"].startswith(cls + "-")
        assert m.clips.at[i, "family"] == cls.rsplit("_", 1)[0]
    np.testing.assert_array_equal(m.similarity, similarity_matrix(cfg))
    assert m.class_families == class_table(cfg)["family"].tolist()


def test_multi_label_plan():
    cfg = BenchmarkConfig(multi_label=True, clips_per_class=10, max_events=3)
    plan = plan_clips(cfg)
    lengths = plan["classes"].map(len)
    assert lengths.min() >= 1 and lengths.max() <= 3
    assert set(lengths) == {1, 2, 3}  # every count occurs
    assert (plan["classes"].map(lambda c: c[0]) == plan["class_index"]).all()
    assert plan["classes"].map(lambda c: len(set(c)) == len(c)).all()  # distinct classes
    single = plan_clips(BenchmarkConfig(multi_label=False, clips_per_class=10))
    assert (single["classes"].map(len) == 1).all()
    two = plan_clips(BenchmarkConfig(multi_label=True, clips_per_class=10, max_events=2))
    assert set(two["classes"].map(len)) == {1, 2}


def test_multi_label_built_labels(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25, multi_label=True, max_events=3)
    m = build_benchmark(cfg, tmp_path, progress=False)
    plan = plan_clips(cfg)
    counts = m.labels.sum(1)
    assert counts.min() >= 1 and counts.max() <= 3
    for i, row in enumerate(plan.itertuples(index=False)):
        assert m.clips.at[i, "clip_id"] == row.clip_id
        assert m.labels[i, row.class_index] == 1.0
        np.testing.assert_array_equal(np.flatnonzero(m.labels[i]), sorted(row.classes))


# ---------------------------------------------------------------------------------------------
# Features


@pytest.fixture(scope="module")
def tiny_features(tiny_built, tmp_path_factory):
    cfg, _, m = tiny_built
    cache = tmp_path_factory.mktemp("cache")
    store = build_features(m, frontend_preset("panns16k"), cfg.clip_seconds, cache_dir=cache, progress=False)
    return cache, store


def test_feature_shape_dtype_finite(tiny_built, tiny_features):
    cfg, _, m = tiny_built
    _, store = tiny_features
    n_samples = int(round(cfg.clip_seconds * 16000))
    frames = n_samples // 160 + 1
    assert frames == 51
    assert store.features.shape == (len(m), 64, frames)
    assert store.features.dtype == np.float16
    assert np.isfinite(np.asarray(store.features, dtype=np.float32)).all()
    assert store.clip_ids == m.clips["clip_id"].tolist()
    assert store.frontend == frontend_preset("panns16k")
    b = store.batch(np.array([3, 0]))
    assert b.dtype == torch.float32 and b.shape == (2, 64, frames)
    assert len(store) == len(m)


def test_features_equal_direct_logmel(tiny_built, tiny_features):
    cfg, _, m = tiny_built
    _, store = tiny_features
    fe = frontend_preset("panns16k")
    n_samples = int(round(cfg.clip_seconds * fe.sample_rate))
    rows = [0, 7, len(m) - 1]
    wav = np.stack([load_audio(m.audio_path(i), fe.sample_rate, n_samples) for i in rows])
    with torch.no_grad():
        ref = LogMel(fe)(torch.from_numpy(wav)).numpy()
    got = np.asarray(store.features[rows], dtype=np.float32)
    assert got.shape == ref.shape
    # float16 keeps ~3 significant digits: |dB| up to ~100 -> about 0.06 dB
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=0.02)
    # the features really differ between clips
    assert np.abs(got[0] - got[1]).mean() > 1.0


def test_second_build_reuses_feature_cache(tiny_built, tiny_features, monkeypatch):
    cfg, _, m = tiny_built
    cache, store = tiny_features
    npy = store.features.paths[0]
    mtime = npy.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("feature cache rebuilt")

    monkeypatch.setattr(feature_build, "_build", boom)
    again = build_features(m, frontend_preset("panns16k"), cfg.clip_seconds, cache_dir=cache, progress=False)
    assert again.path == store.path
    assert npy.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(store.features))
    assert store.path.parent == cache / "features"
    # no temporary or partial folder left (a build's lock file stays: removing it would race)
    assert not [p for p in (cache / "features").iterdir() if p.name.startswith(".") and not p.name.endswith(".build-lock")]


def test_other_frontend_gets_other_cache_folder(tiny_built, tiny_features):
    cfg, _, m = tiny_built
    cache, store = tiny_features
    fe2 = frontend_preset("psl16k")
    other = build_features(m, fe2, cfg.clip_seconds, cache_dir=cache, progress=False)
    assert other.path != store.path and other.path.parent == store.path.parent
    assert other.frontend == fe2
    # f_min 0 and top_db 120 change the values
    assert not np.array_equal(np.asarray(other.features), np.asarray(store.features))
    # a single changed field is enough for a new key; so is another clip length
    fe3 = FrontendConfig(n_mels=32)
    assert feature_key(m, fe3, cfg.clip_seconds) != feature_key(m, frontend_preset("panns16k"), cfg.clip_seconds)
    assert feature_key(m, fe2, 0.25) != feature_key(m, fe2, cfg.clip_seconds)
    assert feature_key(m, fe2, cfg.clip_seconds) == other.path.name


def test_replaced_audio_file_changes_feature_key(tmp_path):
    cfg = _tiny(n_families=1, clips_per_class=3, clip_seconds=0.25)
    m = build_benchmark(cfg, tmp_path, progress=False)
    fe = frontend_preset("panns16k")
    k1 = feature_key(m, fe, cfg.clip_seconds)
    p = m.audio_path(2)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert feature_key(m, fe, cfg.clip_seconds) != k1
