"""Deprecated location: the training stage is :mod:`csu_lib.training` (``from csu_lib.training
import train_run``). This module re-exports its former names and warns once on import."""
import warnings

from .training import PreparedData, lr_factor, predict, prepare_data, resolve_device, train_run

warnings.warn("csu_lib.train is deprecated: import train_run, prepare_data ... from csu_lib.training",
              DeprecationWarning, stacklevel=2)

__all__ = ["PreparedData", "lr_factor", "predict", "prepare_data", "resolve_device", "train_run"]
