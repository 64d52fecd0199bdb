"""Every figure on a real dataset layout: ``csu figures --profile smoke --data DATA.yaml`` on a small
folder of each supported layout (generated audio, tests/realfolders.py) runs every figure
notebook to completion and writes its files; the ESC-FreeGen50 folder trains under its published
noisy label files. Each writes the figure report (figures/index.html), whose every image and
section loads in a real browser (headless Chromium, tests/browser.py)."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from tests.browser import artifact_dir, check_report
from tests.realfolders import BUILDERS, CLASSES

from csu_lib import cli
from csu_lib import notebook_runner as notebooks
from csu_lib.records import load_run

#: The files every figure notebook writes (a PNG and a JSON each).
FIGURES = ("corruption_class_rates", "corruption_label_counts", "degradation", "relative_change", "sigma_trajectory",
           "sigma_kde", "sigma_vs_truth", "class_noise_audit", "score_plane", "landscape_1d", "landscape_2d",
           "landscape_geometry", "class_precision", "method_comparison", "mask_sweep", "quickstart_history",
           "quickstart_sigma", "explorer")


_BUILT: dict[str, tuple] = {}


def _every_figure(layout: str, tmp_path_factory) -> tuple:
    """``csu figures --profile smoke --data`` on a generated folder of ``layout`` (once per session):
    (data spec, figure folder, runs folder)."""
    if layout not in _BUILT:
        tmp_path = tmp_path_factory.mktemp(layout)
        spec = BUILDERS[layout](tmp_path / layout)
        (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
        fig, runs = tmp_path / "fig", tmp_path / "runs"
        rc = cli.main(["figures", "--profile", "smoke", "--data", str(tmp_path / "data.yaml"), "--runs-dir",
                       str(runs), "--fig-dir", str(fig), "--quiet", "--no-log-output"])
        assert rc == 0
        _BUILT[layout] = spec, fig, runs
    return _BUILT[layout]


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(BUILDERS))
def test_every_figure_on_a_real_layout(layout, tmp_path_factory):
    spec, fig, runs = _every_figure(layout, tmp_path_factory)
    for name in notebooks.FIGURE_NOTEBOOKS:
        assert (runs / "executed" / "smoke" / f"{name}.ipynb").is_file(), name
    for name in FIGURES:
        assert (fig / f"{name}.png").stat().st_size > 1000 and (fig / f"{name}.json").is_file(), name
    # every run trained on the folder, under its own class names
    records = [load_run(d) for d in (runs / "study").iterdir() if (d / "record.json").is_file()]
    assert records and all(r.config.data.dataset == layout and r.config.data.root == spec["root"] for r in records)
    precision = json.loads((fig / "class_precision.json").read_text())
    assert {row["class"] for row in precision["table"]} == set(CLASSES)
    plane = json.loads((fig / "score_plane.json").read_text())
    assert all(set(p["class_names"]) <= set(CLASSES) for p in plane["panels"])
    corrupted = [r for r in records if r.config.corruption.kind != "none"]
    if layout == "freegen50":  # the paper's setting: the published files are the corruption
        assert corrupted and all(r.config.corruption.published for r in corrupted)
    else:
        assert corrupted and not any(r.config.corruption.published for r in corrupted)
    single = [r.final_metrics["test"].get("top1_accuracy") for r in records]
    assert all(v is not None for v in single) == (layout in ("freegen50", "esc50"))
    # the report: a section per figure, each with its runs, readable key numbers and the notebook and
    # data spec that made it
    page = (fig / "index.html").read_text()
    pngs = sorted(p.stem for p in fig.glob("*.png"))
    assert sorted(re.findall(r'<section class="figure" id="fig-([\w-]+)"', page)) == pngs
    assert 'class="unreadable"' not in page and "No reading in the catalog" not in page
    manifest = json.loads((fig / "manifest.json").read_text())
    assert set(manifest["notebooks"]) == set(notebooks.FIGURE_NOTEBOOKS)
    assert all(entry["parameters"]["data"]["root"] == spec["root"] for name, entry in manifest["notebooks"].items()
               if name != "explorer")  # the explorer only reads records: it takes no data spec
    assert sorted(f for e in manifest["notebooks"].values() for f in e["figures"]) == pngs


@pytest.mark.slow
@pytest.mark.browser
def test_the_figure_report_loads_in_a_browser(tmp_path_factory):
    """index.html from disk (file://, no server): every image decodes, every section has its parts,
    the interactive plotly figure draws, and the page logs no error (tests/browser.py)."""
    _, fig, _ = _every_figure("csv", tmp_path_factory)
    assert (fig / "landscape_2d.plotly.json").is_file()  # so check_report checks the interactive figure too
    check_report(fig / "index.html", artifact_dir("figure_report") / "index.png")
