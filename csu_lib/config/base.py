"""The mixin every configuration dataclass shares: strict loading from JSON-like dicts,
``to_dict``/``to_json``, ``replace`` and a stable ``hash``."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any

from ..core.errors import ConfigError


def _check(cond: bool, name: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{name} {msg}, got {value!r}")


class Serialisable:
    """Mixin: ``to_dict``/``from_dict``/``to_json``/``hash`` for nested dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = ""):
        return _from_plain(cls, data, where or cls.__name__)

    @classmethod
    def from_stored(cls, data: dict[str, Any], *, where: str = ""):
        """Like :meth:`from_dict`, for a configuration a run stored: a field added since (one of
        ``HASH_OMIT``) that the stored dict lacks takes the value that reproduces the behaviour
        the run was trained with, not today's default (an old CSU record learned s by gradient)."""
        return cls.from_dict(_with_legacy(cls, data), where=where)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    #: field -> the value at which :meth:`hash` leaves it out (fields added after ids were stored)
    HASH_OMIT: dict = {}

    def hash_omitted(self) -> set:
        """The fields :meth:`hash` leaves out: those of ``HASH_OMIT`` holding their listed value."""
        return {name for name, value in self.HASH_OMIT.items() if _to_plain(getattr(self, name)) == value}

    def hash(self, length: int = 12) -> str:
        """A stable hash of the configuration (key order, formatting and ``1`` vs ``1.0`` for a
        float field do not matter: the dict is normalised through ``from_dict`` first)."""
        normalised = _omit_legacy(type(self).from_dict(self.to_dict()))
        blob = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _omit_legacy(obj: Any) -> Any:
    """The plain dict of ``obj`` for hashing, without the fields its ``hash_omitted()`` names.
    Fields added after run ids were first stored are left out while they hold the value that
    reproduces the earlier behaviour (or do not apply), so adding them leaves every existing run
    id unchanged (tests/config/test_run_ids.py)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        omit = obj.hash_omitted() if isinstance(obj, Serialisable) else set()
        return {f.name: _omit_legacy(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in omit}
    return _to_plain(obj)


def _with_legacy(tp: Any, data: Any) -> Any:
    """``data`` with the missing ``HASH_OMIT`` fields of ``tp`` (and its nested configs) filled in."""
    if not (dataclasses.is_dataclass(tp) and isinstance(data, dict)):
        return data
    hints = typing.get_type_hints(tp)
    out = {**{k: v for k, v in getattr(tp, "HASH_OMIT", {}).items() if k not in data}, **data}
    for f in dataclasses.fields(tp):
        if f.name in out and dataclasses.is_dataclass(hints[f.name]):
            out[f.name] = _with_legacy(hints[f.name], out[f.name])
    return out


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _from_plain(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _from_plain(args[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping, got {data!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(unknown)} in {where}; valid keys: {sorted(names)}"
            )
        kwargs = {k: _from_plain(hints[k], v, f"{where}.{k}") for k, v in data.items()}
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {data!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(data)
        if args and len(args) != len(data):
            raise ConfigError(f"{where} must have {len(args)} items, got {data!r}")
        return tuple(_from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args or [Any] * len(data), data)))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_from_plain(arg, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, float) and not _is_number(data):
        raise ConfigError(f"{where} must be a number, got {data!r}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
