"""notebooks/comparison.ipynb executes at smoke size and writes its figures and tables."""
from __future__ import annotations

import json

import nbformat
import pytest

from csu_lib import notebook_runner as notebooks
from csu_lib.core.errors import CsuError


@pytest.mark.slow
def test_comparison_notebook_smoke(tmp_path):
    methods = ["bce", "bce+teacher_mask", "csu+mixup_or"]
    seeds = [0, 1]
    out = notebooks.execute("comparison", tmp_path / "executed.ipynb", {
        "profile": "smoke", "condition": "san:0.5", "methods": methods, "seeds": seeds, "mask_percents": [5],
        "epochs": 1, "device": "cpu", "benchmark": {"n_families": 2},
        "runs_dir": str(tmp_path / "runs"), "fig_dir": str(tmp_path / "figures")})
    figures = tmp_path / "figures"
    for name in ("method_comparison", "mask_sweep"):
        for ext in ("png", "pdf", "json"):
            assert (figures / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    numbers = json.loads((figures / "method_comparison.json").read_text())
    assert [row["method"] for row in numbers["table"]] == methods
    for row in numbers["table"]:
        assert row["n"] == len(seeds) and row["seeds"] == seeds
        assert row["lo"] <= row["mean"] <= row["hi"]
    sweep = json.loads((figures / "mask_sweep.json").read_text())
    assert [row["percent"] for row in sweep["table"]] == [0.0, 5.0]  # 0 % = the plain BCE runs
    assert all(row["n"] == len(seeds) for row in sweep["table"])
    # the teacher of each seed is the plain BCE run of that seed: no extra teacher runs
    from csu_lib.records import load_runs

    runs = load_runs(tmp_path / "runs")
    plain_bce = runs[(runs["loss.name"] == "bce") & (runs["method.name"] == "none")]
    assert len(plain_bce) == len(seeds)
    executed = nbformat.read(out, as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


@pytest.mark.slow
def test_comparison_notebook_rejects_an_unknown_method(tmp_path):
    with pytest.raises(CsuError, match="method 'bce\\+dropout'"):
        notebooks.execute("comparison", tmp_path / "bad.ipynb", {
            "profile": "smoke", "methods": ["bce+dropout"], "runs_dir": str(tmp_path / "runs"),
            "fig_dir": str(tmp_path / "figures")})


@pytest.mark.slow
def test_comparison_notebook_under_the_audit_design_reports_the_class_groups(tmp_path):
    seeds = [0, 1]
    notebooks.execute("comparison", tmp_path / "executed.ipynb", {
        "profile": "smoke", "condition": "audit:san:0.5", "methods": ["bce", "csu"], "seeds": seeds,
        "mask_percents": [], "epochs": 1, "device": "cpu", "runs_dir": str(tmp_path / "runs"),
        "fig_dir": str(tmp_path / "figures")})
    numbers = json.loads((tmp_path / "figures" / "method_comparison.json").read_text())
    assert numbers["condition_label"] == "san 50% (audit)"
    for row in numbers["table"]:
        assert row["n"] == len(seeds)
        assert all(0 <= row[m] <= 1 for m in ("mAP", "mAP_corrupted", "mAP_control"))
