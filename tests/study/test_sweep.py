"""Study files: YAML grid -> run configs, `csu sweep` (resumable) and `csu report`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csu_lib.analysis.results import report
from csu_lib.cli import main
from csu_lib.core.errors import ConfigError
from csu_lib.records import load_runs
from csu_lib.study import load_study

ROOT = Path(__file__).resolve().parents[2]


def _study(tmp_path, text: str) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(text)
    return path


def test_example_study_grid():
    name, configs = load_study(ROOT / "studies" / "example.yaml")
    assert name == "example"
    assert len(configs) == 4 * 2 * 3  # conditions x losses x seeds
    assert len({c.run_id for c in configs}) == len(configs)
    kinds = sorted({(c.corruption.kind, c.corruption.ratio) for c in configs})
    assert kinds == [("man", 0.5), ("none", 0.0), ("san", 0.5), ("sln", 0.5)]


@pytest.mark.parametrize("text, culprit", [
    ("profile: quick\nlosess: [bce]\n", "unknown key(s) ['losess']"),
    ("conditions: [none]\n", "'profile' is required"),
    ("profile: quick\nconditions: ['noisy:0.5']\n", "unknown corruption type 'noisy'"),
    ("profile: quick\nlosses: bce\n", "losses must be a non-empty list"),
    ("profile: quick\nmodels: [vgg]\n", "unknown model 'vgg'"),
    ("profile: [quick\n", "not valid YAML"),
    # runs (the runs one by one) and train (TrainConfig overrides); their other tests: test_study_files.py
    ("profile: smoke\nruns: [bce]\nlosses: [csu]\n", "give either runs or losses/methods"),
    ("profile: smoke\nruns: [bce]\nmethods: [mixup]\n", "give either runs or losses/methods"),
    ("profile: smoke\nruns: bce\n", "runs must be a non-empty list"),
    ("profile: smoke\nruns: []\n", "runs must be a non-empty list"),
    ("profile: smoke\nruns: [bce, csu, bce]\n", "runs lists ['bce'] more than once"),
    ("profile: smoke\nruns: ['bce+dropout']\n", "runs: method 'bce+dropout'"),
    ("profile: smoke\nruns: [focal]\n", "runs: method 'focal'"),
    ("profile: smoke\ntrain: sgd\n", "train: a mapping of TrainConfig fields"),
    ("profile: smoke\ntrain: {optimiser: sgd}\n", "train: unknown TrainConfig field(s) ['optimiser']"),
    ("profile: smoke\ntrain: {optimizer: rmsprop}\n", "train: train.optimizer must be"),
    ("profile: smoke\ntrain: {lr: -0.1}\n", "train: train.lr must be a positive number"),
    ("profile: smoke\ntrain: {momentum: 1.5}\n", "train: train.momentum must be a number in [0, 1)"),
    ("profile: smoke\ntrain: {seed: 1, epochs: 3}\n",
     "train: ['epochs', 'seed'] have keys of their own: use epochs, seeds"),
])
def test_bad_study_files_name_the_culprit(tmp_path, text, culprit):
    path = _study(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_study(path)
    assert culprit in str(info.value) and str(path) in str(info.value)


def test_sweep_trains_resumes_and_reports(tmp_path, capsys):
    path = _study(tmp_path, "profile: smoke\nepochs: 1\ndevice: cpu\nconditions: ['man:0.5']\n"
                            "losses: [bce, csu]\nseeds: [0, 1]\n")
    runs = tmp_path / "runs"
    assert main(["sweep", str(path), "--runs-dir", str(runs), "--quiet"]) == 0
    table = load_runs(runs)
    assert len(table) == 4
    stamps = {p: (p / "record.json").stat().st_mtime_ns for p in runs.iterdir()}
    # a second sweep trains nothing
    assert main(["sweep", str(path), "--runs-dir", str(runs), "--quiet"]) == 0
    assert {p: (p / "record.json").stat().st_mtime_ns for p in runs.iterdir()} == stamps
    capsys.readouterr()

    summary = report(runs)
    assert len(summary) == 2 and set(summary["loss.name"]) == {"bce", "csu"}
    for _, row in summary.iterrows():
        values = table[table["loss.name"] == row["loss.name"]]["test.mAP"].to_numpy()
        assert row["n"] == 2 and row["test.mAP"] == pytest.approx(values.mean())
        assert row["ci_lo"] < row["test.mAP"] < row["ci_hi"]
        assert row["condition"] == "man 50%"
    csv = tmp_path / "report.csv"
    assert main(["report", str(runs), "--csv", str(csv)]) == 0
    printed = capsys.readouterr().out
    assert "man 50%" in printed and "csu" in printed and csv.is_file()
    assert main(["report", str(runs), "--metric", "test.nonsense"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert np.isfinite(summary["test.mAP"]).all()
