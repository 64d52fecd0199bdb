"""Shared fixtures: every test session gets its own data and feature-cache folders, and trains
sets of runs in the test process (``CSU_WORKERS=1``) unless a test asks for worker processes
(tests/study/test_pool.py, tests/interface/test_cli_figures_resume.py): at smoke size a worker's start-up costs more
than the runs it would train."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("csu")
    old = {k: os.environ.get(k) for k in ("CSU_DATA_DIR", "CSU_CACHE_DIR", "CSU_WORKERS")}
    os.environ["CSU_DATA_DIR"] = str(base / "data")
    os.environ["CSU_CACHE_DIR"] = str(base / "cache")
    os.environ["CSU_WORKERS"] = "1"
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def smoke_config():
    """A tiny CSU run on the smoke benchmark (seconds on the CPU)."""
    from csu_lib.study import run_config

    return run_config("smoke", loss="csu", epochs=3, device="cpu")


@pytest.fixture(scope="session")
def smoke_data(smoke_config):
    from csu_lib.pipeline import prepare_data

    return prepare_data(smoke_config, progress=False)
