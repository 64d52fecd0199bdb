"""What made the figures: ``<fig_dir>/manifest.json``, written by ``csu figures``.

One entry per executed notebook (its parameters, when it ran, how long it took, the executed
copy, the figures it wrote) and the environment of the last run (profile, dataset, versions,
git commit, date). The figure report (:mod:`csu_lib.report.page`) reads it; figures made
outside ``csu figures`` (papermill by hand, JupyterLab) have no entry and are reported as such.
Written atomically after every notebook, so an interrupted ``csu figures`` keeps what finished.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

from ..core import __version__
from ..core.io import atomic_write_json, read_json
from ..core.paths import project_root

MANIFEST = "manifest.json"


def load_manifest(fig_dir: str | os.PathLike) -> dict:
    """The manifest of ``fig_dir`` ({"notebooks": {}} when none was written)."""
    path = Path(fig_dir) / MANIFEST
    return read_json(path) if path.is_file() else {"notebooks": {}}


def figures_since(fig_dir: str | os.PathLike, since: float) -> list[str]:
    """Names of the figures whose PNG was written at or after ``since`` (a ``time.time()``)."""
    return sorted(p.stem for p in Path(fig_dir).glob("*.png") if p.stat().st_mtime >= since - 1e-3)


def record_notebook(fig_dir: str | os.PathLike, name: str, parameters: Mapping[str, Any], *, started: float,
                    executed: Optional[str | os.PathLike] = None, environment: Optional[Mapping[str, Any]] = None) -> dict:
    """Add (or replace) the entry of notebook ``name`` that started at ``started`` (``time.time()``)
    and just finished; the figures it wrote are the PNGs written since. Returns the manifest."""
    manifest = load_manifest(fig_dir)
    manifest.setdefault("notebooks", {})[name] = {
        "notebook": f"notebooks/{name}.ipynb", "parameters": dict(parameters),
        "started": _iso(started), "seconds": round(time.time() - started, 1),
        "executed": None if executed is None else str(executed), "figures": figures_since(fig_dir, started)}
    if environment is not None:
        manifest["environment"] = dict(environment)
    atomic_write_json(Path(fig_dir) / MANIFEST, manifest)
    return manifest


def environment(profile: str, data: Optional[Mapping[str, Any]] = None) -> dict:
    """Profile, dataset, date and the versions that matter for reproducing the figures."""
    versions = {"csu-lab": __version__, "python": platform.python_version()}
    for module in ("torch", "torchaudio", "numpy", "matplotlib", "plotly"):
        mod = sys.modules.get(module)
        if mod is None:
            try:
                mod = __import__(module)
            except ImportError:
                continue
        versions[module] = getattr(mod, "__version__", "?")
    return {"profile": profile, "data": dict(data) if data else "embedded benchmark",
            "date": _iso(time.time()), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "git_commit": git_commit(), "versions": versions}


def git_commit() -> Optional[str]:
    """The repository's HEAD commit (with ``+dirty`` if tracked files changed), None outside git."""
    root = str(project_root())
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
