"""The figure report (csu_lib.report): what each figure says about the runs behind it, the key
numbers read from its JSON, the manifest of what made it, and index.html built from them.
The page in a real browser: tests/interface/test_real_figures.py (every image loads)."""
from __future__ import annotations

import html
import json
import os
import re
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from tests.interface.test_notebook_runner import FIGURES, OPTIONAL_FIGURES  # noqa: E402

from csu_lib import plots, report  # noqa: E402
from csu_lib.report import figure_files, figure_numbers  # noqa: E402
from csu_lib.notebook_runner import notebook_path  # noqa: E402
from csu_lib.report.catalog import key_numbers  # noqa: E402
from csu_lib.study import run_config  # noqa: E402


def test_the_catalog_describes_every_figure_of_every_notebook():
    made = {fig: nb for written in (FIGURES, OPTIONAL_FIGURES) for nb, figs in written.items() for fig in figs}
    assert set(report.CATALOG) == set(made)
    for name, entry in report.CATALOG.items():
        assert entry.notebook == made[name] and notebook_path(entry.notebook).is_file()
        assert entry.reading.endswith(".") and len(entry.reading) > 40


def test_runs_behind_counts_runs_once_from_configs_records_or_a_table():
    configs = [run_config("smoke", loss=loss, seed=seed, device="cpu") for loss in ("bce", "csu") for seed in (0, 1)]
    expected = {"n_runs": 4, "seeds": [0, 1], "run_ids": sorted(c.run_id for c in configs)}
    assert figure_files.runs_behind(configs + configs[:1]) == expected  # a repeated run counts once

    class Record:  # what run_all returns: records with a config
        def __init__(self, config):
            self.config = config
    assert figure_files.runs_behind([Record(c) for c in configs]) == expected
    table = pd.DataFrame({"run_id": [c.run_id for c in configs], "train.seed": [c.train.seed for c in configs]})
    assert figure_files.runs_behind(table) == expected
    assert figure_files.runs_behind([]) == {"n_runs": 0, "seeds": [], "run_ids": []}


def _degradation_numbers():
    row = {"kind": "san", "loss.name": "bce", "method.name": "none", "model.name": "pooled_cnn", "n": 3}
    table = [{**row, "ratio": 0.0, "test.mAP": 0.873, "ci_lo": 0.838, "ci_hi": 0.909},
             {**row, "ratio": 0.5, "test.mAP": 0.806, "ci_lo": 0.793, "ci_hi": 0.820},
             {**row, "loss.name": "csu", "ratio": 0.5, "test.mAP": 0.770, "ci_lo": 0.735, "ci_hi": 0.804}]
    paired = [{"difference": "csu - bce", "kind": "san", "ratio": 0.5, "mean": -0.037, "ci_lo": -0.071,
               "ci_hi": -0.002, "n": 3}]
    convergence = [{"stopped_early": True, "hit_epoch_cap": False}] * 5 + [{"stopped_early": False, "hit_epoch_cap": True}]
    return {"metric": "test.mAP", "table": table, "paired_difference": paired, "convergence": convergence}


def test_key_numbers_are_the_stored_means_and_intervals():
    rows = dict(key_numbers("degradation", _degradation_numbers()))
    assert rows["bce clean (pooled_cnn)"] == "0.873 [0.838, 0.909], n = 3"
    assert rows["csu san 50% (pooled_cnn)"] == "0.770 [0.735, 0.804], n = 3"
    assert rows["csu - bce, san 50% (paired)"] == "-0.037 [-0.071, -0.002], n = 3"
    assert rows["runs that stopped on a plateau / hit the epoch cap"] == "5 / 1 of 6"
    # a JSON of another shape is reported as such, not silently skipped
    (label, text), = key_numbers("degradation", {"table": [{"ratio": 0.5}]})
    assert "not readable from degradation.json" in text and "KeyError" in text


def _write_figure(fig_dir, name, numbers, runs):
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    figure_files.save_figure(fig, name, fig_dir)
    plt.close(fig)
    figure_files.save_numbers(name, numbers, fig_dir, runs=runs)


def test_the_report_names_runs_numbers_and_the_notebook_of_every_figure(tmp_path):
    configs = [run_config("smoke", loss=loss, seed=seed, device="cpu") for loss in ("bce", "csu") for seed in (0, 1, 2)]
    started = time.time()
    _write_figure(tmp_path, "degradation", _degradation_numbers(), configs)
    params = {"profile": "smoke", "runs_dir": "runs/study"}
    report.record_notebook(tmp_path, "degradation", params, started=started, executed="runs/executed/degradation.ipynb",
                           environment=report.environment("smoke"))
    _write_figure(tmp_path, "my_extra_figure", {"x": 1}, None)  # made by hand, outside the catalog
    grid = np.linspace(-1, 1, 5)
    figure_files.save_plotly(plots.plotly_landscape_2d(grid, grid, np.add.outer(grid ** 2, grid ** 2), title="t"),
                      "degradation", tmp_path)
    page = report.write_report(tmp_path).read_text()

    sections = re.findall(r'<section class="figure" id="fig-([\w-]+)"', page)
    assert sections == ["degradation", "my_extra_figure"]  # catalog order, then the rest
    deg = page[page.index('id="fig-degradation"'):page.index('id="fig-my_extra_figure"')]
    assert "Runs behind it: 6 (seeds 0, 1, 2)." in deg
    assert "<td>0.806 [0.793, 0.820], n = 3</td>" in deg and 'class="unreadable"' not in page
    assert html.escape(json.dumps(params, sort_keys=True)) in deg and "notebooks/degradation.ipynb" in deg
    assert 'Plotly.newPlot("plotly-degradation"' in deg  # the interactive version, plotly.js once in the head
    assert page.count("<img src=\"data:image/png;base64,") == 2
    extra = page[page.index('id="fig-my_extra_figure"'):]
    assert "not recorded" in extra and "No reading in the catalog" in extra
    env = report.load_manifest(tmp_path)["environment"]
    assert env["profile"] == "smoke" and "torch" in env["versions"] and env["versions"]["torch"] in page
    # no image or script from a file or the network: the page opens from disk alone
    assert not re.search(r'<(img|script|iframe)\b[^>]*\ssrc="(?!data:)', page)


def test_a_notebook_is_credited_only_with_the_figures_it_wrote(tmp_path):
    _write_figure(tmp_path, "corruption_class_rates", {}, [])
    old = time.time() - 3600
    os.utime(tmp_path / "corruption_class_rates.png", (old, old))
    started = time.time()
    _write_figure(tmp_path, "degradation", _degradation_numbers(), [])
    manifest = report.record_notebook(tmp_path, "degradation", {}, started=started)
    assert manifest["notebooks"]["degradation"]["figures"] == ["degradation"]
    page = report.write_report(tmp_path).read_text()
    assert "No trained model behind it" in page
    # a second notebook keeps the first one's entry (an interrupted csu figures keeps what finished)
    report.record_notebook(tmp_path, "explorer", {}, started=time.time())
    assert set(report.load_manifest(tmp_path)["notebooks"]) == {"degradation", "explorer"}


def test_report_only_needs_no_training(tmp_path, capsys):
    from csu_lib import cli

    _write_figure(tmp_path, "degradation", _degradation_numbers(), [])
    assert cli.main(["figures", "--report-only", "--fig-dir", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file() and "index.html" in capsys.readouterr().out
    page = (tmp_path / "index.html").read_text()
    assert "No manifest" in page  # made outside csu figures: said, not invented


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_committed_notebooks_write_each_figure_json_with_its_function(name):
    """Every figure JSON a notebook writes is laid out by its function in report.figure_numbers
    (which records the runs behind it): no JSON dict is built in a notebook cell."""
    nb = json.loads(notebook_path(name).read_text())
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    saved = re.findall(r'save_numbers\("(\w+)",\s+(\w+)', source)
    assert len(saved) == source.count("save_numbers(") >= 1
    for figure, numbers in saved:
        assert figure in FIGURES[name] + OPTIONAL_FIGURES.get(name, [])
        built = f"figure_numbers.{figure_numbers.FIGURE_NUMBERS[figure].__name__}("
        assert numbers == "figure_numbers" or f"{numbers} = {built}" in source, (figure, numbers)
        assert built in source


def test_every_figure_has_its_json_function_and_its_reader():
    from csu_lib.report.catalog import _READERS

    assert set(figure_numbers.FIGURE_NUMBERS) == set(report.CATALOG) == set(_READERS)


def test_a_figure_function_writes_what_the_catalog_reads(tmp_path):
    """The JSON of a figure's function, written and read back, gives the catalog's key numbers;
    runs_behind is its last key (the file sorts the keys)."""
    configs = [run_config("smoke", loss=loss, seed=seed, device="cpu") for loss in ("bce", "csu") for seed in (0, 1)]
    js = _degradation_numbers()
    numbers = figure_numbers.degradation_numbers(
        profile="smoke", metric=js["metric"], kinds=["san"], ratios=[0.0, 0.5], models=["pooled_cnn"],
        losses=["bce", "csu"], table=pd.DataFrame(js["table"]), paired=pd.DataFrame(js["paired_difference"]),
        convergence=pd.DataFrame(js["convergence"]), runs=configs)
    assert list(numbers)[-1] == "runs_behind" and numbers["runs_behind"] == figure_files.runs_behind(configs)
    figure_files.save_numbers("degradation", numbers, tmp_path)
    stored = json.loads((tmp_path / "degradation.json").read_text())
    assert set(stored) == set(numbers)
    assert key_numbers("degradation", stored) == key_numbers("degradation", js)
    truth = pd.DataFrame([{"estimator": e, "kind": "san", "n_runs": 2, "auroc": 0.75, "auroc_lo": 0.5, "auroc_hi": 1.0,
                           "partial_spearman": 0.4} for e in ("sigma", "sigma_normalised", "sigma_optimum", "s_plus")])
    gaps = pd.DataFrame({"stored": [0.5], "n_at_clamp": [3]})
    numbers = figure_numbers.sigma_vs_truth_numbers(profile="smoke", audit_ratio=0.5, kinds=["san"], summary=truth,
                                                    scores=truth, stationarity=gaps, runs=configs)
    assert [r["estimator"] for r in numbers["summary"]] == list(figure_numbers.TRUTH_ESTIMATORS)
    assert len(key_numbers("sigma_vs_truth", numbers)) == 3
    assert numbers["stationarity"]["runs"][0]["n_at_clamp"] == 3 and "clamp" in numbers["stationarity"]["n_at_clamp"]


def test_the_trajectory_numbers_name_both_quantities_and_the_clamp():
    """The trajectory figure's JSON: the learned s's curve and each epoch's s* beside it, what each
    is, and the classes of the learned s on the clamp, read back by the catalog."""
    curve = pd.DataFrame({"progress": [0.0, 1.0], "mean": [1.0, 2.0], "lo": [1.0, 1.5], "hi": [1.0, 2.5], "n_runs": 2,
                          "optimum": [np.nan, 8.0], "optimum_lo": [np.nan, 6.0], "optimum_hi": [np.nan, 10.0],
                          "n_runs_optimum": 2})
    gaps = pd.DataFrame({"path": ["a", "b"], "stored": [0.7, 0.9], "n_at_clamp": [0, 4]})
    numbers = figure_numbers.sigma_trajectory_numbers(profile="smoke", model="small_cnn", seeds=[0, 1],
                                                      curves={"san 50% (CSU)": curve}, gaps=gaps,
                                                      test_metrics=pd.DataFrame(), runs=[])
    assert set(numbers["quantities"]) == {"learned s", "s*", "n_at_clamp"}
    rows = dict(key_numbers("sigma_trajectory", json.loads(json.dumps(numbers))))
    assert rows["san 50% (CSU): final multiplier of the learned s (mean over 2 runs)"] == "2.00 [1.50, 2.50]"
    assert rows["san 50% (CSU): final multiplier of the last epoch's s*"] == "8.00 [6.00, 10.00]"
    assert rows["classes of the learned s on the clamp, per run"] == "0, 4"


def test_the_gallery_scales_every_image_below_the_limit(tmp_path):
    from PIL import Image

    from csu_lib.core.errors import CsuError

    rng = np.random.default_rng(0)
    for name in ("degradation", "score_plane"):
        fig, ax = plt.subplots(figsize=(12, 8))
        ax.imshow(rng.random((400, 600)), cmap="viridis")  # noise: a PNG that compresses badly
        fig.savefig(tmp_path / f"{name}.png", dpi=200)
        plt.close(fig)
    assert (tmp_path / "score_plane.png").stat().st_size > 1_000_000
    with pytest.raises(CsuError, match="class_precision.png: run `make figures` first"):
        report.write_gallery(tmp_path, tmp_path / "out", ["degradation", "class_precision"])
    assert not (tmp_path / "out").exists()  # nothing written when a figure is missing
    paths = report.write_gallery(tmp_path, tmp_path / "out", ["degradation", "score_plane"], max_bytes=300_000)
    for path in paths:
        assert path.stat().st_size < 300_000
        assert Image.open(path).width <= 1400


def test_the_docs_show_the_gallery():
    """The committed gallery (make gallery): every image under 300 kB and shown in docs/results.md
    (the README shows the first)."""
    root = notebook_path("degradation").parents[1]
    results = (root / "docs" / "results.md").read_text()
    for name in report.GALLERY:
        path = root / "docs" / "gallery" / f"{name}.png"
        assert path.is_file() and 10_000 < path.stat().st_size < 300_000, path
        assert f"](gallery/{name}.png)" in results, name
    assert f"](docs/gallery/{report.GALLERY[0]}.png)" in (root / "README.md").read_text()


def test_written_files_get_the_usual_permissions(tmp_path):
    """Figures, the report and run files are readable by others as a plain open() would make them
    (the umask's), not private like the temporary file they are written through."""
    from csu_lib.core.io import _UMASK, atomic_write_text

    atomic_write_text(tmp_path / "index.html", "<html></html>")
    assert (tmp_path / "index.html").stat().st_mode & 0o777 == 0o666 & ~_UMASK
