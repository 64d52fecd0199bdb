"""Test mAP per group of classes (csu_lib.analysis.class_groups): the group means against AP per
class computed independently with scikit-learn, which classes count as corrupted under the audit
design, the tables of the uneven degradation figure on hand-made run tables, the figure, its JSON
and its key numbers, and the comparison table's group columns -- all without training."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402

from csu_lib import plots  # noqa: E402
from csu_lib.analysis import class_groups as G  # noqa: E402
from csu_lib.analysis import results  # noqa: E402
from csu_lib.analysis.comparison import comparison_table  # noqa: E402
from csu_lib.config import CorruptionConfig, LossConfig, MethodConfig, RunConfig, TrainConfig  # noqa: E402
from csu_lib.core.errors import ConfigError, CsuError  # noqa: E402
from csu_lib.corruption import audit_levels, corrupt_labels  # noqa: E402
from csu_lib.evaluation import split_metrics  # noqa: E402
from csu_lib.metrics import per_class_ap  # noqa: E402
from csu_lib.records import RunRecord, write_corruption, write_scores  # noqa: E402
from csu_lib.report import figure_numbers  # noqa: E402
from csu_lib.report.catalog import key_numbers  # noqa: E402

RNG = np.random.default_rng(7)
N, C = 80, 6
LABELS = (RNG.random((N, C)) < 0.3).astype(np.float32)
LABELS[:, 5] = 0  # class 5 has no test positive: no AP, left out like mAP leaves it out
SCORES = np.clip(LABELS * 0.4 + RNG.random((N, C)) * 0.7, 0, 1)
CORRUPTED = np.array([True, False, True, False, True, False])


def _sklearn_ap(classes) -> float:
    """Mean over ``classes`` with a positive of scikit-learn's AP, computed here independently."""
    aps = [average_precision_score(LABELS[:, c], SCORES[:, c]) for c in classes if LABELS[:, c].any()]
    return float(np.mean(aps))


def test_group_map_matches_an_independent_computation():
    got = G.group_map(per_class_ap(SCORES, LABELS), CORRUPTED)
    assert got["mAP"] == pytest.approx(_sklearn_ap(range(C)), abs=1e-12)
    assert got["mAP_corrupted"] == pytest.approx(_sklearn_ap([0, 2, 4]), abs=1e-12)
    assert got["mAP_control"] == pytest.approx(_sklearn_ap([1, 3]), abs=1e-12)  # class 5: no positive
    assert (got["n_corrupted_classes"], got["n_control_classes"]) == (3, 3)
    # stored APs arrive as a JSON list with None for a class without a positive
    stored = [None if math.isnan(a) else a for a in per_class_ap(SCORES, LABELS)]
    assert G.group_map(stored, CORRUPTED) == got
    assert math.isnan(G.group_map(stored, np.zeros(C, bool))["mAP_corrupted"])  # an empty group
    with pytest.raises(ValueError, match="6 class APs but 5"):
        G.group_map(stored, CORRUPTED[:5])


@pytest.mark.parametrize("kind", ["san", "man", "sln", "missing"])
def test_the_corrupted_classes_are_those_the_audit_design_corrupted(kind):
    clean = (np.random.default_rng(1).random((400, 10)) < 0.15).astype(np.float32)
    config = CorruptionConfig(kind=kind, ratio=0.5, profile="audit", seed=2)
    result = corrupt_labels(clean, config)
    np.testing.assert_array_equal(G.corrupted_classes(result, 10), audit_levels(10, config) > 0)
    assert G.corrupted_classes(None, 4).tolist() == [False] * 4  # a clean run corrupts nothing


def _record(path, *, kind="san", loss="bce", seed=0, class_ap=True, method="none"):
    """A complete RunRecord of the audit design on the test labels above (no training)."""
    path.mkdir(parents=True, exist_ok=True)
    corruption = CorruptionConfig(kind=kind, ratio=0.5, profile="audit", seed=seed)
    config = RunConfig(corruption=corruption, loss=LossConfig(name=loss), method=MethodConfig(name=method),
                       train=TrainConfig(seed=seed))
    write_corruption(path, corrupt_labels(LABELS, corruption))
    write_scores(path, "test", SCORES)
    test = split_metrics(SCORES, LABELS)
    if not class_ap:  # a record written before class_ap was stored
        test.pop("class_ap")
    return RunRecord(path=path, config=config, history=pd.DataFrame(), log_sigma2=None, steps_per_epoch=1,
                     final_metrics={"test": test}, versions={}, complete=True)


def test_a_run_groups_its_classes_by_its_own_corruption(tmp_path, monkeypatch):
    record = _record(tmp_path / "a")
    corrupted = record.corruption().label_noise_rate > 0
    expected = G.group_map([a for a in record.final_metrics["test"]["class_ap"]], corrupted)
    assert G.run_group_map(record) == expected
    assert expected["mAP_corrupted"] == pytest.approx(_sklearn_ap(np.flatnonzero(corrupted)), abs=1e-12)
    assert expected["mAP"] == pytest.approx(record.final_metrics["test"]["mAP"], abs=1e-12)
    # an older record without class_ap: rescored from its test scores and its dataset's test labels
    old = _record(tmp_path / "old", class_ap=False)
    monkeypatch.setattr(G, "dataset_test_labels", lambda data, data_dir=None: LABELS)
    assert G.run_group_map(old) == pytest.approx(expected, nan_ok=True)
    monkeypatch.setattr(G, "dataset_test_labels", lambda data, data_dir=None: LABELS[:-1])
    with pytest.raises(CsuError, match="do not match the test labels"):
        G.run_group_map(old)
    frame = G.group_frame([record])
    assert frame["test.mAP_corrupted"].iloc[0] == expected["mAP_corrupted"]
    assert frame["test.mAP_control"].iloc[0] == expected["mAP_control"]
    assert frame["n_corrupted_classes"].iloc[0] == expected["n_corrupted_classes"]


def _runs(rows):
    cols = ["corruption.kind", "corruption.ratio", "corruption.profile", "model.name", "method.name", "loss.name",
            "train.seed", "test.mAP", "test.mAP_corrupted", "test.mAP_control"]
    return pd.DataFrame(rows, columns=cols).assign(run_id=lambda d: [f"r{i}" for i in range(len(d))])


AUDIT = _runs([
    ("san", 0.5, "audit", "cnn", "none", "bce", 0, 0.60, 0.50, 0.70),
    ("san", 0.5, "audit", "cnn", "none", "bce", 1, 0.64, 0.52, 0.76),
    ("san", 0.5, "audit", "cnn", "none", "csu", 0, 0.66, 0.58, 0.74),
    ("san", 0.5, "audit", "cnn", "none", "csu", 1, 0.67, 0.62, 0.72),
    ("man", 0.5, "audit", "cnn", "none", "bce", 0, 0.50, 0.40, 0.60),
    ("man", 0.5, "audit", "cnn", "none", "csu", 0, 0.55, 0.50, 0.60),
])


def _half_width(values) -> float:
    return stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))


def test_group_table_and_paired_difference_by_hand():
    table = G.group_table(AUDIT, kinds=["san", "man"])
    assert list(dict.fromkeys(table["kind"])) == ["san", "man"]
    assert table[table["kind"] == "san"]["group"].tolist() == ["all", "corrupted", "control"] * 2
    row = table[(table["kind"] == "san") & (table["loss.name"] == "bce") & (table["group"] == "corrupted")].iloc[0]
    assert (row["mean"], row["n"], row["ratio"], row["metric"]) == (pytest.approx(0.51), 2, 0.5, "test.mAP_corrupted")
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((0.51 - _half_width([0.50, 0.52]), 0.51 + _half_width([0.50, 0.52])))
    one = table[(table["kind"] == "man") & (table["loss.name"] == "csu") & (table["group"] == "control")].iloc[0]
    assert (one["mean"], one["ci_lo"], one["ci_hi"], one["n"]) == (0.60, 0.60, 0.60, 1)  # one seed: the point

    paired = G.group_paired_difference(AUDIT, losses=["bce", "csu"], kinds=["san", "man"])
    assert set(paired["difference"]) == {"csu - bce"} and len(paired) == 6  # 2 kinds x 3 groups
    san = paired[(paired["kind"] == "san") & (paired["group"] == "corrupted")].iloc[0]
    diffs = [0.58 - 0.50, 0.62 - 0.52]
    assert (san["mean"], san["n"], san["seeds"]) == (pytest.approx(np.mean(diffs)), 2, [0, 1])
    assert san["ci_hi"] - san["mean"] == pytest.approx(_half_width(diffs))
    assert G.group_paired_difference(AUDIT, losses=["csu"]).empty  # one loss: nothing to pair


def test_uniform_and_audit_runs_of_one_kind_are_kept_apart():
    uniform = AUDIT.assign(**{"corruption.profile": "uniform", "test.mAP": 0.3})
    clean = _runs([("none", 0.0, "uniform", "cnn", "none", loss, seed, 0.8, 0.8, 0.8)
                   for loss in ("bce", "csu") for seed in (0, 1)])
    both = pd.concat([AUDIT, uniform, clean], ignore_index=True)
    for table in (results.degradation_table, results.relative_change):
        with pytest.raises(CsuError, match="several corruption designs \\(audit, uniform\\)"):
            table(both)
    curve = results.degradation_table(both, profile="uniform")
    assert curve.loc[curve["ratio"] == 0.5, "test.mAP"].tolist() == [0.3] * 4
    change = results.relative_change(both, profile="audit")
    row = change[(change["kind"] == "san") & (change["loss.name"] == "bce")].iloc[0]
    assert row["change_percent"] == pytest.approx(100 * (0.62 - 0.8) / 0.8)
    assert set(results.with_condition(both)["condition"]) == {"san 50% (audit)", "man 50% (audit)", "san 50%",
                                                               "man 50%", "clean"}


def test_uneven_conditions_check_their_parameters():
    assert results.uneven_conditions([], 0.8) == []  # nothing asked: no check of the ratio
    assert results.uneven_conditions(["san", "man"], 0.5) == ["audit:san:0.5", "audit:man:0.5"]
    with pytest.raises(ConfigError, match="uneven_kinds must be a list"):
        results.uneven_conditions(["noisy"], 0.5)
    with pytest.raises(ConfigError, match=r"change_ratio .* must lie in \(0, 0.5\]"):
        results.uneven_conditions(["san"], 0.8)


def test_the_uneven_figure_its_json_and_its_key_numbers(tmp_path):
    table = G.group_table(AUDIT, kinds=["san", "man"])
    paired = G.group_paired_difference(AUDIT, losses=["bce", "csu"], kinds=["san", "man"])
    fig = plots.plot_degradation_uneven(table, paired, title="uneven")
    axes = fig.axes
    assert len(axes) == 4  # 2 kinds x (group means, paired differences)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["all\nclasses", "corrupted\nclasses",
                                                                 "control\nclasses"]
    assert any("(n=2)" in t.get_text() for t in axes[0].get_legend().get_texts())
    assert len(plots.plot_degradation_uneven(table, None).axes) == 2  # no pairs: one row
    numbers = figure_numbers.degradation_uneven_numbers(
        profile="smoke", kinds=["san", "man"], ratio=0.5, models=["cnn"], losses=["bce", "csu"],
        definition=G.GROUP_DEFINITION, table=table, paired=paired, convergence=pd.DataFrame(), runs=[])
    rows = dict(key_numbers("degradation_uneven", numbers))
    assert rows["bce san 50% (audit), corrupted classes (cnn)"].startswith("0.510 [")
    assert rows["csu - bce, san 50% (audit), corrupted classes (paired)"].endswith(", n = 2")


def test_the_comparison_table_adds_the_group_maps_under_the_audit_design(tmp_path):
    groups = {"bce": [_record(tmp_path / f"b{s}", loss="bce", seed=s) for s in (0, 1)],
              "csu": [_record(tmp_path / f"c{s}", loss="csu", seed=s) for s in (0, 1)]}
    table = comparison_table(groups, reference="bce")
    for method, recs in groups.items():
        row = table[table["method"] == method].iloc[0]
        maps = [G.run_group_map(r) for r in recs]
        assert row["mAP_corrupted"] == pytest.approx(np.mean([m["mAP_corrupted"] for m in maps]))
        assert row["mAP_control"] == pytest.approx(np.mean([m["mAP_control"] for m in maps]))
        assert row["mAP"] == pytest.approx(np.mean([m["mAP"] for m in maps]))
    # the two seeds drew different corrupted classes, so the group means differ between them
    assert G.run_group_map(groups["bce"][0]) != G.run_group_map(groups["bce"][1])
