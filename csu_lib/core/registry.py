"""Name registries: models, losses, datasets and methods register themselves by name.

In the spirit of timm's ``register_model``: an implementation module decorates what it
provides (``@register("model", "small_cnn")``); the configuration layer checks a name with
:func:`check` and never imports an implementation.

The registries fill themselves on first use: the first read of any registry (:func:`check`,
:func:`get`, :func:`names`, or reading one of the dicts: ``in``, ``[]``, iteration, ``len``,
``keys()``...) calls the loader that :mod:`csu_lib` installs (:func:`set_loader`), which imports
every registering package once. So importing :mod:`csu_lib` stays light (no PyTorch, pandas or
SciPy: ``csu --help`` answers at once), and every registry is still full before any
configuration is checked. This module itself imports nothing above ``core``: the list of
registering packages lives in ``csu_lib/__init__.py``.

Each registry is a ``dict`` (name -> object) shared by reference: ``registry("model")`` is
``csu_lib.models.MODELS``, so a test or a user may also add an entry by assignment. Writes
(:func:`register`, assignment) never trigger the loading: a registering package calls them while
it is being imported.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional, TypeVar

from .errors import ConfigError, unknown_name

#: The kinds of names that are registered, with how an error message names them.
KINDS: dict[str, str] = {"model": "model", "loss": "loss", "dataset": "dataset", "method": "method"}

T = TypeVar("T")

_loader: Optional[Callable[[], None]] = None
_loaded = False
_loading = False
_lock = threading.RLock()


def set_loader(loader: Callable[[], None]) -> None:
    """Install the function that imports every registering package (``csu_lib`` does, on import)."""
    global _loader
    _loader = loader


def load() -> None:
    """Fill every registry: call the loader once (a no-op once done, or without a loader).

    A read while the loader runs (in the same thread: module-level code of a registering package)
    sees what is registered so far, as when ``import csu_lib`` imported the packages one by one;
    another thread waits for the loader to finish. A loader that fails is called again next time.
    """
    global _loaded, _loading
    if _loaded or _loader is None:
        return
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            _loader()
            _loaded = True
        finally:
            _loading = False


class Registry(dict):
    """A registry: a ``dict`` (name -> object) whose reads first fill every registry (:func:`load`).
    Every reading method of ``dict`` is wrapped (:data:`_READS`); writes are ``dict``'s own."""

    def __or__(self, other: Any) -> dict:
        load()
        return dict(self.items()) | other

    def __ror__(self, other: Any) -> dict:
        load()
        return other | dict(self.items())

    def copy(self) -> dict:
        load()
        return dict(super().items())

    def __reduce__(self):  # pickles (and copies) as a plain dict of the full registry
        return dict, (dict(self.items()),)


#: The methods of ``dict`` that read a registry, and so fill it first.
_READS = ("__getitem__", "__contains__", "__iter__", "__reversed__", "__len__", "__eq__", "__ne__", "__repr__",
          "get", "keys", "values", "items", "pop", "popitem", "setdefault")


def _filling_first(name: str) -> Callable:
    method = getattr(dict, name)

    def read(self: Registry, *args: Any, **kwargs: Any) -> Any:
        load()
        return method(self, *args, **kwargs)

    read.__name__ = read.__qualname__ = name
    return read


for _name in _READS:
    setattr(Registry, _name, _filling_first(_name))


_REGISTRIES: dict[str, Registry] = {kind: Registry() for kind in KINDS}


def registry(kind: str) -> dict[str, Any]:
    """The live registry of ``kind`` (``model``, ``loss``, ``dataset``, ``method``)."""
    if kind not in _REGISTRIES:
        raise ConfigError(f"unknown registry {kind!r}; one of {', '.join(KINDS)}")
    return _REGISTRIES[kind]


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: register the decorated object under ``name`` in the ``kind`` registry."""
    table = registry(kind)

    def add(obj: T) -> T:
        # dict's own methods: registering must not start the loading (it runs during it)
        if dict.__contains__(table, name) and dict.__getitem__(table, name) is not obj:
            raise ConfigError(f"{kind} {name!r} is registered twice ({dict.__getitem__(table, name)!r} and {obj!r})")
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


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, sorted."""
    return sorted(registry(kind))
