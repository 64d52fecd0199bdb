"""Label-corruption injectors (csu_lib.corruption): SAN, MAN, SLN, missing positives.

Synthetic data built here: 50 classes in 10 families of 5; a single-label matrix with 8 clips
per class (N = 400, shuffled) and a multi-label matrix with 1-3 positives per clip (N = 400).
"""
from __future__ import annotations

import numpy as np
import pytest

from csu_lib.config import CorruptionConfig
from csu_lib.core.errors import ConfigError
from csu_lib.corruption import (KIND_CODES, CorruptionResult, concentrated_source_classes, corrupt_labels,
                                corruption_summary, graded_class_weights, man_transition_matrix)
from csu_lib.records import read_corruption, write_corruption

C = 50
FAMILY = np.arange(C) // 5
N = 400
RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5]
KINDS = ["san", "man", "sln", "missing"]


def _single_label() -> np.ndarray:
    truth = np.random.default_rng(123).permutation(np.repeat(np.arange(C), N // C))
    y = np.zeros((N, C), dtype=np.float32)
    y[np.arange(N), truth] = 1.0
    return y


def _multi_label() -> np.ndarray:
    rng = np.random.default_rng(456)
    y = np.zeros((N, C), dtype=np.float32)
    for i in range(N):
        y[i, rng.choice(C, size=rng.integers(1, 4), replace=False)] = 1.0
    return y


SINGLE = _single_label()
MULTI = _multi_label()
SIM = (FAMILY[:, None] == FAMILY[None, :]).astype(np.float64)


def _run(y=SINGLE, **kw) -> CorruptionResult:
    return corrupt_labels(y, CorruptionConfig(**kw), similarity=SIM)


def _row_changes(res: CorruptionResult) -> np.ndarray:
    """(N,) number of label entries that differ from clean."""
    return (res.labels != res.clean_labels).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# counts and per-kind semantics (single-label)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_exact_count_and_bookkeeping(kind, ratio):
    res = _run(kind=kind, ratio=ratio, seed=3)
    n = round(ratio * N)
    assert res.n_corrupted == n
    assert res.labels.shape == (N, C) and res.labels.dtype == np.float32
    assert (res.kind_code[res.changed] == KIND_CODES[kind]).all()
    assert (res.kind_code[~res.changed] == 0).all()
    assert (res.source_class[~res.changed] == -1).all()
    assert (res.source_class[res.changed] >= 0).all()
    if kind in ("san", "man"):
        assert (res.target_class[res.changed] >= 0).all()
    else:
        assert (res.target_class == -1).all()
    assert (res.target_class[~res.changed] == -1).all()
    # every corrupted clip really differs; unchanged clips are byte-identical to clean
    assert (_row_changes(res)[res.changed] > 0).all()
    assert res.labels[~res.changed].tobytes() == SINGLE[~res.changed].tobytes()
    # the true per-class rate is what happened
    src_counts = np.bincount(res.source_class[res.changed], minlength=C)
    np.testing.assert_allclose(res.class_rate, src_counts / 8)
    assert res.class_rate.mean() == pytest.approx(ratio)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_kind_semantics_single_label(kind, ratio):
    cfg = dict(kind=kind, ratio=ratio, seed=7, soft_range=(0.6, 0.9))
    res = _run(**cfg)
    ch = res.changed
    true = SINGLE.argmax(axis=1)
    idx = np.flatnonzero(ch)
    assert (res.source_class[ch] == true[ch]).all()  # single-label: the source is the true class
    pos_after = (res.labels >= 0.5).sum(axis=1)
    if kind == "san":
        assert (pos_after[ch] == 2).all()
        assert (res.labels[idx, true[ch]] == 1.0).all()  # true class kept
        assert (res.labels[idx, res.target_class[ch]] == 1.0).all()
        assert (res.target_class[ch] != true[ch]).all()
        assert (_row_changes(res)[ch] == 1).all()
    elif kind == "man":
        assert (pos_after[ch] == 1).all()
        new = res.labels[ch].argmax(axis=1)
        assert (new != true[ch]).all()
        assert (new == res.target_class[ch]).all()
        assert (res.labels[idx, true[ch]] == 0.0).all()
        assert (_row_changes(res)[ch] == 2).all()
    elif kind == "sln":
        vals = res.labels[idx, true[ch]]
        assert (vals >= np.float32(0.6)).all() and (vals <= np.float32(0.9)).all()
        assert vals.std() > 0.05  # really drawn, not a constant
        assert (_row_changes(res)[ch] == 1).all()  # only the source entry changed
    else:  # missing
        assert (pos_after[ch] == 0).all()
        assert (res.labels[ch] == 0).all()
    assert res.labels[~ch].tobytes() == SINGLE[~ch].tobytes()


def test_input_not_modified():
    y = SINGLE.copy()
    before = y.tobytes()
    for kind in KINDS:
        res = corrupt_labels(y, CorruptionConfig(kind=kind, ratio=0.5, seed=1))
        assert res.labels is not y and res.clean_labels is not y
        assert not np.shares_memory(res.labels, y)
    assert y.tobytes() == before


@pytest.mark.parametrize("cfg", [dict(kind="none", ratio=0.3), dict(kind="man", ratio=0.0),
                                 dict(kind="san", ratio=0.001)])  # round(0.4) = 0 clips
def test_no_corruption_returns_labels_unchanged(cfg):
    res = _run(**cfg)
    assert res.n_corrupted == 0
    assert res.labels.tobytes() == SINGLE.tobytes()
    assert (res.kind_code == 0).all() and (res.source_class == -1).all() and (res.target_class == -1).all()
    assert (res.class_rate == 0).all() and (res.label_noise_rate == 0).all()


def test_soft_range_respected_for_narrow_range():
    res = _run(kind="sln", ratio=0.5, soft_range=(0.7, 0.72))
    vals = res.labels[np.flatnonzero(res.changed), res.source_class[res.changed]]
    assert vals.min() >= np.float32(0.7) and vals.max() <= np.float32(0.72)


# ---------------------------------------------------------------------------------------------
# nesting


@pytest.mark.parametrize("data", ["single", "multi"])
@pytest.mark.parametrize("profile", ["uniform", "concentrated", "graded"])
@pytest.mark.parametrize("kind", KINDS)
def test_nested_across_ratios(kind, profile, data):
    y = SINGLE if data == "single" else MULTI
    extra = dict(k_classes=25) if profile == "concentrated" else {}
    results = [corrupt_labels(y, CorruptionConfig(kind=kind, ratio=r, profile=profile, seed=11, **extra),
                              similarity=SIM) for r in RATIOS]
    for small, big in zip(results, results[1:]):
        assert small.n_corrupted < big.n_corrupted
        assert not (small.changed & ~big.changed).any(), "smaller ratio's clips not a subset"
        shared = small.changed
        assert small.labels[shared].tobytes() == big.labels[shared].tobytes()
        assert (small.source_class[shared] == big.source_class[shared]).all()
        assert (small.target_class[shared] == big.target_class[shared]).all()


def test_not_nested_uses_ratio_dependent_stream():
    small = _run(kind="man", ratio=0.2, nested=False, seed=5)
    big = _run(kind="man", ratio=0.3, nested=False, seed=5)
    assert small.n_corrupted == 80 and big.n_corrupted == 120
    assert (small.changed & ~big.changed).any()  # not a subset any more
    again = _run(kind="man", ratio=0.2, nested=False, seed=5)
    assert again.labels.tobytes() == small.labels.tobytes()  # still deterministic


# ---------------------------------------------------------------------------------------------
# target choice


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", ["san", "man"])
def test_similar_targets_stay_in_family(kind, ratio):
    res = _run(kind=kind, ratio=ratio, target="similar", seed=2)
    ch = res.changed
    assert (FAMILY[res.target_class[ch]] == FAMILY[res.source_class[ch]]).all()
    assert (res.target_class[ch] != res.source_class[ch]).all()
    m = man_transition_matrix(res)
    assert m.sum() == res.n_corrupted
    assert m[FAMILY[:, None] != FAMILY[None, :]].sum() == 0  # block-diagonal
    assert np.trace(m) == 0
    # all 4 siblings get used somewhere (the draw is not stuck on one)
    if ratio == 0.5:
        assert len(np.unique(res.target_class[ch] - 5 * FAMILY[res.target_class[ch]])) == 5


def test_uniform_targets_cross_families():
    res = _run(kind="man", ratio=0.5, target="uniform", seed=2)
    ch = res.changed
    same = FAMILY[res.target_class[ch]] == FAMILY[res.source_class[ch]]
    # uniform over 49 others: about 4/49 stay in family
    assert 0.0 < same.mean() < 0.25
    assert len(np.unique(res.target_class[ch])) > 40


def test_similar_weights_proportional():
    sim = np.zeros((C, C))
    sim[:, 1] = 1.0
    sim[:, 2] = 9.0
    y = np.zeros((N, C), dtype=np.float32)
    y[:, 0] = 1.0
    res = corrupt_labels(y, CorruptionConfig(kind="san", ratio=1.0, target="similar", seed=0), similarity=sim)
    frac2 = (res.target_class == 2).mean()
    assert set(np.unique(res.target_class)) == {1, 2}
    assert 0.84 < frac2 < 0.96  # expected 0.9


# ---------------------------------------------------------------------------------------------
# determinism


@pytest.mark.parametrize("profile", ["uniform", "concentrated", "graded"])
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_identical_bytes_different_seed_differs(kind, profile):
    cfg = dict(kind=kind, ratio=0.3, profile=profile, k_classes=20, target="similar")
    a = corrupt_labels(MULTI, CorruptionConfig(seed=9, **cfg), similarity=SIM)
    b = corrupt_labels(MULTI, CorruptionConfig(seed=9, **cfg), similarity=SIM)
    for name in CorruptionResult.ARRAYS:
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    c = corrupt_labels(MULTI, CorruptionConfig(seed=10, **cfg), similarity=SIM)
    assert not np.array_equal(a.changed, c.changed)
    assert a.labels.tobytes() != c.labels.tobytes()


def test_kinds_share_the_clip_selection():
    """Same seed and ratio: the same clips and source classes whatever the kind (paired runs)."""
    res = [_run(y=MULTI, kind=k, ratio=0.3, seed=4) for k in KINDS]
    for r in res[1:]:
        assert np.array_equal(r.changed, res[0].changed)
        assert np.array_equal(r.source_class, res[0].source_class)


# ---------------------------------------------------------------------------------------------
# profiles


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3])
@pytest.mark.parametrize("data", ["single", "multi"])
@pytest.mark.parametrize("kind", KINDS)
def test_concentrated_profile(kind, data, ratio):
    y = SINGLE if data == "single" else MULTI
    k = 15
    cfg = CorruptionConfig(kind=kind, ratio=ratio, profile="concentrated", k_classes=k, seed=8)
    res = corrupt_labels(y, cfg, similarity=SIM)
    chosen = concentrated_source_classes(C, y, cfg)
    assert len(chosen) == k and len(np.unique(chosen)) == k
    assert res.n_corrupted == round(ratio * N)
    assert np.isin(res.source_class[res.changed], chosen).all()
    touched = np.flatnonzero(res.class_rate > 0)
    assert np.isin(touched, chosen).all()
    assert (res.class_rate[~np.isin(np.arange(C), chosen)] == 0).all()
    if data == "single":
        assert len(touched) >= k - 2  # 40+ corrupted clips spread over the 15 chosen classes
        assert res.class_rate[chosen].mean() == pytest.approx(ratio * N / (8 * k))
    # the chosen classes do not depend on the ratio
    other = concentrated_source_classes(C, y, cfg.replace(ratio=0.05))
    assert np.array_equal(chosen, other)


@pytest.mark.parametrize("ratio", RATIOS)
def test_graded_profile_sums_and_averages(ratio):
    cfg = CorruptionConfig(kind="man", ratio=ratio, profile="graded", graded_concentration=2.0, seed=6)
    res = corrupt_labels(SINGLE, cfg)
    n = round(ratio * N)
    counts = np.bincount(res.source_class[res.changed], minlength=C)
    assert counts.sum() == n == res.n_corrupted
    assert (counts <= 8).all()  # capped by the class's clips
    assert res.class_rate.mean() == pytest.approx(ratio)  # balanced classes: exact mean
    assert res.class_rate.std() > 0.05  # uneven
    # rates follow the weights where no cap binds: within one clip of the quota
    w = graded_class_weights(C, cfg)
    quota = n * w / w.sum()
    if quota.max() < 8:
        assert np.abs(counts - quota).max() < 1.0


def test_graded_concentration_controls_unevenness():
    def spread(conc):
        res = _run(kind="missing", ratio=0.2, profile="graded", graded_concentration=conc, seed=1)
        return res.class_rate.std()

    assert spread(0.3) > 2 * spread(50.0)


def test_graded_multilabel_caps_and_redistribution():
    res = _run(y=MULTI, kind="sln", ratio=0.5, profile="graded", graded_concentration=0.3, seed=2)
    assert res.n_corrupted == 200
    counts = np.bincount(res.source_class[res.changed], minlength=C)
    n_pos = (MULTI >= 0.5).sum(axis=0)
    assert (counts <= n_pos).all()
    assert (res.class_rate <= 1.0).all()
    assert (MULTI[np.flatnonzero(res.changed), res.source_class[res.changed]] == 1).all()


def test_uniform_profile_spreads_over_classes():
    res = _run(kind="missing", ratio=0.5, seed=0)
    counts = np.bincount(res.source_class[res.changed], minlength=C)
    assert (counts > 0).sum() >= 45 and counts.max() <= 8


# ---------------------------------------------------------------------------------------------
# multi-label input


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("profile", ["uniform", "graded"])
@pytest.mark.parametrize("kind", KINDS)
def test_multilabel_exactly_one_positive_acted_on(kind, profile, ratio):
    res = _run(y=MULTI, kind=kind, ratio=ratio, profile=profile, seed=12)
    ch = res.changed
    idx = np.flatnonzero(ch)
    src, tgt = res.source_class[ch], res.target_class[ch]
    assert res.n_corrupted == round(ratio * N)
    assert (MULTI[idx, src] == 1.0).all()  # the source was a true positive
    diff = res.labels != MULTI
    n_clean_pos = (MULTI >= 0.5).sum(axis=1)
    n_pos = (res.labels >= 0.5).sum(axis=1)
    # all other positives untouched
    others = (MULTI >= 0.5) & ~np.eye(C, dtype=bool)[res.source_class.clip(0)] & ch[:, None]
    assert (res.labels[others] == 1.0).all()
    if kind == "san":
        assert (diff[ch].sum(axis=1) == 1).all()
        assert (res.labels[idx, src] == 1.0).all() and (MULTI[idx, tgt] == 0).all()
        assert (res.labels[idx, tgt] == 1.0).all()
        assert (n_pos[ch] == n_clean_pos[ch] + 1).all()
    elif kind == "man":
        assert (diff[ch].sum(axis=1) == 2).all()
        assert (res.labels[idx, src] == 0.0).all() and (res.labels[idx, tgt] == 1.0).all()
        assert (MULTI[idx, tgt] == 0).all()
        assert (n_pos[ch] == n_clean_pos[ch]).all()
    elif kind == "sln":
        assert (diff[ch].sum(axis=1) == 1).all()
        assert ((res.labels[idx, src] >= np.float32(0.6)) & (res.labels[idx, src] <= np.float32(0.9))).all()
    else:
        assert (diff[ch].sum(axis=1) == 1).all()
        assert (res.labels[idx, src] == 0.0).all()
        assert (n_pos[ch] == n_clean_pos[ch] - 1).all()
    assert res.labels[~ch].tobytes() == MULTI[~ch].tobytes()
    # the source positive is picked at random among the clip's positives, not always the first
    multi_pos = n_clean_pos[ch] > 1
    first = MULTI[ch].argmax(axis=1)
    if profile == "uniform":
        assert (src[multi_pos] != first[multi_pos]).any()


def test_clips_without_positive_never_corrupted():
    y = SINGLE.copy()
    y[:200] = 0.0  # 200 clips with no positive
    res = corrupt_labels(y, CorruptionConfig(kind="missing", ratio=0.5, seed=0))
    assert res.n_corrupted == 200
    assert not res.changed[:200].any()


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("profile,extra,ratio", [
    ("uniform", {}, 0.6),  # only 200 clips of 400 have a positive
    ("graded", {}, 0.6),
    ("concentrated", {"k_classes": 5}, 0.2),  # 5 classes x 8 clips = 40 < 80
])
def test_error_ratio_above_possible(profile, extra, ratio):
    y = SINGLE.copy()
    y[:200] = 0.0
    with pytest.raises(ConfigError, match=r"corruption\.ratio") as err:
        corrupt_labels(y, CorruptionConfig(kind="man", ratio=ratio, profile=profile, **extra))
    msg = str(err.value)
    assert str(round(ratio * N)) in msg


def test_error_concentrated_limit_is_exact():
    cfg = dict(kind="san", profile="concentrated", k_classes=5)
    assert _run(ratio=0.1, **cfg).n_corrupted == 40  # exactly the 40 available clips
    with pytest.raises(ConfigError, match=r"corruption\.ratio.*41.*40"):
        _run(ratio=41 / N, **cfg)


def test_error_k_classes_too_large():
    with pytest.raises(ConfigError, match=r"corruption\.k_classes"):
        _run(kind="san", ratio=0.1, profile="concentrated", k_classes=51)


@pytest.mark.parametrize("kind", ["san", "man"])
def test_error_similar_without_similarity(kind):
    with pytest.raises(ConfigError, match="similarity"):
        corrupt_labels(SINGLE, CorruptionConfig(kind=kind, ratio=0.1, target="similar"))


def test_similar_without_similarity_is_fine_for_kinds_without_target():
    res = corrupt_labels(SINGLE, CorruptionConfig(kind="sln", ratio=0.1, target="similar"))
    assert res.n_corrupted == 40


def test_error_no_candidate_names_clip_and_class():
    names = [f"c{i}" for i in range(C)]
    with pytest.raises(ConfigError, match=r"clip \d+ \(source class \d+ \('c\d+'\)\)"):
        corrupt_labels(SINGLE, CorruptionConfig(kind="man", ratio=0.1, target="similar"),
                       similarity=np.eye(C), class_names=names)


@pytest.mark.parametrize("bad", [np.ones((C, C - 1)), -SIM, SIM * np.nan])
def test_error_bad_similarity(bad):
    with pytest.raises(ConfigError, match="similarity"):
        corrupt_labels(SINGLE, CorruptionConfig(kind="man", ratio=0.1, target="similar"), similarity=bad)


@pytest.mark.parametrize("bad", [SINGLE[0], SINGLE * 2, SINGLE - 0.5])
def test_error_bad_labels(bad):
    with pytest.raises(ConfigError, match="clean labels"):
        corrupt_labels(bad, CorruptionConfig(kind="man", ratio=0.1))


# ---------------------------------------------------------------------------------------------
# save / load, summary


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(tmp_path, kind):
    res = _run(y=MULTI, kind=kind, ratio=0.3, profile="graded", target="similar", seed=3)
    write_corruption(tmp_path, res)  # the run record stores it (csu_lib.records)
    back = read_corruption(tmp_path)
    assert back.config == res.config
    for name in CorruptionResult.ARRAYS:
        a, b = getattr(res, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


def test_summary_and_transition_matrix():
    res = _run(y=MULTI, kind="san", ratio=0.4, seed=1)
    names = [f"c{i}" for i in range(C)]
    df = corruption_summary(res, names)
    assert list(df.columns) == ["class", "n_clean_positive", "class_rate", "label_noise_rate",
                                "n_as_source", "n_as_target"]
    assert len(df) == C and df["class"].tolist() == names
    assert df["n_as_source"].sum() == df["n_as_target"].sum() == res.n_corrupted == 160
    np.testing.assert_array_equal(df["n_clean_positive"], (MULTI >= 0.5).sum(axis=0))
    np.testing.assert_allclose(df["class_rate"], df["n_as_source"] / df["n_clean_positive"])
    m = man_transition_matrix(res)
    assert m.shape == (C, C) and m.sum() == 160
    np.testing.assert_array_equal(m.sum(axis=1), df["n_as_source"])
    np.testing.assert_array_equal(m.sum(axis=0), df["n_as_target"])
    # SAN: label noise shows up on the target classes, not the (kept) source
    assert (df["label_noise_rate"][df["n_as_target"] > 0] > 0).all()
    assert corruption_summary(res)["class"].iloc[3] == "class_3"
    # SLN/missing have no transitions
    assert man_transition_matrix(_run(kind="sln", ratio=0.4)).sum() == 0
