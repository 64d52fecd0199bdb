"""``csu sweep --engine ray``: against a Ray head started by the test (``ray start --head``,
reached through ``--address``), on the CPU.

Measured (smoke profile, 2 epochs): a Ray task with 1 torch thread gives records bit-identical
to the local engine run with 1 torch thread; with 2 local threads the numbers differ (test mAP
by up to ~0.005), so the local reference below is trained with the thread count the Ray tasks use.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from csu_lib.cli import main
from csu_lib.core.io import atomic_write_json
from csu_lib.records import is_complete, load_run
from csu_lib.study import load_study, run_dir_for
from csu_lib.training import train_run

ROOT = Path(__file__).resolve().parents[2]

# 3 runs of seconds each: CSU on 50% single-label noise, seeds 0-2
STUDY = "profile: smoke\nepochs: 2\ndevice: cpu\nconditions: ['san:0.5']\nlosses: [csu]\nseeds: [0, 1, 2]\n"


def _study(tmp_path: Path) -> Path:
    path = tmp_path / "raymini.yaml"
    path.write_text(STUDY)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Head:
    """A Ray head started in the background (``ray start --head --block``, its own session)."""

    def __init__(self, process: subprocess.Popen, log: Path, port: int):
        self.process, self.log, self.port = process, log, port

    def address(self, timeout: float = 180) -> str:
        """Wait until the head is up; its address for ``--address``."""
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.25)
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A 2-CPU Ray head, started now and waited for by ``.address()`` (the test trains its local
    reference meanwhile). It uses token authentication with a token made up here, given to the
    head and to this process (the driver) through the environment; SIGTERM stops it at the end."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    # before Ray is imported: it reads the mode from the environment when it loads
    os.environ.update(auth)
    try:
        pytest.importorskip("ray")
    except pytest.skip.Exception:
        for key in auth:
            os.environ.pop(key, None)
        raise
    ray_cli = Path(sys.executable).parent / "ray"
    port = _free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    # its own temp dir (short: Ray puts sockets there), so the head's address file does not
    # replace /tmp/ray/ray_current_cluster, which a later plain ray.init() would follow
    temp_dir = Path(tempfile.mkdtemp(prefix="csuray-"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as fh:
        head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                                 "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
                                 "--temp-dir", str(temp_dir)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield _Head(head, log, port)
    finally:
        head.send_signal(signal.SIGTERM)  # ray start --block stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # its own session: only what this fixture started
            head.wait()
        for key in auth:
            os.environ.pop(key, None)
        shutil.rmtree(temp_dir, ignore_errors=True)


class Crash(RuntimeError):
    pass


def _crash_at_epoch(epoch: int):
    def hook(e, s):
        if e == epoch:
            raise Crash(f"simulated crash at epoch {e}")
    return hook


def _stamps(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(run_dir.iterdir())}


def _same_numbers(a: Path, b: Path) -> None:
    ra, rb = load_run(a), load_run(b)
    assert ra.final_metrics == rb.final_metrics
    for split in ("val", "test"):
        np.testing.assert_array_equal(ra.scores(split), rb.scores(split))
    np.testing.assert_array_equal(ra.log_sigma2, rb.log_sigma2)


def test_ray_sweep_matches_local_resumes_and_reports_failures(tmp_path, ray_head, capsys):
    study = _study(tmp_path)
    _, configs = load_study(study)
    assert len(configs) == 3
    local, remote = tmp_path / "local", tmp_path / "ray"

    # the reference: the local engine with the torch thread count of a 1-CPU Ray task
    threads = torch.get_num_threads()
    assert main(["sweep", str(study), "--runs-dir", str(local), "--quiet", "--workers", "1",
                 "--threads-per-worker", "1"]) == 0
    assert torch.get_num_threads() == threads  # restored after the sweep

    args = ["sweep", str(study), "--runs-dir", str(remote), "--engine", "ray", "--address", ray_head.address(),
            "--cpus-per-run", "1"]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 runs: 0 complete, 3 to train on Ray" in out
    for config in configs:
        assert config.run_id in out
        assert is_complete(run_dir_for(config, remote))
        _same_numbers(run_dir_for(config, local), run_dir_for(config, remote))  # bit-identical on the CPU
    assert "[3/3]" in out and "3 trained, 0 failed, 0 already complete" in out

    # run 0: interrupted mid-way (a checkpoint after epoch 0, no record); run 1: complete, must stay
    # untouched; run 2: its folder holds another configuration, so its task fails
    first, kept, broken = (run_dir_for(c, remote) for c in configs)
    shutil.rmtree(first)
    torch.set_num_threads(1)
    try:
        with pytest.raises(Crash):
            train_run(configs[0], first, progress=False, on_step=_crash_at_epoch(1))
    finally:
        torch.set_num_threads(threads)
    assert (first / "checkpoint.pt").is_file() and not is_complete(first)
    other = configs[2].replace(train=dataclasses.replace(configs[2].train, seed=99))
    (broken / "record.json").unlink()
    atomic_write_json(broken / "config.json", other.to_dict())
    before = _stamps(kept)

    capsys.readouterr()
    assert main(args) == 1  # a failed run: the others finish, the command fails at the end
    captured = capsys.readouterr()
    assert "3 runs: 1 complete, 2 to train on Ray" in captured.out
    assert f"{configs[0].run_id} (san 50%): test mAP" in captured.out and "resumed" in captured.out
    assert f"{configs[2].run_id} (san 50%): FAILED: RunRecordError" in captured.out
    assert f"run {configs[2].run_id} failed" in captured.err and "another configuration" in captured.err
    assert "1 trained, 1 failed, 1 already complete" in captured.out
    assert is_complete(first) and not is_complete(broken)
    _same_numbers(run_dir_for(configs[0], local), first)  # resumed from epoch 1: still bit-identical
    assert _stamps(kept) == before


def test_gpus_per_run_default():
    from csu_lib.study import run_config
    from csu_lib.study.ray_engine import gpus_for

    cpu, auto, cuda = (run_config("smoke", device=d) for d in ("cpu", "auto", "cuda"))
    assert [gpus_for(c, None, 0) for c in (cpu, auto, cuda)] == [0, 0, 1]
    assert [gpus_for(c, None, 4) for c in (cpu, auto, cuda)] == [0, 1, 1]
    assert gpus_for(cpu, 0.5, 0) == 0.5


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(_study(tmp_path)), "--runs-dir", str(tmp_path / "runs"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--engine ray needs Ray" in err and "pip install 'csu-lab[ray]'" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, culprit", [
    (["--engine", "dask"], "--engine"),
    (["--engine", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be > 0"),
    (["--engine", "ray", "--cpus-per-run", "two"], "--cpus-per-run must be a number"),
    (["--engine", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be >= 0"),
])
def test_bad_sweep_options_name_the_argument(tmp_path, capsys, extra, culprit):
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(_study(tmp_path)), *extra])
    assert info.value.code == 2
    assert culprit in capsys.readouterr().err


@pytest.mark.parametrize("extra, culprit", [
    (["--address", "10.0.0.1:6379"], "--address: only with --engine ray"),
    (["--cpus-per-run", "2", "--gpus-per-run", "1"], "--cpus-per-run, --gpus-per-run: only with --engine ray"),
    (["--engine", "ray", "--gpus-per-run", "1.5"], "--gpus-per-run above 1 must be a whole number"),
])
def test_ray_options_checked_before_anything_runs(tmp_path, capsys, extra, culprit):
    runs = tmp_path / "runs"
    assert main(["sweep", str(_study(tmp_path)), "--runs-dir", str(runs), *extra]) == 2
    assert culprit in capsys.readouterr().err
    assert not runs.exists()
