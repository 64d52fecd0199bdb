"""Every notebook executes under papermill at smoke size and writes its figures; committed
notebooks carry no outputs; bad parameters stop with a message that names them."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from csu_lib import notebook_runner as notebooks
from csu_lib.core.errors import CsuError

ROOT = Path(__file__).resolve().parents[2]
ALL_NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))

#: The figures each notebook must write (PNG + PDF + JSON each).
FIGURES = {
    "corruption": ["corruption_class_rates", "corruption_man_transitions", "corruption_sln_soft_values",
                   "corruption_label_counts"],
    "sigma_trajectory": ["sigma_trajectory"],
    "sigma_analysis": ["sigma_kde", "sigma_vs_truth", "class_noise_audit"],
    "score_plane": ["score_plane"],
    "landscape": ["landscape_1d", "landscape_2d", "landscape_geometry"],
    "comparison": ["method_comparison", "mask_sweep"],
    "degradation": ["degradation", "relative_change"],
    "class_precision": ["class_precision"],
    "quickstart": ["quickstart_history", "quickstart_sigma"],
    "explorer": ["explorer"],
}
#: Figures a notebook writes only when a parameter asks for them (PNG + PDF + JSON each):
#: degradation's uneven_kinds (tests/notebooks/test_degradation.py).
OPTIONAL_FIGURES = {"degradation": ["degradation_uneven"]}


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """One runs folder for all notebooks, as `csu figures` does: later notebooks reuse runs."""
    return tmp_path_factory.mktemp("runs")


def test_every_notebook_is_known():
    # csu figures runs every figure notebook; a study notebook runs a study file (make study)
    assert set(notebooks.FIGURE_NOTEBOOKS) == set(FIGURES)
    assert not set(notebooks.FIGURE_NOTEBOOKS) & set(notebooks.STUDY_NOTEBOOKS)
    assert set(ALL_NOTEBOOKS) == set(notebooks.FIGURE_NOTEBOOKS) | set(notebooks.STUDY_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert "profile" in code[0].source
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks without outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", notebooks.FIGURE_NOTEBOOKS)
def test_notebook_runs_at_smoke_size(name, tmp_path, shared_runs):
    """What `papermill notebooks/<name>.ipynb out.ipynb -p profile smoke` does (plus tmp folders)."""
    out = notebooks.execute(name, tmp_path / f"{name}.ipynb", {
        "profile": "smoke", "runs_dir": str(shared_runs), "fig_dir": str(tmp_path / "figures")})
    for fig in FIGURES[name]:
        for ext in ("png", "pdf", "json"):
            path = tmp_path / "figures" / f"{fig}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
    executed = nbformat.read(out, as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")


@pytest.mark.slow
def test_sigma_trajectory_numbers(tmp_path, shared_runs):
    notebooks.execute("sigma_trajectory", tmp_path / "executed.ipynb", {
        "profile": "smoke", "conditions": ["none", "san:0.5"], "runs_dir": str(shared_runs),
        "fig_dir": str(tmp_path / "figures")})
    numbers = json.loads((tmp_path / "figures" / "sigma_trajectory.json").read_text())
    assert set(numbers["curves"]) == {"clean", "san 50%"}
    assert len(numbers["test_metrics"]) == 4  # 2 conditions x 2 losses
    clean = numbers["curves"]["clean"]
    assert len(clean["progress"]) == 101 and clean["progress"][-1] == 1.0
    assert all(v > 0 for v in clean["mean"])  # 1/sigma^2 is positive
    # CSU (the paper's form): the learned s's multiplier and each epoch's s* beside it, named
    assert clean["optimum"][-1] > 0 and clean["n_runs_optimum"][0] == clean["n_runs"][0]
    assert set(numbers["quantities"]) == {"learned s", "s*", "n_at_clamp"}
    assert {r["loss"] for r in numbers["stationarity"]["runs"]} == {"CSU"}
    assert all(r["fit"] == "gradient" and r["n_at_clamp"] >= 0 for r in numbers["stationarity"]["runs"])


@pytest.mark.slow
@pytest.mark.parametrize("name, params, culprit", [
    ("sigma_trajectory", {"conditions": ["noisy:0.5"]}, "unknown corruption type 'noisy'"),
    ("sigma_trajectory", {"losses": ["focal"]}, "unknown loss 'focal'"),
    ("sigma_analysis", {"audit_ratio": 0.8}, "audit_ratio"),
    ("score_plane", {"conditions": ["none"]}, "conditions must be corrupted"),
    ("landscape", {"n_clips": 0}, "n_clips must be a positive number"),
    ("landscape", {"profile": "huge"}, "unknown profile 'huge'"),
    ("degradation", {"change_ratio": 0.3}, "change_ratio=0.3 is not among the ratios"),
    ("degradation", {"kinds": ["noisy"]}, "kinds must be a list of san, man, sln, missing"),
    ("class_precision", {"sort_by": "focal"}, "sort_by must be one of the losses"),
    ("quickstart", {"condition": "noisy:0.5"}, "unknown corruption type 'noisy'"),
    ("explorer", {}, "does not exist: train runs first"),
    ("comparison", {"methods": ["bce+dropout"]}, "dropout"),
])
def test_bad_parameter_stops_with_a_clear_message(name, params, culprit, tmp_path):
    with pytest.raises(CsuError, match=culprit.replace("(", r"\(")):
        notebooks.execute(name, tmp_path / "bad.ipynb", {"profile": "smoke", "runs_dir": str(tmp_path / "runs"),
                                                          "fig_dir": str(tmp_path / "figures"), **params})


@pytest.mark.slow
def test_figures_display_inline_in_the_notebook(tmp_path):
    """Figures show as images in the executed notebook (what a JupyterLab user sees)."""
    out = notebooks.execute("corruption", tmp_path / "corruption.ipynb", {
        "profile": "smoke", "kinds": ["man"], "fig_dir": str(tmp_path / "figures")})
    executed = nbformat.read(out, as_version=4)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "no inline image in the executed notebook"


@pytest.mark.slow
def test_notebook_runs_in_a_warm_kernel(tmp_path):
    """`csu figures` starts the next notebook's kernel ahead (imports running); the notebook runs
    in it unchanged, its outputs are those of a fresh kernel, and the kernel ends with it."""
    kernel = notebooks.WarmKernel()
    km = kernel.ready()
    assert km.has_kernel
    params = {"profile": "smoke", "kinds": ["san"], "fig_dir": str(tmp_path / "warm")}
    warm = notebooks.execute("corruption", tmp_path / "warm.ipynb", params, kernel=kernel)
    assert not km.has_kernel  # shut down with its notebook
    cold = notebooks.execute("corruption", tmp_path / "cold.ipynb", {**params, "fig_dir": str(tmp_path / "cold")})
    written = sorted(p.name for p in (tmp_path / "warm").glob("*.json"))
    assert written == sorted(p.name for p in (tmp_path / "cold").glob("*.json"))
    assert "corruption_class_rates.json" in written
    for name in written:
        assert json.loads((tmp_path / "warm" / name).read_text()) == json.loads((tmp_path / "cold" / name).read_text())
    cells = [nbformat.read(p, as_version=4).cells for p in (warm, cold)]
    assert [c.get("execution_count") for c in cells[0]] == [c.get("execution_count") for c in cells[1]]
    unused = notebooks.WarmKernel()
    unused.shutdown()
    assert not unused.km.has_kernel
    # closing a warm kernel closes papermill's client too: no open files left behind per notebook
    # (it leaked 12-14 descriptors a notebook before, enough to hit the limit within a test session)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(2):
        notebooks.execute("corruption", tmp_path / f"again{i}.ipynb", {**params, "fig_dir": str(tmp_path / "again")},
                          kernel=notebooks.WarmKernel())
    assert len(os.listdir("/proc/self/fd")) <= before + 2


@pytest.mark.slow
def test_a_warm_kernel_shut_down_unused_leaves_no_failing_thread(monkeypatch):
    """A warm kernel shut down right after its start (what an interrupted `csu figures` does):
    no client thread fails. Its heartbeat thread, stopped before it had made its socket, failed
    with "ZMQError: Too many open files" in 3 of 6 such starts (seen as a warning in CI); the warm
    client now opens its shell channel only."""
    import threading
    import time

    failed = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda a: failed.append(f"{a.thread.name}: {a.exc_type.__name__}: {a.exc_value}"))
    for _ in range(6):
        notebooks.WarmKernel().shutdown()
    time.sleep(2)  # a late thread would fail now
    assert failed == []


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_papermill_sees_every_parameter(name):
    """papermill silently drops a parameter whose line it cannot parse (a comment with certain
    characters): every name assigned in the parameters cell must be one it declares."""
    import ast

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    assigned = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert notebooks.declared_parameters(name) == assigned
