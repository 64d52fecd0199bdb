"""The start-up of ``csu`` and of ``import csu_lib``: light until a command runs.

``csu --help`` and argument errors import no PyTorch, pandas or SciPy (checked in a fresh
interpreter by what is in ``sys.modules``, not by timing); the registries fill themselves on
their first read, so a configuration checked in a fresh interpreter sees every name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csu_lib.core import registry
from csu_lib.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "scipy", "matplotlib", "papermill")


def _fresh(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this checkout of csu_lib."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def _cli_in_fresh_interpreter(argv: list[str]) -> tuple[int, list[str], str]:
    """(exit status, heavy modules imported, stderr) of ``csu ARGV`` run by ``main`` in a fresh interpreter."""
    code = (f"import json, sys\nfrom csu_lib.cli import main\ntry:\n    rc = main({argv!r})\n"
            f"except SystemExit as exc:\n    rc = exc.code\n"
            f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]))")
    proc = _fresh(code)
    assert proc.returncode == 0, proc.stderr
    rc, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    return rc, heavy, proc.stderr


@pytest.mark.parametrize("argv, status, message", [
    (["--help"], 0, ""),
    (["train", "--help"], 0, ""),
    (["figures", "--help"], 0, ""),
    (["nope"], 2, "invalid choice: 'nope'"),                        # unknown command
    ([], 2, "the following arguments are required: command"),
    (["sweep"], 2, "the following arguments are required: study"),   # missing argument
    (["train", "--seed", "x"], 2, "invalid int value: 'x'"),
    (["sweep", "s.yaml", "--cpus-per-run", "0"], 2, "--cpus-per-run must be > 0"),
    (["figures", "--profile", "nope"], 2, "unknown profile 'nope'; choose one of: paper, quick, smoke"),
    (["figures", "--only", "nope"], 2, "no notebook named 'nope'"),
])
def test_help_and_argument_errors_import_no_heavy_stack(argv, status, message):
    rc, heavy, stderr = _cli_in_fresh_interpreter(argv)
    assert rc == status
    assert message in stderr
    assert heavy == []


def test_importing_csu_lib_and_its_config_imports_no_heavy_stack():
    code = ("import json, sys\nimport csu_lib, csu_lib.config\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = _fresh(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_registries_are_full_when_a_config_is_checked_in_a_fresh_interpreter():
    code = """
import json
from csu_lib.config import LossConfig, ModelConfig, RunConfig, parse_method_spec
from csu_lib.core.errors import ConfigError
config = RunConfig(loss=LossConfig(name="csu"), model=ModelConfig(name="pooled_cnn"))
errors = []
for make in (lambda: LossConfig(name="nope"), lambda: ModelConfig(name="nope"),
             lambda: RunConfig.from_dict({**config.to_dict(), "model": {"name": "nope"}})):
    try:
        make()
    except ConfigError as exc:
        errors.append(str(exc))
print(json.dumps({"run_id": config.run_id, "errors": errors, "method": parse_method_spec("csu+mixup_or")}))
"""
    proc = _fresh(code)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    from csu_lib.config import LossConfig, ModelConfig, RunConfig  # this process: everything imported
    assert out["run_id"] == RunConfig(loss=LossConfig(name="csu"), model=ModelConfig(name="pooled_cnn")).run_id
    assert out["method"] == ["csu", "mixup_or"]
    loss_error, model_error, dict_error = out["errors"]
    assert "unknown loss 'nope'" in loss_error and "bce" in loss_error and "csu" in loss_error
    assert "unknown model 'nope'" in model_error and "small_cnn" in model_error and "pooled_cnn" in model_error
    assert "small_cnn" in dict_error


def test_a_registry_read_loads_once_and_a_write_does_not(monkeypatch):
    """A read (``in``, iteration, ``get``...) calls the loader once; a write (what a registering
    module does while the loader imports it) never does; a read during the loading sees what is
    registered so far instead of recursing."""
    table = registry.Registry()
    calls = []

    def loader():
        calls.append(sorted(table))  # a read while loading: no second call
        table["late"] = 2

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_loader", loader)
    table["early"] = 1
    assert calls == []
    assert "late" in table
    assert calls == [["early"]]
    assert sorted(table) == ["early", "late"] and len(table) == 2 and table.get("late") == 2
    assert dict(table) == {"early": 1, "late": 2} == {**table}
    assert calls == [["early"]]


def test_a_failed_loading_is_retried(monkeypatch):
    table = registry.Registry()
    calls = []

    def loader():
        calls.append(1)
        if len(calls) == 1:
            raise ImportError("broken")

    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_loader", loader)
    with pytest.raises(ImportError):
        len(table)
    assert len(table) == 0 and len(calls) == 2
    assert list(table) == [] and len(calls) == 2


def test_the_registries_are_full_and_names_lists_them():
    assert {"bce", "csu"} <= set(registry.names("loss"))
    assert "small_cnn" in registry.names("model") and "embedded" in registry.names("dataset")
    assert "none" in registry.names("method")
    with pytest.raises(ConfigError, match="choose one of: .*bce"):
        registry.get("loss", "nope")


def test_an_unknown_profile_fails_before_anything_runs(tmp_path, capsys):
    from csu_lib.cli import main
    rc = main(["figures", "--profile", "nope", "--runs-dir", str(tmp_path / "runs"), "--fig-dir",
               str(tmp_path / "figs")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "csu figures: error:" in err and "nope" in err and "quick" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "figs").exists()
