"""Out-of-fold teachers (``MethodConfig.teacher_folds``, ``DataConfig.holdout_fold``) and the
label check of a teacher given as a run directory.

With ``teacher_folds = K >= 2`` the training split is dealt into K folds (seeded by the run's
train seed), K plain-BCE fold teachers are trained -- teacher k on every fold but k, each an
ordinary run of the suite in the runs folder -- and every training clip is scored by the teacher
that never trained on it. ``teacher_folds = 1`` is the in-sample teacher of before, with the same
run ids. A teacher run trained on other labels than its student (e.g. clean ones: an oracle)
draws a :class:`TeacherLabelsWarning` and the student's record names the teacher's corruption.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from csu_lib.config import DataConfig, MethodConfig, RunConfig
from csu_lib.core.errors import ConfigError
from csu_lib.features import FeatureLoader
from csu_lib.records import load_run
from csu_lib.study import comparison_configs, run_all, run_config
from csu_lib.pipeline import load_trained, prepare_data
from csu_lib.training import dependencies, plan, predict, train_run
from csu_lib.training.method_rules import teacher_mask
from csu_lib.pipeline.data_pipeline import DataCache, restrict_training, training_folds
from csu_lib.training.teacher import (TeacherLabelsWarning, fold_teacher_configs, teacher_config, teacher_run_dir,
                                      teacher_scores)

PINNED = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids.json").read_text())
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def oof(tmp_path_factory):
    # the smoke profile cut to 2 class families (10 classes, 80 training clips), one epoch
    config = run_config("smoke", epochs=1, device="cpu", corruption={"kind": "san", "ratio": 0.5},
                        benchmark={"n_families": 2})
    return {"config": config, "data": prepare_data(config, progress=False),
            "runs": tmp_path_factory.mktemp("oof_runs")}


def _student(oof, name="teacher_mask", **options) -> RunConfig:
    return oof["config"].replace(method=MethodConfig(name=name, **options))


# ---------------------------------------------------------------------------------------------
# (i) every clip is scored by the fold teacher that never trained on it


def test_each_clip_is_scored_by_the_fold_teacher_that_never_trained_on_it(oof):
    data, runs = oof["data"], oof["runs"]
    student = _student(oof, teacher_folds=3)
    fold_configs = fold_teacher_configs(student)
    assert [c.data.holdout_fold for c in fold_configs] == [(0, 3), (1, 3), (2, 3)]
    assert all(c.method.name == "none" and c.loss.name == "bce" for c in fold_configs)
    # the planner trains the three fold teachers first, each in <runs>/<its run id>
    assert [c.run_id for c in plan([student], runs)] == [c.run_id for c in fold_configs] + [student.run_id]
    assert dependencies(student, runs / student.run_id) == [(c, runs / c.run_id) for c in fold_configs]

    record = train_run(student, runs / student.run_id, data=data, progress=False)  # the whole split given
    info = record.summary["method"]["teacher"]
    assert info["source"] == "trained" and info["out_of_fold"] is True and info["folds"] == 3
    assert info["fold_seed"] == 0 and info["paths"] == [str(runs / c.run_id) for c in fold_configs]
    assert len(info["test_mAP"]) == len(info["val_mAP"]) == 3 and "path" not in info

    n_train = len(data.train_idx)
    folds = training_folds(0, n_train, 3)
    scores = teacher_scores(student, data, run_dir=record.path)  # what the student used (cached)
    assert scores.shape == data.train_labels.shape
    feats = FeatureLoader(data.store, CPU)
    for k, path in enumerate(info["paths"]):
        teacher = load_run(path)
        assert teacher.config.data.holdout_fold == (k, 3) and teacher.config.train.seed == 0
        # the clips the teacher trained on (its config cuts the split; its record agrees) exclude fold k
        trained_on = prepare_data(teacher.config, progress=False).train_idx
        held_out = data.train_idx[folds == k]
        assert teacher.summary["n_train"] == len(trained_on) == n_train - len(held_out)
        assert teacher.scores("train").shape[0] == len(trained_on)
        assert not set(trained_on) & set(held_out)
        assert set(trained_on) | set(held_out) == set(data.train_idx)
        # ... on the student's noisy labels of those clips
        np.testing.assert_array_equal(teacher.corruption().labels, data.train_labels[folds != k])
        # each held-out clip's score is that teacher's prediction on it
        model, _ = load_trained(teacher, CPU)
        np.testing.assert_allclose(scores[folds == k], predict(model, feats, held_out, 128, CPU), rtol=0, atol=1e-6)
    assert record.summary["method"]["masked"] == int((teacher_mask(data.train_labels, scores, 5.0) == 0).sum())

    # a second student of the same data, corruption, model and seed shares the fold teachers
    stamps = {p: (Path(p) / "model.pt").stat().st_mtime_ns for p in info["paths"]}
    second = _student(oof, "label_correction", teacher_folds=3)
    before = {p.name for p in runs.iterdir()}
    lc = train_run(second, runs / second.run_id, data=data, progress=False)
    assert lc.summary["method"]["teacher"]["paths"] == info["paths"]
    assert {p.name for p in runs.iterdir()} - before == {second.run_id}
    assert {p: (Path(p) / "model.pt").stat().st_mtime_ns for p in info["paths"]} == stamps


def test_the_study_runner_trains_the_fold_teachers_of_an_oof_method_spec(oof, tmp_path):
    groups = comparison_configs("smoke", "san:0.5", ["bce+teacher_mask", "bce+teacher_mask@oof2"], [1], epochs=1,
                                device="cpu", benchmark={"n_families": 2})
    in_sample, out_of_fold = groups["bce+teacher_mask"][0], groups["bce+teacher_mask@oof2"][0]
    assert in_sample.method.teacher_folds == 1 and out_of_fold.method.teacher_folds == 2
    assert out_of_fold.replace(method=out_of_fold.method.replace(teacher_folds=1)) == in_sample
    records = run_all([in_sample, out_of_fold], tmp_path, progress=False, workers=1)
    teachers = [teacher_config(in_sample), *fold_teacher_configs(out_of_fold)]
    assert {p.name for p in tmp_path.iterdir()} == {c.run_id for c in [in_sample, out_of_fold, *teachers]}
    assert records[1].summary["method"]["teacher"]["paths"] == [str(tmp_path / c.run_id) for c in teachers[1:]]
    assert records[0].summary["method"]["teacher"]["path"] == str(tmp_path / teachers[0].run_id)
    # the in-sample and the out-of-fold teacher give different scores
    data = prepare_data(in_sample, progress=False)
    a = teacher_scores(in_sample, data, run_dir=records[0].path)
    b = teacher_scores(out_of_fold, data, run_dir=records[1].path)
    assert a.shape == b.shape and not np.array_equal(a, b)
    with pytest.raises(ConfigError, match="@oof<K>"):
        comparison_configs("smoke", "san:0.5", ["bce+teacher_mask@oof1"], [0])
    with pytest.raises(ConfigError, match="method.teacher_folds"):
        comparison_configs("smoke", "san:0.5", ["bce@oof2"], [0])


# ---------------------------------------------------------------------------------------------
# (ii) the folds


def test_folds_partition_the_training_split_deterministically_per_seed(oof):
    data = oof["data"]
    n = len(data.train_idx)
    for k_folds in (2, 3, 5):
        folds = training_folds(0, n, k_folds)
        assert folds.shape == (n,) and set(folds.tolist()) == set(range(k_folds))
        sizes = np.bincount(folds, minlength=k_folds)
        assert sizes.sum() == n and sizes.max() - sizes.min() <= 1
        np.testing.assert_array_equal(folds, training_folds(0, n, k_folds))  # deterministic
        assert not np.array_equal(folds, training_folds(1, n, k_folds))  # another seed, another partition
    with pytest.raises(ConfigError, match="folds"):
        training_folds(0, 3, 4)

    # the fold teachers' training clips: every clip held out by exactly one of them
    student = _student(oof, teacher_folds=4)
    cache = DataCache(progress=False)
    held_out = []
    for k, c in enumerate(fold_teacher_configs(student)):
        cut = restrict_training(data, c)
        assert cut.holdout == (k, 4, 0) and restrict_training(cut, c) is cut
        np.testing.assert_array_equal(cut.train_idx, prepare_data(c, progress=False).train_idx)
        np.testing.assert_array_equal(cut.train_idx, cache(c).train_idx)  # the sweeps' shared data
        keep = np.isin(data.train_idx, cut.train_idx)
        np.testing.assert_array_equal(cut.train_labels, data.train_labels[keep])
        assert cut.corruption.labels.shape == cut.train_labels.shape
        assert cut.corruption.n_corrupted == int(data.corruption.changed[keep].sum())
        held_out.append(set(data.train_idx[~keep]))
        with pytest.raises(ConfigError, match="whole training split"):
            restrict_training(cut, oof["config"])
    assert sum(len(h) for h in held_out) == n and set().union(*held_out) == set(data.train_idx)
    # the cut follows the train seed: fold teachers of another seed hold out other clips
    other = fold_teacher_configs(_student(oof, teacher_folds=4).replace(
        train=oof["config"].train.replace(seed=1)))[0]
    assert not np.array_equal(restrict_training(data, other).train_idx, restrict_training(
        data, fold_teacher_configs(student)[0]).train_idx)


# ---------------------------------------------------------------------------------------------
# (iii) teacher_folds = 1 is the teacher of before


def test_teacher_folds_1_keeps_every_id_and_the_in_sample_teacher(oof):
    config = run_config("smoke", corruption={"kind": "san", "ratio": 0.5})
    pinned = config.replace(method=MethodConfig(name="teacher_mask", mask_percent=10.0))
    assert pinned.run_id == PINNED["smoke|bce+teacher_mask10|san:0.5"]
    explicit = config.replace(method=MethodConfig(name="teacher_mask", mask_percent=10.0, teacher_folds=1))
    assert explicit == pinned and explicit.run_id == pinned.run_id
    # a config stored before the fields existed loads to the same run
    stored = pinned.to_dict()
    del stored["method"]["teacher_folds"], stored["data"]["holdout_fold"]
    assert RunConfig.from_dict(stored) == pinned and RunConfig.from_dict(stored).run_id == pinned.run_id
    assert DataConfig().hash() == DataConfig(holdout_fold=None).hash() != DataConfig(holdout_fold=(0, 2)).hash()
    oof2 = pinned.replace(method=pinned.method.replace(teacher_folds=2))
    assert oof2.run_id != pinned.run_id
    assert len({c.run_id for c in fold_teacher_configs(oof2)} | {teacher_config(pinned).run_id}) == 3

    data, runs = oof["data"], oof["runs"]
    student = _student(oof)
    assert student.method.teacher_folds == 1
    assert dependencies(student, runs / student.run_id) == [(teacher_config(student),
                                                            teacher_run_dir(student, runs / student.run_id))]
    assert data.holdout is None and restrict_training(data, student) is data
    record = train_run(student, runs / student.run_id, data=data, progress=False)
    teacher_dir = teacher_run_dir(student, record.path)
    info = record.summary["method"]["teacher"]
    assert set(info) == {"source", "path", "test_mAP", "val_mAP"}
    assert info["source"] == "trained" and info["path"] == str(teacher_dir)
    teacher = load_run(teacher_dir)
    assert teacher.summary["n_train"] == len(data.train_idx)  # in-sample: the whole split
    model, _ = load_trained(teacher, CPU)
    np.testing.assert_allclose(teacher_scores(student, data, run_dir=record.path),
                               predict(model, FeatureLoader(data.store, CPU), data.train_idx, 128, CPU),
                               rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# (iv) bad values


@pytest.mark.parametrize("options, match", [
    ({"name": "teacher_mask", "teacher_folds": 0}, "integer >= 1"),
    ({"name": "teacher_mask", "teacher_folds": -2}, "integer >= 1"),
    ({"name": "teacher_mask", "teacher_folds": 2.0}, "integer >= 1"),
    ({"name": "teacher_mask", "teacher_folds": True}, "integer >= 1"),
    ({"name": "teacher_mask", "teacher_folds": "3"}, "integer >= 1"),
    ({"name": "none", "teacher_folds": 2}, "needs a method that learns from a teacher"),
    ({"name": "mixup_or", "teacher_folds": 3}, "needs a method that learns from a teacher"),
    ({"name": "psl", "teacher_folds": 2, "teacher": "scores.npy"}, "cannot be combined with method.teacher"),
])
def test_bad_teacher_folds_are_refused_naming_the_field(options, match):
    with pytest.raises(ConfigError, match=rf"method\.teacher_folds .*{match}"):
        MethodConfig(**options)
    with pytest.raises(ConfigError, match=r"method\.teacher_folds"):
        RunConfig.from_dict({"method": {k: v for k, v in options.items()}})


@pytest.mark.parametrize("fold", [(2, 2), (0, 1), (-1, 3), (0, 2, 1), (True, 2), [0, 2]])
def test_bad_holdout_folds_are_refused_naming_the_field(fold):
    with pytest.raises(ConfigError, match=r"data\.holdout_fold"):
        DataConfig(holdout_fold=fold)


def test_an_oof_student_cannot_itself_hold_out_a_fold(oof):
    student = _student(oof, teacher_folds=2)
    cut = student.replace(data=student.data.replace(holdout_fold=(0, 2)))
    with pytest.raises(ConfigError, match="holdout_fold"):
        dependencies(cut, oof["runs"] / cut.run_id)


# ---------------------------------------------------------------------------------------------
# Teacher label check: a teacher run trained on other labels than its student


def test_a_clean_label_teacher_of_a_noisy_student_is_flagged_and_recorded(oof, tmp_path):
    data, config = oof["data"], oof["config"]
    clean = config.replace(corruption=config.corruption.replace(kind="none", ratio=0.0))
    clean_dir = tmp_path / "clean_teacher"
    train_run(clean, clean_dir, progress=False)
    student = _student(oof, teacher=str(clean_dir))
    with pytest.warns(TeacherLabelsWarning, match=r"(?s)teacher .*clean_teacher.* other labels.*clean.*san 50%"):
        record = train_run(student, tmp_path / "student", data=data, progress=False)
    info = record.summary["method"]["teacher"]
    assert info["source"] == "run" and info["path"] == str(clean_dir)
    assert info["corruption"] == clean.corruption.to_dict() and info["corruption"]["kind"] == "none"
    assert info["corruption_label"] == "clean" and info["same_labels"] is False

    # a teacher run trained on the student's own labels draws no warning
    same_dir = teacher_run_dir(config, oof["runs"] / "x")
    train_run(teacher_config(config), same_dir, data=data, progress=False)  # complete already, or trained now
    with warnings.catch_warnings():
        warnings.simplefilter("error", TeacherLabelsWarning)
        record = train_run(_student(oof, teacher=str(same_dir)), tmp_path / "student2", data=data, progress=False)
    info = record.summary["method"]["teacher"]
    assert info["same_labels"] is True and info["corruption"] == config.corruption.to_dict()
