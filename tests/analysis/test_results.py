"""Result tables across runs (csu_lib.analysis.results): numbers checked by hand on small run tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from csu_lib.analysis import results
from csu_lib.core.errors import CsuError


def _runs(rows):
    cols = ["corruption.kind", "corruption.ratio", "model.name", "method.name", "loss.name", "train.seed", "test.mAP"]
    return pd.DataFrame(rows, columns=cols).assign(run_id=lambda d: [f"r{i}" for i in range(len(d))])


RUNS = _runs([
    ("none", 0.0, "cnn", "none", "bce", 0, 0.80), ("none", 0.0, "cnn", "none", "bce", 1, 0.90),
    ("none", 0.0, "cnn", "none", "csu", 0, 0.85), ("none", 0.0, "cnn", "none", "csu", 1, 0.85),
    ("san", 0.5, "cnn", "none", "bce", 0, 0.40), ("san", 0.5, "cnn", "none", "bce", 1, 0.54),
    ("san", 0.5, "cnn", "none", "csu", 0, 0.68), ("san", 0.5, "cnn", "none", "csu", 1, 0.765),
    ("man", 0.5, "cnn", "none", "bce", 0, 0.20), ("man", 0.5, "cnn", "none", "bce", 1, 0.30),
    ("man", 0.5, "cnn", "none", "csu", 0, 0.30), ("man", 0.5, "cnn", "none", "csu", 1, 0.40),
    ("san", 0.25, "cnn", "none", "bce", 0, 0.70), ("san", 0.25, "cnn", "none", "bce", 1, 0.72),
])


def test_degradation_table_puts_clean_runs_at_ratio_zero_of_every_type():
    table = results.degradation_table(RUNS, kinds=["san", "man"])
    assert list(dict.fromkeys(table["kind"])) == ["san", "man"]  # the caller's order
    bce_san = table[(table["kind"] == "san") & (table["loss.name"] == "bce")]
    assert bce_san["ratio"].tolist() == [0.0, 0.25, 0.5]
    assert bce_san["test.mAP"].tolist() == pytest.approx([0.85, 0.71, 0.47])
    assert bce_san["n"].tolist() == [2, 2, 2]
    # Student-t 95% CI over 2 seeds: mean +- t(0.975, 1) * sd / sqrt(2)
    half = stats.t.ppf(0.975, 1) * np.std([0.40, 0.54], ddof=1) / np.sqrt(2)
    row = bce_san[bce_san["ratio"] == 0.5].iloc[0]
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((0.47 - half, 0.47 + half))
    assert len(table[(table["kind"] == "man") & (table["loss.name"] == "csu")]) == 2  # 0 and 0.5


def test_relative_change_pairs_runs_with_their_clean_seed():
    change = results.relative_change(RUNS, ratio=0.5).set_index(["kind", "loss.name"])
    # bce san: seed 0: (0.40-0.80)/0.80 = -50 %, seed 1: (0.54-0.90)/0.90 = -40 %  -> mean -45 %
    assert change.loc[("san", "bce"), "change_percent"] == pytest.approx(-45.0)
    # csu san: (0.68-0.85)/0.85 = -20 %, (0.765-0.85)/0.85 = -10 % -> -15 %
    assert change.loc[("san", "csu"), "change_percent"] == pytest.approx(-15.0)
    assert change.loc[("man", "bce"), "change_percent"] == pytest.approx(100 * np.mean([0.2 / 0.8 - 1, 0.3 / 0.9 - 1]))
    assert (change["n"] == 2).all()
    assert (change["ci_lo"] <= change["change_percent"]).all() and (change["change_percent"] <= change["ci_hi"]).all()


def test_relative_change_names_a_run_without_clean_partner():
    runs = RUNS[~((RUNS["corruption.kind"] == "none") & (RUNS["train.seed"] == 1) & (RUNS["loss.name"] == "csu"))]
    with pytest.raises(CsuError, match=r"run r11 \(man 50%, cnn, csu, seed 1\) has no clean run"):
        results.relative_change(runs, ratio=0.5)
    with pytest.raises(CsuError, match="no corrupted run at ratio 0.3"):
        results.relative_change(RUNS, ratio=0.3)


def test_summarise_and_missing_columns():
    table = results.summarise(RUNS)
    clean_bce = table[(table["condition"] == "clean") & (table["loss.name"] == "bce")].iloc[0]
    assert clean_bce["test.mAP"] == pytest.approx(0.85) and clean_bce["seeds"] == [0, 1]
    assert set(table["condition"]) == {"clean", "san 50%", "san 25%", "man 50%"}
    with pytest.raises(CsuError, match=r"no column\(s\) \['test.lwlrap'\]"):
        results.summarise(RUNS, metric="test.lwlrap")


def test_class_precision_table_averages_over_runs_and_skips_undefined():
    runs = pd.DataFrame({"loss.name": ["bce", "bce", "csu"],
                         "test.class_precision": [(1.0, None, 0.5), (0.5, None, 0.7), (0.25, 0.5, None)]})
    table = results.class_precision_table(runs, ["a", "b", "c"])
    assert table["bce"].tolist()[0] == pytest.approx(0.75)
    assert np.isnan(table["bce"].tolist()[1]) and table["n_bce"].tolist() == [2, 0, 2]
    assert table["bce"].tolist()[2] == pytest.approx(0.6)
    assert table["csu"].tolist()[:2] == [0.25, 0.5] and np.isnan(table["csu"].iloc[2])
    with pytest.raises(CsuError, match="has 3 classes, expected 2"):
        results.class_precision_table(runs, ["a", "b"])


def test_class_precision_view_orders_and_averages_what_the_figure_draws():
    """The figure's order and legend means are computed here (csu_lib.analysis.figure_stats), the
    plot draws them as given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from csu_lib import plots
    from csu_lib.analysis import figure_stats

    table = pd.DataFrame({"class": ["a", "b", "c", "d"], "bce": [0.2, np.nan, 0.9, 0.5],
                          "csu": [np.nan, np.nan, np.nan, np.nan]})
    shown, coverage = figure_stats.class_precision_view(table, ["bce", "csu"], sort_by="bce")
    assert shown["class"].tolist() == ["c", "d", "a", "b"]  # descending, no precision last
    assert coverage["bce"] == (pytest.approx(1.6 / 3), 3) and coverage["csu"][1] == 0
    same, _ = figure_stats.class_precision_view(table, ["bce"], sort_by=None)
    assert same["class"].tolist() == ["a", "b", "c", "d"]
    ax = plots.plot_class_precision(shown, ["bce", "csu"], coverage, sort_by="bce")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["BCE (mean 0.533 over its 3 classes with a precision)", "CSU (no class predicted positive)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "d", "a", "b"] and "sorted by BCE" in ax.get_xlabel()
    plt.close("all")
