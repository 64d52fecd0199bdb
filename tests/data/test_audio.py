"""Tests of csu_lib.data.audio.load_audio and csu_lib.data.manifest on tiny real WAV files (tmp_path).

Bad input must raise the library's own errors with a message naming the file / clip / split.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from csu_lib.core.errors import AudioError, CsuError, ManifestError
from csu_lib.data.audio import load_audio, write_wav
from csu_lib.data.manifest import Manifest, labels_from_names

SR = 16000


def _tone(n: int, sr: int, freq: float, amp: float = 0.5, phase: float = 0.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr + phase)).astype(np.float32)


def _write(path, data, sr, subtype="FLOAT"):
    sf.write(str(path), data, sr, subtype=subtype, format="WAV")
    return path


# ---------------------------------------------------------------------------------------------
# load_audio: good input


def test_mono_float_read_exact(tmp_path):
    x = _tone(4000, SR, 440.0)
    p = _write(tmp_path / "mono.wav", x, SR)
    y = load_audio(p, SR)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(y, x)


def test_stereo_is_mixed_to_mean_of_channels(tmp_path):
    left = _tone(3000, SR, 300.0, 0.6)
    right = _tone(3000, SR, 1000.0, 0.3, 1.0)
    p = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SR)
    y = load_audio(p, SR)
    assert y.shape == (3000,)
    np.testing.assert_allclose(y, (left + right) / 2, rtol=0, atol=1e-7)
    # not just one channel
    assert np.abs(y - left).max() > 0.1 and np.abs(y - right).max() > 0.1


def test_stereo_pcm16_opposite_channels_cancel(tmp_path):
    x = _tone(2000, SR, 500.0, 0.5)
    p = _write(tmp_path / "anti.wav", np.stack([x, -x], axis=1), SR, subtype="PCM_16")
    y = load_audio(p, SR)
    assert np.abs(y).max() < 1e-4


def test_resample_8k_to_16k_length_and_content(tmp_path):
    sr8 = 8000
    n8 = 4000  # 0.5 s
    x = _tone(n8, sr8, 440.0, 0.5)
    p = _write(tmp_path / "8k.wav", x, sr8)
    y = load_audio(p, SR)
    assert y.shape == (2 * n8,)
    # the resampled signal is the same 440 Hz tone sampled at 16 kHz (away from the edges)
    ref = _tone(2 * n8, SR, 440.0, 0.5)
    mid = slice(400, 2 * n8 - 400)
    np.testing.assert_allclose(y[mid], ref[mid], atol=5e-3)
    # with a target length too
    y2 = load_audio(p, SR, n_samples=6000)
    assert y2.shape == (6000,)
    np.testing.assert_allclose(y2[400:5600], ref[400:5600], atol=5e-3)


def test_resample_down_48k_to_16k(tmp_path):
    x = _tone(4800, 48000, 200.0, 0.4)
    p = _write(tmp_path / "48k.wav", x, 48000)
    y = load_audio(p, SR)
    assert y.shape == (1600,)
    np.testing.assert_allclose(y[200:1400], _tone(1600, SR, 200.0, 0.4)[200:1400], atol=5e-3)


def test_pad_to_n_samples(tmp_path):
    x = _tone(1000, SR, 250.0)
    p = _write(tmp_path / "short.wav", x, SR)
    y = load_audio(p, SR, n_samples=2500)
    assert y.shape == (2500,)
    np.testing.assert_array_equal(y[:1000], x)
    assert not y[1000:].any()


def test_crop_to_n_samples(tmp_path):
    x = _tone(5000, SR, 250.0)
    p = _write(tmp_path / "long.wav", x, SR)
    y = load_audio(p, SR, n_samples=1234)
    np.testing.assert_array_equal(y, x[:1234])


def test_offset_seconds_crop(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32)
    p = _write(tmp_path / "noise.wav", x, SR)
    y = load_audio(p, SR, n_samples=1000, offset_seconds=0.25)
    np.testing.assert_array_equal(y, x[4000:5000])
    # offset near the end: the remainder, zero-padded
    y = load_audio(p, SR, n_samples=1000, offset_seconds=0.45)
    np.testing.assert_array_equal(y[:800], x[7200:])
    assert not y[800:].any()
    # offset without n_samples: everything from the offset
    np.testing.assert_array_equal(load_audio(p, SR, offset_seconds=0.125), x[2000:])


def test_offset_with_resampling(tmp_path):
    sr8 = 8000
    x = _tone(8000, sr8, 300.0, 0.5)  # 1 s
    p = _write(tmp_path / "8k_long.wav", x, sr8)
    y = load_audio(p, SR, n_samples=4000, offset_seconds=0.5)
    assert y.shape == (4000,)
    ref = _tone(16000, SR, 300.0, 0.5)[8000:12000]
    np.testing.assert_allclose(y[300:3700], ref[300:3700], atol=5e-3)


def test_write_wav_round_trip_pcm16(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0, 0.25], dtype=np.float32)
    p = tmp_path / "w.wav"
    write_wav(p, x, SR)
    info = sf.info(str(p))
    assert info.subtype == "PCM_16" and info.channels == 1 and info.samplerate == SR
    y = load_audio(p, SR)
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1 / 32768 + 1e-9)


# ---------------------------------------------------------------------------------------------
# load_audio: bad input


def _audio_error(fn, *needles):
    with pytest.raises(AudioError) as info:
        fn()
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert isinstance(info.value, CsuError)
    return msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope" / "missing.wav"
    _audio_error(lambda: load_audio(p, SR), str(p))
    _audio_error(lambda: load_audio(p, SR, clip_id="clip-007"), str(p), "clip-007")


def test_directory_is_not_a_file(tmp_path):
    d = tmp_path / "dir.wav"
    d.mkdir()
    _audio_error(lambda: load_audio(d, SR, clip_id="c1"), str(d), "c1")


def test_unreadable_random_bytes(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(np.random.default_rng(1).bytes(2048))
    _audio_error(lambda: load_audio(p, SR), str(p))
    _audio_error(lambda: load_audio(p, SR, n_samples=100, clip_id="bad-clip"), str(p), "bad-clip")


def test_truncated_header(tmp_path):
    good = _write(tmp_path / "good.wav", _tone(1000, SR, 100.0), SR, subtype="PCM_16")
    p = tmp_path / "truncated.wav"
    p.write_bytes(good.read_bytes()[:20])
    _audio_error(lambda: load_audio(p, SR, clip_id="t"), str(p), "t")


def test_empty_wav(tmp_path):
    p = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    assert sf.info(str(p)).frames == 0
    msg = _audio_error(lambda: load_audio(p, SR, clip_id="e-1"), str(p), "e-1")
    assert "empty" in msg
    _audio_error(lambda: load_audio(p, SR, n_samples=160), str(p))


def test_offset_past_end_is_empty(tmp_path):
    p = _write(tmp_path / "short.wav", _tone(800, SR, 100.0), SR)
    _audio_error(lambda: load_audio(p, SR, n_samples=100, offset_seconds=1.0, clip_id="late"),
                 str(p), "late")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = _tone(500, SR, 100.0)
    x[123] = bad
    p = _write(tmp_path / "nan.wav", x, SR, subtype="FLOAT")
    assert sf.info(str(p)).subtype == "FLOAT"
    msg = _audio_error(lambda: load_audio(p, SR, clip_id="n-3"), str(p), "n-3")
    assert "NaN" in msg or "finite" in msg


# ---------------------------------------------------------------------------------------------
# Manifest


CLASSES = ["dog", "rain", "siren"]


def _manifest(tmp_path, n=6, *, ids=None, splits=None, labels=None, **kw) -> Manifest:
    ids = ids or [f"c{i:03d}" for i in range(n)]
    splits = splits or (["train", "train", "train", "val", "test", "test"] * n)[:n]
    if labels is None:
        labels = np.zeros((n, len(CLASSES)), dtype=np.float32)
        labels[np.arange(n), np.arange(n) % len(CLASSES)] = 1.0
    clips = pd.DataFrame({"clip_id": ids, "path": [f"audio/{i}.wav" for i in ids], "split": splits})
    return Manifest(clips=clips, labels=labels, class_names=list(CLASSES), root=tmp_path, **kw)


def _manifest_error(fn, *needles):
    with pytest.raises(ManifestError) as info:
        fn()
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def test_duplicated_clip_id(tmp_path):
    ids = ["a1", "b2", "dup-9", "c3", "dup-9", "d4"]
    _manifest_error(lambda: _manifest(tmp_path, ids=ids), "dup-9")


def test_check_files_names_clip_and_path(tmp_path):
    m = _manifest(tmp_path)
    for i in range(len(m)):
        if i != 4:
            p = m.audio_path(i)
            p.parent.mkdir(parents=True, exist_ok=True)
            write_wav(p, np.zeros(10, np.float32), SR)
    missing = tmp_path / "audio" / "c004.wav"
    _manifest_error(m.check_files, "c004", str(missing))
    write_wav(missing, np.zeros(10, np.float32), SR)
    m.check_files()  # all present now


def test_audio_path_relative_and_absolute(tmp_path):
    m = _manifest(tmp_path)
    assert m.audio_path(0) == tmp_path / "audio" / "c000.wav"
    m.clips.at[1, "path"] = str(tmp_path / "elsewhere" / "x.wav")
    assert m.audio_path(1) == tmp_path / "elsewhere" / "x.wav"


def test_empty_split_names_the_split(tmp_path):
    m = _manifest(tmp_path, splits=["train", "train", "val", "val", "train", "val"])
    assert m.split_indices("train").tolist() == [0, 1, 4]
    assert m.split_indices("val").tolist() == [2, 3, 5]
    _manifest_error(lambda: m.split_indices("test"), "'test'", "empty")
    _manifest_error(lambda: m.split_indices("validation"), "validation")


def test_unknown_split_name_in_table(tmp_path):
    _manifest_error(lambda: _manifest(tmp_path, splits=["train", "dev", "val", "test", "train", "test"]),
                    "dev")


@pytest.mark.parametrize("bad", [1.5, -0.2, np.nan])
def test_label_outside_unit_interval(tmp_path, bad):
    labels = np.zeros((6, 3), np.float32)
    labels[2, 1] = bad
    _manifest_error(lambda: _manifest(tmp_path, labels=labels), "[0, 1]")


def test_label_shape_mismatch(tmp_path):
    _manifest_error(lambda: _manifest(tmp_path, labels=np.zeros((6, 4))), "(6, 3)")


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    n = 6
    labels = np.round(rng.uniform(0, 1, (n, 3)), 3).astype(np.float32)  # soft labels
    labels[0] = [1.0, 0.0, 1.0]
    sim = np.array([[1.0, 0.4, 0.0], [0.4, 1.0, 0.2], [0.0, 0.2, 1.0]], dtype=np.float32)
    ids = ["007", "NA", "clip with space", "x;y", "0012", "nan"]  # awkward ids stay strings
    m = _manifest(tmp_path, ids=ids, labels=labels, name="tiny", similarity=sim,
                  class_families=["animal", "weather", "urban"], extra={"note": "hello", "k": [1, 2]})
    m.clips["source"] = ["recorded", "generated"] * 3
    m.clips["offset"] = [0.0, 0.5, 1.25, 0.0, 2.0, 0.0]
    out = tmp_path / "saved"
    m.save(out)
    back = Manifest.load(out, root=tmp_path)
    pd.testing.assert_frame_equal(back.clips, m.clips, check_dtype=False)
    assert back.clips["clip_id"].tolist() == ids
    np.testing.assert_array_equal(back.labels, m.labels)
    assert back.labels.dtype == np.float32
    assert back.class_names == CLASSES
    np.testing.assert_array_equal(back.similarity, sim)
    assert back.class_families == ["animal", "weather", "urban"]
    assert back.name == "tiny" and back.extra == {"note": "hello", "k": [1, 2]}
    assert back.root == tmp_path
    assert back.audio_path(0) == m.audio_path(0)
    # default root: the manifest folder
    assert Manifest.load(out).root == out


def test_save_load_numeric_looking_clip_ids_stay_strings(tmp_path):
    ids = ["007", "0012", "1e3", "42", "3.50", "000"]
    m = _manifest(tmp_path, ids=ids)
    m.save(tmp_path / "s")
    back = Manifest.load(tmp_path / "s", root=tmp_path)
    assert back.clips["clip_id"].tolist() == ids
    assert back.clips["path"].tolist() == m.clips["path"].tolist()


def test_save_load_without_similarity(tmp_path):
    m = _manifest(tmp_path)
    m.save(tmp_path / "s")
    back = Manifest.load(tmp_path / "s")
    assert back.similarity is None and back.class_families is None
    np.testing.assert_array_equal(back.labels, m.labels)


def test_load_incomplete_folder(tmp_path):
    m = _manifest(tmp_path)
    m.save(tmp_path / "s")
    (tmp_path / "s" / "labels.npy").unlink()
    _manifest_error(lambda: Manifest.load(tmp_path / "s"), "labels.npy")


def test_subset(tmp_path):
    m = _manifest(tmp_path)
    sub = m.subset([4, 1])
    assert sub.clips["clip_id"].tolist() == ["c004", "c001"]
    np.testing.assert_array_equal(sub.labels, m.labels[[4, 1]])


def test_labels_from_names(tmp_path):
    y = labels_from_names([["dog"], ["rain", "siren"], []], CLASSES)
    np.testing.assert_array_equal(y, [[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    assert y.dtype == np.float32


def test_labels_from_names_unknown_label(tmp_path):
    _manifest_error(
        lambda: labels_from_names([["dog"], ["rain", "thunder"]], CLASSES, where="esc50",
                                  clip_ids=["a-1", "b-2"]),
        "'b-2'", "'thunder'", "esc50")
    # without clip ids: the row is named
    _manifest_error(lambda: labels_from_names([["cat"]], CLASSES), "row 0", "'cat'")
