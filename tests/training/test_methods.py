"""The compared methods: each rule on a hand-built example, then every method end to end
(smoke size, one shared teacher) and the teacher cache."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from csu_lib.config import FrontendConfig, MethodConfig, parse_method_spec
from csu_lib.core.errors import ConfigError
from csu_lib.training import method_rules as M
from csu_lib.training.methods import OrMixup

DB3 = 10 * math.log10(2)  # 3.0103 dB: two equal powers


# ---------------------------------------------------------------------------------------------
# Teacher mask (Fonseca et al. 2020)


def test_teacher_mask_flags_the_top_scored_negatives_only():
    # one class: 10 negatives scored 0.1 .. 1.0 and 2 positives scored higher than all of them
    labels = np.array([0] * 10 + [1, 1], dtype=np.float32)[:, None]
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0, 0.95])[:, None]
    mask = M.teacher_mask(labels, scores, 20)
    # 20 % of 10 negatives = 2: the two top negatives (0.9 and 1.0); positives never masked
    np.testing.assert_array_equal(mask[:, 0], [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1])
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(M.teacher_mask(labels, scores, 0), 1)
    np.testing.assert_array_equal(M.teacher_mask(labels, scores, 100)[:, 0], [0] * 10 + [1, 1])


def test_teacher_mask_rounding_is_floor_and_ties_go_by_clip_order():
    labels = np.zeros((10, 1), dtype=np.float32)
    scores = np.arange(1, 11)[:, None] / 10
    # floor(p/100 * n_neg): 25 % of 10 -> 2 (not 3), 9.99 % -> 0, 10 % -> 1, 30 % -> 3 (no FP slip)
    for percent, k in ((25, 2), (9.99, 0), (10, 1), (30, 3), (70, 7)):
        assert M.n_flagged(10, percent) == k
        assert (M.teacher_mask(labels, scores, percent) == 0).sum() == k
    tied = np.full((10, 1), 0.5)
    np.testing.assert_array_equal(M.teacher_mask(labels, tied, 20)[:, 0], [0, 0] + [1] * 8)


def test_teacher_mask_is_per_class_and_soft_positives_count_as_positive():
    labels = np.array([[0.0, 0.7], [0.0, 0.3], [0.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    scores = np.array([[0.9, 0.99], [0.1, 0.98], [0.2, 0.1], [0.3, 0.2], [0.95, 0.3]])
    mask = M.teacher_mask(labels, scores, 50)
    # class 0: 4 negatives -> 2 masked (0.9 and 0.3); class 1: negatives are 0.3, 0, 0 and 0 (the
    # soft 0.7 is a positive) -> 2 masked (0.98 and 0.3), the soft positive scored 0.99 is kept
    np.testing.assert_array_equal(mask, [[0, 1], [1, 0], [1, 1], [0, 1], [1, 0]])


# ---------------------------------------------------------------------------------------------
# Label correction and masking (Braun & Gamper 2024), T = 0.05

#: (y, q) -> (target, mask) for: fn without masking, fn with masking, fn+fp without, fn+fp with
CASES = [
    # y=0: q > 1-T corrected (eq. 4); 0.5 < q <= 1-T masked (eq. 6, boundary 0.95 included)
    ((0.0, 0.99), (1, 1), (1, 1), (1, 1), (1, 1)),
    ((0.0, 0.96), (1, 1), (1, 1), (1, 1), (1, 1)),
    ((0.0, 0.95), (0, 1), (0, 0), (0, 1), (0, 0)),
    ((0.0, 0.70), (0, 1), (0, 0), (0, 1), (0, 0)),
    ((0.0, 0.50), (0, 1), (0, 1), (0, 1), (0, 1)),
    ((0.0, 0.20), (0, 1), (0, 1), (0, 1), (0, 1)),
    # y=1: q < T corrected (eq. 5, fn+fp only); T <= q < 0.5 masked (eq. 7, fn+fp + masking only)
    ((1.0, 0.01), (1, 1), (1, 1), (0, 1), (0, 1)),
    ((1.0, 0.04), (1, 1), (1, 1), (0, 1), (0, 1)),
    ((1.0, 0.05), (1, 1), (1, 1), (1, 1), (1, 0)),
    ((1.0, 0.30), (1, 1), (1, 1), (1, 1), (1, 0)),
    ((1.0, 0.50), (1, 1), (1, 1), (1, 1), (1, 1)),
    ((1.0, 0.90), (1, 1), (1, 1), (1, 1), (1, 1)),
    # soft (SLN) positive 0.7: a positive; kept soft unless corrected
    ((0.7, 0.01), (0.7, 1), (0.7, 1), (0, 1), (0, 1)),
    ((0.7, 0.30), (0.7, 1), (0.7, 1), (0.7, 1), (0.7, 0)),
    ((0.7, 0.97), (0.7, 1), (0.7, 1), (0.7, 1), (0.7, 1)),
    # a soft value below 0.5 is a negative
    ((0.3, 0.97), (1, 1), (1, 1), (1, 1), (1, 1)),
]
OPTIONS = [("fn", False), ("fn", True), ("fn+fp", False), ("fn+fp", True)]


@pytest.mark.parametrize("option", range(4), ids=[f"{c}-{'mask' if m else 'nomask'}" for c, m in OPTIONS])
def test_label_correction_table(option):
    correct, masking = OPTIONS[option]
    labels = np.array([[y] for (y, _), *_ in CASES], dtype=np.float32)
    scores = np.array([[q] for (_, q), *_ in CASES])
    targets, mask = M.label_correction(labels, scores, 0.05, correct=correct, masking=masking)
    expected = np.array([case[1 + option] for case in CASES], dtype=np.float32)
    np.testing.assert_allclose(targets[:, 0], expected[:, 0], err_msg=f"targets, {correct}, masking={masking}")
    np.testing.assert_array_equal(mask[:, 0], expected[:, 1], err_msg=f"mask, {correct}, masking={masking}")
    assert labels[0, 0] == 0.0  # input left alone


def test_label_correction_flags_and_checks():
    labels = np.array([[0, 1, 0, 1]], dtype=np.float32)
    scores = np.array([[0.99, 0.01, 0.7, 0.3]])
    flags = M.label_correction_flags(labels, scores, 0.05, "fn+fp", True)
    assert {k: v.tolist() for k, v in flags.items()} == {
        "corrected_fn": [[True, False, False, False]], "corrected_fp": [[False, True, False, False]],
        "masked_fn": [[False, False, True, False]], "masked_fp": [[False, False, False, True]]}
    with pytest.raises(ConfigError, match="threshold"):
        M.label_correction(labels, scores, 0.5)
    with pytest.raises(ConfigError, match="same shape|one shape"):
        M.label_correction(labels, scores[:, :2], 0.05)


# ---------------------------------------------------------------------------------------------
# Pseudo strong labels (Dinkel et al. 2022)


def test_psl_targets_mix_teacher_and_weak_labels():
    teacher = np.array([0.2, 0.8, 0.6])
    weak = np.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(M.psl_targets(teacher, weak, 1.0), teacher)
    np.testing.assert_allclose(M.psl_targets(teacher, weak, 0.0), weak)
    np.testing.assert_allclose(M.psl_targets(teacher, weak, 0.5), [0.6, 0.4, 0.8])
    t = M.psl_targets(torch.tensor(teacher), torch.tensor(weak), 0.25)
    np.testing.assert_allclose(t.numpy(), [0.8, 0.2, 0.9])


def test_chunk_boundaries():
    assert M.chunk_frames(100, 50) == [(0, 50), (50, 100)]
    assert M.chunk_frames(120, 50) == [(0, 50), (50, 100), (100, 120)]  # last shorter (padded later)
    assert M.chunk_frames(30, 50) == [(0, 30)]                          # chunk longer than the clip
    assert M.chunk_frames(51, 50) == [(0, 50), (50, 51)]
    assert M.chunk_frames(51, 50, min_last=25) == [(0, 50)]              # 1-frame remainder dropped
    assert M.chunk_frames(75, 50, min_last=25) == [(0, 50), (50, 75)]    # half a chunk is kept
    fe = FrontendConfig()  # 16 kHz, hop 160: 100 frames per second
    assert M.psl_chunk_layout(51, 0.5, fe) == ([(0, 50)], 50)           # 0.5 s clip (centred STFT: 51)
    assert M.psl_chunk_layout(501, 2.0, fe) == ([(0, 200), (200, 400), (400, 501)], 200)
    assert M.psl_chunk_layout(51, 2.0, fe) == ([(0, 51)], 51)


def test_select_chunks_pads_the_last_chunk_with_the_clip_floor():
    x = torch.arange(2 * 1 * 10, dtype=torch.float32).reshape(2, 1, 10)  # clip 0: 0..9, clip 1: 10..19
    spans = [(0, 4), (4, 8), (8, 10)]
    out = M.select_chunks(x, spans, 4, torch.tensor([2, 1]))
    np.testing.assert_array_equal(out[0, 0].numpy(), [8, 9, 0, 0])    # padded with clip 0's minimum
    np.testing.assert_array_equal(out[1, 0].numpy(), [14, 15, 16, 17])


# ---------------------------------------------------------------------------------------------
# Mixup


def test_or_mixup_joins_labels_by_or_and_sums_powers():
    x = torch.tensor([[[10.0, 0.0]], [[0.0, -20.0]], [[5.0, 5.0]]])  # (3 clips, 1 mel, 2 frames) dB
    y = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.7, 0, 0.2]])
    m = torch.tensor([[1.0, 1, 0], [1, 0, 1], [1, 1, 1]])
    perm = [[0, 1, 2], [1, 0, 0]]   # sample 0 mixes clips 0+1, sample 1 clips 1+0, sample 2 stays alone
    gains = [[0.0, 0.0, 3.0], [0.0, 0.0, 40.0]]
    xo, yo, mo = M.or_mixup(x, y, m, [2, 2, 1], gains, perm)
    np.testing.assert_allclose(yo.numpy(), [[1, 1, 0], [1, 1, 0], [0.7, 0, 0.2]])  # [1,0,0] OR [0,1,0]
    np.testing.assert_array_equal(mo.numpy(), [[1, 0, 0], [1, 0, 0], [1, 1, 1]])    # masked in any -> masked
    expected0 = [10 * math.log10(10 + 1), 10 * math.log10(1 + 0.01)]               # 10 dB + 0 dB, 0 dB + -20 dB
    np.testing.assert_allclose(xo[0, 0].numpy(), expected0, atol=1e-4)
    np.testing.assert_allclose(xo[1, 0].numpy(), expected0, atol=1e-4)
    np.testing.assert_allclose(xo[2, 0].numpy(), [8.0, 8.0], atol=1e-5)  # one source: just its +3 dB level
    # soft labels take the max
    ys = torch.tensor([[0.7, 0.0, 0.2], [0.4, 0.9, 0.0]])
    _, yo, mo = M.or_mixup(torch.zeros(2, 1, 2), ys, None, [2, 2], np.zeros((2, 2)), [[0, 1], [1, 0]])
    np.testing.assert_allclose(yo[0].numpy(), [0.7, 0.9, 0.2])
    assert mo is None


def test_or_mixup_of_a_clip_with_itself_at_0_db_is_3_db_louder():
    x = torch.randn(1, 4, 6) * 20
    xo, yo, _ = M.or_mixup(x, torch.tensor([[1.0, 0.0]]), None, [2], [[0.0], [0.0]], [[0], [0]])
    np.testing.assert_allclose((xo - x).numpy(), DB3, atol=1e-4)
    np.testing.assert_array_equal(yo.numpy(), [[1.0, 0.0]])
    with pytest.raises(ConfigError, match="n_sources"):
        M.or_mixup(x, torch.tensor([[1.0, 0.0]]), None, [3], [[0.0], [0.0]], [[0], [0]])


def test_or_mixup_draws_partners_among_the_other_clips():
    method = OrMixup(max_mix=3, level_db_std=2.0)
    n, gains, perm = method.draw(8, torch.Generator().manual_seed(1))
    assert n.min() >= 1 and n.max() <= 3 and perm.shape == (3, 8) and gains.shape == (3, 8)
    np.testing.assert_array_equal(perm[0], np.arange(8))
    assert (perm[1:] != np.arange(8)).all()
    again = method.draw(8, torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(again[2], perm)  # a function of the loop's generator
    x, y = torch.randn(8, 4, 6), (torch.rand(8, 5) > 0.7).float()
    xo, yo, mo = method.transform_batch(x, y, None, np.arange(8), torch.Generator().manual_seed(2))
    assert xo.shape == x.shape and mo is None and (yo >= y).all()


def test_interp_mixup_interpolates_features_and_labels():
    x = torch.tensor([[[10.0, 0.0]], [[0.0, -20.0]]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    xo, yo, mo = M.interp_mixup(x, y, [0.7, 0.25], [1, 0], mask=torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(yo.numpy(), [[0.7, 0.3], [0.75, 0.25]])
    np.testing.assert_allclose(xo.numpy(), [[[7.0, -6.0]], [[7.5, -5.0]]], atol=1e-5)  # in dB
    np.testing.assert_array_equal(mo.numpy(), [[1, 0], [1, 0]])
    _, yo, _ = M.interp_mixup(x, y, 0.5, [1, 0])
    np.testing.assert_allclose(yo.numpy(), 0.5)


def test_method_specs():
    assert parse_method_spec("bce") == ("bce", "none")
    assert parse_method_spec("csu+mixup_or") == ("csu", "mixup_or")
    assert parse_method_spec("teacher_mask") == ("bce", "teacher_mask")
    with pytest.raises(ConfigError, match="'<loss>\\+<method>'"):
        parse_method_spec("csu+dropout")


# ---------------------------------------------------------------------------------------------
# End to end: every method trains; the teacher is trained once and shared


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    from csu_lib.study import run_config
    from csu_lib.pipeline import prepare_data

    # the smoke profile, cut to 2 class families (10 classes, 80 training clips) to stay fast
    config = run_config("smoke", epochs=1, device="cpu", corruption={"kind": "san", "ratio": 0.5},
                        benchmark={"n_families": 2})
    return {"config": config, "data": prepare_data(config, progress=False),
            "runs": tmp_path_factory.mktemp("method_runs")}


def _student(e2e, name, **options):
    return e2e["config"].replace(method=MethodConfig(name=name, **options))


def _train(e2e, config, run_dir=None):
    from csu_lib.training import train_run

    return train_run(config, run_dir or e2e["runs"] / config.run_id, data=e2e["data"], progress=False)


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_every_method_trains_with_one_shared_teacher(e2e):
    from csu_lib.training.teacher import teacher_config

    data, runs = e2e["data"], e2e["runs"]
    n_train, n_classes = data.train_labels.shape
    first = _train(e2e, _student(e2e, "teacher_mask"))
    teacher_dir = runs / teacher_config(e2e["config"]).run_id  # the study's plain BCE run
    assert teacher_dir.is_dir()
    run_dirs = sorted(p.name for p in runs.iterdir())
    before = _mtimes(teacher_dir)
    assert {"model.pt", "record.json", "teacher_scores_train.npy", "teacher_scores_train.json"} <= set(before)

    s = first.summary["method"]
    n_neg = (data.train_labels < 0.5).sum(axis=0)
    assert s["masked"] == sum(M.n_flagged(int(k), 5.0) for k in n_neg) > 0
    assert 0 <= s["masked_changed"] <= s["masked"] and "changed_negatives" in s
    assert s["teacher"]["source"] == "trained" and s["teacher"]["path"] == str(teacher_dir)

    lc = _train(e2e, _student(e2e, "label_correction", correct="fn+fp"))
    assert {"corrected_fn", "corrected_fp", "masked_fn", "masked_fp", "corrected_fn_changed",
            "corrected_fp_right", "changed_positives"} <= set(lc.summary["method"])
    psl = _train(e2e, _student(e2e, "psl", chunk_seconds=0.25, alpha=0.5))
    assert psl.summary["method"]["n_chunks"] == 2 and psl.summary["method"]["chunk_frames"] == 25
    # the second and third students reused the teacher: nothing in its folder was rewritten
    after = _mtimes(teacher_dir)
    assert {k: after[k] for k in before} == before
    # one teacher only: the new run folders are the three students
    assert sorted(set(p.name for p in runs.iterdir()) - set(run_dirs)) == sorted([lc.path.name, psl.path.name])
    chunks = np.load(teacher_dir / "teacher_scores_train_chunks_0.25.npy")
    assert chunks.shape == (n_train, 2, n_classes) and 0 <= chunks.min() and chunks.max() <= 1
    key = json.loads((teacher_dir / "teacher_scores_train_chunks_0.25.json").read_text())["key"]
    assert key["chunks"] == {"spans": [[0, 25], [25, 50]], "length": 25}

    for name in ("mixup_or", "mixup"):
        rec = _train(e2e, _student(e2e, name))
        assert rec.complete and rec.summary["method"]
    csu = _train(e2e, _student(e2e, "mixup_or").replace(loss=e2e["config"].loss.replace(name="csu")))
    assert csu.log_sigma2 is not None and csu.learns_sigma
    for rec in (first, lc, psl, csu):
        assert rec.complete and np.isfinite(rec.final_metrics["test"]["mAP"])


def test_student_numbers_do_not_depend_on_whether_the_teacher_was_cached(e2e):
    config = _student(e2e, "teacher_mask")
    first = _train(e2e, config)  # complete already, or trains the teacher now
    again = _train(e2e, config, e2e["runs"] / f"{config.run_id}-again")  # teacher found complete
    assert again.final_metrics == first.final_metrics


def test_teacher_given_as_score_file_or_run_directory(e2e, tmp_path):
    from csu_lib.training import build_method
    from csu_lib.training.teacher import teacher_config, teacher_scores

    data, config = e2e["data"], e2e["config"]
    n_train, n_classes = data.train_labels.shape
    teacher_dir = e2e["runs"] / teacher_config(config).run_id
    scores = teacher_scores(_student(e2e, "teacher_mask"), data, run_dir=e2e["runs"] / "x")
    assert scores.shape == (n_train, n_classes)

    good = tmp_path / "zero_shot.npy"
    np.save(good, scores)
    method = build_method(_student(e2e, "label_correction", teacher=str(good)), data, run_dir=tmp_path / "r")
    targets, mask = method.train_targets(data.train_labels)
    np.testing.assert_array_equal(targets, M.label_correction(data.train_labels, scores, 0.05)[0])
    assert method.summary()["teacher"] == {"source": "file", "path": str(good)}
    rec = _train(e2e, _student(e2e, "teacher_mask", teacher=str(good)), tmp_path / "student")
    assert rec.complete and rec.summary["method"]["teacher"]["source"] == "file"

    bad = tmp_path / "wrong_shape.npy"
    np.save(bad, scores[:, :3])
    with pytest.raises(ConfigError, match=r"wrong_shape\.npy has shape .*expected"):
        build_method(_student(e2e, "teacher_mask", teacher=str(bad)), data, run_dir=tmp_path / "r")
    logits = tmp_path / "logits.npy"
    np.save(logits, scores * 8 - 4)
    with pytest.raises(ConfigError, match=r"logits\.npy holds values outside \[0, 1\]"):
        build_method(_student(e2e, "teacher_mask", teacher=str(logits)), data, run_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"missing\.npy does not exist"):
        build_method(_student(e2e, "teacher_mask", teacher=str(tmp_path / "missing.npy")), data)
    with pytest.raises(ConfigError, match=r"wrong_shape\.npy .*chunk scores for PSL"):
        build_method(_student(e2e, "psl", teacher=str(bad)), data)

    # a run directory as the teacher: its cached scores are used as they are
    stamp = (teacher_dir / "teacher_scores_train.npy").stat().st_mtime_ns
    from_dir = teacher_scores(_student(e2e, "teacher_mask", teacher=str(teacher_dir)), data)
    np.testing.assert_array_equal(from_dir, scores)
    assert (teacher_dir / "teacher_scores_train.npy").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="neither a .npy score file nor a run directory"):
        teacher_scores(_student(e2e, "teacher_mask", teacher=str(tmp_path)), data)


def test_teacher_cache_is_keyed_by_the_training_set(e2e):
    from csu_lib.pipeline import prepare_data
    from csu_lib.training.teacher import TeacherLabelsWarning, teacher_config, teacher_scores

    config = e2e["config"]
    teacher_scores(_student(e2e, "teacher_mask"), e2e["data"], run_dir=e2e["runs"] / "x")
    teacher_dir = e2e["runs"] / teacher_config(config).run_id
    meta = teacher_dir / "teacher_scores_train.json"
    key = json.loads(meta.read_text())["key"]
    other = config.replace(corruption=config.corruption.replace(kind="man"))
    other_data = prepare_data(other, progress=False)
    student = other.replace(method=MethodConfig(name="teacher_mask", teacher=str(teacher_dir)))
    # the teacher was trained under SAN, the student's labels are MAN: said, and the scores recomputed
    with pytest.warns(TeacherLabelsWarning, match="trained on other labels"):
        scores = teacher_scores(student, other_data)
    new_key = json.loads(meta.read_text())["key"]
    assert new_key["corruption"] == other.corruption.hash() != key["corruption"]  # recomputed, not mixed up
    assert scores.shape == other_data.train_labels.shape
    # a score file replaced behind the JSON's back is recomputed, not trusted
    np.save(teacher_dir / "teacher_scores_train.npy", np.zeros_like(scores))
    with pytest.warns(TeacherLabelsWarning):
        np.testing.assert_array_equal(teacher_scores(student, other_data), scores)
