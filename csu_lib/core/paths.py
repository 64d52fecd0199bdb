"""Where things live: the project root, relative paths, and the default data and cache folders.

A relative path is taken from the project root, so notebooks behave the same whether the
kernel starts in ``notebooks/`` (JupyterLab) or at the root (papermill, ``make``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def project_root(start: Optional[str | os.PathLike] = None) -> Path:
    """The repository root (the nearest folder upwards holding ``pyproject.toml`` and
    ``csu_lib``), or the current directory when there is none (an installed package)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "csu_lib").is_dir():
            return folder
    return here


def resolve_path(path: Optional[str | os.PathLike], default: Optional[Path] = None) -> Optional[Path]:
    """``path`` with ``~`` expanded; a relative path is taken from :func:`project_root`;
    ``None`` gives ``default``."""
    if path is None:
        return default
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def default_data_dir() -> Path:
    """Where the embedded benchmark is generated: ``$CSU_DATA_DIR`` or ``~/.cache/csu-lab/data``."""
    return Path(os.environ.get("CSU_DATA_DIR", Path.home() / ".cache" / "csu-lab" / "data"))


def default_cache_dir() -> Path:
    """Where feature stores live: ``$CSU_CACHE_DIR`` or ``~/.cache/csu-lab``."""
    return Path(os.environ.get("CSU_CACHE_DIR", Path.home() / ".cache" / "csu-lab"))
