"""Small readers shared by the dataset loaders: files, JSON and CSV tables, path spellings.

Every failure is a :class:`~csu_lib.core.errors.ManifestError` naming the file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import pandas as pd

from ..core.errors import ManifestError


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path}")


def read_json_file(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc})") from exc


def read_table(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot parse {path} ({exc})") from exc


def require_columns(table: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ManifestError(f"{path} lacks column(s) {missing}; found {list(table.columns)}")


def posix(p: str) -> str:
    """A path string from a label file, with forward slashes and no leading './'."""
    s = str(p).replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s


def strip_ext(p: str) -> str:
    pp = PurePosixPath(p)
    return str(pp.with_suffix("")) if pp.suffix else str(pp)


def relative_to_root(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix) when inside it, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def outside_root(filename: str, root: Path) -> bool:
    """Whether ``filename`` (relative to ``root``) names a file outside ``root`` (an absolute
    path, or ``..`` leading out of it)."""
    if PurePosixPath(filename).is_absolute() or Path(filename).is_absolute():
        return True
    base = Path(os.path.abspath(root))
    return not Path(os.path.abspath(base / filename)).is_relative_to(base)


def split_names(text: str, delimiter: str) -> list[str]:
    return [t.strip() for t in str(text).split(delimiter) if t.strip()]
