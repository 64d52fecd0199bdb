"""Name registries: models, losses, datasets and methods register themselves by name.

In the spirit of timm's ``register_model``: an implementation module decorates what it
provides (``@register("model", "small_cnn")``); the configuration layer checks a name with
:func:`check` and never imports an implementation. Importing :mod:`csu_lib` imports every
registering package (its ``__init__``), so the registries are full before any configuration is
built.

Each registry is a plain ``dict`` (name -> object) shared by reference: ``registry("model")`` is
``csu_lib.models.MODELS``, so a test or a user may also add an entry by assignment.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from .errors import ConfigError, unknown_name

#: The kinds of names that are registered, with how an error message names them.
KINDS: dict[str, str] = {"model": "model", "loss": "loss", "dataset": "dataset", "method": "method"}

_REGISTRIES: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}

T = TypeVar("T")


def registry(kind: str) -> dict[str, Any]:
    """The live registry of ``kind`` (``model``, ``loss``, ``dataset``, ``method``)."""
    if kind not in _REGISTRIES:
        raise ConfigError(f"unknown registry {kind!r}; one of {', '.join(KINDS)}")
    return _REGISTRIES[kind]


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: register the decorated object under ``name`` in the ``kind`` registry."""
    table = registry(kind)

    def add(obj: T) -> T:
        if name in table and table[name] is not obj:
            raise ConfigError(f"{kind} {name!r} is registered twice ({table[name]!r} and {obj!r})")
        table[name] = obj
        return obj

    return add


def check(kind: str, name: Any) -> None:
    """Raise a :class:`ConfigError` listing the registered names unless ``name`` is one."""
    table = registry(kind)
    if name not in table:
        raise unknown_name(KINDS[kind], name, table)


def get(kind: str, name: str) -> Any:
    """The object registered as ``name`` (a :class:`ConfigError` naming the choices if none)."""
    check(kind, name)
    return registry(kind)[name]
