"""The training loop and run records: resume after interruption, completeness, determinism."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from csu_lib.core.errors import ConfigError, RunRecordError
from csu_lib.records import is_complete, load_checkpoint, load_run, load_runs
from csu_lib.training import train_run


class Crash(RuntimeError):
    pass


def _crash_at(epoch: int, step: int):
    def hook(e, s):
        if (e, s) == (epoch, step):
            raise Crash(f"simulated crash at epoch {e} step {s}")
    return hook


def test_run_record_contents(tmp_path, smoke_config, smoke_data):
    rec = train_run(smoke_config, tmp_path / "run", data=smoke_data, progress=False)
    assert rec.complete and is_complete(tmp_path / "run")
    for name in ("config.json", "versions.json", "history.json", "log_sigma2.npy", "model.pt",
                 "final_metrics.json", "record.json"):
        assert (tmp_path / "run" / name).is_file(), name
    n_classes = smoke_data.manifest.n_classes
    assert rec.log_sigma2.shape == (smoke_config.train.epochs * rec.steps_per_epoch, n_classes)
    assert len(rec.history) == smoke_config.train.epochs
    assert 0.0 < rec.final_metrics["test"]["mAP"] <= 1.0
    summary = json.loads((tmp_path / "run" / "record.json").read_text())
    assert summary["seed"] == smoke_config.train.seed
    assert summary["versions"]["torch"].startswith("2.11")
    # s moved away from its initial 0 and stayed inside the clamp range
    assert np.abs(rec.log_sigma2[-1]).max() > 1e-3
    assert rec.log_sigma2.min() >= -5 and rec.log_sigma2.max() <= 5


def test_same_seed_same_numbers(tmp_path, smoke_config, smoke_data):
    a = train_run(smoke_config, tmp_path / "a", data=smoke_data, progress=False)
    b = train_run(smoke_config, tmp_path / "b", data=smoke_data, progress=False)
    assert a.final_metrics == b.final_metrics
    np.testing.assert_array_equal(a.log_sigma2, b.log_sigma2)
    c = train_run(smoke_config.replace(train=smoke_config.train.replace(seed=1)), tmp_path / "c",
                  data=smoke_data, progress=False)
    assert not np.array_equal(a.log_sigma2, c.log_sigma2)


@pytest.mark.parametrize("variant", ["adam", "sgd"])
def test_crash_mid_epoch_resumes_to_identical_result(tmp_path, smoke_config, smoke_data, variant):
    if variant == "sgd":  # SGD's momentum buffers (the CSU s learned by gradient included) resume exactly
        smoke_config = smoke_config.replace(train=smoke_config.train.replace(optimizer="sgd", lr=0.05),
                                            loss=smoke_config.loss.replace(csu_fit="gradient"))
    ref = train_run(smoke_config, tmp_path / "ref", data=smoke_data, progress=False)
    run = tmp_path / "crashy"
    with pytest.raises(Crash):
        train_run(smoke_config, run, data=smoke_data, progress=False, on_step=_crash_at(1, 3))
    # the interrupted run has a checkpoint of epoch 0 but does not look complete
    assert (run / "checkpoint.pt").is_file()
    assert not is_complete(run)
    assert not (run / "final_metrics.json").exists()
    with pytest.raises(RunRecordError, match="not a complete run"):
        load_run(run)
    assert load_runs(tmp_path).shape[0] == 1  # only the reference counts
    assert load_runs(tmp_path, include_incomplete=True).shape[0] == 2
    if variant == "sgd":  # the checkpoint holds a momentum buffer for every parameter, s included
        ckpt = load_checkpoint(run)
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        n_params = sum(1 for k in ckpt["model"] if not k.endswith(buffers))
        assert len(ckpt["optimizer"]["state"]) == n_params + 1
        assert all(entry["momentum_buffer"].abs().sum() > 0 for entry in ckpt["optimizer"]["state"].values())
        assert np.isfinite(ref.final_metrics["test"]["mAP"])
    resumed = train_run(smoke_config, run, data=smoke_data, progress=False)
    assert resumed.complete
    assert resumed.final_metrics == ref.final_metrics
    np.testing.assert_array_equal(resumed.log_sigma2, ref.log_sigma2)
    assert resumed.history.drop(columns="seconds").equals(ref.history.drop(columns="seconds"))


def test_complete_run_is_skipped_and_other_config_refused(tmp_path, smoke_config, smoke_data):
    run = tmp_path / "run"
    train_run(smoke_config, run, data=smoke_data, progress=False)
    stamp = (run / "record.json").stat().st_mtime_ns
    train_run(smoke_config, run, data=smoke_data, progress=False, on_step=_crash_at(0, 0))  # no training happens
    assert (run / "record.json").stat().st_mtime_ns == stamp
    other = smoke_config.replace(train=smoke_config.train.replace(epochs=2))
    with pytest.raises(RunRecordError, match="another configuration"):
        train_run(other, run, data=smoke_data, progress=False)


def test_bce_run_has_no_sigma(tmp_path, smoke_config, smoke_data):
    cfg = smoke_config.replace(loss=smoke_config.loss.replace(name="bce"), train=smoke_config.train.replace(epochs=1))
    rec = train_run(cfg, tmp_path / "bce", data=smoke_data, progress=False)
    assert rec.log_sigma2 is None and rec.multiplier is None


def test_early_stopping_keeps_best_epoch(tmp_path, smoke_config, smoke_data):
    # a learning rate far too high makes validation mAP bounce, so patience 1 must stop early
    cfg = smoke_config.replace(train=smoke_config.train.replace(epochs=8, early_stopping_patience=1, lr=0.5))
    rec = train_run(cfg, tmp_path / "es", data=smoke_data, progress=False)
    maps = rec.history["val.mAP"].to_numpy()
    # the stopping rule, replayed on the logged history: stop after the first non-improving epoch
    best, expected = -np.inf, len(maps)
    for i, m in enumerate(maps):
        if m > best:
            best = m
        else:
            expected = i + 1
            break
    assert len(maps) == expected < 8
    assert rec.final_metrics["best_epoch"] == int(np.argmax(maps))
    assert rec.final_metrics["val"]["mAP"] == pytest.approx(maps.max())


def _cli(*args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "csu_lib.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_killed_process_resumes_with_same_command(tmp_path):
    run = tmp_path / "killed"
    args = ["train", "--profile", "smoke", "--loss", "csu", "--epochs", "12", "--device", "cpu",
            "--run-dir", str(run), "--quiet"]
    proc = _cli(*args)
    deadline = time.time() + 240
    while not (run / "checkpoint.pt").is_file():  # wait for the first completed epoch
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not is_complete(run)
    epochs_before = len(json.loads((run / "history.json").read_text())["epochs"])
    assert epochs_before < 12
    done = _cli(*args)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    assert "test mAP" in out
    rec = load_run(run)
    assert len(rec.history) == 12 and rec.complete


@pytest.mark.parametrize("argv, culprit", [
    (["train", "--loss", "focal"], "unknown loss 'focal'"),
    (["train", "--model", "vgg99"], "unknown model 'vgg99'"),
    (["train", "--epochs", "0"], "epochs must be a positive integer"),
    (["train", "--epochs", "-2"], "epochs must be a positive integer"),
    (["train", "--corruption", "bogus:0.3"], "unknown corruption type 'bogus'"),
    (["train", "--corruption", "san:1.5"], "outside [0, 1]"),
    (["train", "--profile", "huge"], "unknown profile 'huge'"),
    (["train", "--config", "/nonexistent/run.json"], "/nonexistent/run.json"),
    (["figures", "--only", "no_such_notebook"], "no_such_notebook"),
    (["sweep", str(Path(__file__).resolve().parents[2] / "studies" / "example.yaml"), "--vectorise", "0", "--runs-dir", "/nonexistent/never-written"],
     "--vectorise must be a positive integer"),
])
def test_cli_bad_arguments_name_the_culprit(argv, culprit, capsys):
    from csu_lib.cli import main

    assert main(argv) == 2
    assert culprit in capsys.readouterr().err


def test_missing_audio_file_is_named(tmp_path, smoke_config):
    from csu_lib.core.errors import AudioError
    from csu_lib.data.benchmark import build_benchmark
    from csu_lib.pipeline import prepare_data

    manifest = build_benchmark(smoke_config.data.benchmark, tmp_path / "data", progress=False)
    victim = manifest.audio_path(5)
    victim.unlink()
    with pytest.raises((AudioError, FileNotFoundError)) as info:
        prepare_data(smoke_config, manifest=manifest, cache_dir=tmp_path / "cache", progress=False)
    assert victim.name in str(info.value)


def test_cuda_device_without_gpu_is_a_clear_error():
    import torch

    from csu_lib.pipeline import resolve_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")


def test_final_metrics_recomputable_from_saved_scores(tmp_path, smoke_data):
    from csu_lib import metrics as M
    from csu_lib.study import run_config
    from csu_lib.pipeline import prepare_data

    cfg = run_config("smoke", loss="csu", epochs=2, device="cpu", corruption={"kind": "man", "ratio": 0.5})
    data = prepare_data(cfg, progress=False)
    rec = train_run(cfg, tmp_path / "run", data=data, progress=False)
    test_scores = rec.scores("test")
    assert test_scores.shape == (len(data.test_idx), data.manifest.n_classes)
    labels = data.manifest.labels[data.test_idx]
    fm = rec.final_metrics
    assert fm["test"]["mAP"] == pytest.approx(M.mean_average_precision(test_scores, labels)[0], abs=1e-12)
    assert fm["test"]["elementwise_accuracy"] == pytest.approx(M.elementwise_accuracy(test_scores, labels, 0.5))
    # the embedded benchmark is single-label: top-1 accuracy is a direct argmax count
    hits = sum(int(np.argmax(s) == np.argmax(t)) for s, t in zip(test_scores, labels))
    assert fm["test"]["top1_accuracy"] == hits / len(labels)
    per_class = [np.mean([np.argmax(s) == c for s, t in zip(test_scores, labels) if np.argmax(t) == c])
                 for c in sorted({int(np.argmax(t)) for t in labels})]
    assert fm["test"]["balanced_accuracy"] == pytest.approx(np.mean(per_class))
    assert len(fm["test"]["class_precision"]) == data.manifest.n_classes
    # per-source results on the embedded benchmark: recorded and generated
    sources = data.manifest.clips["source"].to_numpy()[data.test_idx]
    assert set(fm["test_by_source"]) == set(sources) == {"recorded", "generated"}
    gen = sources == "generated"
    assert fm["test_by_source"]["generated"]["mAP"] == pytest.approx(
        M.mean_average_precision(test_scores[gen], labels[gen])[0], abs=1e-12)
    # fit of the training labels, split by corrupted vs clean clips
    fit = fm["train_fit"]
    assert fit["n_corrupted"] == round(0.5 * len(data.train_idx))
    assert fit["n_corrupted"] + fit["n_clean"] == len(data.train_idx)
    assert 0 <= fit["corrupted_entries.mean_score_where_noisy_label_higher"] <= 1


@pytest.mark.parametrize("model", ["small_cnn", "cnn6", "cnn10", "cnn14", "resnet22", "resnet38", "mobilenetv2",
                                   "transformer"])
def test_every_backbone_trains_end_to_end(model, tmp_path, smoke_config, smoke_data):
    """One epoch of CSU on the smoke benchmark through the real training loop, at a tiny width."""
    from csu_lib.models import MODELS

    assert model in MODELS
    width = {"small_cnn": 0.5, "mobilenetv2": 0.25, "transformer": 0.34}.get(model, 0.0625)
    cfg = smoke_config.replace(model=smoke_config.model.replace(name=model, width=width),
                               train=smoke_config.train.replace(epochs=1))
    rec = train_run(cfg, tmp_path / model, data=smoke_data, progress=False)
    assert rec.complete and len(rec.history) == 1
    assert np.isfinite(rec.history["train_loss"]).all()
    assert 0.0 < rec.final_metrics["test"]["mAP"] <= 1.0
    assert rec.log_sigma2.shape[1] == smoke_data.manifest.n_classes
    assert rec.summary["n_parameters"] > 0


def test_lr_factor_schedules():
    import math

    from csu_lib.training import lr_factor

    assert [lr_factor("constant", s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    # cosine: linear warm-up over 5% of the steps (5 of 100), then half a cosine down to 0
    assert [lr_factor("cosine", s, 100) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lr_factor("cosine", 5, 100) == pytest.approx(1.0)
    assert lr_factor("cosine", 52, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert lr_factor("cosine", 100, 100) == pytest.approx(0.0)
