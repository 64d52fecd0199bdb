"""notebooks/corruption.ipynb (what the injectors did) and its plot functions in csu_lib.plots."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from csu_lib import notebook_runner as notebooks
from csu_lib import plots
from csu_lib.config import CorruptionConfig, DataConfig
from csu_lib.core.errors import CsuError
from csu_lib.corruption import corrupt_labels, man_transition_matrix
from csu_lib.data import load_dataset
from csu_lib.data.benchmark import benchmark_config, class_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ["san", "man", "sln", "missing"]
FIGURES = ["corruption_class_rates", "corruption_man_transitions", "corruption_sln_soft_values",
           "corruption_label_counts"]


@pytest.fixture(scope="module")
def smoke():
    """The smoke benchmark's manifest and its clean training labels (built once per session)."""
    manifest = load_dataset(DataConfig(benchmark=benchmark_config("smoke")), progress=False)
    return manifest, manifest.labels[manifest.split_indices("train")]


def _numbers(fig_dir: Path, name: str) -> dict:
    return json.loads((fig_dir / f"{name}.json").read_text())


# ---------------------------------------------------------------------------------------------
# The notebook


@pytest.mark.slow
def test_corruption_notebook_smoke_matches_direct_injection(tmp_path, smoke):
    manifest, train = smoke
    fig = tmp_path / "fig"
    out = notebooks.execute("corruption", tmp_path / "out.ipynb", {
        "profile": "smoke", "fig_dir": str(fig), "ratio": 0.5, "seed": 0})
    for name in FIGURES:
        for ext in ("png", "pdf", "json"):
            assert (fig / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"

    n = len(train)
    direct = {k: corrupt_labels(train, CorruptionConfig(kind=k, ratio=0.5, seed=0), similarity=manifest.similarity,
                                class_names=manifest.class_names) for k in KINDS}
    rates = _numbers(fig, "corruption_class_rates")
    assert rates["n_train"] == n and rates["class_names"] == manifest.class_names
    assert rates["families"] == manifest.class_families
    for k in KINDS:
        got = rates["rates"][k]
        assert got["n_corrupted"] == direct[k].n_corrupted == round(0.5 * n) == got["n_target"]
        np.testing.assert_allclose(got["class_rate"], direct[k].class_rate)
        np.testing.assert_allclose(got["label_noise_rate"], direct[k].label_noise_rate)
        assert got["summary"]["n_clean_positive"] == (train >= 0.5).sum(axis=0).tolist()

    trans = _numbers(fig, "corruption_man_transitions")
    matrix = np.array(trans["matrix"])
    np.testing.assert_array_equal(matrix, man_transition_matrix(direct["man"]))
    assert matrix.sum() == trans["total"] == trans["n_corrupted"] == direct["man"].n_corrupted
    assert sum(t["count"] for t in trans["transitions"]) == matrix.sum()

    soft = _numbers(fig, "corruption_sln_soft_values")
    sln = direct["sln"]
    rows = np.flatnonzero(sln.changed)
    expected = sln.labels[rows, sln.source_class[rows]]
    np.testing.assert_allclose(soft["values"], expected, rtol=1e-6)
    assert soft["clips"] == rows.tolist() and sum(soft["counts"]) == len(expected) == round(0.5 * n)
    assert min(soft["values"]) >= 0.6 - 1e-6 and max(soft["values"]) <= 0.9 + 1e-6

    counts = _numbers(fig, "corruption_label_counts")["counts"]
    assert counts["clean"] == (train >= 0.5).sum(axis=0).tolist()
    for k in KINDS:
        assert counts[k] == (direct[k].labels >= 0.5).sum(axis=0).tolist()
    total = {k: sum(v) for k, v in counts.items()}
    half = round(0.5 * n)
    assert total["san"] == total["clean"] + half and total["missing"] == total["clean"] - half
    assert total["man"] == total["sln"] == total["clean"]

    import nbformat

    executed = nbformat.read(out, as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "val/test labels unchanged" in text


@pytest.mark.slow
def test_similar_target_keeps_man_within_family(tmp_path, smoke):
    manifest, train = smoke
    fig = tmp_path / "fig"
    notebooks.execute("corruption", tmp_path / "out.ipynb", {
        "profile": "smoke", "fig_dir": str(fig), "kinds": ["man"], "target": "similar", "ratio": 0.3})
    trans = _numbers(fig, "corruption_man_transitions")
    table = class_table(benchmark_config("smoke"))
    family = dict(zip(table["class_name"], table["family"]))
    assert trans["transitions"], "no MAN transitions recorded"
    for t in trans["transitions"]:
        assert t["source_family"] == t["target_family"] == family[t["source"]] == family[t["target"]], t
    assert trans["within_family"] == trans["total"] == trans["n_corrupted"] == round(0.3 * len(train))
    direct = corrupt_labels(train, CorruptionConfig(kind="man", ratio=0.3, target="similar"),
                            similarity=manifest.similarity)
    np.testing.assert_array_equal(np.array(trans["matrix"]), man_transition_matrix(direct))
    assert not (fig / "corruption_sln_soft_values.json").exists()  # sln not among the kinds


@pytest.mark.slow
def test_bad_ratio_names_the_parameter(tmp_path):
    with pytest.raises(CsuError, match=r"corruption\.ratio"):
        notebooks.execute("corruption", tmp_path / "bad.ipynb", {
            "profile": "smoke", "ratio": 1.5, "fig_dir": str(tmp_path / "fig")})
    assert not (tmp_path / "fig").exists()


def _freegen_labels_only(root: Path) -> None:
    """An ESC-FreeGen50-style label tree (3 classes) with published flip/soft files at 0.25."""
    names = ["dog", "rain", "crow"]
    onehot = lambda c: [float(j == c) for j in range(3)]  # noqa: E731
    for split, per in (("train", 4), ("val", 1), ("test", 1)):
        recs = [{"audio_path": f"audios/{n}/{n}-{split}{k}.wav", "label": onehot(c), "original_labels": [n]}
                for c, n in enumerate(names) for k in range(per)]
        (root / "labels" / "original").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "original" / f"{split}.json").write_text(json.dumps({"data": recs, "class_names": names}))
        if split != "train":
            continue
        flip, soft = [], []
        for i, rec in enumerate(recs):
            c = i // 4
            hit = i in (0, 5, 10)  # 3 of 12 = 0.25
            flip.append({"audio_path": rec["audio_path"], "label": onehot((c + 1) % 3) if hit else rec["label"],
                         "true_label": rec["label"], "error_injected": hit})
            soft.append({"audio_path": rec["audio_path"], "original_label": names[c],
                         "label": [0.7 if j == c else 0.0 for j in range(3)] if hit else rec["label"]})
        for folder, data in (("flip_error_0.25", flip), ("soft_error_0.25", soft)):
            (root / "labels" / folder).mkdir(parents=True)
            (root / "labels" / folder / "train.json").write_text(json.dumps({"data": data, "class_names": names}))


@pytest.mark.slow
def test_published_freegen50_files(tmp_path):
    root = tmp_path / "freegen"
    _freegen_labels_only(root)
    fig = tmp_path / "fig"
    notebooks.execute("corruption", tmp_path / "out.ipynb", {
        "data": {"dataset": "freegen50", "root": str(root)}, "published": True, "kinds": ["man", "sln"], "ratio": 0.25,
        "fig_dir": str(fig)})
    rates = _numbers(fig, "corruption_class_rates")
    assert rates["families"] is None and rates["dataset"] == "freegen50"
    assert rates["rates"]["man"]["n_corrupted"] == rates["rates"]["sln"]["n_corrupted"] == 3
    np.testing.assert_allclose(rates["rates"]["man"]["class_rate"], [0.25] * 3)
    trans = _numbers(fig, "corruption_man_transitions")
    assert trans["matrix"] == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert _numbers(fig, "corruption_sln_soft_values")["values"] == pytest.approx([0.7] * 3)


# ---------------------------------------------------------------------------------------------
# Plot functions on small hand-built inputs

NAMES = ["a1", "b1", "a2", "b2", "c1"]
FAMILIES = ["a", "b", "a", "b", "c"]


def test_plot_class_rates_bars_and_family_grouping():
    rates = pd.DataFrame({"san": [0.1, 0.2, 0.3, 0.4, 0.5], "man": [0.5, 0.4, 0.3, 0.2, 0.1]}, index=NAMES)
    ax = plots.plot_class_rates(rates, families=FAMILIES, reference=0.3, title="t")
    assert len(ax.patches) == 10 and len(ax.containers) == 2
    # grouped by family: a1, a2, b1, b2, c1
    assert [round(p.get_height(), 3) for p in ax.containers[0].patches] == [0.1, 0.3, 0.2, 0.4, 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    plt.close(ax.figure)
    ax = plots.plot_class_rates(rates[["san"]])
    assert len(ax.patches) == 5 and [t.get_text() for t in ax.get_xticklabels()] == NAMES
    plt.close(ax.figure)


def test_plot_transition_matrix_cells_and_blocks():
    m = np.zeros((5, 5), dtype=int)
    m[0, 2], m[1, 3], m[4, 0] = 3, 1, 2
    fig, ax = plt.subplots()
    assert plots.plot_transition_matrix(m, NAMES, ax, families=FAMILIES) is ax
    shown = ax.images[0].get_array()
    assert shown.shape == (5, 5) and int(shown.count()) == 3  # zero cells are masked (white)
    assert shown[0, 1] == 3 and shown[2, 3] == 1 and shown[4, 0] == 2  # rows/cols in family order
    assert len(ax.patches) == 3  # one outline per family block
    plt.close(fig)
    ax = plots.plot_transition_matrix(m, NAMES, colorbar=False)
    assert ax.images[0].get_array().shape == (5, 5) and len(ax.patches) == 0
    plt.close(ax.figure)
    with pytest.raises(CsuError, match="shape"):
        plots.plot_transition_matrix(m[:4], NAMES)


def test_plot_soft_values_bins():
    values = np.array([0.61, 0.65, 0.7, 0.71, 0.89])
    ax = plots.plot_soft_values(values, bins=6, soft_range=(0.6, 0.9))
    assert len(ax.patches) == 6 and sum(p.get_height() for p in ax.patches) == 5
    plt.close(ax.figure)
    ax = plots.plot_soft_values(values, bins=np.linspace(0.0, 1.0, 11))
    assert len(ax.patches) == 10 and [p.get_height() for p in ax.patches][6:9] == [3, 1, 1]
    plt.close(ax.figure)
    ax = plots.plot_soft_values(np.array([]), bins=4)
    assert len(ax.patches) == 4
    plt.close(ax.figure)


def test_plot_label_counts_bars():
    counts = pd.DataFrame({"clean": [4, 4, 4, 4, 4], "san": [5, 6, 4, 5, 4], "missing": [3, 4, 2, 4, 3]},
                          index=NAMES)
    ax = plots.plot_label_counts(counts, families=FAMILIES)
    assert len(ax.patches) == 15 and len(ax.containers) == 3  # clean + one bar per kind and class
    assert [p.get_height() for p in ax.containers[1].patches] == [5, 4, 6, 5, 4]  # san, family order
    plt.close(ax.figure)


def test_soft_value_bins_and_positive_counts():
    """The histogram and the counts the corruption figures show, computed by
    csu_lib.analysis.figure_stats (the figure functions only draw)."""
    from csu_lib.analysis import figure_stats

    edges, counts = figure_stats.soft_value_bins(np.array([0.61, 0.62, 0.89]), (0.6, 0.9))
    assert len(edges) == 21 and edges[0] == 0.6 and edges[-1] == pytest.approx(0.9)
    assert counts.tolist() == [1, 1] + [0] * 17 + [1]  # bins of width 0.015
    edges, counts = figure_stats.soft_value_bins(np.array([]), None, n_bins=4)
    assert edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and counts.tolist() == [0, 0, 0, 0]
    clean = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.4]])
    counts = figure_stats.positive_counts(clean, {"san": np.array([[0.0, 1.0], [1.0, 1.0], [0.6, 0.0]])}, ["a", "b"])
    assert counts.to_dict(orient="list") == {"clean": [2, 1], "san": [2, 2]} and counts.index.tolist() == ["a", "b"]
