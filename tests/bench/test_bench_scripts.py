"""The bench/ scripts run end to end at toy size and print their ratio lines.

Each script runs as a subprocess (as a user runs it) with the tiniest settings; the tests check
the exit status and the printed numbers' presence and sanity, never a timing.
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
NUMBER = r"([0-9]+(?:\.[0-9]+)?|inf)"


def run_bench(script: str, *args: str) -> str:
    """Run ``bench/<script>`` with ``args``; assert exit status 0; return stdout."""
    env = dict(os.environ)  # CSU_DATA_DIR / CSU_CACHE_DIR: the session's folders (conftest)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # one torch thread: the scripts' toy sizes gain nothing from more, and the suite may share the cores
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--threads", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "machine: cpu " in proc.stdout and "| torch " in proc.stdout and "settings: " in proc.stdout
    return proc.stdout


def bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


# Tiny embedded benchmark shared by the data-fed scripts: 3 clips of 0.5 s per class.
DATA = ["--profile", "smoke", "--clips-per-class", "3", "--batch-size", "4"]


def test_frontend_cache_prints_ratio():
    out = run_bench("frontend_cache.py", *DATA, "--models", "small_cnn", "--steps", "2", "--rounds", "2",
                    "--warmup", "1")
    m = re.search(rf"small_cnn: cache {NUMBER} clips/s, on the fly {NUMBER} clips/s, "
                  rf"ratio cache/on-the-fly: {NUMBER}x", out)
    assert m, out
    cache, fly, ratio = (float(g) for g in m.groups())
    assert cache > 0 and fly > 0
    assert ratio == pytest.approx(cache / fly, rel=0.02)
    assert "| small_cnn | 1 | 103970 |" in out  # the table row, with the parameter count


def test_loader_vs_model_prints_ratios():
    out = run_bench("loader_vs_model.py", *DATA, "--models", "small_cnn", "--steps", "2",
                    "--loader-batches", "2", "--fly-batches", "1", "--rounds", "1", "--warmup", "1")
    m = re.search(rf"ratio loader/model: memory {NUMBER}x, store {NUMBER}x, on-the-fly {NUMBER}x", out)
    assert m, out
    assert all(float(g) > 0 for g in m.groups())
    assert re.search(r"\| small_cnn \| 1 \| .* \| (no|yes \(.*\)) \|", out), out


def test_landscape_batching_prints_ratio():
    out = run_bench("landscape_batching.py", "--grid", "2", "--clips", "4", "--batch-size", "4",
                    "--batch-points", "4", "--width", "0.25", "--frames", "32")
    assert re.search(rf"ratio pointwise / batched: {NUMBER}x", out), out
    rel = float(re.search(r"max relative difference between the surfaces: (\S+);", out).group(1))
    assert rel < 1e-4  # the batched and pointwise surfaces agree


def test_vectorised_runs_prints_ratio():
    out = run_bench("vectorised_runs.py", "--runs", "1,2", "--steps", "1", "--rounds", "1", "--warmup", "1",
                    "--batch-size", "2", "--frames", "16", "--width", "0.25")
    for n in (1, 2):
        m = re.search(rf"N={n}: sequential {NUMBER}, vectorised {NUMBER} run-steps/s, "
                      rf"ratio vectorised/sequential: {NUMBER}x", out)
        assert m, out
        seq, vec, ratio = (float(g) for g in m.groups())
        assert seq > 0 and vec > 0 and ratio == pytest.approx(vec / seq, rel=0.05)


def test_vectorised_whole_runs_prints_both_sides(tmp_path):
    out = run_bench("vectorised_whole_runs.py", "--profile", "smoke", "--seeds", "0,1", "--conditions", "none",
                    "--epochs", "1", "--runs-dir", str(tmp_path))
    assert re.search(rf"time ratio vectorised/sequential: {NUMBER}x", out), out
    row = re.search(rf"\| clean \| {NUMBER} \| {NUMBER} \| {NUMBER} \| {NUMBER} \| (-?{NUMBER}) \| {NUMBER} \|", out)
    assert row, out
    # both sides trained their own records: the grouped ones say so
    from csu_lib.records import load_run

    grouped = [load_run(p) for p in sorted((tmp_path / "vectorised").iterdir())]
    alone = [load_run(p) for p in sorted((tmp_path / "sequential").iterdir())]
    assert [r.summary["vectorised"]["size"] for r in grouped] == [2, 2]
    assert len(alone) == 2 and not any("vectorised" in r.summary for r in alone)


def test_frontend_option_renders_the_benchmark_at_its_rate():
    out = run_bench("frontend_cache.py", *DATA, "--frontend", "panns32k", "--models", "small_cnn", "--steps", "1",
                    "--rounds", "1", "--warmup", "0")
    assert "frontend panns32k sr 32000 n_fft 1024 hop 320 mels 64" in out
    assert "source_rate 32000" in out
    bad = subprocess.run([sys.executable, str(BENCH / "frontend_cache.py"), "--frontend", "nope"], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "front-end preset" in bad.stderr and "panns32k" in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_skips_cleanly_without_cuda():
    out = run_bench("gpu.py")
    assert "no CUDA device available: GPU benchmark skipped" in out


def test_gpu_script_cpu_tiny():
    out = run_bench("gpu.py", "--device", "cpu", "--tiny", "--models", "cnn14", "--steps", "1",
                    "--warmup", "0", "--peak-tflops", "100")
    for setting in ("fp32", "bf16", "bf16+channels_last"):
        assert re.search(rf"  {re.escape(setting)}: {NUMBER} clips/s, .* fraction of peak {NUMBER}%, "
                         rf"ratio vs fp32 eager: {NUMBER}x", out), out
    fwd, step = (float(g) for g in re.search(
        r"cnn14: .*?, ([0-9.]+) GFLOP forward per batch of 2 .* = ([0-9.]+) GFLOP", out).groups())
    assert fwd > 0 and step == pytest.approx(3 * fwd, abs=0.011)  # printed to 2 decimals
    assert "peak_source --peak-tflops" in out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_script_on_cuda_tiny():
    out = run_bench("gpu.py", "--tiny", "--models", "cnn14", "--steps", "2", "--warmup", "1")
    assert re.search(rf"ratio vs fp32 eager: {NUMBER}x", out), out


def test_peak_table_matches_device_names():
    gpu = bench_module("gpu")
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == (989.0, "h100")
    assert gpu.peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu.peak_tflops("NVIDIA H200")[0] == 989.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert gpu.peak_tflops("NVIDIA L40S")[0] == 362.0
    assert gpu.peak_tflops("NVIDIA L4")[0] == 121.0
    assert gpu.peak_tflops("NVIDIA A10G") is None  # not the A10's entry
    assert gpu.peak_tflops("Tesla V100-SXM2-16GB") is None  # no bfloat16 tensor cores


def test_batch_rows_are_epochs_of_disjoint_batches():
    common = bench_module("common")
    train_idx = np.arange(100, 130)
    rows = common.batch_rows(train_idx, 8, 5, seed=3)
    assert [len(r) for r in rows] == [8] * 5
    first_epoch = np.concatenate(rows[:3])  # 30 clips -> 3 full batches per epoch
    assert len(set(first_epoch.tolist())) == 24 and set(first_epoch.tolist()) <= set(train_idx.tolist())
    again = common.batch_rows(train_idx, 8, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(rows, again))  # seeded


def test_channels_last_prints_ratio():
    out = run_bench("channels_last.py", "--models", "small_cnn", "--steps", "2", "--rounds", "2", "--warmup", "1",
                    "--batch-size", "4", "--frames", "40")
    m = re.search(rf"\| small_cnn \| 1 \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", out)
    assert m, out
    contiguous, channels_last, ratio = (float(g) for g in m.groups())
    assert ratio == pytest.approx(channels_last / contiguous, rel=0.05)


def test_frontend_cache_with_44k_source_resamples(tmp_path):
    out = run_bench("frontend_cache.py", *DATA, "--source-rate", "44100", "--models", "small_cnn", "--steps", "1",
                    "--rounds", "1", "--warmup", "0")
    assert "source_rate 44100" in out and "ratio cache/on-the-fly" in out


def test_time_to_converge_prints_every_recipe_and_backbone_and_the_worker_ratio(tmp_path):
    out = run_bench("time_to_converge.py", "--profile", "smoke", "--models", "small_cnn,pooled_cnn", "--seeds", "0,1",
                    "--setting", "capped:epochs=2,early_stopping_patience=1",
                    "--setting", "budget:epochs=3,lr_schedule=cosine,early_stopping_patience=None",
                    "--workers", "2", "--threads-per-worker", "1",
                    "--compare-workers", "--compare-runs", "2", "--runs-dir", str(tmp_path))
    for model in ("small_cnn", "pooled_cnn"):
        for setting, cap in (("capped", 2), ("budget", 3)):
            m = re.search(rf"{model} {setting}: test mAP {NUMBER} \[(-?{NUMBER}), {NUMBER}\] over 2 seeds, "
                          rf"{NUMBER} epochs.*converged ([0-2])/2", out)
            assert m, out
            mean, lo, _, hi, epochs = (float(g) for g in m.groups()[:5])
            assert lo <= mean <= hi and 1 <= epochs <= cap
    # the budget recipe runs every one of its 3 epochs (no early stopping) on a cosine schedule
    assert re.search(rf"\| budget \| pooled_cnn \| {NUMBER} \| 103970 \| 32 \| {NUMBER} \| cosine \| 3 \|", out), out
    macs = {m: float(re.search(rf"\| capped \| {m} \| {NUMBER} \| 103970 \|", out).group(1))
            for m in ("small_cnn", "pooled_cnn")}
    assert macs["pooled_cnn"] < macs["small_cnn"] / 5  # the 3x3-pooled input: about an eighth of the work
    m = re.search(rf"ratio one-process/workers: {NUMBER}x", out)
    assert m and float(m.group(1)) > 0, out


def test_csu_fit_reports_the_stationarity_gap_of_each_fit(tmp_path):
    out = run_bench("csu_fit.py", "--profile", "smoke", "--conditions", "san:0.5", "--seeds", "0,1",
                    "--fits", "stationary,gradient", "--epochs", "2", "--workers", "1", "--runs-dir", str(tmp_path))
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(
        rf"\| (stationary|gradient) \| san 50% \| 2 \| {NUMBER} \[", out)}
    assert set(rows) == {"stationary", "gradient"}, out
    # the stationary fit is at its optimum (recomputed from the records); 2 epochs of Adam are not
    assert rows["stationary"] < 1e-3 < 0.3 < rows["gradient"]


def test_feature_workers_prints_ratio_and_resumes():
    out = run_bench("feature_workers.py", "--clips", "40", "--seconds", "0.2", "--rate", "22050", "--workers", "1,2",
                    "--batch-size", "4")
    m = re.search(rf"2 workers vs 1: ratio {NUMBER}x \({NUMBER} vs {NUMBER} clips/s\); features identical: True", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(float(m.group(2)) / float(m.group(3)), rel=0.05, abs=0.006)
    assert re.search(r"interrupted build \(killed after 20 of 40 clips, exit -9\) resumed in [0-9.]+ s; "
                     r"store identical to an uninterrupted build: True", out), out
