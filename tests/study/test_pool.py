"""The parallel local engine (csu_lib.study.pool): runs in worker processes, teachers first,
numbers independent of the worker count; the run lock; the worker settings."""
from __future__ import annotations

import numpy as np
import pytest

from csu_lib.config import MethodConfig
from csu_lib.core.errors import ConfigError, RunRecordError
from csu_lib.records import load_run, run_lock
from csu_lib.study import run_all, run_config
from csu_lib.study.pool import resolve_workers


def test_resolve_workers(monkeypatch):
    monkeypatch.delenv("CSU_WORKERS", raising=False)
    monkeypatch.delenv("CSU_THREADS_PER_WORKER", raising=False)
    monkeypatch.setattr("csu_lib.study.pool.usable_cpus", lambda: 4)
    assert resolve_workers() == (4, 1)
    assert resolve_workers(2) == (2, 2)
    assert resolve_workers(1, 3) == (1, 3)
    monkeypatch.setenv("CSU_WORKERS", "2")
    monkeypatch.setenv("CSU_THREADS_PER_WORKER", "1")
    assert resolve_workers() == (2, 1)
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="workers must be a positive integer"):
            resolve_workers(bad)
    with pytest.raises(ConfigError, match="threads per worker"):
        resolve_workers(1, 0)


def test_run_lock_refuses_a_second_trainer(tmp_path):
    with run_lock(tmp_path):
        with pytest.raises(RunRecordError, match="being trained by another process"):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released with the first holder
        pass


def _configs():
    base = dict(epochs=2, device="cpu", corruption={"kind": "san", "ratio": 0.5})
    student = run_config("smoke", loss="csu", seed=1, **base).replace(method=MethodConfig(name="teacher_mask"))
    return [run_config("smoke", loss="csu", seed=0, **base), run_config("smoke", loss="bce", seed=2, **base), student]


@pytest.mark.slow
def test_one_and_two_workers_give_identical_records(tmp_path):
    """Same thread count, 1 worker (in this process) vs 2 worker processes: bit-identical runs;
    the teacher-masking student's teacher (not in the list) is trained first."""
    configs = _configs()
    one = run_all(configs, tmp_path / "one", workers=1, threads=1, progress=False)
    two = run_all(configs, tmp_path / "two", workers=2, threads=1, progress=False)
    for a, b in zip(one, two):
        assert a.config.run_id == b.config.run_id
        assert a.final_metrics == b.final_metrics
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(a.scores(split), b.scores(split))
        if a.learns_sigma:
            np.testing.assert_array_equal(a.log_sigma2, b.log_sigma2)
    teacher = two[2].summary["method"]["teacher"]
    assert teacher["source"] == "trained" and load_run(teacher["path"]).complete
    assert len(list((tmp_path / "two").iterdir())) == 4  # the three runs and the planned teacher
    # a second call trains nothing
    stamps = {p.name: (p / "record.json").stat().st_mtime_ns for p in (tmp_path / "two").iterdir()}
    run_all(configs, tmp_path / "two", workers=2, threads=1, progress=False)
    assert {p.name: (p / "record.json").stat().st_mtime_ns for p in (tmp_path / "two").iterdir()} == stamps


@pytest.mark.slow
def test_a_failing_run_is_reported_with_its_id(tmp_path):
    configs = _configs()[:2]
    (tmp_path / "runs" / configs[1].run_id).mkdir(parents=True)
    (tmp_path / "runs" / configs[1].run_id / "config.json").write_text('{"not": "this run"}\n')
    with pytest.raises(RunRecordError, match="another configuration"):
        run_all(configs, tmp_path / "runs", workers=2, threads=1, progress=False)
    assert load_run(tmp_path / "runs" / configs[0].run_id).complete  # the other run finished
