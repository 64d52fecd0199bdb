"""notebooks/degradation.ipynb with uneven_kinds: the audit-design runs beside the uniform grid,
their figure degradation_uneven and its numbers, and the uniform figures without them."""
from __future__ import annotations

import json

import pytest

from csu_lib import notebook_runner as notebooks


@pytest.mark.slow
def test_degradation_notebook_draws_uneven_noise_at_smoke_size(tmp_path):
    seeds = [0, 1]
    notebooks.execute("degradation", tmp_path / "executed.ipynb", {
        "profile": "smoke", "kinds": ["san"], "uneven_kinds": ["san"], "seeds": seeds, "device": "cpu",
        "runs_dir": str(tmp_path / "runs"), "fig_dir": str(tmp_path / "figures")})
    figures = tmp_path / "figures"
    for name in ("degradation", "relative_change", "degradation_uneven"):
        for ext in ("png", "pdf", "json"):
            assert (figures / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    uneven = json.loads((figures / "degradation_uneven.json").read_text())
    assert uneven["design"] == {"profile": "audit", "ratio": 0.5, "kinds": ["san"]}
    table = uneven["table"]
    assert [(r["loss.name"], r["group"]) for r in table] == [
        (loss, group) for loss in ("bce", "csu") for group in ("all", "corrupted", "control")]
    assert all(r["n"] == len(seeds) and r["seeds"] == seeds and r["ci_lo"] <= r["mean"] <= r["ci_hi"]
               for r in table)
    assert [(r["difference"], r["group"], r["n"]) for r in uneven["paired_difference"]] == [
        ("csu - bce", group, len(seeds)) for group in ("all", "corrupted", "control")]
    assert uneven["runs_behind"]["n_runs"] == 4  # 2 losses x 2 seeds, all in the audit design
    # the uniform figures never take in the audit runs
    uniform = json.loads((figures / "degradation.json").read_text())
    assert not set(uniform["run_ids"]) & set(uneven["run_ids"])
    assert {(r["kind"], r["ratio"]) for r in uniform["table"]} == {("san", 0.0), ("san", 0.5)}
