"""Killing `csu figures` (what `make figures` runs) at random moments and running it again
completes the figure set with every figure's numbers equal to an uninterrupted run -- with the
runs trained by two worker processes, as `make figures` trains them."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _figures_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "csu_lib.cli", "figures", "--profile", "smoke", "--runs-dir", str(out / "runs"),
            "--fig-dir", str(out / "figures"), "--quiet", "--no-log-output"]


def _run(out: Path, env: dict, kill_after: float | None = None) -> tuple[float, bool]:
    """Run `csu figures` into ``out``; with ``kill_after``, SIGKILL its process group then.
    Returns (seconds, whether it was killed before finishing)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(_figures_cmd(out), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the notebook kernels run in sessions of their own and
        proc.communicate()                   # exit within a second once their parent is gone
        time.sleep(2.0)
        return time.perf_counter() - t0, True
    assert proc.returncode == 0, output[-3000:]
    return time.perf_counter() - t0, False


def _numbers(fig_dir: Path, runs_dir: Path) -> dict[str, object]:
    """Every figure's JSON, with the runs folder's path replaced so two folders compare equal; of
    manifest.json (dates, durations and folders differ by design) the figures each notebook wrote."""
    out = {}
    for path in sorted(fig_dir.glob("*.json")):
        text = path.read_text().replace(str(runs_dir), "<runs>")
        out[path.name] = json.loads(text)
    manifest = out.pop("manifest.json")
    out["manifest.json: figures per notebook"] = {k: v["figures"] for k, v in manifest["notebooks"].items()}
    return out


@pytest.mark.slow
def test_killed_figures_rerun_gives_the_uninterrupted_numbers(tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CSU_WORKERS": "2", "CSU_THREADS_PER_WORKER": "1"}
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    full, _ = _run(reference, env)
    seed = int(os.environ.get("CSU_KILL_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    kills = []
    for _ in range(2):  # two kills at random moments, each followed by the same command
        delay = rng.uniform(2.0, 0.6 * full)
        _, killed = _run(interrupted, env, kill_after=delay)
        kills.append((round(delay, 1), killed))
    _run(interrupted, env)
    print(f"uninterrupted {full:.0f} s; kills (s, killed) {kills}; CSU_KILL_SEED={seed}")
    expected = _numbers(reference / "figures", reference / "runs")
    got = _numbers(interrupted / "figures", interrupted / "runs")
    assert sorted(got) == sorted(expected)
    assert len(expected) >= 15
    for name in expected:
        assert got[name] == expected[name], f"{name} differs after kill + rerun (CSU_KILL_SEED={seed}, kills {kills})"
    # no half-written result that looks complete: every run folder with a record is loadable
    from csu_lib.records import find_runs, is_complete, load_run

    for run_dir in find_runs(interrupted / "runs" / "study"):
        assert is_complete(run_dir)
        load_run(run_dir)
