"""The oracles (csu_lib.training.oracles): the class oracle's weights against per-class noise rates
computed here from the labels, the sample oracle's mask against the changed entries of every
corruption type, clean data, the corruption reaching every method, and training end to end
(alone and in a vectorised group)."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from csu_lib.config import CorruptionConfig, MethodConfig, TrainConfig, parse_method_spec
from csu_lib.core.errors import ConfigError
from csu_lib.corruption import corrupt_labels
from csu_lib.corruption.audit_design import audit_levels
from csu_lib.training import (BATCH_METHODS, ClassOracle, SampleOracle, build_method, class_oracle_weights,
                              groupable, train_group, train_run)

N_CLIPS, N_CLASSES = 600, 6


@pytest.fixture(scope="module")
def clean():
    """Single-label multi-hot targets: 100 clips per class, in a shuffled order."""
    labels = np.zeros((N_CLIPS, N_CLASSES), dtype=np.float32)
    labels[np.arange(N_CLIPS), np.random.default_rng(0).permutation(np.arange(N_CLIPS) % N_CLASSES)] = 1.0
    return labels


def _rates_by_hand(labels: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per class: of the clips with a class-c positive in either label set, the share whose
    class-c target differs from the clean one."""
    rates = np.zeros(labels.shape[1])
    for c in range(labels.shape[1]):
        has_c = (clean[:, c] >= 0.5) | (labels[:, c] > 0)
        wrong = has_c & (labels[:, c] != clean[:, c])
        rates[c] = wrong.sum() / has_c.sum()
    return rates


# ---------------------------------------------------------------------------------------------
# Class oracle


@pytest.mark.parametrize("kind", ["san", "man", "sln", "missing"])
def test_class_oracle_weights_follow_the_true_per_class_rates(clean, kind):
    # the audit design: half the classes corrupted at graded levels, the others untouched
    config = CorruptionConfig(kind=kind, ratio=0.5, profile="audit", seed=2)
    result = corrupt_labels(clean, config)
    oracle = ClassOracle(result)
    targets, mask = oracle.train_targets(result.labels)
    np.testing.assert_array_equal(targets, result.labels)  # the labels are trained on as they are
    assert mask.shape == (N_CLIPS, N_CLASSES) and np.all(mask == mask[0])  # one weight per class, every row

    r = _rates_by_hand(result.labels, clean)
    expected = (1 - r) / np.mean(1 - r)
    np.testing.assert_allclose(mask[0], expected, rtol=1e-6)
    assert mask[0].mean() == pytest.approx(1.0, abs=1e-6)
    # controls (designed level 0) are untouched and weigh most
    levels = audit_levels(N_CLASSES, config)
    assert np.all(r[levels == 0] == 0) and np.all(r[levels > 0] > 0)
    assert np.all(mask[0][levels == 0] == mask[0].max()) and np.all(mask[0][levels > 0] < mask[0].max())
    s = oracle.summary()
    assert s["oracle"] is True and s["rate_field"] == "label_noise_rate" and "note" not in s
    np.testing.assert_allclose(s["rates"], r)
    np.testing.assert_allclose(s["weights"], expected)
    if kind == "san":  # the spurious positives have no source class: class_rate sees no noise at all
        assert np.all(result.class_rate == 0) and np.ptp(mask[0]) > 0.1


def test_class_oracle_is_plain_on_clean_data(clean):
    for corruption in (None, corrupt_labels(clean, CorruptionConfig())):  # none, or a record of nothing
        oracle = ClassOracle(corruption)
        targets, mask = oracle.train_targets(clean)
        np.testing.assert_array_equal(mask, np.ones_like(clean))
        assert oracle.summary()["weights"] == [1.0] * N_CLASSES
        assert "clean data" in oracle.summary()["note"]


def test_class_oracle_weights_edge_cases(clean):
    np.testing.assert_allclose(class_oracle_weights([0.0, 0.5, 1.0]), [2.0, 1.0, 0.0])  # 1 - r over its mean 0.5
    with pytest.raises(ConfigError, match="every class has label_noise_rate 1"):
        class_oracle_weights(np.ones(4))
    result = corrupt_labels(clean, CorruptionConfig(kind="missing", ratio=0.3))
    hopeless = dataclasses.replace(result, label_noise_rate=np.ones(N_CLASSES))
    with pytest.raises(ConfigError, match="undefined"):
        ClassOracle(hopeless).train_targets(result.labels)
    with pytest.raises(ConfigError, match="shape"):
        ClassOracle(result).train_targets(result.labels[:10])


# ---------------------------------------------------------------------------------------------
# Sample oracle


@pytest.mark.parametrize("kind", ["san", "man", "sln", "missing"])
def test_sample_oracle_masks_exactly_the_changed_entries(clean, kind):
    result = corrupt_labels(clean, CorruptionConfig(kind=kind, ratio=0.3, seed=1))
    oracle = SampleOracle(result)
    targets, mask = oracle.train_targets(result.labels)
    np.testing.assert_array_equal(targets, result.labels)
    changed = result.labels != clean
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(mask == 0, changed)
    n = result.n_corrupted
    assert n == round(0.3 * N_CLIPS) and oracle.summary()["masked"] == changed.sum()
    was, now = clean[changed], result.labels[changed]
    if kind == "san":  # the added positive
        assert changed.sum() == n and np.all((was == 0) & (now == 1))
    elif kind == "man":  # the positive moved away and the one it moved to
        assert changed.sum() == 2 * n and (was == 1).sum() == (now == 1).sum() == n
    elif kind == "sln":  # the lowered (soft) positive
        assert changed.sum() == n and np.all((was == 1) & (now >= 0.6) & (now <= 0.9))
    else:  # the removed positive
        assert changed.sum() == n and np.all((was == 1) & (now == 0))


def test_sample_oracle_is_plain_on_clean_data(clean):
    oracle = SampleOracle(None)
    _, mask = oracle.train_targets(clean)
    np.testing.assert_array_equal(mask, np.ones_like(clean))
    assert oracle.summary()["masked"] == 0 and "clean data" in oracle.summary()["note"]


# ---------------------------------------------------------------------------------------------
# Wiring: names, the corruption reaching every method, groups


def test_oracles_are_registered_groupable_and_get_the_corruption(clean):
    assert parse_method_spec("class_oracle") == ("bce", "class_oracle")
    assert parse_method_spec("csu+sample_oracle") == ("csu", "sample_oracle")
    assert not {"class_oracle", "sample_oracle"} & BATCH_METHODS
    result = corrupt_labels(clean, CorruptionConfig(kind="man", ratio=0.2))
    data = SimpleNamespace(corruption=result)  # all build_method reads of the data for a method without a teacher
    for name in ("class_oracle", "sample_oracle"):
        run = SimpleNamespace(method=MethodConfig(name=name), train=TrainConfig())
        assert groupable(run)
        assert build_method(run, data).corruption is result
        assert build_method(run, SimpleNamespace(corruption=None)).corruption is None


# ---------------------------------------------------------------------------------------------
# End to end: the normal training entry point, alone and in a vectorised group


@pytest.fixture(scope="module")
def tiny():
    from csu_lib.pipeline import prepare_data
    from csu_lib.study import run_config

    # the smoke profile cut to 2 class families (10 classes, 80 training clips), audit MAN noise
    config = run_config("smoke", epochs=1, device="cpu", corruption={"kind": "man", "ratio": 0.5, "profile": "audit"},
                        benchmark={"n_families": 2})
    return config, prepare_data(config, progress=False)


@pytest.mark.parametrize("name,loss", [("class_oracle", "bce"), ("sample_oracle", "csu")])
def test_an_oracle_trains_through_train_run(tiny, tmp_path, name, loss):
    config, data = tiny
    config = config.replace(method=MethodConfig(name=name), loss=config.loss.replace(name=loss))
    rec = train_run(config, tmp_path / config.run_id, data=data, progress=False)
    assert rec.complete and np.isfinite(rec.final_metrics["test"]["mAP"])
    s = rec.summary["method"]
    assert s["oracle"] is True
    if name == "class_oracle":
        np.testing.assert_allclose(s["weights"], class_oracle_weights(data.corruption.label_noise_rate))
        assert min(s["weights"]) < 1 < max(s["weights"])
    else:
        assert s["masked"] == int((data.train_labels != data.corruption.clean_labels).sum()) > 0


def test_class_oracle_group_of_a_clean_and_a_corrupted_run(tiny, tmp_path):
    # the runs of a group may differ in their corruption: the clean run's all-ones mask stacks with
    # the corrupted run's weights, and each run's record is the one it gets alone
    config, _ = tiny
    oracle = config.replace(method=MethodConfig(name="class_oracle"))
    configs = [oracle.replace(corruption=CorruptionConfig(), train=oracle.train.replace(seed=1)), oracle]
    cache = tmp_path / "cache"
    records = train_group(configs, [tmp_path / "0", tmp_path / "1"], cache_dir=cache, progress=False)
    assert all(r.complete and r.summary["vectorised"]["size"] == 2 for r in records)
    assert records[0].summary["method"]["weights"] == [1.0] * 10 and "note" in records[0].summary["method"]
    alone = train_run(configs[1], tmp_path / "alone", cache_dir=cache, progress=False)
    assert alone.summary["method"] == records[1].summary["method"]
