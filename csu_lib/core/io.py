"""Atomic file writes and small JSON helpers.

A write goes to a temporary file in the same directory, is flushed and fsynced, and is then
renamed over the destination with ``os.replace``. A crash therefore leaves either the old
file or the new one, never a half-written file under the final name.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from .errors import ConfigError, CsuError


#: The process's umask, read once at import (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # the permissions open() would give, not mkstemp's private 0600
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, to_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def publish_dir(tmp: str | os.PathLike, final: str | os.PathLike, marker: str) -> None:
    """Move a fully built folder ``tmp`` into place at ``final``.

    ``final`` counts as complete when it holds the file ``marker``. An incomplete leftover at
    ``final`` (an interrupted copy, a deleted marker) is replaced; if another process published
    a complete folder first, ours is discarded and theirs kept.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists() and not (final / marker).is_file():
        stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
        os.rename(final, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / marker).is_file():
            raise CsuError(f"cannot move the built folder into {final} ({exc}); delete {final} and retry") from exc


def read_yaml_mapping(path: str | os.PathLike, what: str, keys: tuple[str, ...]) -> dict:
    """The mapping a YAML file holds (``{}`` for an empty file), for a ``what`` whose valid
    top-level keys are ``keys``: a missing file, invalid YAML, a non-mapping or an unknown key
    is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a {what} is a mapping of {', '.join(keys)}")
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(keys)}")
    return spec
