"""The data pipeline of a run, a stage of its own between the run record and training:
dataset -> corruption -> features (cached) as :class:`PreparedData` (:mod:`.data_pipeline`), and
a trained run's network and loss rebuilt from its record (:func:`load_trained`, :mod:`.trained`).

Training consumes it; analysis uses it too (the score plane and the landscape probes evaluate a
trained model on the same prepared data) without importing any training code.
"""
from .data_pipeline import (DataCache, PreparedData, data_key, prepare_data, resolve_device, restrict_training,
                            training_folds)
from .trained import load_trained

__all__ = ["DataCache", "PreparedData", "data_key", "load_trained", "prepare_data", "resolve_device",
           "restrict_training", "training_folds"]
