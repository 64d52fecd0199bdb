"""How a figure is written (csu_lib.report.figure_files): the runs behind it, and the runs among
them that did not converge, in its JSON, its report line and under its axes."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from csu_lib.report import figure_files  # noqa: E402
from csu_lib.report.page import _runs_line  # noqa: E402
from csu_lib.study import run_config  # noqa: E402


def _records(flags):
    return [SimpleNamespace(config=run_config("smoke", seed=seed, device="cpu"), final_metrics=fm)
            for seed, fm in enumerate({"converged": f} if f is not None else {} for f in flags)]


def test_runs_behind_lists_the_runs_that_did_not_converge():
    recs = _records([True, False, True])
    behind = figure_files.runs_behind(recs)
    assert behind["n_runs"] == 3 and behind["not_converged"] == [recs[1].config.run_id]
    # configs, and records written before the rule, say nothing about convergence
    assert "not_converged" not in figure_files.runs_behind([r.config for r in recs])
    assert "not_converged" not in figure_files.runs_behind(_records([None, None]))
    # a run table (records_frame) with a converged column: NaN is "not judged"
    table = pd.DataFrame({"run_id": ["a", "b", "c"], "train.seed": [0, 1, 2], "converged": [True, False, float("nan")]})
    assert figure_files.runs_behind(table)["not_converged"] == ["b"]


def test_the_report_line_and_the_figure_say_how_many_runs_did_not_converge(tmp_path):
    recs = _records([False, True])
    line = _runs_line({"runs_behind": figure_files.runs_behind(recs)})
    assert line.startswith("Runs behind it: 2 (seeds 0, 1); 1 did not converge") and recs[0].config.run_id in line
    assert _runs_line({"runs_behind": figure_files.runs_behind(_records([True, True]))}).endswith("; all converged.")
    fig, _ = plt.subplots()
    figure_files.save_figure(fig, "f", tmp_path, runs=recs)
    assert [t.get_text() for t in fig.texts] == [
        "1 of 2 runs did not converge (last 10% of epochs: training loss changed by >= 2% or validation mAP by >= 0.01)"]
    fig2, _ = plt.subplots()
    figure_files.save_figure(fig2, "g", tmp_path, runs=_records([True, True]))
    assert fig2.texts == [] and (tmp_path / "g.png").is_file() and (tmp_path / "g.pdf").is_file()
    plt.close("all")
