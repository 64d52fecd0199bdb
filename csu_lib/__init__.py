"""csu-lab: robust audio tagging under unreliable labels.

The data flows one way, one package per stage::

    data (datasets) -> corruption -> features (cached) -> pipeline (what a run trains on) -> models
        -> losses -> training (the epoch engine) -> records (the run directory) -> study (sets of
        runs) -> analysis -> plots -> report

Layers, lowest first. A module imports only from its own layer or a lower one (module-level and
function-level imports alike); ``tests/test_architecture.py`` reads every import of every module
and checks it against this list::

    core        csu_lib.core
    config      csu_lib.config
    data        csu_lib.data
    corruption  csu_lib.corruption
    features    csu_lib.features
    models      csu_lib.models
    losses      csu_lib.losses
    metrics     csu_lib.metrics csu_lib.evaluation
    records     csu_lib.records
    pipeline    csu_lib.pipeline
    training    csu_lib.training
    study       csu_lib.study
    analysis    csu_lib.analysis
    plots       csu_lib.plots
    report      csu_lib.report
    interface   csu_lib.explorer csu_lib.notebook_runner csu_lib.cli

- ``core``: errors, atomic file writes, paths, statistics, the name registries;
- ``config``: the configuration dataclasses (names checked against the registries);
- ``metrics``: mAP, mAUC, d', lwlrap and the final metrics of a run from its scores;
- ``pipeline``: dataset -> corruption -> features for one run configuration (used by training
  and by the analyses that evaluate a trained model);
- ``interface``: the ``csu`` command, papermill execution of the notebooks, the explorer widget.

Models, losses, datasets and methods register themselves by name when their package is
imported. Importing :mod:`csu_lib` is light (no PyTorch, pandas or SciPy, so that ``csu --help``
answers at once): it installs :func:`_register_everything` as the loader of
:mod:`csu_lib.core.registry`, and the first read of any registry imports the registering packages
once, so every registry is full before a configuration is checked. ``csu_lib.data`` and the
other stages are still reachable as attributes of the package (imported on first access).
"""
import importlib

from .core import __version__, registry

__all__ = ["__version__"]


def _register_everything() -> None:
    """Import every registering package (the loader of the registries: called on their first read)."""
    from . import data, losses, models, training  # noqa: F401  (registration: datasets, losses, models, methods)


registry.set_loader(_register_everything)


def __getattr__(name: str):
    """``csu_lib.data`` etc. without an explicit import (as when importing csu_lib imported them)."""
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
