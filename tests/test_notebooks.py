"""Every notebook executes under papermill at smoke size; committed notebooks carry no output."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from csu_lib import notebooks
from csu_lib.errors import CsuError

ROOT = Path(__file__).resolve().parents[1]
ALL_NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_figure_notebooks_exist():
    assert set(notebooks.FIGURE_NOTEBOOKS) <= set(ALL_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert "profile" in code[0].source
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks without outputs"


@pytest.mark.slow
def test_sigma_trajectory_notebook_smoke(tmp_path):
    out = notebooks.execute("sigma_trajectory", tmp_path / "executed.ipynb", {
        "profile": "smoke", "conditions": ["none", "san:0.5"], "runs_dir": str(tmp_path / "runs"),
        "fig_dir": str(tmp_path / "figures")})
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / "figures" / f"sigma_trajectory.{ext}").stat().st_size > 0
    numbers = json.loads((tmp_path / "figures" / "sigma_trajectory.json").read_text())
    assert set(numbers["curves"]) == {"clean", "san 50%"}
    assert len(numbers["test_metrics"]) == 4  # 2 conditions x 2 losses
    executed = nbformat.read(out, as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


@pytest.mark.slow
def test_bad_parameter_stops_with_a_clear_message(tmp_path):
    with pytest.raises(CsuError, match="unknown corruption type 'noisy'"):
        notebooks.execute("sigma_trajectory", tmp_path / "bad.ipynb", {
            "profile": "smoke", "conditions": ["noisy:0.5"], "runs_dir": str(tmp_path / "runs"),
            "fig_dir": str(tmp_path / "figures")})
