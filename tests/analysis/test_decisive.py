"""The decisive study's tables (csu_lib.analysis.decisive): paired differences to BCE against a
Student-t interval computed here with scipy, the oracle recovery and the best robust loss on
hand-made summaries, the run labels, the CSV, the figure, and the per-run summary of real smoke runs."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

from csu_lib import plots  # noqa: E402
from csu_lib.analysis import decisive as D  # noqa: E402
from csu_lib.config import LossConfig, MethodConfig, RunConfig  # noqa: E402
from csu_lib.core.errors import CsuError  # noqa: E402
from csu_lib.study import grid, run_all  # noqa: E402

SEEDS = [0, 1, 2, 3]
#: test mAP per run spec and seed, in a uniform and an audit condition (hand-made)
MAPS = {
    "bce": [0.70, 0.72, 0.69, 0.71],
    "csu": [0.69, 0.73, 0.66, 0.70],
    "bce+class_oracle": [0.72, 0.73, 0.70, 0.73],
    "bce+sample_oracle": [0.78, 0.79, 0.77, 0.80],
    "gce": [0.74, 0.74, 0.72, 0.74],
    "sce": [0.71, 0.75, 0.70, 0.72],
}


def _row(condition, design, kind, run, seed, value, corrupted=np.nan, control=np.nan, optimizer="adam"):
    return {"run_id": f"{run}-{condition}-{optimizer}-{seed}", "condition": condition, "design": design, "kind": kind,
            "ratio": 0.0 if kind == "none" else 0.5, "run": run, "loss": run.split("+")[0],
            "method": run.partition("+")[2] or "none", "model": "pooled_cnn", "optimizer": optimizer, "lr": 0.003,
            "seed": seed, "test.mAP": value, "test.mAP_corrupted": corrupted, "test.mAP_control": control}


def _summary(maps=MAPS, condition="san 50%", design="uniform", groups=False, optimizer="adam") -> pd.DataFrame:
    rows = []
    for run, values in maps.items():
        for seed, value in zip(SEEDS, values):
            extra = dict(corrupted=value - 0.1, control=value + 0.05) if groups else {}
            rows.append(_row(condition, design, "san", run, seed, value, optimizer=optimizer, **extra))
    return pd.DataFrame(rows)


def _t_interval(diffs):
    """Mean and Student-t 95% interval of paired differences, computed here independently."""
    d = np.asarray(diffs, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def test_paired_to_bce_matches_a_t_interval_computed_by_hand():
    paired = D.paired_to_bce(_summary())
    assert list(paired["run"]) == [r for r in MAPS if r != "bce"]  # the summary's order, BCE left out
    assert set(paired["metric"]) == {"test.mAP"}  # no group metric in a uniform summary without them
    for _, row in paired.iterrows():
        mean, lo, hi = _t_interval(np.subtract(MAPS[row["run"]], MAPS["bce"]))
        assert (row["n"], row["seeds"]) == (4, SEEDS)
        assert (row["mean"], row["ci_lo"], row["ci_hi"]) == pytest.approx((mean, lo, hi), abs=1e-12)
        assert row["oracle"] == row["run"].endswith("_oracle")
    by_run = paired.set_index("run")
    # sample oracle: +0.08 +0.07 +0.08 +0.09 -> clearly above 0; csu: -0.01 +0.01 -0.03 -0.01
    assert by_run.loc["bce+sample_oracle", "verdict"] == "above 0"
    assert by_run.loc["csu", "verdict"] == "covers 0"
    assert tuple(paired.columns) == D.PAIRED_COLUMNS


def test_paired_group_metrics_pair_only_where_both_runs_have_them():
    summary = _summary(groups=True, condition="san 50% (audit)", design="audit")
    summary.loc[(summary["run"] == "gce") & (summary["seed"] == 3), "test.mAP_control"] = np.nan
    paired = D.paired_to_bce(summary)
    assert list(dict.fromkeys(paired["metric"])) == ["test.mAP", "test.mAP_corrupted", "test.mAP_control"]
    gce = paired[paired["run"] == "gce"].set_index("metric")
    assert gce.loc["test.mAP", "n"] == 4 and gce.loc["test.mAP_control", "n"] == 3
    assert gce.loc["test.mAP_control", "seeds"] == [0, 1, 2]
    mean, lo, hi = _t_interval(np.subtract(MAPS["gce"][:3], MAPS["bce"][:3]))
    assert gce.loc["test.mAP_control", ["mean", "ci_lo", "ci_hi"]].tolist() == pytest.approx([mean, lo, hi])
    assert len(D.paired_to_bce(summary, groups=False)) == len(MAPS) - 1


def test_pairs_stay_within_a_condition_and_an_optimiser_and_leave_out_unpaired_seeds():
    adam = _summary()
    sgd = _summary({"bce": [0.5, 0.6, 0.55, 0.52], "csu": [0.6, 0.62, 0.58, 0.6]}, optimizer="sgd")
    clean = _summary({"bce": [0.9, 0.9, 0.9, 0.9], "csu": [0.9, 0.8, 0.9, 0.9]}, condition="clean", design="none")
    summary = pd.concat([adam, sgd, clean], ignore_index=True)
    summary = summary[~((summary["run"] == "bce") & (summary["seed"] == 0) & (summary["optimizer"] == "sgd"))]
    paired = D.paired_to_bce(summary)
    csu = paired[paired["run"] == "csu"].set_index(["condition", "optimizer"])
    assert csu.loc[("san 50%", "sgd"), "seeds"] == [1, 2, 3]  # seed 0 lost its BCE partner
    assert csu.loc[("san 50%", "sgd"), "mean"] == pytest.approx(np.mean([0.02, 0.03, 0.08]))
    assert csu.loc[("san 50%", "adam"), "mean"] == pytest.approx(np.mean(np.subtract(MAPS["csu"], MAPS["bce"])))
    assert csu.loc[("clean", "adam"), "mean"] == pytest.approx(-0.025)
    assert list(dict.fromkeys(paired["condition"])) == ["san 50%", "clean"]


@pytest.mark.parametrize("n, lo, hi, expected", [(4, 0.01, 0.03, "above 0"), (4, -0.03, -0.01, "below 0"),
                                                 (4, -0.01, 0.01, "covers 0"), (4, 0.0, 0.0, "covers 0"),
                                                 (1, 0.02, 0.02, "n < 2")])
def test_verdict(n, lo, hi, expected):
    assert D.verdict(n, lo, hi) == expected


def test_two_runs_of_one_setting_run_and_seed_are_an_error():
    summary = _summary()
    twice = pd.concat([summary, summary.iloc[[0]].assign(run_id="copy")], ignore_index=True)
    with pytest.raises(CsuError, match="several runs share a setting, run spec and seed"):
        D.paired_to_bce(twice)
    with pytest.raises(CsuError, match="no column"):
        D.paired_to_bce(summary.drop(columns=["optimizer"]))


def test_oracle_recovery_by_hand():
    recovery = D.oracle_recovery(_summary()).set_index("run")
    assert "bce+sample_oracle" not in recovery.index
    oracle_gain = np.mean(np.subtract(MAPS["bce+sample_oracle"], MAPS["bce"]))  # 0.08
    for run in ("csu", "bce+class_oracle", "gce", "sce"):
        gain = np.mean(np.subtract(MAPS[run], MAPS["bce"]))
        assert recovery.loc[run, "recovery"] == pytest.approx(gain / oracle_gain)
        assert recovery.loc[run, "oracle_gain"] == pytest.approx(oracle_gain) and recovery.loc[run, "note"] == ""
    assert recovery.loc["gce", "recovery"] == pytest.approx(0.03 / 0.08)


def test_oracle_recovery_is_nan_and_says_so_where_the_oracle_gains_nothing_significant():
    maps = {**MAPS, "bce+sample_oracle": [0.72, 0.70, 0.70, 0.71]}  # +0.02 -0.02 +0.01 0: covers 0
    recovery = D.oracle_recovery(_summary(maps))
    assert recovery["recovery"].isna().all()
    assert all("not significantly above 0" in note for note in recovery["note"])
    without = D.oracle_recovery(_summary({k: v for k, v in MAPS.items() if k != "bce+sample_oracle"}))
    assert without["recovery"].isna().all() and all("no bce+sample_oracle runs" in n for n in without["note"])


def test_best_robust_loss_per_condition():
    audit = _summary({"bce": MAPS["bce"], "gce": MAPS["gce"], "sce": [0.75, 0.76, 0.74, 0.75]},
                     condition="san 50% (audit)", design="audit")
    paired = D.paired_to_bce(pd.concat([_summary(), audit], ignore_index=True))
    best = D.best_robust_loss(paired).set_index("condition")
    # uniform: gce +0.03, sce +0.015; the sample oracle (+0.08) is no robust loss
    assert best.loc["san 50%", "best"] == "gce" and best.loc["san 50%", "mean"] == pytest.approx(0.03)
    assert best.loc["san 50%", "compared"] == "gce sce"
    assert best.loc["san 50% (audit)", "best"] == "sce" and best.loc["san 50% (audit)", "mean"] == pytest.approx(0.045)
    _, lo, hi = _t_interval(np.subtract([0.75, 0.76, 0.74, 0.75], MAPS["bce"]))
    assert best.loc["san 50% (audit)", ["ci_lo", "ci_hi"]].tolist() == pytest.approx([lo, hi])
    assert D.best_robust_loss(paired[paired["run"] == "csu"]).empty


def test_run_labels_tell_the_two_csu_forms_apart():
    def config(**loss):
        return RunConfig(loss=LossConfig(**loss))

    assert D.run_label(config(name="bce")) == "bce"
    assert D.run_label(config(name="csu", csu_fit="gradient")) == "csu"
    assert D.run_label(config(name="csu", csu_fit="stationary")) == "csu_stationary"
    oracle = RunConfig(method=MethodConfig(name="sample_oracle"))
    assert D.run_label(oracle) == "bce+sample_oracle" and D.is_oracle("bce+sample_oracle")
    assert not D.is_oracle("csu") and not D.is_oracle("bce+mixup")


def test_write_summary_is_a_csv_that_reads_back(tmp_path):
    paired = D.paired_to_bce(_summary())
    path = D.write_summary(paired, tmp_path / "results" / "x_paired.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(paired.columns) and len(back) == len(paired)
    assert back["mean"].to_numpy() == pytest.approx(paired["mean"].to_numpy())
    assert sorted(p.name for p in path.parent.iterdir()) == ["x_paired.csv"]  # no temporary file left


def test_the_figure_has_a_panel_per_condition_and_marks_the_oracles():
    audit = _summary(condition="san 50% (audit)", design="audit")
    paired = D.paired_to_bce(pd.concat([_summary(), audit], ignore_index=True))
    fig = plots.plot_paired_to_bce(paired)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["san 50%", "san 50% (audit)"]
    labels = [t.get_text() for t in axes[0].get_yticklabels()]  # top to bottom: the table's order
    assert labels == ["csu", "bce+class_oracle (oracle)", "bce+sample_oracle (oracle)", "gce", "sce"]
    assert list(axes[0].get_yticks()) == [4, 3, 2, 1, 0]
    notes = [t.get_text() for t in axes[0].texts]
    assert notes == ["n=4"] * 5
    with pytest.raises(ValueError, match="no paired difference"):
        plots.plot_paired_to_bce(paired, metric="test.mAP_control")


def test_a_collapsed_run_is_drawn_at_the_edge_with_its_value():
    """A run far below BCE (a collapsed loss) does not squeeze the others: with clip the axis spans
    [-clip, clip] and that run is a triangle at the edge labelled with its mean."""
    paired = D.paired_to_bce(_summary())
    collapsed = paired.assign(mean=paired["mean"].where(paired["run"] != "gce", -0.75),
                              ci_lo=paired["ci_lo"].where(paired["run"] != "gce", -0.77),
                              ci_hi=paired["ci_hi"].where(paired["run"] != "gce", -0.73))
    ax = [a for a in plots.plot_paired_to_bce(collapsed, clip=0.1).axes if a.get_visible()][0]
    assert ax.get_xlim() == pytest.approx((-0.108, 0.108))
    assert "-0.75 (n=4)" in [t.get_text() for t in ax.texts]
    wide = [a for a in plots.plot_paired_to_bce(collapsed, clip=None).axes if a.get_visible()][0]
    assert wide.get_xlim()[0] < -0.77 and "-0.75 (n=4)" not in [t.get_text() for t in wide.texts]


def test_run_summary_of_smoke_runs(tmp_path):
    configs = grid("smoke", conditions=["audit:san:0.5"], runs=["bce", "bce+sample_oracle"], seeds=[0, 1], epochs=1,
                   device="cpu")
    records = run_all(configs, tmp_path / "runs", progress=False)
    summary = D.run_summary(records)
    assert tuple(summary.columns) == D.SUMMARY_COLUMNS and len(summary) == 4
    assert list(summary["run"]) == ["bce", "bce", "bce+sample_oracle", "bce+sample_oracle"]
    assert list(summary["seed"]) == [0, 1, 0, 1] and list(summary["run_id"]) == [c.run_id for c in configs]
    assert set(summary["condition"]) == {"san 50% (audit)"} and set(summary["design"]) == {"audit"}
    assert set(summary["optimizer"]) == {"adam"} and set(summary["kind"]) == {"san"}
    for (_, row), record in zip(summary.iterrows(), records):
        assert row["test.mAP"] == record.final_metrics["test"]["mAP"]
        assert 0 <= row["test.mAP_corrupted"] <= 1 and 0 <= row["test.mAP_control"] <= 1
        assert row["n_corrupted_classes"] > 0 and row["n_control_classes"] > 0
        assert row["epochs_run"] == 1 and row["train_seconds"] > 0 and row["converged"] in (True, False)
    paired = D.paired_to_bce(summary)
    assert list(paired["metric"]) == ["test.mAP", "test.mAP_corrupted", "test.mAP_control"]
    assert set(paired["n"]) == {2} and set(paired["run"]) == {"bce+sample_oracle"}
