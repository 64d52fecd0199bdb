"""One data spec for everything (csu_lib.config.data_spec): parsing and its errors, run_config and
study files on a real dataset, published-noise conditions, ``csu data check``."""
from __future__ import annotations

import json

import pytest
import yaml
from tests.realfolders import csv_folder, freegen50_folder

from csu_lib import cli
from csu_lib.config import DataSpec, parse_condition, parse_data_spec
from csu_lib.core.errors import ConfigError
from csu_lib.records import load_run
from csu_lib.study import grid, load_study, run_config


def test_spec_from_mapping_and_yaml_file(tmp_path):
    spec = parse_data_spec({"dataset": "esc50", "root": "/data/ESC-50", "clip_seconds": 5,
                            "loader_options": {"val_fold": 4}, "frontend": "psl16k"})
    assert isinstance(spec, DataSpec) and spec.data.root == "/data/ESC-50" and spec.frontend == "psl16k"
    assert spec.data.loader_options == {"val_fold": 4}
    (tmp_path / "d.yaml").write_text("data:\n  dataset: csv\n  root: sub/meta.csv\n  clip_seconds: 2\n")
    from_file = parse_data_spec(tmp_path / "d.yaml")
    assert from_file.data.root == str((tmp_path / "sub" / "meta.csv").resolve())  # relative to the YAML file
    assert parse_data_spec(None) is None and parse_data_spec({"dataset": "embedded"}) is None


@pytest.mark.parametrize("spec, message", [
    ({"dataset": "esc50", "root": "/x", "clipseconds": 5}, "unknown data key"),
    ({"root": "/x"}, "'dataset' is required"),
    ({"dataset": "esc50", "clip_seconds": 5}, "data.root"),
    ({"dataset": "esc50", "root": "/x", "frontend": "bogus"}, "frontend 'bogus'"),
    ({"dataset": "esc50", "root": "/x", "published_noise": True}, "published_noise"),
    ({"dataset": "embedded", "root": "/x"}, "embedded benchmark takes no other"),
    ({"dataset": "esc50", "root": "/x", "clip_seconds": -1}, "clip_seconds"),
    ("missing.yaml", "not found"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_data_spec(spec, where="test")


def test_published_conditions():
    assert parse_condition("published:man:0.3") == {"kind": "man", "ratio": 0.3, "published": True}
    with pytest.raises(ConfigError, match="published noise needs a kind"):
        parse_condition("published:none")
    spec = {"dataset": "freegen50", "root": "/fg", "clip_seconds": 5, "published_noise": True}
    configs = grid("smoke", conditions=["none", "san:0.3"], losses=["bce"], data=spec)
    assert [c.corruption.published for c in configs] == [False, True]
    assert all(c.data.dataset == "freegen50" and c.data.root == "/fg" for c in configs)
    # the profile sets the training sizes only: same epochs as on the embedded benchmark
    assert configs[0].train == run_config("smoke", loss="bce").train
    with pytest.raises(ConfigError, match="benchmark overrides"):
        run_config("smoke", data=spec, benchmark={"n_families": 2})


def test_study_file_with_a_data_block_sweeps_and_reports(tmp_path, capsys):
    csv_folder(tmp_path / "ds")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "real", "profile": "smoke", "conditions": ["none", "man:0.3"], "losses": ["bce", "csu"],
        "seeds": [0], "data": {"dataset": "csv", "root": "ds/meta.csv", "clip_seconds": 1.0}}))
    name, configs = load_study(study)
    assert {c.data.root for c in configs} == {str((tmp_path / "ds" / "meta.csv").resolve())}
    runs = tmp_path / "runs"
    assert cli.main(["sweep", str(study), "--runs-dir", str(runs), "--quiet"]) == 0
    records = [load_run(runs / c.run_id) for c in configs]
    assert all(r.config.data.dataset == "csv" for r in records) and len(records) == 4
    capsys.readouterr()
    assert cli.main(["report", str(study), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "man 30%" in out and "csu" in out and "bce" in out


def test_data_check_reports_without_training(tmp_path, capsys):
    spec = freegen50_folder(tmp_path / "fg")
    (tmp_path / "fg" / "audios" / "dog" / "dog-train000.wav").write_bytes(b"RIFF....WAVEfmt ")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    rc = cli.main(["data", "check", str(tmp_path / "data.yaml"), "--quiet", "--csv", str(tmp_path / "p.csv")])
    out = capsys.readouterr().out
    assert rc == 1 and "would STOP" in out and "corrupt" in out and "dog-train000" in out
    assert "train 48, val 18, test 18" in out and "single-label" in out
    assert not (tmp_path / "runs").exists()
    assert "dog-train000" in (tmp_path / "p.csv").read_text()


def test_figures_refuses_a_bad_data_spec_before_running(tmp_path, capsys):
    (tmp_path / "d.yaml").write_text(json.dumps({"dataset": "csv", "roots": "x"}))
    rc = cli.main(["figures", "--profile", "smoke", "--data", str(tmp_path / "d.yaml"),
                   "--runs-dir", str(tmp_path / "runs"), "--fig-dir", str(tmp_path / "fig")])
    assert rc == 2 and "unknown key(s) ['roots']" in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()


def test_a_relative_root_is_taken_from_the_repository_root():
    from csu_lib.core.paths import project_root

    assert parse_data_spec({"dataset": "csv", "root": "x/meta.csv"}).data.root == str(project_root() / "x/meta.csv")


def test_similar_targets_on_real_data_from_a_models_confusions(tmp_path):
    import numpy as np

    from csu_lib.corruption import similarity_from_scores
    from csu_lib.pipeline import prepare_data
    from csu_lib.training import train_run

    spec = csv_folder(tmp_path / "ds")
    clean = run_config("smoke", loss="bce", data=spec)
    rec = train_run(clean, tmp_path / "teacher", cache_dir=tmp_path / "cache", progress=False)
    data = prepare_data(clean, cache_dir=tmp_path / "cache", progress=False)
    sim = similarity_from_scores(rec.scores("val"), data.manifest.labels[data.val_idx], top_k=2)
    assert sim.shape == (6, 6) and np.all(np.diag(sim) == 1) and np.all((sim > 0).sum(axis=1) == 3)
    np.save(tmp_path / "sim.npy", sim)
    corrupted = run_config("smoke", loss="bce", data={**spec, "similarity_file": str(tmp_path / "sim.npy")},
                           corruption={"kind": "man", "ratio": 0.4, "target": "similar"})
    result = prepare_data(corrupted, cache_dir=tmp_path / "cache", progress=False).corruption
    moved = result.target_class[result.target_class >= 0]
    sources = result.source_class[result.target_class >= 0]
    assert len(moved) > 0 and all(sim[s, t] > 0 for s, t in zip(sources, moved))
    with pytest.raises(ConfigError, match="similarity_file"):
        prepare_data(corrupted.replace(data=corrupted.data.replace(similarity_file=str(tmp_path / "nope.npy"))),
                     cache_dir=tmp_path / "cache", progress=False)
    np.save(tmp_path / "bad.npy", np.ones((3, 3)))
    with pytest.raises(ConfigError, match=r"\(6, 6\) array"):
        prepare_data(corrupted.replace(data=corrupted.data.replace(similarity_file=str(tmp_path / "bad.npy"))),
                     cache_dir=tmp_path / "cache", progress=False)
