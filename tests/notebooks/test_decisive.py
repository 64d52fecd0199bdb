"""notebooks/decisive.ipynb runs a study file at smoke size: it trains the runs, writes the two CSV
summaries and the figure, and a second execution trains nothing."""
from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from csu_lib import notebook_runner as notebooks

STUDY = """name: tiny
profile: smoke
epochs: 1
device: cpu
conditions: ["audit:san:0.5"]
runs: [bce, "bce+sample_oracle", gce]
seeds: [0, 1]
"""


@pytest.mark.slow
def test_decisive_notebook_smoke(tmp_path):
    study = tmp_path / "tiny.yaml"
    study.write_text(STUDY)
    params = {"study": str(study), "runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"),
              "fig_dir": str(tmp_path / "figures")}
    out = notebooks.execute("decisive", tmp_path / "executed.ipynb", params)
    for ext in ("png", "pdf"):
        assert (tmp_path / "figures" / f"decisive_tiny.{ext}").stat().st_size > 0
    runs = pd.read_csv(tmp_path / "results" / "tiny_runs.csv")
    assert len(runs) == 6 and sorted(runs["run"]) == sorted(["bce", "bce+sample_oracle", "gce"] * 2)
    assert set(runs["seed"]) == {0, 1} and set(runs["condition"]) == {"san 50% (audit)"}
    assert runs["test.mAP"].between(0, 1).all() and runs["test.mAP_corrupted"].between(0, 1).all()
    paired = pd.read_csv(tmp_path / "results" / "tiny_paired.csv")
    assert len(paired) == 2 * 3  # two runs besides BCE x (all, corrupted, control classes)
    assert list(paired["run"].drop_duplicates()) == ["bce+sample_oracle", "gce"]
    assert set(paired["n"]) == {2} and set(paired["metric"]) == {"test.mAP", "test.mAP_corrupted", "test.mAP_control"}
    assert (paired["ci_lo"] <= paired["mean"]).all() and (paired["mean"] <= paired["ci_hi"]).all()
    assert list(paired["oracle"]) == [True] * 3 + [False] * 3
    executed = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "6 runs: 0 complete, 6 to train" in text
    assert "tiny_runs.csv" in text and "tiny_paired.csv" in text and "decisive_tiny.png" in text
    assert "recovery" in text and "best" in text  # the headers of the recovery and best-robust-loss tables
    # a second execution re-reads the records and trains nothing
    again = notebooks.execute("decisive", tmp_path / "again.ipynb", params)
    text = "".join(o.get("text", "") for c in nbformat.read(again, as_version=4).cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "6 runs: 6 complete, 0 to train" in text
    assert pd.read_csv(tmp_path / "results" / "tiny_runs.csv").equals(runs)
